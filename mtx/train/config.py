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
from collections.abc import Callable
from typing import Any

from mtx.errors import ConfigError
from mtx.model.config import LAYOUT_ONLY_KEYS
from mtx.model.config import check_config as check_model_config

SCHEDULES = ("warmup_cosine", "warmup_linear", "inverse_sqrt", "constant")
RNG_IMPLS = ("threefry2x32", "unsafe_rbg", "rbg")
MESH_AXES = ("data", "fsdp", "tensor")
SECTIONS = ("model", "data", "train", "mesh")


_MISSING = object()


def _require(config: Any, path: str, default: Any = _MISSING):
  node = config
  for part in path.split("."):
    if part not in node:
      if default is not _MISSING:
        return default
      raise ConfigError(
        f"the config has no {path}; start from configs/base.py, which has every key"
      )
    node = node[part]
  return node


# A rule takes a config value and returns what the value must be when it is not (the
# words after "must be" in the error), or None when it is fine.
Rule = Callable[[Any], "str | None"]


def integer(minimum: int = 1, *, also: tuple[int, ...] = ()) -> Rule:
  """An int (not a bool) >= `minimum`, or one of `also`."""
  if minimum == 1:
    expected = "a positive integer"
  else:
    expected = f"an integer >= {minimum}"
  expected += "".join(f" or {v}" for v in also)

  def rule(value):
    ok = (
      not isinstance(value, bool) and isinstance(value, int) and (value >= minimum or value in also)
    )
    return None if ok else expected

  return rule


def number(
  low: float, high: float | None = None, *, low_open: bool = False, high_open: bool = False
) -> Rule:
  """A finite number in [low, high] (open ends as asked). NaN fails every comparison,
  so it is refused by name: it would otherwise pass and surface a minute later as
  divergence."""
  bound = f"{'>' if low_open else '>='} {low}" + (
    "" if high is None else f" and {'<' if high_open else '<='} {high}"
  )

  def rule(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
      return "a number"
    if not math.isfinite(value):
      return f"a finite number {bound}"
    bad_low = value <= low if low_open else value < low
    bad_high = high is not None and (value >= high if high_open else value > high)
    return bound if bad_low or bad_high else None

  return rule


def one_of(
  choices: tuple[str, ...],
  *,
  accept: Callable[[Any], bool] | None = None,
  expected: str | None = None,
) -> Rule:
  """One of `choices` (or any value `accept` takes; `expected` then says which)."""
  expected = expected or f"one of {', '.join(choices)}"

  def rule(value):
    ok = value in choices or (accept is not None and accept(value))
    return None if ok else expected

  return rule


def check(config: Any, path: str, rule: Rule, default: Any = _MISSING):
  """The value at `path` (`default` when absent, else an error naming the path), after
  `rule`: the one place a config value is judged, every message "<path> must be ...;
  got <value>"."""
  value = _require(config, path, default)
  expected = rule(value)
  if expected is not None:
    raise ConfigError(f"{path} must be {expected}; got {value!r}")
  return value


POSITIVE = integer(1)
COUNT = integer(0)
FRACTION = number(0.0, 1.0)
NON_NEGATIVE = number(0.0)


MESH_SIZE = integer(1, also=(-1,))


def mesh_shape(mesh_config: Any, device_count: int) -> tuple[int, int, int]:
  """(data, fsdp, tensor) sizes; a -1 takes the devices the others leave."""
  sizes = []
  for axis in MESH_AXES:
    sizes.append(check({"mesh": mesh_config}, f"mesh.{axis}", MESH_SIZE, default=1))
  if sizes.count(-1) > 1:
    raise ConfigError("only one mesh axis may be -1 (the one taking the remaining devices)")
  known = 1
  for size in sizes:
    known *= size if size != -1 else 1
  if -1 in sizes:
    if device_count % known:
      raise ConfigError(
        f"the mesh's fixed axes ({known} devices) do not divide the {device_count} devices"
      )
    sizes[sizes.index(-1)] = device_count // known
  product = sizes[0] * sizes[1] * sizes[2]
  if product != device_count:
    raise ConfigError(
      f"mesh.data x mesh.fsdp x mesh.tensor = {product}, but there are "
      f"{device_count} devices; make the product match or set one axis to -1"
    )
  return tuple(sizes)


SAMPLE_RULES = (
  ("sample.temperature", NON_NEGATIVE),
  ("sample.top_k", COUNT),
  ("sample.top_k_fraction", FRACTION),
  ("sample.top_p", number(0.0, 1.0, low_open=True)),
)
TRAIN_RULES = (
  ("train.num_steps", POSITIVE),
  ("train.batch_size", POSITIVE),
  ("train.grad_accum_steps", POSITIVE),
  ("train.learning_rate", number(0.0, low_open=True)),
  ("train.schedule", one_of(SCHEDULES)),
  ("train.warmup_steps", COUNT),
  ("train.decay_steps", COUNT),
  ("train.end_learning_rate_ratio", FRACTION),
  ("train.weight_decay", NON_NEGATIVE),
  # b2 = 1 divides by zero in Adam's bias correction; b1 = 1 never moves the first moment.
  ("train.adam_b1", number(0.0, 1.0, high_open=True)),
  ("train.adam_b2", number(0.0, 1.0, high_open=True)),
  ("train.adam_eps", number(0.0, low_open=True)),
  ("train.grad_clip_norm", NON_NEGATIVE),
  ("train.log_every", POSITIVE),
  ("train.checkpoint_every", POSITIVE),
  ("train.keep_checkpoints", POSITIVE),
  ("train.eval_every", COUNT),
  ("train.eval_batches", COUNT),
  ("train.eval_batch_size", COUNT),
  ("train.rng_impl", one_of(RNG_IMPLS)),
  ("train.peak_flops_per_device", NON_NEGATIVE),
)


def validate(config: Any, *, device_count: int, process_count: int = 1) -> tuple[int, int, int]:
  """Raises ConfigError naming the first bad value; returns the mesh shape."""
  from mtx.datasets import DATASET_NAMES, is_config_name
  from mtx.representation import CODEC_NAMES

  for section in SECTIONS:
    _require(config, section)
  check(config, "seed", COUNT)
  try:
    check_model_config(config.model)
  except (AttributeError, KeyError) as e:
    raise ConfigError(f"the model section lacks {e}; take one from configs/model_*.py") from None

  check(config, "data.dataset", one_of(DATASET_NAMES))
  check(
    config,
    "data.representation",
    one_of(
      CODEC_NAMES,
      accept=is_config_name,
      expected=f"one of {', '.join(CODEC_NAMES)}, or one prepared another way as "
      "mtx-prepare names it (mmt_shift, mmt_min50, mmt_shift_min50, ...)",
    ),
  )
  seq_len = check(config, "data.seq_len", POSITIVE)
  if config.model.position_embedding == "learned" and seq_len > config.model.max_seq_len:
    raise ConfigError(
      f"data.seq_len ({seq_len}) exceeds model.max_seq_len "
      f"({config.model.max_seq_len}), the learned positions' length"
    )
  check(config, "data.worker_count", COUNT)

  if "sample" in config:  # mtx-sample's defaults (configs/base.py); older configs lack them
    for path, rule in SAMPLE_RULES:
      check(config, path, rule)
    for name in config.sample.get("field_temperature") or {}:
      check(config, f"sample.field_temperature.{name}", NON_NEGATIVE)

  for path, rule in TRAIN_RULES:
    check(config, path, rule)
  t = config.train
  if t.schedule == "inverse_sqrt" and t.warmup_steps == 0:
    raise ConfigError("train.warmup_steps must be positive for the inverse_sqrt schedule")
  if t.schedule == "warmup_linear" and 0 < t.decay_steps <= t.warmup_steps:
    raise ConfigError(
      f"train.decay_steps ({t.decay_steps}) must exceed train.warmup_steps ({t.warmup_steps})"
    )
  batch_size, accum = t.batch_size, t.grad_accum_steps

  shape = mesh_shape(config.mesh, device_count)
  batch_ways = shape[0] * shape[1]
  for name, parts in (
    ("the processes", process_count),
    ("mesh.data x mesh.fsdp", batch_ways),
    ("train.grad_accum_steps", accum),
  ):
    if batch_size % parts:
      raise ConfigError(f"train.batch_size ({batch_size}) must divide evenly over {name} ({parts})")
  if (batch_size // accum) % batch_ways:
    raise ConfigError(
      f"each micro-batch (train.batch_size / train.grad_accum_steps = "
      f"{batch_size // accum}) must divide over mesh.data x mesh.fsdp "
      f"({batch_ways})"
    )
  eval_batch = config.train.eval_batch_size or batch_size
  if eval_batch % batch_ways or eval_batch % process_count:
    raise ConfigError(
      f"train.eval_batch_size ({eval_batch}) must divide over the processes "
      f"({process_count}) and mesh.data x mesh.fsdp ({batch_ways})"
    )
  return shape


def model_signature(config: Any, field_sizes) -> dict[str, Any]:
  """What a checkpoint's model must share with the config restoring it."""
  signature = {
    f"model.{k}": v for k, v in sorted(config.model.to_dict().items()) if k not in LAYOUT_ONLY_KEYS
  }
  signature["data.representation"] = config.data.representation
  signature["field_sizes"] = [int(s) for s in field_sizes]
  return signature


def signature_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
  """'key: saved X, now Y' for each key whose values differ (JSON-normalized)."""
  import json

  saved = json.loads(json.dumps(saved))
  current = json.loads(json.dumps(current))
  return [
    f"{k}: saved {saved.get(k)!r}, now {current.get(k)!r}"
    for k in sorted(set(saved) | set(current))
    if saved.get(k) != current.get(k)
  ]
