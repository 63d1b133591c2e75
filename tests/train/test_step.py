"""The step's math: accumulation equals the full batch; the optimizer's schedules."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from configs import base
from mtx.errors import ConfigError
from mtx.model.loss import multi_field_loss
from mtx.train import sharding
from mtx.train.config import mesh_shape, validate
from mtx.train.optimizer import make_optimizer, make_schedule
from mtx.train.state import TrainSetup
from mtx.train.step import make_train_step
from tests.train.helpers import flat_params, small_config


@pytest.fixture(scope="module")
def batch_and_codec(prepared_dir):
  from mtx.train.data import PreparedData, train_iterator

  config = small_config(prepared_dir, batch_size=8)
  data = PreparedData(config.data)
  iterator = train_iterator(data, config)
  batch = next(iterator)
  iterator.close()
  return batch, data.codec


def _one_step(config, codec, batch):
  mesh = sharding.make_mesh((1, 1, 1), devices=jax.devices()[:1])
  setup = TrainSetup.create(config, codec, mesh)
  state = setup.init()
  params_before = flat_params(state)
  state, metrics = make_train_step(setup)(state, batch)
  return setup, params_before, state, jax.device_get(metrics)


@pytest.mark.parametrize("accum", [2, 4])
def test_accumulated_micro_batches_equal_the_full_batch(prepared_dir, batch_and_codec, accum):
  batch, codec = batch_and_codec
  config = small_config(prepared_dir, batch_size=8, warmup_steps=0, schedule="constant")
  config.model.update(dropout_rate=0.0, attention_dropout_rate=0.0)  # same function
  setup, before, full_state, full = _one_step(config, codec, batch)
  config.train.grad_accum_steps = accum
  _, _, state, metrics = _one_step(config, codec, batch)
  assert metrics["loss"] == pytest.approx(full["loss"], rel=1e-5)
  assert metrics["grad_norm"] == pytest.approx(full["grad_norm"], rel=1e-4)
  # The reported loss is the model's loss of the whole batch (mtx.model.loss).
  logits, _ = setup.model(jax.tree.map(np.asarray, _initial_params(config, codec)))(
    batch["inputs"], deterministic=True
  )
  reference, _ = multi_field_loss(
    logits, batch["targets"], batch["mask"], codec.field_mask_table(), codec.fields.names
  )
  assert full["loss"] == pytest.approx(float(reference), rel=1e-5)
  a, b = flat_params(full_state), flat_params(state)
  for name in a:
    np.testing.assert_allclose(a[name], b[name], rtol=1e-4, atol=1e-6, err_msg=name)
    assert not np.array_equal(a[name], before[name]) or name.endswith("bias.value")


def _initial_params(config, codec):
  mesh = sharding.make_mesh((1, 1, 1), devices=jax.devices()[:1])
  return TrainSetup.create(config, codec, mesh).init().params


def test_schedules_reach_their_named_points():
  train = base.get_config().train
  train.update(learning_rate=1.0, warmup_steps=10, num_steps=110, end_learning_rate_ratio=0.1)
  for name in ("warmup_cosine", "warmup_linear", "constant", "inverse_sqrt"):
    train.schedule = name
    lr = make_schedule(train)
    assert float(lr(0)) == 0.0 and float(lr(5)) == pytest.approx(0.5)
    assert float(lr(10)) == pytest.approx(1.0)
  train.schedule = "warmup_cosine"
  assert float(make_schedule(train)(110)) == pytest.approx(0.1)
  assert float(make_schedule(train)(60)) == pytest.approx(0.55)  # half way down the cosine
  train.update(schedule="warmup_linear", decay_steps=60)
  lr = make_schedule(train)
  assert float(lr(35)) == pytest.approx(0.55) and float(lr(60)) == pytest.approx(0.1)
  assert float(lr(100)) == pytest.approx(0.1)  # held after the decay, as MMT does
  train.schedule = "inverse_sqrt"
  assert float(make_schedule(train)(40)) == pytest.approx(0.5)  # sqrt(10 / 40)


def test_weight_decay_spares_biases_and_norms():
  import jax.numpy as jnp
  import optax

  train = base.get_config().train
  train.update(
    learning_rate=1.0, warmup_steps=0, schedule="constant", weight_decay=0.5, grad_clip_norm=0.0
  )
  tx, _ = make_optimizer(train)
  params = {"kernel": jnp.ones((2, 2)), "bias": jnp.ones((2,))}
  zeros = jax.tree.map(jnp.zeros_like, params)
  updates, _ = tx.update(zeros, tx.init(params), params)
  new = optax.apply_updates(params, updates)
  np.testing.assert_allclose(new["kernel"], 0.5)  # decayed: 1 - lr * wd
  np.testing.assert_allclose(new["bias"], 1.0)


@pytest.mark.parametrize(
  "mesh, devices, shape",
  [
    ({"data": -1, "fsdp": 1, "tensor": 1}, 8, (8, 1, 1)),
    ({"data": 2, "fsdp": -1, "tensor": 2}, 8, (2, 2, 2)),
    ({"data": 1, "fsdp": 1, "tensor": 1}, 1, (1, 1, 1)),
  ],
)
def test_mesh_shapes(mesh, devices, shape):
  assert mesh_shape(mesh, devices) == shape


@pytest.mark.parametrize(
  "mesh",
  [
    {"data": 3, "fsdp": 1, "tensor": 1},
    {"data": -1, "fsdp": -1, "tensor": 1},
    {"data": -1, "fsdp": 3, "tensor": 1},
    {"data": 0, "fsdp": 1, "tensor": 1},
  ],
)
def test_bad_meshes_are_refused(mesh):
  with pytest.raises(ConfigError, match="mesh"):
    mesh_shape(mesh, 8)


@pytest.mark.parametrize(
  "path, value, named",
  [
    ("train.batch_size", 6, "train.batch_size"),  # does not split over 4 devices
    ("train.grad_accum_steps", 3, "train.batch_size"),
    ("train.learning_rate", 0.0, "train.learning_rate"),
    ("train.adam_b2", 1.5, "train.adam_b2"),
    ("train.rng_impl", "mersenne", "train.rng_impl"),
    ("data.dataset", "imaginary", "data.dataset"),
    ("data.seq_len", 0, "data.seq_len"),
    ("model.embed_dim", 30, "model.embed_dim"),
    ("train.eval_batch_size", 2, "train.eval_batch_size"),
  ],
)
def test_validate_names_the_bad_field(path, value, named):
  config = base.get_config()
  config.train.batch_size = 8
  section, key = path.split(".")
  config[section][key] = value
  with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
    validate(config, device_count=4)


def test_the_shipped_configs_validate():
  import importlib

  for name in ("base", "jsb_tiny", "mmt_sod", "mmt_lmd", "music_transformer_maestro"):
    config = importlib.import_module(f"configs.{name}").get_config()
    assert validate(config, device_count=1) == (1, 1, 1), name


def test_bfloat16_compute_trains_close_to_float32(prepared_dir, batch_and_codec):
  batch, codec = batch_and_codec
  config = small_config(prepared_dir, batch_size=8, warmup_steps=0, schedule="constant")
  config.model.update(dropout_rate=0.0, attention_dropout_rate=0.0)
  _, _, f32_state, f32 = _one_step(config, codec, batch)
  config.model.dtype = "bfloat16"
  _, _, bf16_state, bf16 = _one_step(config, codec, batch)
  assert bf16["loss"] == pytest.approx(f32["loss"], rel=2e-2)
  assert bf16["grad_norm"] == pytest.approx(f32["grad_norm"], rel=5e-2)
  for name, value in flat_params(bf16_state).items():
    assert value.dtype == np.float32, name  # parameters stay float32
