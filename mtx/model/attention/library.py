"""Plain attention through the library: `jax.nn.dot_product_attention` (cuDNN or XLA)."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp


def library_attention(
  q: jax.Array,
  k: jax.Array,
  v: jax.Array,
  *,
  mask: jax.Array | None = None,
  segment_ids: jax.Array | None = None,
  implementations: Sequence[str] = ("xla",),
) -> jax.Array:
  """Plain attention through `jax.nn.dot_product_attention`: (B, H, Lq, Dh) -> same.

  mask None: causal self-attention from position 0 (training, a primer's prefill), queries
  kept to their own segment when `segment_ids` (B, L) is given; the causal part goes as
  `is_causal`, which cuDNN's kernel uses to skip the masked half. Otherwise `mask`
  (`attention_mask`'s (B or 1, 1, Lq, Lk)) as given: cached decoding.
  `implementations` are tried in order: the implementation is named because, left to
  choose, jax takes XLA's path and never the fused kernel; where one refuses the shapes
  (cuDNN checks them while tracing: head size, lengths) the next runs instead.
  """
  causal = mask is None
  if causal and segment_ids is not None:
    mask = (segment_ids[:, :, None] == segment_ids[:, None, :])[:, None]  # (B, 1, L, L)
  # dot_product_attention takes (B, L, H, Dh).
  args = [jnp.swapaxes(x, 1, 2) for x in (q, k, v)]
  for implementation in implementations:
    try:
      out = jax.nn.dot_product_attention(
        *args, mask=mask, is_causal=causal, implementation=implementation
      )
      break
    except (NotImplementedError, ValueError, RuntimeError):
      if implementation == implementations[-1]:
        raise
  return jnp.swapaxes(out, 1, 2)
