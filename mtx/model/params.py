"""Closed-form parameter count of `Decoder`, for logging, MFU and sizing.

Itemized as the model builds it (`decoder.py`, `attention/layer.py`): D = embed_dim,
V = sum of the field sizes, M = mlp_ratio * D, R = max_relative_distance.

    embeddings   V * D  (+ max_seq_len * D for learned positions)
    per block    2 LayerNorms 4 D; attention 4 D^2 (no biases) (+ R * D relative);
                 MLP D M + M + M D + D
    final norm   2 D
    heads        D V + V

For MMT's default (D 512, 6 layers, 8 heads, learned positions over 1024,
fields [5, 257, 13, 129, 33, 65]) this is 19,941,878, the size of the MMT
reference model built with x-transformers 1.0.3 (whose attention has no biases,
feed-forward and heads have biases, LayerNorms scale and bias, one final norm).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mtx.model.config import ModelConfig


def parameter_count(config: Any, field_sizes: Sequence[int]) -> dict[str, int]:
  """Parameters by part ("embeddings", "blocks", "final_norm", "heads") and "total".

  config: a `ModelConfig`, or the `config.model` section it is built from (checked)."""
  config = ModelConfig.from_config(config)
  d = config.embed_dim
  v = int(sum(field_sizes))
  m = config.mlp_dim
  embeddings = v * d + (config.max_seq_len * d if config.position_embedding == "learned" else 0)
  attention = 4 * d * d + (config.max_relative_distance * d if config.relative else 0)
  block = 2 * 2 * d + attention + (d * m + m + m * d + d)
  counts = {
    "embeddings": embeddings,
    "blocks": config.num_layers * block,
    "final_norm": 2 * d,
    "heads": d * v + v,
  }
  counts["total"] = sum(counts.values())
  return counts
