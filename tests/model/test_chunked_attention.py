"""Blocked attention (tiles, checkpointed blocks) against the full L x L path, its dropout
hash, and the dispatcher that picks a path."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mtx.model.attention import (
  PATHS,
  MultiHeadAttention,
  attend,
  attention_mask,
  attention_path,
  dropout_keep_mask,
  flash_attention,
  hash_dropout,
  relative_logits_block,
  relative_logits_skewed,
  softmax_attention,
)

PARAMS = ("query", "key", "value", "out", "rel_embedding")


def _normal(seed, shape):
  return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def make_layer(block_size, relative=True, dropout_rate=0.0, seed=0):
  """Same seed, same parameters and dropout stream whatever the block size."""
  with nnx.use_eager_sharding(False):
    return MultiHeadAttention(
      embed_dim=12,
      num_heads=3,
      relative=relative,
      max_relative_distance=5,
      dropout_rate=dropout_rate,
      block_size=block_size,
      rngs=nnx.Rngs(seed),
    )


@nnx.jit(static_argnames="deterministic")
def loss_and_grads(layer, x, segment_ids, weights, deterministic=True):
  """A weighted sum of the outputs, its gradients wrt the input and every parameter."""

  def loss(layer, x):
    y, _ = layer(x, segment_ids=segment_ids, deterministic=deterministic)
    return (y * weights).sum(), y

  (value, y), grads = nnx.value_and_grad(loss, argnums=(0, 1), has_aux=True)(layer, x)
  return y, value, grads


def _assert_layers_agree(full, blocked, length, segment_ids, deterministic):
  x = _normal(length, (2, length, 12))
  weights = _normal(length + 1, (2, length, 12))
  y_full, _, (g_full, gx_full) = loss_and_grads(full, x, segment_ids, weights, deterministic)
  y_blk, _, (g_blk, gx_blk) = loss_and_grads(blocked, x, segment_ids, weights, deterministic)
  np.testing.assert_allclose(y_blk, y_full, atol=2e-6, rtol=1e-5)
  np.testing.assert_allclose(gx_blk, gx_full, atol=2e-5, rtol=1e-5)
  for name in PARAMS:
    if name in g_full:
      np.testing.assert_allclose(g_blk[name][...], g_full[name][...], atol=2e-5, rtol=1e-5)
  assert float(jnp.abs(y_full).max()) > 0.1  # not trivially zero


@pytest.mark.parametrize("relative", [True, False])
@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("length,block_size", [(11, 4), (13, 5), (9, 1), (16, 8), (7, 6)])
def test_blocked_layer_equals_full_layer_outputs_and_gradients(
  relative, packed, length, block_size
):
  """Blocks of queries (the last one shorter when L is not a multiple) give the full
  path's outputs and gradients (input and every parameter, relative table included)."""
  segment_ids = None
  if packed:  # three segments and trailing padding in row 0, one segment in row 1
    row0 = np.repeat([1, 2, 3, 0], [length // 3, length // 3, length - 2 * (length // 3) - 1, 1])
    segment_ids = jnp.asarray(np.stack([row0, np.ones(length, int)]), jnp.int32)
  full = make_layer(None, relative)
  blocked = make_layer(block_size, relative)
  _assert_layers_agree(full, blocked, length, segment_ids, deterministic=True)


@pytest.mark.parametrize("relative", [True, False])
def test_blocked_dropout_draws_the_full_paths_pattern(relative):
  """With the same rng stream, training-mode outputs and gradients are equal: the blocks
  draw the very entries the full matrix draws (the mask hashes each entry's position)."""
  segment_ids = jnp.asarray([[1] * 6 + [2] * 7, [1] * 13], jnp.int32)
  full = make_layer(None, relative, dropout_rate=0.3)
  blocked = make_layer(4, relative, dropout_rate=0.3)
  _assert_layers_agree(full, blocked, 13, segment_ids, deterministic=False)
  # And the mask was on: a dropout-free layer gives something else.
  x = _normal(13, (2, 13, 12))
  with_dropout = loss_and_grads(full, x, segment_ids, x, deterministic=False)[0]
  without = loss_and_grads(make_layer(None, relative), x, segment_ids, x)[0]
  assert float(jnp.abs(with_dropout - without).max()) > 1e-2


def test_blocked_layer_draws_fresh_masks_each_call():
  layer = make_layer(4, dropout_rate=0.5)
  x = _normal(1, (1, 10, 12))
  a = loss_and_grads(layer, x, None, x, deterministic=False)[0]
  b = loss_and_grads(layer, x, None, x, deterministic=False)[0]
  det = loss_and_grads(layer, x, None, x, deterministic=True)[0]
  assert float(jnp.abs(a - b).max()) > 1e-3
  assert float(jnp.abs(a - det).max()) > 1e-3


@pytest.mark.parametrize("length", [1, 6, 13])
@pytest.mark.parametrize("block", [1, 4, 13])
@pytest.mark.parametrize("max_rel", [3, 20])
def test_relative_logits_block_equals_rows_of_the_skewed_matrix(length, block, max_rel):
  q = _normal(2, (2, 3, length, 8))
  rel = _normal(3, (3, max_rel, 8))
  full = np.asarray(relative_logits_skewed(q, rel))
  for start in range(0, length, block):
    end = min(start + block, length)
    for num_keys in sorted({end, length}):
      got = relative_logits_block(q[:, :, start:end], rel, start, num_keys)
      np.testing.assert_allclose(got, full[:, :, start:end, :num_keys], atol=1e-5, rtol=1e-5)


def test_flash_attention_needs_no_l_by_l_buffer():
  """Compiled forward + backward: the full path's temporaries hold several (B, H, L, L)
  float32 buffers; the blocked path's stay within a few (B, H, T, T) tiles and (B, H, L,
  Dh) vectors, under XLA's default scheduler (the loops leave it no choice)."""
  batch, heads, length, head_dim, block = 1, 4, 1024, 16, 128
  spec = jax.ShapeDtypeStruct((batch, heads, length, head_dim), jnp.float32)
  positions = jnp.arange(length)

  def full(q, k, v):
    logits = jnp.einsum("bhtd,bhsd->bhts", q, k) * head_dim**-0.5
    logits = jnp.where(attention_mask(positions, positions), logits, -1e30)
    return jnp.einsum("bhts,bhsd->bhtd", jax.nn.softmax(logits, axis=-1), v)

  def blocked(q, k, v):
    return flash_attention(q, k, v, block_size=block)

  def temp_bytes(fn):
    grad = jax.grad(lambda q, k, v: (fn(q, k, v) ** 2).sum(), argnums=(0, 1, 2))
    return jax.jit(grad).lower(spec, spec, spec).compile().memory_analysis().temp_size_in_bytes

  square = batch * heads * length * length * 4
  tile = batch * heads * block * block * 4
  vectors = batch * heads * length * head_dim * 4
  assert temp_bytes(full) >= 2 * square
  assert temp_bytes(blocked) <= 4 * tile + 12 * vectors  # a quarter of one square buffer


# ----------------------------------------------------------------------------------------
# The dropout hash.


def _mask(seed, shape=(2, 4, 256, 256), rate=0.2):
  return np.asarray(dropout_keep_mask(jnp.uint32(seed), shape, jnp.arange(shape[2]), rate))


@pytest.mark.parametrize("rate", [0.1, 0.2, 0.5])
def test_dropout_mask_keeps_one_minus_rate_of_the_entries(rate):
  kept = _mask(1, rate=rate)
  sd = np.sqrt(rate * (1 - rate) / kept.size)
  assert abs(kept.mean() - (1 - rate)) < 5 * sd
  # Every query row and key column keeps about the same share (no stuck rows or columns).
  rows = kept.mean(axis=-1)
  row_sd = np.sqrt(rate * (1 - rate) / kept.shape[-1])
  assert np.abs(rows - (1 - rate)).max() < 6 * row_sd
  cols = kept.mean(axis=(0, 1, 2))
  col_sd = np.sqrt(rate * (1 - rate) / (kept.size // kept.shape[-1]))
  assert np.abs(cols - (1 - rate)).max() < 6 * col_sd


def _corr(a, b):
  return np.corrcoef(a.ravel().astype(float), b.ravel().astype(float))[0, 1]


def test_dropout_mask_entries_are_uncorrelated():
  """Neighbours along every axis, and the masks of consecutive seeds, are uncorrelated
  (|r| under 0.01, about 7 standard errors at these sizes)."""
  kept = _mask(7)
  pairs = [
    (kept[..., 1:], kept[..., :-1]),  # next key
    (kept[:, :, 1:], kept[:, :, :-1]),  # next query
    (kept[:, 1:], kept[:, :-1]),  # next head
    (kept[1:], kept[:-1]),  # next batch row
    (kept, _mask(8)),  # next seed
  ]
  for a, b in pairs:
    assert abs(_corr(a, b)) < 0.01


def test_dropout_mask_is_a_function_of_seed_and_position():
  a, b = _mask(3), _mask(3)
  np.testing.assert_array_equal(a, b)
  assert (a != _mask(4)).mean() > 0.25  # 2 p (1 - p) = 0.32 for independent masks
  # A block of queries with the full row stride reads the same entries.
  shape = (2, 4, 256, 256)
  part = dropout_keep_mask(
    jnp.uint32(3), (2, 4, 16, 100), 40 + jnp.arange(16), 0.2, row_stride=shape[-1]
  )
  np.testing.assert_array_equal(part, a[:, :, 40:56, :100])
  # And a tile of keys further along (key_start), as the blocked backward draws them.
  tile = dropout_keep_mask(
    jnp.uint32(3),
    (2, 4, 16, 32),
    40 + jnp.arange(16),
    0.2,
    row_stride=shape[-1],
    key_start=jnp.int32(96),
  )
  np.testing.assert_array_equal(tile, a[:, :, 40:56, 96:128])


@pytest.mark.parametrize("rate", [0.2, 0.5])
def test_hash_dropout_zeroes_a_rate_share_and_keeps_the_mean(rate):
  x = jnp.ones((4, 64, 96), jnp.float32)
  y = np.asarray(hash_dropout(x, rate, jnp.uint32(11)))
  kept = y != 0
  np.testing.assert_allclose(y[kept], 1.0 / (1.0 - rate), rtol=1e-6)  # kept ones scaled
  sd = np.sqrt(rate * (1 - rate) / y.size)
  assert abs(kept.mean() - (1 - rate)) < 5 * sd
  assert abs(y.mean() - 1.0) < 5 * sd / (1 - rate)  # unbiased
  # Next (batch, position) row, next batch entry: uncorrelated (5 standard errors).
  rows = kept.reshape(-1, kept.shape[-1])
  assert abs(_corr(rows[:-1], rows[1:])) < 5 / np.sqrt(rows[1:].size)
  assert abs(_corr(kept[:-1], kept[1:])) < 5 / np.sqrt(kept[1:].size)
  again = np.asarray(hash_dropout(x, rate, jnp.uint32(11)))
  np.testing.assert_array_equal(y, again)
  assert (np.asarray(hash_dropout(x, rate, jnp.uint32(12))) != y).mean() > 0.2
  np.testing.assert_array_equal(hash_dropout(x, 0.0, jnp.uint32(11)), x)


@pytest.mark.parametrize("relative", [True, False])
def test_blocked_layer_in_bfloat16_stays_close_to_float32(relative):
  """bfloat16 compute through the blocked path (forward and the custom backward):
  outputs and gradients within bfloat16's precision of the float32 full path's."""
  with nnx.use_eager_sharding(False):
    bf16 = MultiHeadAttention(
      embed_dim=12,
      num_heads=3,
      relative=relative,
      max_relative_distance=5,
      block_size=4,
      dtype=jnp.bfloat16,
      rngs=nnx.Rngs(0),
    )
  full = make_layer(None, relative)
  x = _normal(5, (2, 13, 12))
  weights = _normal(6, (2, 13, 12))
  y16, _, (g16, gx16) = loss_and_grads(bf16, x, None, weights)
  y32, _, (g32, gx32) = loss_and_grads(full, x, None, weights)
  assert y16.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(y16, np.float32), y32, atol=0.05, rtol=0.05)
  np.testing.assert_allclose(gx16, gx32, atol=0.1, rtol=0.05)
  for name in PARAMS:
    if name in g32:
      scale = float(jnp.abs(g32[name][...]).max())
      np.testing.assert_allclose(g16[name][...], g32[name][...], atol=0.03 * scale)


# ----------------------------------------------------------------------------------------
# The dispatcher.


@pytest.mark.parametrize(
  "cached, length, block_size, relative, dropout, path",
  [
    (False, 13, 4, False, False, "tiles"),
    (False, 13, 4, False, True, "tiles"),
    (False, 13, 4, True, False, "checkpointed"),
    (False, 4, 4, True, False, "whole"),  # no longer than a block
    (False, 13, None, False, True, "whole"),
    (False, 13, None, False, False, "library"),
    (True, 13, 4, False, False, "library"),  # cached calls never go by blocks
    (True, 13, 4, True, False, "whole"),
  ],
)
def test_attention_path_follows_the_table(cached, length, block_size, relative, dropout, path):
  assert path in PATHS
  assert (
    attention_path(
      cached=cached, length=length, block_size=block_size, relative=relative, dropout=dropout
    )
    == path
  )


@pytest.mark.parametrize("relative", [True, False])
@pytest.mark.parametrize("block_size", [None, 4])
def test_attend_equals_softmax_attention_whole_and_cached(relative, block_size):
  """Whatever path it picks, `attend` computes the whole masked softmax attention; with
  q_start, queries at an offset against a cache's slots (later slots masked)."""
  q, k, v = (_normal(seed, (2, 3, 10, 8)) for seed in (30, 31, 32))
  rel = _normal(33, (3, 5, 8)) if relative else None
  positions = jnp.arange(10)
  rel_logits = relative_logits_skewed(q, rel) if relative else None
  want = softmax_attention(q, k, v, attention_mask(positions, positions), rel_logits)
  got = attend(q, k, v, rel=rel, block_size=block_size)
  np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)
  got = attend(q[:, :, 4:7], k, v, rel=rel, block_size=block_size, q_start=jnp.int32(4))
  np.testing.assert_allclose(got, want[:, :, 4:7], atol=1e-5, rtol=1e-5)
