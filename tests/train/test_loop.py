"""The loop in-process: exact resume, checkpoints, faults, metrics out."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from mtx.errors import ConfigError
from mtx.train import sharding
from mtx.train.checkpoint import CheckpointError, Checkpoints
from mtx.train.data import PreparedData
from mtx.train.loop import DivergedError, train
from mtx.train.state import TrainSetup
from tests.train.helpers import flat_params, read_scalars


def test_a_resumed_run_equals_a_straight_run_bit_for_bit(config, tmp_path):
  straight = train(config, tmp_path / "straight")
  assert straight.step == 6 and sorted(straight.losses) == [1, 2, 3, 4, 5, 6]

  config.train.num_steps = 3  # stops at 3 (a checkpoint is written at the end)...
  first = train(config, tmp_path / "resumed")
  assert first.step == 3
  config.train.num_steps = 6  # ...and the same workdir resumes from it
  second = train(config, tmp_path / "resumed")
  assert second.resumed_from == 3 and sorted(second.losses) == [4, 5, 6]

  resumed_losses = {**first.losses, **second.losses}
  assert resumed_losses == straight.losses  # same floats: same batches, dropout, updates
  a, b = flat_params(straight.state), flat_params(second.state)
  assert a.keys() == b.keys()
  for name in a:
    np.testing.assert_array_equal(a[name], b[name], err_msg=name)
  assert straight.losses[6] < straight.losses[1]  # and it learns


def test_checkpoints_keep_the_latest_and_the_best_and_hold_the_run(config, tmp_path):
  result = train(config, tmp_path)
  checkpoints = Checkpoints(tmp_path, read_only=True)
  assert checkpoints.latest_step() == 6
  record = checkpoints.run_record(6)
  assert record["config"]["model"]["embed_dim"] == config.model.embed_dim
  assert record["codec"]["name"] == "mmt"
  saved = json.loads((tmp_path / "config.json").read_text())
  assert saved["signature"] == record["signature"]
  evaluated = {s: m["loss"] for s, m in result.eval_metrics.items()}
  assert checkpoints.best_step() == min(evaluated, key=evaluated.get)
  checkpoints.close()


def test_the_best_checkpoint_outlives_the_latest_k(config, tmp_path):
  """Saved with eval losses 3, 1, 2, 4, 5 and keep_checkpoints=2: steps 4 and 5 (the
  latest two) and step 2 (the best) are kept."""
  import jax.numpy as jnp

  from mtx.train.data import PreparedData, train_iterator

  config.train.update(keep_checkpoints=2, async_checkpointing=False)
  iterator = train_iterator(PreparedData(config.data), config)
  checkpoints = Checkpoints(tmp_path, config.train)
  for step, loss in zip(range(1, 6), (3.0, 1.0, 2.0, 4.0, 5.0)):
    next(iterator)
    checkpoints.save(
      step, {"x": jnp.full((3,), step)}, iterator, {"step": step}, metrics={"eval_loss": loss}
    )
  checkpoints.wait()
  assert set(checkpoints.all_steps()) == {2, 4, 5}
  assert checkpoints.best_step() == 2
  checkpoints.close()
  iterator.close()


def test_tensorboard_events_hold_train_and_eval_scalars(config, tmp_path):
  result = train(config, tmp_path)
  scalars = read_scalars(tmp_path / "tensorboard")
  assert set(scalars["train/loss"]) == {2, 4, 6}
  mean_loss = np.mean([result.losses[3], result.losses[4]])
  assert scalars["train/loss"][4] == pytest.approx(mean_loss, rel=1e-6)
  assert scalars["eval/loss"][6] == pytest.approx(result.eval_metrics[6]["loss"], rel=1e-6)
  for tag in (
    "train/tokens_per_second",
    "train/learning_rate",
    "train/accuracy/pitch",
    "eval/accuracy/pitch",
    "train/grad_norm",
  ):
    assert tag in scalars, tag


def test_a_checkpoint_of_another_model_is_refused_by_name(config, tmp_path):
  config.train.num_steps = 2
  train(config, tmp_path)
  config.model.embed_dim = 48
  with pytest.raises(CheckpointError, match=r"model\.embed_dim: saved 32, now 48"):
    train(config, tmp_path)


def test_a_relative_workdir_saves_and_resumes(config, tmp_path, monkeypatch):
  """mtx-train --workdir=runs/x from the shell: a path relative to the cwd (Orbax's array
  writer wants absolute paths; the run must not care)."""
  monkeypatch.chdir(tmp_path)
  config.train.num_steps = 2
  assert train(config, "runs/relative").step == 2
  config.train.num_steps = 4
  resumed = train(config, "runs/relative")
  assert resumed.resumed_from == 2 and resumed.step == 4
  checkpoints = Checkpoints(tmp_path / "runs" / "relative", read_only=True)
  assert checkpoints.latest_step() == 4
  checkpoints.close()


def test_a_run_resumes_with_another_attention_block_size(config, tmp_path):
  """attention_block_size changes how attention is computed, not the model: a run
  trained with the full L x L attention resumes with blocks of 16 (of 64 rows), and its
  losses follow the straight run's (same batches and dropout masks; float rounding
  differs, so within a tolerance)."""
  config.model.attention_block_size = 0
  straight = train(config, tmp_path / "straight")
  config.train.num_steps = 3
  train(config, tmp_path / "resumed")
  config.train.num_steps = 6
  config.model.attention_block_size = 16
  second = train(config, tmp_path / "resumed")
  assert second.resumed_from == 3
  for step in (4, 5, 6):
    assert second.losses[step] == pytest.approx(straight.losses[step], rel=1e-4)


def test_changed_data_settings_are_refused_on_resume(config, tmp_path):
  config.train.num_steps = 2
  train(config, tmp_path)
  config.train.num_steps = 4
  config.seed = 1  # the input order would differ: not an exact resume
  with pytest.raises(ConfigError, match="seed"):
    train(config, tmp_path)


def test_a_diverging_loss_stops_with_the_last_good_checkpoint_intact(config, tmp_path):
  config.train.update(num_steps=2, checkpoint_every=1)
  train(config, tmp_path)  # two good checkpoints
  good_config = config.copy_and_resolve_references()
  config.train.update(num_steps=40, learning_rate=1e30, warmup_steps=0, grad_clip_norm=0.0)
  with pytest.raises(DivergedError, match="last good checkpoint is step"):
    train(config, tmp_path)
  checkpoints = Checkpoints(tmp_path, read_only=True)
  assert checkpoints.latest_step() == 2

  data = PreparedData(good_config.data)
  setup = TrainSetup.create(good_config, data.codec, sharding.make_mesh((jax.device_count(), 1, 1)))
  state = checkpoints.restore(checkpoints.latest_step(), setup.abstract_state())
  for name, value in flat_params(state).items():
    assert np.isfinite(value).all(), name
  checkpoints.close()


def test_checkpoints_keep_the_dict_layout_that_earlier_checkpoints_have(trained_workdir, tmp_path):
  """The state is saved as the dict {step, params, opt_state, rng} (Orbax's tree metadata
  keys, its digest's array names), the layout of checkpoints written before `TrainState`;
  a checkpoint saved from that dict restores into a `TrainState`, verified, unchanged."""
  import ml_collections

  from mtx.train.data import train_iterator
  from mtx.train.state import TrainState
  from tests.conftest import TRAIN_STEPS

  step_dir = trained_workdir / "checkpoints" / str(TRAIN_STEPS)
  tree = json.loads((step_dir / "state" / "_METADATA").read_text())["tree_metadata"]
  top = {
    entry["key_metadata"][0]["key"]: entry["key_metadata"][0]["key_type"] for entry in tree.values()
  }
  dict_key = top["params"]
  assert top == {"step": dict_key, "params": dict_key, "opt_state": dict_key, "rng": dict_key}
  digest = json.loads((step_dir / "digest" / "metadata").read_text())
  assert {name.split("/")[0] for name in digest["state"]} == set(top)

  checkpoints = Checkpoints(trained_workdir, read_only=True)
  record = checkpoints.run_record(TRAIN_STEPS)
  config = ml_collections.ConfigDict(record["config"])
  data = PreparedData(config.data)
  setup = TrainSetup.create(config, data.codec, sharding.make_mesh((jax.device_count(), 1, 1)))
  state = checkpoints.restore(TRAIN_STEPS, setup.abstract_state())
  checkpoints.close()
  assert isinstance(state, TrainState) and int(state.step) == TRAIN_STEPS

  iterator = train_iterator(data, config)
  plain = Checkpoints(tmp_path, config.train)
  plain.save(TRAIN_STEPS, state.as_dict(), iterator, record)
  plain.wait()
  restored = plain.restore(TRAIN_STEPS, setup.abstract_state(), iterator)
  plain.close()
  iterator.close()
  assert isinstance(restored, TrainState)
  for a, b in zip(
    jax.tree.leaves(jax.device_get(state)), jax.tree.leaves(jax.device_get(restored))
  ):
    np.testing.assert_array_equal(a, b)
