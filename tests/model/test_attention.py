"""Relative attention and its cache against slow reference computations written here."""

from __future__ import annotations

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from hypothesis import given, settings

from mtx.model.attention import (
  MultiHeadAttention,
  attention_mask,
  library_attention,
  relative_logits_at,
  relative_logits_naive,
  relative_logits_skewed,
  softmax_attention,
)

AXES = {
  "query": ("embed", "heads", "kv"),
  "key": ("embed", "heads", "kv"),
  "value": ("embed", "heads", "kv"),
  "out": ("heads", "kv", "embed"),
  "rel_embedding": ("relpos", "heads", "kv"),
}


# Jitted once here: one compile per shape is far cheaper than op-by-op dispatch on CPU.
naive = jax.jit(relative_logits_naive)
skewed = jax.jit(relative_logits_skewed)
at_positions = jax.jit(relative_logits_at)


@nnx.jit(static_argnames="deterministic")
def run(layer, x, segment_ids=None, deterministic=True):
  """layer(x) under nnx.jit (dropout's rng state advances as in eager calls)."""
  return layer(x, segment_ids=segment_ids, deterministic=deterministic)


def _normal(seed, shape):
  """Standard-normal float32 inputs (numpy: no per-shape compile of a jax sampler)."""
  return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def make_layer(seed=0, **kw):
  """A layer built without a mesh: the annotations stay metadata (no eager sharding)."""
  kw = {"embed_dim": 8, "num_heads": 2, "max_relative_distance": 4, **kw}
  with nnx.use_eager_sharding(False):
    return MultiHeadAttention(**kw, rngs=nnx.Rngs(seed))


def params_of(layer):
  """The layer's parameters as float64 numpy arrays, by attribute name."""
  return {
    name: np.asarray(getattr(layer, name)[...], np.float64)
    for name in AXES
    if isinstance(getattr(layer, name), nnx.Param)
  }


# ----------------------------------------------------------------------------------------
# Slow references.


def loop_relative_logits(q, rel):
  """S[b, h, i, j] = q[b, h, i] . rel[h, min(i - j, R - 1)] for j <= i, else 0; loops."""
  q, rel = np.asarray(q, np.float64), np.asarray(rel, np.float64)
  if rel.ndim == 2:
    rel = np.broadcast_to(rel, (q.shape[1],) + rel.shape)
  batch, heads, length, _ = q.shape
  out = np.zeros((batch, heads, length, length))
  for h in range(heads):
    for i in range(length):
      for j in range(i + 1):
        out[:, h, i, j] = q[:, h, i] @ rel[h, min(i - j, rel.shape[1] - 1)]
  return out


def reference_attention(params, x, max_rel, segment_ids=None):
  """Causal (and per-segment) multi-head attention with explicit loops over i, j."""
  x = np.asarray(x, np.float64)
  batch, length, _ = x.shape
  q = np.einsum("bld,dhk->bhlk", x, params["query"])
  k = np.einsum("bld,dhk->bhlk", x, params["key"])
  v = np.einsum("bld,dhk->bhlk", x, params["value"])
  heads, head_dim = q.shape[1], q.shape[3]
  seg = np.ones((batch, length), int) if segment_ids is None else np.asarray(segment_ids)
  out = np.zeros_like(q)
  for b in range(batch):
    for h in range(heads):
      for i in range(length):
        keys = [j for j in range(i + 1) if seg[b, j] == seg[b, i]]
        logits = []
        for j in keys:
          logit = q[b, h, i] @ k[b, h, j]
          if "rel_embedding" in params:
            logit += q[b, h, i] @ params["rel_embedding"][min(i - j, max_rel - 1), h]
          logits.append(logit / np.sqrt(head_dim))
        p = np.exp(np.array(logits) - max(logits))
        p /= p.sum()
        out[b, h, i] = sum(pj * v[b, h, j] for pj, j in zip(p, keys))
  return np.einsum("bhld,hdk->blk", out, params["out"])


# ----------------------------------------------------------------------------------------
# The relative term.


@pytest.mark.parametrize("shared", [False, True])
def test_naive_relative_logits_match_explicit_loops(shared):
  q = _normal(0, (2, 3, 9, 4))
  rel = _normal(1, (5, 4) if shared else (3, 5, 4))
  np.testing.assert_allclose(naive(q, rel), loop_relative_logits(q, rel), atol=1e-5)


@pytest.mark.parametrize(
  "length, heads, max_rel",
  [
    (1, 2, 4),
    (7, 2, 3),  # R < L: distances clipped
    (7, 3, 7),  # R == L
    (7, 1, 20),  # R > L
    (64, 4, 16),
    (64, 1, 100),
    (130, 2, 40),
    (130, 2, 130),
    (130, 1, 300),
  ],
)
def test_skewed_equals_naive(length, heads, max_rel):
  q = _normal(length, (2, heads, length, 8))
  rel = _normal(max_rel, (heads, max_rel, 8))
  np.testing.assert_allclose(skewed(q, rel), naive(q, rel), atol=1e-5, rtol=1e-5)


def test_skewed_equals_naive_with_one_table_shared_by_the_heads():
  q = _normal(0, (2, 3, 20, 8))
  rel = _normal(1, (6, 8))
  np.testing.assert_allclose(skewed(q, rel), naive(q, rel), atol=1e-5, rtol=1e-5)


@settings(max_examples=30, deadline=None)
@given(
  batch=st.integers(1, 2),
  heads=st.integers(1, 3),
  length=st.integers(1, 12),
  head_dim=st.integers(1, 5),
  max_rel=st.integers(1, 15),
  seed=st.integers(0, 2**16),
)
def test_skewed_equals_loops_on_small_shapes(batch, heads, length, head_dim, max_rel, seed):
  q = _normal(seed, (batch, heads, length, head_dim))
  rel = _normal(seed + 1, (heads, max_rel, head_dim))
  np.testing.assert_allclose(skewed(q, rel), loop_relative_logits(q, rel), atol=1e-5, rtol=1e-5)


def test_skewed_gradients_equal_naive_gradients():
  """Training differentiates through the pad/reshape/slice: its gradients must be the naive
  ones too."""
  q = _normal(0, (1, 2, 11, 4))
  rel = _normal(1, (2, 5, 4))
  weights = _normal(2, (1, 2, 11, 11))

  def loss(fn):
    return jax.jit(jax.grad(lambda q, rel: jnp.sum(fn(q, rel) * weights), argnums=(0, 1)))

  for got, want in zip(loss(relative_logits_skewed)(q, rel), loss(relative_logits_naive)(q, rel)):
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("start, count, max_rel", [(0, 10, 4), (3, 1, 4), (5, 4, 20), (9, 1, 3)])
def test_relative_logits_at_positions_equal_rows_of_the_full_matrix(start, count, max_rel):
  """The cached path's term: queries at start..start+count-1 against every key 0..L-1."""
  length = 10
  q = _normal(0, (2, 3, length, 4))
  rel = _normal(1, (3, max_rel, 4))
  rows = at_positions(
    q[:, :, start : start + count], rel, start + jnp.arange(count), jnp.arange(length)
  )
  np.testing.assert_allclose(
    rows, loop_relative_logits(q, rel)[:, :, start : start + count], atol=1e-5
  )


def _intermediate_sizes(jaxpr):
  """Element counts of every value a jaxpr (and its sub-jaxprs) computes."""
  sizes = []
  for eqn in jaxpr.eqns:
    sizes += [int(np.prod(v.aval.shape)) for v in eqn.outvars]
    for param in eqn.params.values():
      for sub in param if isinstance(param, (list, tuple)) else [param]:
        if isinstance(sub, jax.extend.core.ClosedJaxpr):
          sizes += _intermediate_sizes(sub.jaxpr)
        elif isinstance(sub, jax.extend.core.Jaxpr):
          sizes += _intermediate_sizes(sub)
  return sizes


def test_skewed_never_materializes_an_l_by_l_by_dh_tensor():
  """Skewing keeps the relative term at O(L * Dh + L^2) per head; naive is O(L^2 * Dh)."""
  heads, length, head_dim, max_rel = 2, 96, 32, 512
  q = jax.ShapeDtypeStruct((1, heads, length, head_dim), jnp.float32)
  rel = jax.ShapeDtypeStruct((heads, max_rel, head_dim), jnp.float32)
  quadratic = heads * length * length * head_dim
  linear_bound = heads * (length + 1) * (length + head_dim)  # padded logits or E_r
  skewed = _intermediate_sizes(jax.make_jaxpr(relative_logits_skewed)(q, rel).jaxpr)
  naive = _intermediate_sizes(jax.make_jaxpr(relative_logits_naive)(q, rel).jaxpr)
  assert max(naive) >= quadratic  # the check can see the big tensor when it is there
  assert max(skewed) <= linear_bound
  # What XLA allocates agrees, where the backend reports it.
  skewed_mem = jax.jit(relative_logits_skewed).lower(q, rel).compile().memory_analysis()
  naive_mem = jax.jit(relative_logits_naive).lower(q, rel).compile().memory_analysis()
  if skewed_mem is not None and naive_mem is not None:
    assert naive_mem.temp_size_in_bytes >= 4 * quadratic
    assert skewed_mem.temp_size_in_bytes <= 4 * 4 * linear_bound


# ----------------------------------------------------------------------------------------
# The layer.


@pytest.mark.parametrize("relative", [True, False])
@pytest.mark.parametrize("max_rel", [3, 16])
def test_layer_equals_slow_reference(relative, max_rel):
  layer = make_layer(relative=relative, max_relative_distance=max_rel)
  x = _normal(3, (2, 6, 8))
  y, cache = run(layer, x)
  assert cache is None and y.shape == x.shape and y.dtype == jnp.float32
  expected = reference_attention(params_of(layer), x, max_rel)
  np.testing.assert_allclose(y, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("relative", [True, False])
def test_packed_segments_equal_slow_reference(relative):
  layer = make_layer(relative=relative, max_relative_distance=3)
  x = _normal(4, (2, 7, 8))
  segment_ids = jnp.array([[1, 1, 1, 2, 2, 2, 2], [1, 1, 2, 2, 3, 0, 0]])
  y, _ = run(layer, x, segment_ids=segment_ids)
  expected = reference_attention(params_of(layer), x, 3, segment_ids)
  np.testing.assert_allclose(y, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("relative", [True, False])
def test_a_packed_segment_equals_the_same_tokens_alone(relative):
  """Relative distances inside a segment are index differences, so position in the pack
  does not matter."""
  layer = make_layer(relative=relative, max_relative_distance=3)
  x = _normal(5, (1, 8, 8))
  segment_ids = jnp.array([[1, 1, 1, 2, 2, 2, 2, 2]])
  packed, _ = run(layer, x, segment_ids=segment_ids)
  alone, _ = run(layer, x[:, 3:])
  np.testing.assert_allclose(packed[:, 3:], alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("relative", [True, False])
def test_changing_token_t_never_changes_earlier_outputs(relative):
  layer = make_layer(relative=relative)
  x = _normal(6, (1, 9, 8))
  y, _ = run(layer, x)
  for t in (0, 4, 8):
    y2, _ = run(layer, x.at[:, t].add(3.0))
    np.testing.assert_allclose(y2[:, :t], y[:, :t], atol=1e-6, rtol=0)
    assert np.abs(np.asarray(y2[:, t:]) - np.asarray(y[:, t:])).max() > 1e-3


@pytest.mark.parametrize("relative", [True, False])
def test_changing_segment_two_never_changes_segment_one(relative):
  layer = make_layer(relative=relative)
  x = _normal(7, (1, 8, 8))
  segment_ids = jnp.array([[1, 1, 1, 1, 2, 2, 2, 0]])
  y, _ = run(layer, x, segment_ids=segment_ids)
  y2, _ = run(layer, x.at[:, 4].add(3.0), segment_ids=segment_ids)
  np.testing.assert_allclose(y2[:, :4], y[:, :4], atol=1e-6, rtol=0)
  np.testing.assert_allclose(y2[:, 7], y[:, 7], atol=1e-6, rtol=0)  # padding too
  assert np.abs(np.asarray(y2[:, 4:7]) - np.asarray(y[:, 4:7])).max() > 1e-3


def test_plain_path_equals_relative_path_with_zero_table():
  """relative=False (jax.nn.dot_product_attention) is the same scaled attention as the
  explicit relative path once the relative term is zero."""
  rel_layer = make_layer(relative=True)
  plain = make_layer(relative=False, seed=1)
  rel_layer.rel_embedding[...] = jnp.zeros_like(rel_layer.rel_embedding[...])
  for name in ("query", "key", "value", "out"):
    getattr(plain, name)[...] = getattr(rel_layer, name)[...]
  x = _normal(8, (2, 7, 8))
  segment_ids = jnp.array([[1, 1, 1, 2, 2, 2, 2], [1, 1, 1, 1, 1, 0, 0]])
  for seg in (None, segment_ids):
    np.testing.assert_allclose(
      run(plain, x, segment_ids=seg)[0],
      run(rel_layer, x, segment_ids=seg)[0],
      atol=1e-5,
      rtol=1e-5,
    )


def test_library_attention_equals_explicit_attention_under_every_mask():
  """`library_attention`'s two forms (is_causal + a segment mask; a given mask) compute
  the explicit masked softmax attention: causal from 0, packed segments, and queries at an
  offset against a longer key range with keys past them hidden (cached decoding)."""
  q, k, v = (_normal(seed, (2, 3, 9, 8)) for seed in (20, 21, 22))
  positions = jnp.arange(9)
  segments = jnp.array([[1, 1, 1, 2, 2, 2, 2, 3, 3], [1, 1, 1, 1, 1, 1, 0, 0, 0]])
  for seg in (None, segments):
    want = softmax_attention(q, k, v, attention_mask(positions, positions, seg, seg), None)
    got = jax.jit(library_attention)(q, k, v, segment_ids=seg)
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)
  # Three queries at positions 4..6 against 9 cached slots (slots 7, 8 not yet written).
  q_positions = jnp.arange(4, 7)
  mask = attention_mask(q_positions, positions)
  want = softmax_attention(q[:, :, 4:7], k, v, mask, None)
  got = jax.jit(library_attention)(q[:, :, 4:7], k, v, mask=mask)
  np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)
  # And the mask matters: without it the answer differs.
  unmasked = softmax_attention(q[:, :, 4:7], k, v, jnp.ones_like(mask), None)
  assert np.abs(np.asarray(unmasked) - np.asarray(want)).max() > 1e-3


# ----------------------------------------------------------------------------------------
# The cache.


def _jitted(layer):
  """layer.__call__ under jax.jit, with the parameters as an argument."""
  graphdef, state = nnx.split(layer)

  @jax.jit
  def call(state, x, cache):
    return nnx.merge(graphdef, state)(x, cache=cache)

  return lambda x, cache: call(state, x, cache)


@pytest.mark.parametrize("relative", [True, False])
@pytest.mark.parametrize("primer", [0, 1, 4])
def test_cached_decoding_equals_full_forward_at_every_step(relative, primer):
  length, max_length = 9, 12  # cache longer than the sequence: unfilled slots stay masked
  layer = make_layer(relative=relative, max_relative_distance=3)  # R < L: clipping too
  x = _normal(9, (2, length, 8))
  full, _ = run(layer, x)
  step = _jitted(layer)
  cache = layer.init_cache(2, max_length)
  outputs = []
  if primer:
    y, cache = step(x[:, :primer], cache)
    outputs.append(y)
  for t in range(primer, length):
    y, cache = step(x[:, t : t + 1], cache)
    outputs.append(y)
    np.testing.assert_allclose(y[:, 0], full[:, t], atol=1e-5, rtol=1e-5)
  assert int(cache["index"]) == length
  np.testing.assert_allclose(jnp.concatenate(outputs, axis=1), full, atol=1e-5, rtol=1e-5)


def test_cache_holds_the_keys_and_values_of_the_full_sequence():
  layer = make_layer()
  x = _normal(10, (1, 5, 8))
  cache = layer.init_cache(1, 8)
  assert cache["k"].shape == (1, 2, 8, 4) and cache["index"].dtype == jnp.int32
  step = _jitted(layer)
  _, cache = step(x[:, :3], cache)
  _, cache = step(x[:, 3:], cache)
  params = params_of(layer)
  k = np.einsum("bld,dhk->bhlk", np.asarray(x, np.float64), params["key"])
  np.testing.assert_allclose(cache["k"][:, :, :5], k, atol=1e-5)
  np.testing.assert_array_equal(cache["k"][:, :, 5:], 0)


def test_cache_rejects_segments_and_overflow():
  layer = make_layer()
  cache = layer.init_cache(1, 4)
  with pytest.raises(ValueError, match="segment_ids"):
    layer(jnp.ones((1, 2, 8)), segment_ids=jnp.ones((1, 2), jnp.int32), cache=cache)
  with pytest.raises(ValueError, match="max_length=4"):
    layer(jnp.ones((1, 5, 8)), cache=cache)


# ----------------------------------------------------------------------------------------
# Parameters, precision, dropout.


@pytest.mark.parametrize("relative", [True, False])
def test_every_parameter_has_logical_axis_names(relative):
  layer = make_layer(relative=relative)
  params = {path[-1]: var for path, var in nnx.iter_graph(layer) if isinstance(var, nnx.Param)}
  expected = {k: v for k, v in AXES.items() if relative or k != "rel_embedding"}
  assert set(params) == set(expected)
  for name, var in params.items():
    names = var.get_metadata()["out_sharding"]
    assert tuple(names) == expected[name], name
    assert len(names) == var[...].ndim
  # Closed-form count: four (D, H, Dh) kernels without biases, plus the (R, H, Dh) table.
  count = sum(var[...].size for var in params.values())
  assert count == 4 * 8 * 8 + (4 * 2 * 4 if relative else 0)


def test_parameters_are_sharded_by_their_names_inside_a_mesh():
  """Inside a mesh whose axes carry the logical names, each parameter lands with the
  PartitionSpec of its names, and the layer runs under jit there."""
  names = ("embed", "heads", "kv", "relpos")
  mesh = jax.make_mesh((1,) * 4, names, axis_types=(jax.sharding.AxisType.Auto,) * 4)
  with jax.set_mesh(mesh):
    layer = MultiHeadAttention(embed_dim=8, num_heads=2, max_relative_distance=4, rngs=nnx.Rngs(0))
    for name, axes in AXES.items():
      assert getattr(layer, name)[...].sharding.spec == jax.sharding.PartitionSpec(*axes)
    y, _ = nnx.jit(lambda m, x: m(x))(layer, jnp.ones((1, 3, 8)))
  assert y.shape == (1, 3, 8)


@pytest.mark.parametrize("relative", [True, False])
def test_bfloat16_compute_stays_close_to_float32(relative):
  f32 = make_layer(relative=relative, max_relative_distance=3)
  bf16 = make_layer(relative=relative, max_relative_distance=3, dtype=jnp.bfloat16)
  for name in params_of(f32):
    assert getattr(bf16, name)[...].dtype == jnp.float32  # params stay float32
    getattr(bf16, name)[...] = getattr(f32, name)[...]
  x = _normal(11, (2, 10, 8))
  y32, _ = run(f32, x)
  y16, _ = run(bf16, x)
  assert y16.dtype == jnp.bfloat16
  scale = float(jnp.abs(y32).max())
  np.testing.assert_allclose(np.asarray(y16, np.float32), y32, atol=0.03 * scale)
  # The cached path in bfloat16 too.
  cache = bf16.init_cache(2, 10)
  assert cache["k"].dtype == jnp.bfloat16
  y_steps, _ = _jitted(bf16)(x[:, :6], cache)
  np.testing.assert_allclose(np.asarray(y_steps, np.float32), y32[:, :6], atol=0.03 * scale)


@pytest.mark.parametrize("relative", [True, False])
def test_dropout_only_when_not_deterministic(relative):
  layer = make_layer(relative=relative, dropout_rate=0.5)
  x = _normal(12, (2, 6, 8))
  y_det, _ = run(layer, x, deterministic=True)
  no_dropout = make_layer(relative=relative)
  np.testing.assert_allclose(y_det, run(no_dropout, x)[0], atol=1e-6)
  y_a, _ = run(layer, x, deterministic=False)
  y_b, _ = run(layer, x, deterministic=False)
  assert np.abs(np.asarray(y_a) - np.asarray(y_det)).max() > 1e-3
  assert np.abs(np.asarray(y_a) - np.asarray(y_b)).max() > 1e-3  # fresh masks each call


def test_bad_sizes_are_refused():
  with pytest.raises(ValueError, match="multiple of num_heads"):
    make_layer(embed_dim=10, num_heads=3)
  with pytest.raises(ValueError, match="max_relative_distance"):
    make_layer(max_relative_distance=0)
