"""MMT (Dong et al., ICASSP 2023) on the Symbolic Orchestral Database, as its code trains.

The reference's defaults: the 19.9M-parameter decoder (configs/model_mmt.py),
1024 rows, max_beat 256, batch 8, Adam at 5e-4 with 5,000 warmup steps and a
linear decay to 0.1x by step 100,000, gradient clipping at 1.0, 200,000 steps,
pitch shifts in -5..6. The reference uses Adam without weight decay; so does
this config.

Data: mtx's preparation (the plain `mmt` config: leading silence kept, every
song with a note). The reference moves each song's first note into beat 0 and
drops songs of fewer than 50 notes; for that, prepare with
`--shift_to_first_note --min_notes=50` (builder config `mmt_shift_min50`) and
train with `--config.data.representation=mmt_shift_min50`.

    mtx-prepare --dataset=sod --manual_dir=~/sod --data_dir=data
    mtx-train --config=configs/mmt_sod.py --workdir=runs/mmt_sod --config.data.data_dir=data
"""

import ml_collections

from configs import base, model_mmt


def get_config() -> ml_collections.ConfigDict:
  config = base.get_config()
  config.model = model_mmt.get_config()
  config.data.update(
    {
      "dataset": "sod",
      "representation": "mmt",
      "seq_len": 1024,
      "max_beat": 256,
      "transpose": (-5, 6),
    }
  )
  config.train.update(
    {
      "num_steps": 200_000,
      "batch_size": 8,
      "learning_rate": 5e-4,
      "schedule": "warmup_linear",
      "warmup_steps": 5_000,
      "decay_steps": 100_000,
      "end_learning_rate_ratio": 0.1,
      "weight_decay": 0.0,
      "grad_clip_norm": 1.0,
      "log_every": 100,
      "eval_every": 1_000,
      "eval_batches": 0,
      "checkpoint_every": 1_000,
    }
  )
  return config
