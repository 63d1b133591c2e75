"""Causal self-attention with the relative term by blocks of queries, each checkpointed.

Each block of T queries is one `jax.checkpoint`ed `softmax_attention` over all the keys it
may see, recomputed in the backward pass, with its relative logits from
`relative_logits_block` (one skew per block, over T + keys embeddings). The relative term
does not go through FlashAttention's tiles because there it costs a skew per T x T tile,
over twice a tile's width of embeddings, which made the step slower (docs/benchmarks.md,
"Model training step").
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from mtx.model.attention.relative import relative_logits_block
from mtx.model.attention.whole import attention_mask, softmax_attention

# Query blocks per `lax.map`: XLA unrolls a one-trip loop and then schedules the unrolled
# blocks' recomputations side by side, so one loop per block would hold them all at once.
_BLOCKS_PER_LOOP = 2


def checkpointed_attention(
  q: jax.Array,
  k: jax.Array,
  v: jax.Array,
  *,
  block_size: int,
  rel: jax.Array,
  segment_ids: jax.Array | None = None,
  dropout=None,
) -> jax.Array:
  """Causal self-attention by blocks of queries: no (B, H, L, L) tensor is kept.

  q, k, v: (B, H, L, Dh); rel (H, R, Dh) or (R, Dh); segment_ids (B, L) or None; `dropout`
  None or (rate, uint32 seed). Same values and gradients as `softmax_attention` over the
  full causal mask with `relative_logits_skewed`, the dropout pattern included.
  Causality skips key blocks: the blocks go by pairs, one `lax.map` per pair over the keys
  [0, end of the pair) only.
  """
  batch, heads, length, head_dim = q.shape
  block = min(block_size, length)
  num_blocks = -(-length // block)
  pad = num_blocks * block - length
  # Padded queries sit past the end: they see keys like the last real query and are dropped.
  q = jnp.pad(q, [(0, 0), (0, 0), (0, pad), (0, 0)])
  q_segments = None if segment_ids is None else jnp.pad(segment_ids, [(0, 0), (0, pad)])

  def one_block(xs, keys):
    q_blk, seg_q, start = xs
    k_pre, v_pre, seg_k = keys
    q_positions = start + jnp.arange(block)
    seg_q = None if seg_k is None else seg_q
    mask = attention_mask(q_positions, jnp.arange(k_pre.shape[2]), seg_q, seg_k)
    rel_logits = relative_logits_block(q_blk, rel, start, k_pre.shape[2])
    return softmax_attention(
      q_blk, k_pre, v_pre, mask, rel_logits, dropout, q_positions, row_stride=length
    )

  outputs = []
  for first in range(0, num_blocks, _BLOCKS_PER_LOOP):
    count = min(_BLOCKS_PER_LOOP, num_blocks - first)
    q_start, q_end = first * block, (first + count) * block
    k_end = min(q_end, length)
    q_blocks = q[:, :, q_start:q_end].reshape(batch, heads, count, block, head_dim)
    q_blocks = jnp.moveaxis(q_blocks, 2, 0)  # (count, B, H, T, Dh)
    if q_segments is None:
      seg_blocks, seg_k = jnp.zeros((count, 1, block), jnp.int32), None
    else:
      seg_blocks = jnp.moveaxis(q_segments[:, q_start:q_end].reshape(batch, count, block), 1, 0)
      seg_k = segment_ids[:, :k_end]
    keys = (k[:, :, :k_end], v[:, :, :k_end], seg_k)
    body = jax.checkpoint(functools.partial(one_block, keys=keys))
    starts = q_start + block * jnp.arange(count)
    out = jax.lax.map(body, (q_blocks, seg_blocks, starts))
    outputs.append(jnp.moveaxis(out, 0, 2).reshape(batch, heads, count * block, head_dim))
  return jnp.concatenate(outputs, axis=2)[:, :, :length]
