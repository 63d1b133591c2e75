"""The explicit attention over the whole L x L matrix: the mask, the logits, the softmax.

Every other path (tiles, checkpointed blocks, the library's kernel) computes what
`softmax_attention` computes; the tests hold them to it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mtx.model.attention.dropout import dropout_probabilities

# A finite "minus infinity": exp underflows to 0 in float32 and no NaN appears.
MASK_VALUE = -1e30


def attention_mask(
  q_positions: jax.Array,
  k_positions: jax.Array,
  q_segments: jax.Array | None = None,
  k_segments: jax.Array | None = None,
) -> jax.Array:
  """Boolean mask (B or 1, 1, Lq, Lk): key j visible to query t.

  Causal by position (k <= q); with segments, only within the same segment id.
  Positions are (Lq,) / (Lk,) int; segments (B, Lq) / (B, Lk) int.
  """
  mask = (k_positions[None, :] <= q_positions[:, None])[None, None]  # (1, 1, Lq, Lk)
  if q_segments is not None:
    same = q_segments[:, :, None] == k_segments[:, None, :]  # (B, Lq, Lk)
    mask = mask & same[:, None]
  return mask


def attention_logits(
  q: jax.Array, k: jax.Array, mask: jax.Array, rel_logits: jax.Array | None
) -> jax.Array:
  """Scaled, masked float32 logits (B, H, Lq, Lk): (q . k + relative) / sqrt(Dh), and
  `MASK_VALUE` where `mask` hides the key. Every softmax path starts here."""
  logits = jnp.einsum("bhtd,bhsd->bhts", q, k, preferred_element_type=jnp.float32)
  if rel_logits is not None:
    logits = logits + rel_logits.astype(jnp.float32)
  logits = logits * (q.shape[-1] ** -0.5)
  return jnp.where(mask, logits, MASK_VALUE)


def softmax_attention(
  q: jax.Array,
  k: jax.Array,
  v: jax.Array,
  mask: jax.Array,
  rel_logits: jax.Array | None,
  dropout=None,
  q_positions: jax.Array | None = None,
  row_stride: int | None = None,
) -> jax.Array:
  """Explicit attention: (B, H, Lq, Dh) x (B, H, Lk, Dh) -> (B, H, Lq, Dh).

  Logits and softmax in float32 whatever the compute dtype; probabilities are cast back to
  v's dtype for the value matmul. `dropout`: None, or (rate, seed) for `dropout_keep_mask`
  with the queries at `q_positions` (Lq,) and its `row_stride` (default Lk).
  """
  logits = attention_logits(q, k, mask, rel_logits)
  probs = dropout_probabilities(jax.nn.softmax(logits, axis=-1), dropout, q_positions, row_stride)
  return jnp.einsum("bhts,bhsd->bhtd", probs.astype(v.dtype), v)
