"""The demo: a small decoder on the Bach chorales (mmt tokens, each voice its own
instrument); about 5 minutes of training on a 2-core CPU.

    mtx-prepare --dataset=jsb_chorales --data_dir=data
    mtx-train --config=configs/jsb_tiny.py --workdir=runs/jsb_tiny --config.data.data_dir=data

The recipe was chosen with mtx-eval (docs/results.md, "The demo's recipe"): among the
sizes that train in about 5 minutes, 2 layers 128 wide for 1,000 steps scored the best test
likelihood (2.32 nats per row), and sampling the pitch at temperature 0.8 (every other field
at 1, top-k of a tenth of each field as MMT samples) puts the samples' pitch-class entropy,
scale consistency, groove consistency, polyphony and notes per beat within one standard
deviation of the test chorales'.
"""

import ml_collections

from configs import base


def get_config() -> ml_collections.ConfigDict:
  config = base.get_config()
  config.model.embed_dim = 128
  config.data.update({"dataset": "jsb_chorales", "representation": "mmt", "seq_len": 256})
  config.train.update(
    {
      "num_steps": 1000,
      "batch_size": 16,
      "learning_rate": 2e-3,
      "warmup_steps": 50,
      "log_every": 50,
      "eval_every": 250,
      "checkpoint_every": 250,
    }
  )
  config.sample.field_temperature = {"pitch": 0.8}
  return config
