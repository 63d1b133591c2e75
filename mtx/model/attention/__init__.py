"""Causal multi-head attention with relative positions (Shaw et al. 2018) and a KV cache.

One module per job: `relative.py` (Music Transformer's relative logits by skewing, beside
the naive reference), `dropout.py` (the hash dropout, which the decoder uses too),
`whole.py` (the explicit L x L attention every path reproduces), `flash.py` (FlashAttention
tiles and their VJP), `checkpointed.py` (the relative term by checkpointed query blocks),
`library.py` (`jax.nn.dot_product_attention`: cuDNN or XLA), `dispatch.py` (the one place
that picks among those), `layer.py` (`MultiHeadAttention` and its cache).

Conventions (shared by every module here):
- The attention is causal, so only distances `d = query_pos - key_pos >= 0` are ever used.
  Distances past `R - 1` (R = `max_relative_distance`) are clipped to `R - 1` (Shaw et
  al.'s clipping): every key further than R - 1 tokens away shares the last embedding.
  Entries above the diagonal (`d < 0`) are 0 in the relative logits; the causal mask
  removes them afterwards.
- Content and relative logits are summed and then scaled by `1 / sqrt(Dh)`, as in Shaw et
  al. and Music Transformer; with the relative table zeroed the layer is plain scaled
  dot-product attention, the same one the `relative=False` path computes.
- Projections have no biases (as in x-transformers, the MMT reference), so an attention layer
  holds `4 * D * H * Dh` parameters, plus `R * H * Dh` for the relative table.
- Packing: tokens attend only to earlier tokens of the same segment (`segment_ids`, 0 =
  padding; padding tokens attend to earlier padding, never to real tokens and never the other
  way, so no softmax row is empty). Relative distances inside a segment are token-index
  differences, which are right because a segment is contiguous.
"""

from mtx.model.attention.checkpointed import checkpointed_attention
from mtx.model.attention.dispatch import PATHS, attend, attention_path
from mtx.model.attention.dropout import dropout_keep_mask, hash_dropout
from mtx.model.attention.flash import flash_attention
from mtx.model.attention.layer import MultiHeadAttention
from mtx.model.attention.library import library_attention
from mtx.model.attention.relative import (
  relative_logits_at,
  relative_logits_block,
  relative_logits_naive,
  relative_logits_skewed,
)
from mtx.model.attention.whole import attention_logits, attention_mask, softmax_attention

__all__ = [
  "PATHS",
  "MultiHeadAttention",
  "attend",
  "attention_logits",
  "attention_mask",
  "attention_path",
  "checkpointed_attention",
  "dropout_keep_mask",
  "flash_attention",
  "hash_dropout",
  "library_attention",
  "relative_logits_at",
  "relative_logits_block",
  "relative_logits_naive",
  "relative_logits_skewed",
  "softmax_attention",
]
