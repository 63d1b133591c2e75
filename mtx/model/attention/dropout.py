"""Dropout masks from a counter hash of each entry's coordinates.

The attention probabilities and the decoder's activations both draw their masks here: a
mask that is a pure function of (seed, coordinates) lets a block of queries draw exactly
the entries the full matrix draws for it, and lets the backward pass redraw a mask instead
of storing it. The hash also costs a few integer operations per entry where threefry costs
dozens (docs/benchmarks.md, "Model code").
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def _fmix32(x: jax.Array) -> jax.Array:
  """MurmurHash3's 32-bit finalizer: a bijection of uint32 in which every input bit flips
  each output bit with probability about 1/2."""
  x = x ^ (x >> 16)
  x = x * jnp.uint32(0x85EBCA6B)
  x = x ^ (x >> 13)
  x = x * jnp.uint32(0xC2B2AE35)
  return x ^ (x >> 16)


def dropout_keep_mask(
  seed: jax.Array,
  shape: tuple[int, ...],
  q_positions: jax.Array,
  rate: float,
  row_stride: int | None = None,
  key_start: jax.Array | int = 0,
) -> jax.Array:
  """Which attention probabilities dropout keeps: bool `shape` = (B, H, Lq, Lk).

  Entry (b, h, i, j), i the query at `q_positions[i]`, j the key at index j (keys start at
  0), is kept with probability 1 - rate, decided by a hash of (seed, b, h, query position,
  key j). Two MurmurHash3 finalizer rounds (one per query row, one per entry); `seed` is a
  uint32 scalar, fresh per call (from the layer's dropout rng stream). A query row's id is
  (b H + h) row_stride + position, so `row_stride` must exceed every position (default
  Lk: in causal self-attention no query is past the last key) and be the same wherever
  the same matrix is drawn, in full or by blocks with fewer keys. Ids are uint32: they
  wrap past 2^32 rows (B H L), where rows would start to share masks. `key_start` (may be
  traced): the keys are key_start..key_start+Lk-1, for a tile of keys further along.
  """
  batch, heads, _, num_keys = shape
  stride = num_keys if row_stride is None else row_stride
  row = (
    jnp.arange(batch * heads, dtype=jnp.uint32).reshape(batch, heads, 1, 1) * jnp.uint32(stride)
  ) + q_positions.astype(jnp.uint32)[:, None]  # (B, H, Lq, 1)
  row = _fmix32(row ^ seed.astype(jnp.uint32))
  keys = jnp.asarray(key_start, jnp.uint32) + jnp.arange(num_keys, dtype=jnp.uint32)
  bits = _fmix32(row + keys * jnp.uint32(0x9E3779B9))
  threshold = min(int(round(rate * 2.0**32)), 2**32 - 1)
  return bits >= jnp.uint32(threshold)


def hash_dropout(x: jax.Array, rate: float, seed: jax.Array) -> jax.Array:
  """Dropout on activations x (B, L, ...) with `dropout_keep_mask`'s hash for the mask.

  Kept entries are scaled by 1 / (1 - rate), as `nnx.Dropout` does; `seed` is a uint32
  scalar, fresh per call.
  """
  if rate == 0.0:
    return x
  batch, length = x.shape[:2]
  width = int(np.prod(x.shape[2:], dtype=np.int64))
  kept = dropout_keep_mask(  # row ids b L + l: one per (batch, position)
    seed, (batch, 1, length, width), jnp.arange(length), rate, row_stride=length
  )
  kept = kept.reshape(x.shape)
  return jnp.where(kept, x / (1.0 - rate), jnp.zeros((), x.dtype))


def dropout_probabilities(
  probs: jax.Array, dropout, q_positions: jax.Array, row_stride: int | None = None
) -> jax.Array:
  """Attention dropout on probs (B, H, Lq, Lk); `dropout` is None or (rate, uint32 seed)."""
  if dropout is None:
    return probs
  rate, seed = dropout
  kept = dropout_keep_mask(seed, probs.shape, q_positions, rate, row_stride)
  return jnp.where(kept, probs / (1.0 - rate), jnp.zeros((), probs.dtype))
