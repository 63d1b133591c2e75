"""MMT's setup on the Lakh MIDI Dataset (lmd_full, split by md5 hash).

The same model and optimizer as configs/mmt_sod.py; LMD is about 100x larger,
so evaluation reads a bounded number of batches.

    mtx-prepare --dataset=lmd --manual_dir=~/lmd_full --data_dir=data --num_workers=0
    mtx-train --config=configs/mmt_lmd.py --workdir=runs/mmt_lmd --config.data.data_dir=data
"""

import ml_collections

from configs import mmt_sod


def get_config() -> ml_collections.ConfigDict:
  config = mmt_sod.get_config()
  config.data.dataset = "lmd"
  config.train.eval_batches = 200
  return config
