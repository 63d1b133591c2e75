"""Checks a training config before anything runs: one clear message per bad value.

A typo'd schedule name or a batch that does not split over the mesh would
otherwise surface minutes later as a deep traceback from optax or XLA; here it
is a `ConfigError` naming the field (`train.batch_size`, `mesh.tensor`, ...).

`model_signature` is what a checkpoint must share with the config restoring it
(the model section and the data's representation): a workdir holding another
model's checkpoint is refused by naming the keys that differ.
"""

from __future__ import annotations

import math
from typing import Any

from mtx.errors import ConfigError
from mtx.model.decoder import check_config as check_model_config

SCHEDULES = ("warmup_cosine", "warmup_linear", "inverse_sqrt", "constant")
RNG_IMPLS = ("threefry2x32", "unsafe_rbg", "rbg")
MESH_AXES = ("data", "fsdp", "tensor")
SECTIONS = ("model", "data", "train", "mesh")


def _require(config: Any, path: str):
  node = config
  for part in path.split("."):
    if part not in node:
      raise ConfigError(f"the config has no {path}; start from configs/base.py, which has "
                        "every key")
    node = node[part]
  return node


def _positive_int(config: Any, path: str, *, zero_ok: bool = False) -> int:
  value = _require(config, path)
  if isinstance(value, bool) or not isinstance(value, int) or value < (0 if zero_ok else 1):
    kind = "an integer >= 0" if zero_ok else "a positive integer"
    raise ConfigError(f"{path} must be {kind}; got {value!r}")
  return value


def _number(config: Any, path: str, low: float, high: float | None = None, *,
            low_open: bool = False, high_open: bool = False) -> float:
  """A finite number in [low, high] (open ends as asked). NaN fails every comparison,
  so it is refused by name: it would otherwise pass and surface a minute later as
  divergence."""
  value = _require(config, path)
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    raise ConfigError(f"{path} must be a number; got {value!r}")
  bound = f"{'>' if low_open else '>='} {low}" + (
      "" if high is None else f" and {'<' if high_open else '<='} {high}")
  if not math.isfinite(value):
    raise ConfigError(f"{path} must be a finite number {bound}; got {value!r}")
  bad_low = value <= low if low_open else value < low
  bad_high = high is not None and (value >= high if high_open else value > high)
  if bad_low or bad_high:
    raise ConfigError(f"{path} must be {bound}; got {value!r}")
  return float(value)


def _choice(config: Any, path: str, choices: tuple[str, ...]) -> str:
  value = _require(config, path)
  if value not in choices:
    raise ConfigError(f"{path} must be one of {', '.join(choices)}; got {value!r}")
  return value


def mesh_shape(mesh_config: Any, device_count: int) -> tuple[int, int, int]:
  """(data, fsdp, tensor) sizes; a -1 takes the devices the others leave."""
  sizes = []
  for axis in MESH_AXES:
    size = mesh_config[axis] if axis in mesh_config else 1
    if isinstance(size, bool) or not isinstance(size, int) or (size < 1 and size != -1):
      raise ConfigError(f"mesh.{axis} must be a positive integer or -1; got {size!r}")
    sizes.append(size)
  if sizes.count(-1) > 1:
    raise ConfigError("only one mesh axis may be -1 (the one taking the remaining devices)")
  known = 1
  for size in sizes:
    known *= size if size != -1 else 1
  if -1 in sizes:
    if device_count % known:
      raise ConfigError(f"the mesh's fixed axes ({known} devices) do not divide the "
                        f"{device_count} devices")
    sizes[sizes.index(-1)] = device_count // known
  product = sizes[0] * sizes[1] * sizes[2]
  if product != device_count:
    raise ConfigError(f"mesh.data x mesh.fsdp x mesh.tensor = {product}, but there are "
                      f"{device_count} devices; make the product match or set one axis to -1")
  return tuple(sizes)


def validate(config: Any, *, device_count: int, process_count: int = 1) -> tuple[int, int, int]:
  """Raises ConfigError naming the first bad value; returns the mesh shape."""
  from data_pipeline.builder import is_config_name
  from data_pipeline.builders import DATASET_NAMES
  from mtx.representation import CODEC_NAMES

  for section in SECTIONS:
    _require(config, section)
  _positive_int(config, "seed", zero_ok=True)
  try:
    check_model_config(config.model)
  except (AttributeError, KeyError) as e:
    raise ConfigError(f"the model section lacks {e}; take one from configs/model_*.py") from None

  _choice(config, "data.dataset", DATASET_NAMES)
  representation = _require(config, "data.representation")
  if not is_config_name(representation):
    raise ConfigError(f"data.representation must be one of {', '.join(CODEC_NAMES)}, or one "
                      "prepared another way as mtx-prepare names it (mmt_shift, mmt_min50, "
                      f"mmt_shift_min50, ...); got {representation!r}")
  seq_len = _positive_int(config, "data.seq_len")
  if config.model.position_embedding == "learned" and seq_len > config.model.max_seq_len:
    raise ConfigError(f"data.seq_len ({seq_len}) exceeds model.max_seq_len "
                      f"({config.model.max_seq_len}), the learned positions' length")
  _positive_int(config, "data.worker_count", zero_ok=True)

  if "sample" in config:  # mtx-sample's defaults (configs/base.py); older configs lack them
    _number(config, "sample.temperature", 0.0)
    _positive_int(config, "sample.top_k", zero_ok=True)
    _number(config, "sample.top_k_fraction", 0.0, 1.0)
    _number(config, "sample.top_p", 0.0, 1.0, low_open=True)
    for name in (config.sample.get("field_temperature") or {}):
      _number(config, f"sample.field_temperature.{name}", 0.0)

  train = "train"
  num_steps = _positive_int(config, f"{train}.num_steps")
  batch_size = _positive_int(config, f"{train}.batch_size")
  accum = _positive_int(config, f"{train}.grad_accum_steps")
  _number(config, f"{train}.learning_rate", 0.0, low_open=True)
  _choice(config, f"{train}.schedule", SCHEDULES)
  warmup = _positive_int(config, f"{train}.warmup_steps", zero_ok=True)
  if config.train.schedule == "inverse_sqrt" and warmup == 0:
    raise ConfigError("train.warmup_steps must be positive for the inverse_sqrt schedule")
  decay_steps = _positive_int(config, f"{train}.decay_steps", zero_ok=True)
  if config.train.schedule == "warmup_linear" and 0 < decay_steps <= warmup:
    raise ConfigError(f"train.decay_steps ({decay_steps}) must exceed train.warmup_steps "
                      f"({warmup})")
  _number(config, f"{train}.end_learning_rate_ratio", 0.0, 1.0)
  _number(config, f"{train}.weight_decay", 0.0)
  # b2 = 1 divides by zero in Adam's bias correction; b1 = 1 never moves the first moment.
  _number(config, f"{train}.adam_b1", 0.0, 1.0, high_open=True)
  _number(config, f"{train}.adam_b2", 0.0, 1.0, high_open=True)
  _number(config, f"{train}.adam_eps", 0.0, low_open=True)
  _number(config, f"{train}.grad_clip_norm", 0.0)
  for key in ("log_every", "checkpoint_every", "keep_checkpoints"):
    _positive_int(config, f"{train}.{key}")
  for key in ("eval_every", "eval_batches", "eval_batch_size"):
    _positive_int(config, f"{train}.{key}", zero_ok=True)
  _choice(config, f"{train}.rng_impl", RNG_IMPLS)
  _number(config, f"{train}.peak_flops_per_device", 0.0)
  del num_steps

  shape = mesh_shape(config.mesh, device_count)
  batch_ways = shape[0] * shape[1]
  for name, parts in (("the processes", process_count), ("mesh.data x mesh.fsdp", batch_ways),
                      ("train.grad_accum_steps", accum)):
    if batch_size % parts:
      raise ConfigError(f"train.batch_size ({batch_size}) must divide evenly over {name} "
                        f"({parts})")
  if (batch_size // accum) % batch_ways:
    raise ConfigError(f"each micro-batch (train.batch_size / train.grad_accum_steps = "
                      f"{batch_size // accum}) must divide over mesh.data x mesh.fsdp "
                      f"({batch_ways})")
  eval_batch = config.train.eval_batch_size or batch_size
  if eval_batch % batch_ways or eval_batch % process_count:
    raise ConfigError(f"train.eval_batch_size ({eval_batch}) must divide over the processes "
                      f"({process_count}) and mesh.data x mesh.fsdp ({batch_ways})")
  return shape


# Model keys that change how, not what, the model computes (same parameters, same
# values): a run may resume, or be sampled, with another value.
LAYOUT_ONLY_MODEL_KEYS = frozenset({"attention_block_size"})


def model_signature(config: Any, field_sizes) -> dict[str, Any]:
  """What a checkpoint's model must share with the config restoring it."""
  signature = {f"model.{k}": v for k, v in sorted(config.model.to_dict().items())
               if k not in LAYOUT_ONLY_MODEL_KEYS}
  signature["data.representation"] = config.data.representation
  signature["field_sizes"] = [int(s) for s in field_sizes]
  return signature


def signature_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
  """'key: saved X, now Y' for each key whose values differ (JSON-normalized)."""
  import json

  saved = json.loads(json.dumps(saved))
  current = json.loads(json.dumps(current))
  return [f"{k}: saved {saved.get(k)!r}, now {current.get(k)!r}"
          for k in sorted(set(saved) | set(current)) if saved.get(k) != current.get(k)]
