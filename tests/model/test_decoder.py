"""The decoder: causality, cached decoding, packing, parameter counts, axis names, dtypes."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from configs import model_mmt, model_music_transformer, model_tiny
from mtx.errors import ConfigError
from mtx.model.config import DEFAULT_ATTENTION_BLOCK_SIZE
from mtx.model.decoder import Decoder
from mtx.model.embeddings import sinusoidal_positions
from mtx.model.loss import multi_field_loss
from mtx.model.params import parameter_count
from mtx.representation import get_codec

FIELD_SIZES = (5, 11, 7, 13, 9, 6)  # small multi-field vocabularies
# The MMT reference model's field vocabularies (max_beat 256) and its size (../shared/PEERS.md).
MMT_FIELD_SIZES = (5, 257, 13, 129, 33, 65)
MMT_REFERENCE_PARAMETERS = 19_941_878
LOGICAL_AXES = {"embed", "heads", "kv", "mlp", "vocab", "max_len", "relpos"}


def small_config(**overrides) -> ml_collections.ConfigDict:
  config = model_tiny.get_config()
  config.update(num_layers=2, embed_dim=32, num_heads=4, max_relative_distance=6, max_seq_len=32)
  config.update(**overrides)
  return config


def build(config, field_sizes=FIELD_SIZES, seed=0) -> Decoder:
  with nnx.use_eager_sharding(False):
    return Decoder(config, field_sizes, rngs=nnx.Rngs(params=seed, dropout=seed + 1))


@functools.cache
def variant_model(variant: str) -> Decoder:
  """One model per variant per process: building compiles every initializer shape once,
  seconds on a loaded 2-core machine; the tests only read these models."""
  return build(small_config(**VARIANTS[variant]))


@nnx.jit
def forward(model, tokens, positions=None, segment_ids=None):
  return model(tokens, positions=positions, segment_ids=segment_ids)[0]


@nnx.jit
def decode_step(model, tokens, cache):
  return model(tokens, cache=cache)


def random_tokens(rng, shape, field_sizes=FIELD_SIZES) -> jnp.ndarray:
  return jnp.asarray(np.stack([rng.integers(0, s, shape) for s in field_sizes], -1), jnp.int32)


VARIANTS = {  # name -> config overrides: every attention path and position embedding
  "relative": {},
  "relative+sinusoidal": {"position_embedding": "sinusoidal"},
  "plain+learned": {"relative": False, "position_embedding": "learned"},
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_changing_token_t_never_changes_logits_before_t(variant):
  model = variant_model(variant)
  rng = np.random.default_rng(0)
  tokens = random_tokens(rng, (2, 12))
  base = forward(model, tokens)
  for t in (0, 5, 11):
    changed = tokens.at[:, t].set((tokens[:, t] + 1) % jnp.asarray(FIELD_SIZES))
    logits = forward(model, changed)
    for field_base, field_logits in zip(base, logits):
      np.testing.assert_array_equal(np.asarray(field_logits[:, :t]), np.asarray(field_base[:, :t]))
    assert max(float(jnp.abs(a[:, t] - b[:, t]).max()) for a, b in zip(base, logits)) > 1e-4


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("primer", [0, 5])
def test_cached_decoding_equals_the_full_forward_at_every_step(variant, primer):
  model = variant_model(variant)
  tokens = random_tokens(np.random.default_rng(1), (2, 12))
  full = forward(model, tokens)
  step = decode_step
  cache = model.init_cache(2, 12)
  if primer:
    logits, cache = step(model, tokens[:, :primer], cache)
    for f, field_logits in enumerate(logits):
      np.testing.assert_allclose(field_logits, full[f][:, :primer], atol=2e-5, rtol=1e-5)
  for t in range(primer, 12):
    logits, cache = step(model, tokens[:, t : t + 1], cache)
    assert int(cache[0]["index"]) == t + 1
    for f, field_logits in enumerate(logits):
      np.testing.assert_allclose(field_logits[:, 0], full[f][:, t], atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("variant", ["relative+sinusoidal", "plain+learned"])
def test_packed_segments_equal_separate_sequences(variant):
  """Two windows packed in one row (segment ids 1, 2; positions restarting at 0) give the
  logits each gives alone: no attention across segments, positions per segment."""
  model = variant_model(variant)
  rng = np.random.default_rng(2)
  first, second = random_tokens(rng, (1, 7)), random_tokens(rng, (1, 5))
  packed = jnp.concatenate([first, second], axis=1)
  segment_ids = jnp.asarray([[1] * 7 + [2] * 5])
  positions = jnp.asarray([list(range(7)) + list(range(5))])
  logits = forward(model, packed, positions, segment_ids)
  alone_first, alone_second = forward(model, first), forward(model, second)
  for f in range(len(FIELD_SIZES)):
    np.testing.assert_allclose(logits[f][:, :7], alone_first[f], atol=2e-5, rtol=1e-5)
    np.testing.assert_allclose(logits[f][:, 7:], alone_second[f], atol=2e-5, rtol=1e-5)


def closed_form_count(config, field_sizes) -> int:
  """Counted here from the architecture, independently of mtx.model.params."""
  d, v = config.embed_dim, sum(field_sizes)
  m = round(config.mlp_ratio * d)
  layer_norm = 2 * d
  attention = 4 * d * d + (config.max_relative_distance * d if config.relative else 0)
  mlp = d * m + m + m * d + d
  positions = config.max_seq_len * d if config.position_embedding == "learned" else 0
  heads = d * v + v
  return (
    v * d + positions + config.num_layers * (2 * layer_norm + attention + mlp) + layer_norm + heads
  )


def count_parameters(config, field_sizes) -> int:
  abstract = nnx.eval_shape(lambda: build(config, field_sizes))
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(abstract, nnx.Param)))


@pytest.mark.parametrize(
  "config",
  [
    small_config(),
    small_config(relative=False, position_embedding="learned"),
    small_config(num_layers=3, mlp_ratio=2, position_embedding="sinusoidal"),
    model_music_transformer.get_config(),
  ],
  ids=["tiny", "learned", "ratio2", "music-transformer"],
)
def test_parameter_count_matches_the_closed_form(config):
  sizes = get_codec("performance").fields.sizes
  sizes = FIELD_SIZES if config.embed_dim == 32 else sizes
  expected = closed_form_count(config, sizes)
  assert count_parameters(config, sizes) == expected
  assert parameter_count(config, sizes)["total"] == expected


def test_mmt_config_has_the_mmt_reference_models_size():
  """x-transformers 1.0.3 as MMT builds it: per-field embeddings (no bias), learned
  positions (1024 x 512), 6 x [LayerNorm, q/k/v/out without bias, LayerNorm, FF 512-2048-512
  with biases], one final LayerNorm, per-field heads with bias = 19,941,878."""
  config = model_mmt.get_config()
  assert (config.embed_dim, config.num_layers, config.num_heads, config.max_seq_len) == (
    512,
    6,
    8,
    1024,
  )
  assert count_parameters(config, MMT_FIELD_SIZES) == MMT_REFERENCE_PARAMETERS
  assert closed_form_count(config, MMT_FIELD_SIZES) == MMT_REFERENCE_PARAMETERS


@pytest.mark.parametrize("variant", ["relative", "plain+learned"])
def test_every_parameter_has_logical_axis_names(variant):
  model = variant_model(variant)
  params = nnx.state(model, nnx.Param)
  leaves = jax.tree.leaves(params, is_leaf=lambda x: isinstance(x, nnx.Variable))
  assert leaves
  for path, variable in nnx.to_flat_state(params):
    names = variable.get_metadata().get("out_sharding")
    assert names is not None, path
    assert len(names) == variable.get_value().ndim, (path, names)
    assert set(names) <= LOGICAL_AXES, (path, names)
    assert variable.get_value().dtype == jnp.float32, path


def test_a_rule_table_maps_the_axis_names_onto_a_mesh():
  """Built inside a mesh with logical-axis rules, every parameter gets the sharding its
  names map to ('mlp' -> the mesh's 'model' axis here, the rest replicated)."""
  mesh = jax.make_mesh((1, 1), ("data", "model"), axis_types=(jax.sharding.AxisType.Explicit,) * 2)
  rules = [(name, "model" if name == "mlp" else None) for name in LOGICAL_AXES]
  with jax.set_mesh(mesh), nnx.logical_axis_rules(rules):
    model = nnx.eval_shape(lambda: Decoder(small_config(), FIELD_SIZES, rngs=nnx.Rngs(0)))
  for path, variable in nnx.to_flat_state(nnx.state(model, nnx.Param)):
    names = variable.get_metadata()["out_sharding"]
    spec = variable.get_value().sharding.spec
    assert tuple(spec) == tuple("model" if n == "mlp" else None for n in names), path


def test_sinusoidal_positions_match_the_formula():
  positions = np.array([[0, 1, 5, 100]])
  dim = 8
  expected = np.zeros((1, 4, dim))
  for j, p in enumerate(positions[0]):
    for i in range(dim // 2):
      angle = p / 10000 ** (2 * i / dim)
      expected[0, j, 2 * i], expected[0, j, 2 * i + 1] = np.sin(angle), np.cos(angle)
  np.testing.assert_allclose(sinusoidal_positions(jnp.asarray(positions), dim), expected, atol=1e-5)


def test_bfloat16_compute_is_finite_and_close_to_float32_at_init():
  tokens = random_tokens(np.random.default_rng(3), (2, 16))
  targets = random_tokens(np.random.default_rng(4), (2, 16))
  mask = jnp.ones((2, 16), bool)
  losses = {}
  for dtype in ("float32", "bfloat16"):
    model = build(small_config(dtype=dtype))  # same seed: the same float32 params
    logits = forward(model, tokens)
    assert all(x.dtype == jnp.float32 for x in logits)
    losses[dtype] = float(multi_field_loss(logits, targets, mask)[0])
  assert np.isfinite(losses["bfloat16"])
  assert abs(losses["bfloat16"] - losses["float32"]) < 0.02 * losses["float32"]


def test_dropout_is_active_only_when_not_deterministic():
  model = build(small_config(dropout_rate=0.5, attention_dropout_rate=0.5))
  tokens = random_tokens(np.random.default_rng(5), (1, 8))
  step = nnx.jit(
    lambda m, x, deterministic: m(x, deterministic=deterministic)[0][0],
    static_argnames="deterministic",
  )
  a, b = step(model, tokens, True), step(model, tokens, True)
  np.testing.assert_array_equal(a, b)
  c = step(model, tokens, False)
  assert float(jnp.abs(a - c).max()) > 1e-3


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_attention_blocks_leave_outputs_and_gradients_unchanged(variant):
  """attention_block_size only changes how attention is computed: the logits and every
  parameter's gradient equal the full path's, dropout (same rng streams) included."""
  overrides = {**VARIANTS[variant], "dropout_rate": 0.2, "attention_dropout_rate": 0.3}
  tokens = random_tokens(np.random.default_rng(6), (2, 11))
  segment_ids = jnp.asarray([[1] * 5 + [2] * 6, [1] * 10 + [0]], jnp.int32)

  @nnx.jit
  def logits_and_grads(model):
    def loss(model):
      logits, _ = model(tokens, segment_ids=segment_ids, deterministic=False)
      return sum((x * jnp.cos(jnp.arange(x.shape[-1]))).sum() for x in logits), logits

    return nnx.grad(loss, has_aux=True)(model)

  results = {}
  for size in (0, 4):
    model = build(small_config(attention_block_size=size, **overrides))
    assert model.blocks[0].attention.block_size == (size or None)
    results[size] = logits_and_grads(model)
  (grads_full, logits_full), (grads_blk, logits_blk) = results[0], results[4]
  for a, b in zip(logits_full, logits_blk):
    np.testing.assert_allclose(b, a, atol=2e-5, rtol=1e-5)
  flat_full, flat_blk = jax.tree.leaves(grads_full), jax.tree.leaves(grads_blk)
  assert len(flat_full) == len(flat_blk)
  for a, b in zip(flat_full, flat_blk):
    np.testing.assert_allclose(b, a, atol=2e-5, rtol=1e-4)


def test_configs_without_the_block_key_get_the_default():
  """A config written before the key existed gets the measured default; the shipped model
  configs set that same value explicitly."""
  values = small_config().to_dict()
  del values["attention_block_size"]
  config = ml_collections.ConfigDict(values)
  assert "attention_block_size" not in config
  model = build(config)
  assert model.blocks[0].attention.block_size == DEFAULT_ATTENTION_BLOCK_SIZE
  for name in ("model_mmt", "model_music_transformer", "model_tiny"):
    size = globals()[name].get_config().attention_block_size
    assert size == DEFAULT_ATTENTION_BLOCK_SIZE


@pytest.mark.parametrize(
  "overrides",
  [
    {"dtype": "float16"},
    {"embed_dim": 30},
    {"position_embedding": "rotary"},
    {"num_layers": 0},
    {"dropout_rate": 1.0},
    {"attention_block_size": -1},
    {"attention_block_size": 2.5},
  ],
)
def test_bad_config_raises_config_error(overrides):
  values = small_config().to_dict()  # a plain dict: ConfigDict would refuse 2.5 for an int
  values.update(overrides)
  with pytest.raises(ConfigError):
    build(ml_collections.ConfigDict(values))


def test_field_heads_equal_one_affine_map_per_field():
  """The heads' single concatenated matmul gives each field x @ kernel_f + bias_f."""
  heads = build(small_config()).heads  # its own model: the biases are changed below
  for head in heads.heads:  # nonzero biases, so a misplaced bias would show
    head.bias[...] = jnp.asarray(
      np.random.default_rng(9).standard_normal(head.bias.shape), jnp.float32
    )
  x = jnp.asarray(np.random.default_rng(8).standard_normal((2, 5, 32)), jnp.float32)
  logits = heads(x)
  assert len(logits) == len(FIELD_SIZES)
  x64 = np.asarray(x, np.float64)
  for size, head, got in zip(FIELD_SIZES, heads.heads, logits):
    expected = x64 @ np.asarray(head.kernel[...], np.float64) + np.asarray(head.bias[...])
    assert got.shape == (2, 5, size) and got.dtype == jnp.float32
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=1e-5)
