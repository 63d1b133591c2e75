"""The one place that picks how attention is computed, from the layer's settings and the
backend. Every path computes the same values (the tests hold them to `softmax_attention`):

    path           when                                        module
    tiles          whole sequence longer than a block, no      flash.py (FlashAttention's
                   relative term                               forward and custom VJP)
    checkpointed   whole sequence longer than a block, with    checkpointed.py
                   the relative term
    whole          otherwise, with the relative term or        whole.py
                   attention dropout
    library        otherwise                                   library.py (cuDNN's fused
                                                               kernel where it can run)

A cached call (decoding: queries at an offset against a cache's keys) never goes by
blocks: its queries are few.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mtx.model.attention.checkpointed import checkpointed_attention
from mtx.model.attention.flash import flash_attention
from mtx.model.attention.library import library_attention
from mtx.model.attention.relative import relative_logits_at, relative_logits_skewed
from mtx.model.attention.whole import attention_mask, softmax_attention

PATHS = ("tiles", "checkpointed", "whole", "library")


def attention_path(
  *, cached: bool, length: int, block_size: int | None, relative: bool, dropout: bool
) -> str:
  """Which of `PATHS` computes an attention call (the table above)."""
  if not cached and block_size and length > block_size:
    return "checkpointed" if relative else "tiles"
  if relative or dropout:
    return "whole"
  return "library"


def library_implementations(*, cached: bool, dtype) -> tuple[str, ...]:
  """The library path's implementations, in the order to try them: cuDNN first for whole
  sequences on a GPU in 16-bit floats (where it runs and pays: a decoding step's few
  queries gain nothing from it), XLA's always behind it."""
  gpu = jax.default_backend() == "gpu"
  if not cached and gpu and dtype in (jnp.bfloat16, jnp.float16):
    return ("cudnn", "xla")
  return ("xla",)


def attend(
  q: jax.Array,
  k: jax.Array,
  v: jax.Array,
  *,
  rel: jax.Array | None = None,
  segment_ids: jax.Array | None = None,
  dropout=None,
  block_size: int | None = None,
  q_start: jax.Array | None = None,
) -> jax.Array:
  """Causal multi-head attention, (B, H, Lq, Dh) queries -> (B, H, Lq, Dh).

  q_start None: self-attention of a whole (possibly packed) sequence, k and v (B, H, L, Dh)
  at the queries' positions 0..L-1, `segment_ids` (B, L) or None. Otherwise decoding: the
  queries sit at positions q_start..q_start+Lq-1 (q_start an int32 scalar, may be traced)
  and k, v hold a cache's Lk slots, those past the queries masked.
  rel: the relative table (H, R, Dh), or None for plain attention. dropout: None, or
  (rate, uint32 seed) for attention dropout on the probabilities. block_size: queries per
  block for a whole sequence (None: the whole L x L at once).
  """
  cached = q_start is not None
  length = q.shape[2]
  path = attention_path(
    cached=cached,
    length=length,
    block_size=block_size,
    relative=rel is not None,
    dropout=dropout is not None,
  )
  if path == "tiles":
    return flash_attention(q, k, v, block_size=block_size, segment_ids=segment_ids, dropout=dropout)
  if path == "checkpointed":
    return checkpointed_attention(
      q, k, v, block_size=block_size, rel=rel, segment_ids=segment_ids, dropout=dropout
    )
  if cached:
    positions = q_start + jnp.arange(length)
    k_positions = jnp.arange(k.shape[2])
    mask = attention_mask(positions, k_positions)
    rel_logits = None if rel is None else relative_logits_at(q, rel, positions, k_positions)
  else:
    positions = jnp.arange(length)
    mask = attention_mask(positions, positions, segment_ids, segment_ids)
    rel_logits = None if rel is None else relative_logits_skewed(q, rel)
  if path == "whole":
    return softmax_attention(q, k, v, mask, rel_logits, dropout, positions)
  return library_attention(
    q,
    k,
    v,
    mask=mask if cached else None,
    segment_ids=segment_ids,
    implementations=library_implementations(cached=cached, dtype=q.dtype),
  )
