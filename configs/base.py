"""Every training setting, with its default and meaning; experiments start here.

    mtx-train --config=configs/base.py --workdir=runs/x --config.train.num_steps=100

Sections: `model` (a fragment from configs/model_*.py; decoder.py documents its
keys), `data` (which prepared dataset and how windows are cut and augmented),
`train` (optimizer, schedule, loop, checkpoints, logging) and `mesh` (how the
devices are arranged). `mtx.train.config.validate` checks every value before
anything runs.
"""

import ml_collections

from configs import model_tiny


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0  # parameters, dropout and data order all follow from it

  config.model = model_tiny.get_config()

  config.data = ml_collections.ConfigDict(
    {
      # A dataset prepared by mtx-prepare: --dataset, --representation and --data_dir as given
      # there. data_dir "" means TFDS's default ($TFDS_DATA_DIR or ~/tensorflow_datasets).
      "dataset": "jsb_chorales",
      "representation": "mmt",
      "data_dir": "",
      "train_split": "train",
      "eval_split": "validation",
      "seq_len": 256,  # rows the model sees per example
      # Pitch shift drawn per window, inclusive (MMT: -5..6); "" or None turns it off.
      "transpose": (-5, 6),
      # Duration stretch for performance and remi; None turns it off.
      "tempo_stretch": (0.9, 1.1),
      "max_beat": None,  # mmt: windows span at most this many beats (MMT: 256)
      "pack": False,  # several short windows per row (segment ids keep them apart)
      "worker_count": 0,  # grain worker processes reading and cropping (0: in-process threads)
    }
  )

  config.train = ml_collections.ConfigDict(
    {
      "num_steps": 1000,
      "batch_size": 8,  # global: split over processes and the data/fsdp mesh axes
      "grad_accum_steps": 1,  # micro-batches per step; batch_size must divide by it
      "learning_rate": 5e-4,  # peak
      # warmup_cosine: linear warmup, cosine to end_learning_rate_ratio * peak at num_steps.
      # warmup_linear: MMT's: linear warmup, linear decay to the end ratio at decay_steps.
      # inverse_sqrt: Vaswani et al.: linear warmup, then peak * sqrt(warmup / step).
      # constant: linear warmup, then the peak.
      "schedule": "warmup_cosine",
      "warmup_steps": 100,
      "decay_steps": 0,  # warmup_linear only; 0: num_steps
      "end_learning_rate_ratio": 0.1,
      "weight_decay": 0.01,  # AdamW's, on matrices and embeddings (not on biases/norms)
      "adam_b1": 0.9,
      "adam_b2": 0.999,
      "adam_eps": 1e-8,
      "grad_clip_norm": 1.0,  # global-norm clipping; 0 turns it off
      "log_every": 50,  # steps between progress lines and TensorBoard points
      "eval_every": 500,  # 0: no periodic evaluation (one at the end still runs)
      "eval_batches": 0,  # batches per evaluation; 0: the whole eval split
      "eval_batch_size": 0,  # 0: batch_size
      "checkpoint_every": 500,
      "keep_checkpoints": 3,  # the latest K, and the best by validation loss on top
      "async_checkpointing": True,
      # Dropout's random numbers: "threefry2x32" (jax's default) or "unsafe_rbg"
      # (faster on CPU and GPU; what MaxText uses).
      "rng_impl": "threefry2x32",
      # Peak FLOP/s of one device for MFU; 0: looked up from the device kind (CPU: estimated
      # from its cores, clock and vector width).
      "peak_flops_per_device": 0.0,
    }
  )

  # mtx-sample's defaults (its flags override them; mtx/sample/decode.py DEFAULT_SAMPLING);
  # mtx-eval draws its samples with the same filter. MMT's generate.py and evaluate.py:
  # top-k at threshold 0.9 on every field, temperature 1.
  config.sample = ml_collections.ConfigDict(
    {
      "temperature": 1.0,  # 0: greedy
      "top_k": 0,  # one k for every field; 0: top_k_fraction decides
      "top_k_fraction": 0.1,  # keep ceil(0.1 V) of a field's V values; 0: no top-k
      "top_p": 1.0,  # nucleus; 1.0: off
      # Temperatures of some fields apart, by name ({"pitch": 0.8}); the rest take temperature.
      "field_temperature": {},
    }
  )

  # Device mesh: data x fsdp x tensor must equal the device count; -1 on one axis takes
  # what is left. Batches split over data and fsdp; parameters over fsdp (their embed axis)
  # and tensor (heads and MLP); see mtx/train/sharding.py.
  config.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1, "tensor": 1})
  return config
