"""Music Transformer for MAESTRO (Huang et al., ICLR 2019), performance tokens.

From the paper's Piano-e-Competition setup as we read it: 6 layers, 8 heads,
hidden size 384, feed-forward 1024, relative attention, training windows of
2048 events. Assumptions, where the paper's setup does not map onto this
model: the paper's attention key/value size (512) differs from its hidden size,
while here queries, keys and values have the hidden size (384), so attention
holds 4 * 384^2 rather than 4 * 384 * 512 weights per layer; the maximum
relative distance is taken as the full window (2048), so no distance is
clipped; dropout 0.1 (tensor2tensor's default); no absolute positions (the
relative term carries the order).
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(
    {
      "num_layers": 6,
      "embed_dim": 384,
      "num_heads": 8,
      "mlp_ratio": 1024 / 384,
      "dropout_rate": 0.1,
      "attention_dropout_rate": 0.1,
      "relative": True,
      "max_relative_distance": 2048,
      "position_embedding": "none",
      "max_seq_len": 2048,
      "dtype": "float32",
      # Queries per attention block (mtx/model/attention/dispatch.py): the full
      # L x L attention is never stored; 0 or None computes it whole. Measured best on a
      # 2-core CPU (docs/benchmarks.md, "Model training step").
      "attention_block_size": 256,
    }
  )
