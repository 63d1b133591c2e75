"""Music Transformer (Huang et al., ICLR 2019) on MAESTRO, performance tokens.

The model of configs/model_music_transformer.py over 2048-event windows, pitch
shifts of -3..3 semitones and tempo stretches of +-5% as the paper augments.
The paper trained with tensor2tensor's Adam and an inverse-square-root
schedule; its learning rate and step count are not stated in a form that maps
here, so these are assumptions: peak 1e-3 after 4,000 warmup steps, 250,000
steps, batch 16 windows.

    mtx-prepare --dataset=maestro --representation=performance --manual_dir=~/maestro-v3.0.0
    mtx-train --config=configs/music_transformer_maestro.py --workdir=runs/mt_maestro
"""

import ml_collections

from configs import base, model_music_transformer


def get_config() -> ml_collections.ConfigDict:
  config = base.get_config()
  config.model = model_music_transformer.get_config()
  config.data.update(
    {
      "dataset": "maestro",
      "representation": "performance",
      "seq_len": 2048,
      "transpose": (-3, 3),
      "tempo_stretch": (0.95, 1.05),
    }
  )
  config.train.update(
    {
      "num_steps": 250_000,
      "batch_size": 16,
      "learning_rate": 1e-3,
      "schedule": "inverse_sqrt",
      "warmup_steps": 4_000,
      "weight_decay": 0.0,
      "adam_b2": 0.98,
      "adam_eps": 1e-9,
      "log_every": 100,
      "eval_every": 2_000,
      "eval_batches": 100,
      "checkpoint_every": 2_000,
    }
  )
  return config
