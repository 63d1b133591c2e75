"""Causal self-attention by T x T tiles, FlashAttention's forward and backward.

The sequence is cut into blocks of T queries (padded to whole blocks), and the work goes by
causal tiles, query block i against key blocks j <= i: the tiles above the diagonal are
skipped, about (n + 1) / (2 n) of the L x L work for n blocks. The forward is
FlashAttention's (Dao et al. 2022): an online softmax (running maximum and sum per query)
over a query block's tiles. The gradient is FlashAttention's too, with a custom VJP: the
forward keeps only q, k, v, the output O and each query's log-sum-exp (B, H, L); the
backward recomputes a tile's probabilities from them with one matmul (P = exp(S - lse): no
second softmax and no P V, which `jax.checkpoint` would recompute), redraws its dropout
mask from the hash, and uses rowsum(dO * O) for the softmax's Jacobian (it equals
rowsum(P * dP), dropout included). Both passes are one `lax.fori_loop` over the tiles, so
one tile's (B, H, T, T) temporaries are live at a time whatever XLA's scheduler: attention
memory is O(B H T^2), not O(B H L^2) per layer.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from mtx.model.attention.dropout import dropout_keep_mask
from mtx.model.attention.whole import MASK_VALUE, attention_logits, attention_mask


def flash_attention(
  q: jax.Array,
  k: jax.Array,
  v: jax.Array,
  *,
  block_size: int,
  segment_ids: jax.Array | None = None,
  dropout=None,
) -> jax.Array:
  """Causal self-attention by tiles: no (B, H, L, L) tensor is kept.

  q, k, v: (B, H, L, Dh); segment_ids (B, L) or None; `dropout` None or (rate, uint32
  seed). Same values as `softmax_attention` over the full causal mask, the dropout pattern
  included (`dropout_keep_mask` is a pure function of each entry's coordinates), and the
  same gradients.
  """
  rate, seed = (0.0, jnp.zeros((), jnp.uint32)) if dropout is None else dropout
  return _blocked_attention(q, k, v, segment_ids, seed, int(block_size), float(rate))


class _Tiles:
  """The causal T x T tiles of an L x L attention, in the order both loops visit them:
  query block i = 0, 1, ..., and for each its key blocks j = 0..i (the ones above the
  diagonal are skipped: about (n + 1) / (2 n) of the L x L work for n blocks). The
  sequence is padded to whole blocks; padded keys come after every real query, so the
  causal mask hides them, and padded queries are dropped."""

  def __init__(self, length: int, block: int):
    self.length = length
    self.block = min(block, length)
    num_blocks = -(-length // self.block)
    self.padded = num_blocks * self.block
    pairs = [(i, j) for i in range(num_blocks) for j in range(i + 1)]
    self.count = len(pairs)
    self.q_starts = jnp.asarray([i for i, _ in pairs], jnp.int32) * self.block
    self.k_starts = jnp.asarray([j for _, j in pairs], jnp.int32) * self.block

  def pad(self, x: jax.Array | None) -> jax.Array | None:
    """(B, H, L, ...) or segment ids (B, L): the sequence axis padded with zeros."""
    if x is None:
      return None
    axis = 1 if x.ndim == 2 else 2
    widths = [(0, 0)] * x.ndim
    widths[axis] = (0, self.padded - self.length)
    return jnp.pad(x, widths)

  def rows(self, x: jax.Array, start: jax.Array) -> jax.Array:
    """The block at `start` along the sequence axis (2; 1 for segment ids)."""
    return jax.lax.dynamic_slice_in_dim(x, start, self.block, axis=1 if x.ndim == 2 else 2)

  @staticmethod
  def put(total: jax.Array, part: jax.Array, start: jax.Array) -> jax.Array:
    """total[:, :, start:start + T] = part, in place in a loop."""
    return jax.lax.dynamic_update_slice_in_dim(total, part, start, 2)

  def add(self, total: jax.Array, part: jax.Array, start: jax.Array) -> jax.Array:
    """total[:, :, start:start + T] += part, in place in a loop."""
    return self.put(total, self.rows(total, start) + part, start)

  def logits(self, q_t, k_t, segments, q_start, k_start):
    """Masked scaled logits (B, H, T, T) of one tile and the queries' positions."""
    q_positions = q_start + jnp.arange(self.block)
    seg_q = seg_k = None
    if segments is not None:
      seg_q, seg_k = self.rows(segments, q_start), self.rows(segments, k_start)
    mask = attention_mask(q_positions, k_start + jnp.arange(self.block), seg_q, seg_k)
    return attention_logits(q_t, k_t, mask, None), q_positions

  def kept(self, seed, shape, q_positions, rate, k_start):
    """The tile's entries of the dropout mask the full L x L attention draws."""
    return dropout_keep_mask(
      seed, shape, q_positions, rate, row_stride=self.length, key_start=k_start
    )


def _blocked_forward(q, k, v, segment_ids, seed, block, rate):
  """Outputs (B, H, L, Dh) and log-sum-exp (B, H, L) float32, tile by tile in one
  `lax.fori_loop` with the online softmax (a running maximum and sum per query), so one
  tile's temporaries are live at a time whatever XLA's scheduler. Dropout scales single
  entries, so dropping from the unnormalized weights and dividing by the sum at the end
  equals dropping from the probabilities."""
  tiles = _Tiles(q.shape[2], block)
  q_p, k_p, v_p, segments = tiles.pad(q), tiles.pad(k), tiles.pad(v), tiles.pad(segment_ids)
  f32 = jnp.float32

  def tile(t, carry):
    acc, peak, total = carry
    q_start, k_start = tiles.q_starts[t], tiles.k_starts[t]
    logits, q_positions = tiles.logits(
      tiles.rows(q_p, q_start), tiles.rows(k_p, k_start), segments, q_start, k_start
    )
    peak_old, total_old = tiles.rows(peak, q_start), tiles.rows(total, q_start)
    peak_new = jnp.maximum(peak_old, jnp.max(logits, axis=-1))
    weights = jnp.exp(logits - peak_new[..., None])
    rescale = jnp.exp(peak_old - peak_new)  # 0 once a real key replaces the initial peak
    total_new = total_old * rescale + jnp.sum(weights, axis=-1)
    if rate:
      kept = tiles.kept(seed, weights.shape, q_positions, rate, k_start)
      weights = jnp.where(kept, weights * (1.0 / (1.0 - rate)), 0.0)
    part = jnp.einsum(
      "bhts,bhsd->bhtd",
      weights.astype(v.dtype),
      tiles.rows(v_p, k_start),
      preferred_element_type=f32,
    )
    acc = tiles.put(acc, tiles.rows(acc, q_start) * rescale[..., None] + part, q_start)
    return acc, tiles.put(peak, peak_new, q_start), tiles.put(total, total_new, q_start)

  shape = q_p.shape
  # Every row meets its own key (the diagonal tile), so the initial peak is always
  # replaced by a real logit and its rows' stray weights are rescaled by exp(-1e30) = 0.
  carry = (jnp.zeros(shape, f32), jnp.full(shape[:3], MASK_VALUE, f32), jnp.zeros(shape[:3], f32))
  acc, peak, total = jax.lax.fori_loop(0, tiles.count, tile, carry)
  length = q.shape[2]
  out = (acc / total[..., None])[:, :, :length].astype(v.dtype)
  return out, (peak + jnp.log(total))[:, :, :length]


@functools.partial(jax.custom_vjp, nondiff_argnums=(5, 6))
def _blocked_attention(q, k, v, segment_ids, seed, block, rate):
  return _blocked_forward(q, k, v, segment_ids, seed, block, rate)[0]


def _blocked_attention_fwd(q, k, v, segment_ids, seed, block, rate):
  out, lse = _blocked_forward(q, k, v, segment_ids, seed, block, rate)
  return out, (q, k, v, segment_ids, seed, out, lse)


def _blocked_attention_bwd(block, rate, residuals, d_out):
  """FlashAttention's backward, over the same tiles in one `lax.fori_loop`.

  Per tile (query block i, key block j): P = exp(S - lse); Pd = dropout(P);
  dV_j += Pd^T dO_i; dPd = dO_i V_j^T; dP = dropout(dPd);
  dS = P (dP - rowsum(dO_i * O_i)) / sqrt(Dh); dQ_i += dS K_j; dK_j += dS^T Q_i. Sums in
  float32; gradients returned in the inputs' dtypes.
  """
  q, k, v, segment_ids, seed, out, lse = residuals
  length = q.shape[2]
  tiles = _Tiles(length, block)
  f32 = jnp.float32
  scale = q.shape[-1] ** -0.5
  inv_keep = 1.0 / (1.0 - rate) if rate else 1.0
  # rowsum(P * dP) for every query, from the outputs: sum_j P_ij dP_ij = dO_i . O_i.
  # Padded queries have dO = 0, so every one of their terms below is 0 too.
  delta = jnp.sum(d_out.astype(f32) * out.astype(f32), axis=-1)  # (B, H, L)
  q_p, k_p, v_p, d_out_p = tiles.pad(q), tiles.pad(k), tiles.pad(v), tiles.pad(d_out)
  lse_p, delta_p = tiles.pad(lse[..., None])[..., 0], tiles.pad(delta[..., None])[..., 0]
  segments = tiles.pad(segment_ids)

  def tile(t, sums):
    d_q, d_k, d_v = sums
    q_start, k_start = tiles.q_starts[t], tiles.k_starts[t]
    q_t, d_out_t = tiles.rows(q_p, q_start), tiles.rows(d_out_p, q_start)
    k_t, v_t = tiles.rows(k_p, k_start), tiles.rows(v_p, k_start)
    logits, q_positions = tiles.logits(q_t, k_t, segments, q_start, k_start)
    probs = jnp.exp(logits - tiles.rows(lse_p, q_start)[..., None])
    d_dropped = jnp.einsum("bhtd,bhsd->bhts", d_out_t, v_t, preferred_element_type=f32)
    if rate:
      kept = tiles.kept(seed, probs.shape, q_positions, rate, k_start)
      dropped = jnp.where(kept, probs * inv_keep, 0.0)
      d_probs = jnp.where(kept, d_dropped * inv_keep, 0.0)
    else:
      dropped, d_probs = probs, d_dropped
    d_logits = probs * (d_probs - tiles.rows(delta_p, q_start)[..., None]) * scale
    d_logits = d_logits.astype(q.dtype)
    d_q_t = jnp.einsum("bhts,bhsd->bhtd", d_logits, k_t, preferred_element_type=f32)
    d_k_t = jnp.einsum("bhts,bhtd->bhsd", d_logits, q_t, preferred_element_type=f32)
    d_v_t = jnp.einsum(
      "bhts,bhtd->bhsd", dropped.astype(v.dtype), d_out_t, preferred_element_type=f32
    )
    return (
      tiles.add(d_q, d_q_t, q_start),
      tiles.add(d_k, d_k_t, k_start),
      tiles.add(d_v, d_v_t, k_start),
    )

  zeros = jnp.zeros(q_p.shape, f32)
  d_q, d_k, d_v = jax.lax.fori_loop(0, tiles.count, tile, (zeros, zeros, zeros))
  return (
    d_q[:, :, :length].astype(q.dtype),
    d_k[:, :, :length].astype(k.dtype),
    d_v[:, :, :length].astype(v.dtype),
    None,
    None,
  )


_blocked_attention.defvjp(_blocked_attention_fwd, _blocked_attention_bwd)
