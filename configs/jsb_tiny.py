"""The demo: the tiny decoder on the Bach chorales (mmt tokens); minutes on a CPU.

    mtx-prepare --dataset=jsb_chorales --data_dir=data
    mtx-train --config=configs/jsb_tiny.py --workdir=runs/jsb_tiny --config.data.data_dir=data
"""

import ml_collections

from configs import base


def get_config() -> ml_collections.ConfigDict:
  config = base.get_config()
  config.data.update({"dataset": "jsb_chorales", "representation": "mmt", "seq_len": 256})
  config.train.update({
      "num_steps": 600,
      "batch_size": 16,
      "learning_rate": 2e-3,
      "warmup_steps": 50,
      "log_every": 50,
      "eval_every": 200,
      "checkpoint_every": 200,
  })
  return config
