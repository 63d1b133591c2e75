"""A tiny decoder for tests and the demo: trains in minutes on a CPU.

Relative attention on, so the tests and the demo exercise the Music
Transformer path; no absolute positions.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(
    {
      "num_layers": 2,
      "embed_dim": 64,
      "num_heads": 4,
      "mlp_ratio": 4,
      "dropout_rate": 0.0,
      "attention_dropout_rate": 0.0,
      "relative": True,
      "max_relative_distance": 128,
      "position_embedding": "none",
      "max_seq_len": 256,
      "dtype": "float32",
      # Queries per attention block (mtx/model/attention/dispatch.py): the full
      # L x L attention is never stored; 0 or None computes it whole. Measured best on a
      # 2-core CPU (docs/benchmarks.md, "Model training step").
      "attention_block_size": 256,
    }
  )
