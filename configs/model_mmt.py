"""MMT's default model (Dong et al., ICASSP 2023; the reference code's defaults).

x-transformers `Decoder(dim=512, depth=6, heads=8)` (head size 64), learned
absolute positions over max_seq_len 1024, no relative term, dropout 0.2 on the
embeddings, the attention and the feed-forward. With MMT's field sizes
[5, 257, 13, 129, 33, 65] (max_beat 256) this builds 19,941,878 parameters, the
reference model's count (mtx/model/params.py itemizes it).
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(
    {
      "num_layers": 6,
      "embed_dim": 512,
      "num_heads": 8,
      "mlp_ratio": 4,
      "dropout_rate": 0.2,
      "attention_dropout_rate": 0.2,
      "relative": False,
      "max_relative_distance": 1024,  # unused: relative is off
      "position_embedding": "learned",
      "max_seq_len": 1024,
      "dtype": "float32",
      # Queries per attention block (mtx/model/attention/dispatch.py): the full
      # L x L attention is never stored; 0 or None computes it whole. Measured best on a
      # 2-core CPU (docs/benchmarks.md, "Model training step").
      "attention_block_size": 256,
    }
  )
