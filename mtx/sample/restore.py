"""A trained run, restored for sampling: its config, codec and parameters.

    run = load_run("runs/jsb_tiny")                 # latest; step="best" or an int
    model = run.setup.model(run.params)

Everything comes from the checkpoint's own run record (the config and the
codec options it was trained with), so no model flags are needed. What is read
is verified against the checkpoint's digest (`mtx.train.checkpoint`): a damaged
checkpoint is refused by name, naming the steps to pass instead; with
`fallback_to_intact` the latest that is intact is taken when the latest (or
"best") one is damaged. The mesh is
data-parallel over every local device (the batch of samples splits over it).

What the sampler needs to know of the training data (`data_limits`: the largest
time jump between notes, the longest song) is saved in the record under
"sampling" by `mtx.train.loop.run_record`; for a run saved before that,
`sampling_limits` computes it from the run's dataset when it is still where the
run trained, and otherwise samples without a time limit, saying so.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
import ml_collections
from etils import epath

from mtx.errors import ConfigError, DamagedCheckpointError
from mtx.representation import get_codec
from mtx.representation.codec import Codec
from mtx.train import sharding
from mtx.train.checkpoint import Checkpoints, checkpoint_dir
from mtx.train.state import TrainSetup


@dataclasses.dataclass
class TrainedRun:
  config: ml_collections.ConfigDict
  codec: Codec
  setup: TrainSetup
  params: Any
  step: int
  dataset: str | None = None  # where the run's dataset was when it trained (the record's)
  data_limits: dict | None = None  # the record's "sampling" (`grammar.time_limits`), if any


def choose_step(checkpoints: Checkpoints, step: str | int | None, workdir: str) -> int:
  steps = checkpoints.all_steps()
  if not steps:
    raise ConfigError(
      f"no checkpoint in {checkpoint_dir(workdir)}: train first with "
      f"mtx-train --workdir={workdir}, or point --workdir at a trained run"
    )
  if step in (None, "", "latest"):
    return checkpoints.latest_step()
  if step == "best":
    best = checkpoints.best_step()
    if best is None:
      raise ConfigError(
        f"no checkpoint in {workdir} was evaluated, so none is best; pass "
        f"--step=latest or one of {steps}"
      )
    return best
  try:
    step = int(step)
  except (TypeError, ValueError):
    raise ConfigError(f"--step must be latest, best or a step number; got {step!r}") from None
  if step not in steps:
    raise ConfigError(f"{workdir} has no checkpoint at step {step}; it has {steps}")
  return step


def load_run(
  workdir: str | os.PathLike,
  step: str | int | None = None,
  *,
  fallback_to_intact: bool = False,
  warn=None,
) -> TrainedRun:
  """The run in `workdir` at `step` (latest, best or a number), verified. With
  `fallback_to_intact`, a damaged latest/best checkpoint gives way to the newest
  intact one, and `warn` (a callable taking one line) says which was skipped."""
  workdir = os.fspath(workdir)
  # epath: a run on a bucket (gs://...) is read where it is, as Orbax reads it.
  try:
    found = epath.Path(workdir).is_dir()
  except ImportError as e:  # a bucket without its client (the gcs extra)
    from mtx.cli.paths import bucket_client_missing

    raise bucket_client_missing(f"--workdir {workdir}", e) from None
  if not found:
    raise ConfigError(f"--workdir {workdir} does not exist: pass the workdir mtx-train wrote")
  checkpoints = Checkpoints(
    workdir, read_only=True, damaged_hint="pass --step=<one of them> to read another"
  )
  try:
    chosen = choose_step(checkpoints, step, workdir)
    candidates = [chosen]
    if fallback_to_intact and str(step) in ("None", "", "latest", "best"):
      candidates += [s for s in reversed(checkpoints.all_steps()) if s < chosen]
    for index, candidate in enumerate(candidates):
      try:
        return _load_step(checkpoints, candidate)
      except DamagedCheckpointError as e:
        if index == len(candidates) - 1:
          raise
        if warn is not None:
          warn(
            f"checkpoint step {candidate} is damaged ({e.what}): reading step "
            f"{candidates[index + 1]} instead"
          )
  finally:
    checkpoints.close()


def _load_step(checkpoints: Checkpoints, chosen: int) -> TrainedRun:
  record = checkpoints.run_record(chosen)
  config = ml_collections.ConfigDict(record["config"])
  codec = get_codec(record["codec"]["name"], **record["codec"]["options"])
  mesh = sharding.make_mesh((jax.device_count(), 1, 1))
  setup = TrainSetup.create(config, codec, mesh)
  state = checkpoints.restore(chosen, setup.abstract_state())
  return TrainedRun(
    config=config,
    codec=codec,
    setup=setup,
    params=state.params,
    step=chosen,
    dataset=record.get("dataset"),
    data_limits=record.get("sampling"),
  )


def data_limits(data: Any, split: str) -> dict:
  """`grammar.time_limits` of a prepared dataset's split (`mtx.train.data.PreparedData`):
  what `mtx.train.loop.run_record` saves under "sampling". From the dataset's
  sampling_limits.json (mtx-prepare writes it), else read from every song once."""
  from mtx.data.split_limits import read_limits, scan_limits

  limits = read_limits(data.location, split)
  if limits is not None:
    return limits
  return scan_limits(data.codec, data.source(split))


# max_length when neither the run nor its dataset says how long its songs are: this many
# windows (a chorale is 1-3 windows of 256 mmt rows; mtx-sample stops at end-of-song anyway).
WINDOWS_PER_SAMPLE = 4


@dataclasses.dataclass(frozen=True)
class SamplingLimits:
  """How far and how long a run samples: rows in view, rows in all, time limits."""

  window: int
  max_length: int
  max_time_jump: int  # 0: no limit; in `grammar.TIME_UNITS`
  max_first_time: int
  max_onset_notes: int  # mmt: the most notes at one beat and position; 0: no limit
  max_silence: int | None  # mmt: the longest silence, in positions; None: no limit
  source: str  # where the data's limits came from: "run", "dataset" or "none"

  def grammar(self, codec):
    """The codec's grammar under these time limits (what mtx-sample and mtx-eval draw with)."""
    from mtx.sample.grammar import grammar_for

    return grammar_for(
      codec,
      max_time_jump=self.max_time_jump,
      max_first_time=self.max_first_time,
      max_onset_notes=self.max_onset_notes,
      max_silence=self.max_silence,
    )


def sampling_limits(
  run: TrainedRun,
  *,
  window: int = 0,
  max_length: int = 0,
  max_time_jump: int = -1,
  max_onset_notes: int = -1,
  warn=None,
) -> SamplingLimits:
  """The sampler's limits for `run`, each given value (0, or -1 for max_time_jump and
  max_onset_notes: the default) winning over its default:
  - window: the training seq_len (what the model saw at once);
  - max_length: the longest training song's rows (a whole piece of the corpus), or
    WINDOWS_PER_SAMPLE windows when that is unknown (views of at most `window` rows are
    re-encoded past the window, so learned positions need only window <= max_seq_len);
  - max_time_jump: the training data's largest jump between notes and before the first
    (`grammar.time_limits`); 0 turns the limit off; a given value bounds both;
  - max_onset_notes: mmt, the training data's most notes at one time; 0: off;
  - max_silence: mmt, the data's longest silence between notes, on with the data's time
    limits, off when max_time_jump is given.
  The data's limits come from the run record, else from the run's dataset (read once, here),
  else there are none and `warn` (a callable taking one line) says so.
  """
  config = run.config
  window = int(window or config.data.seq_len)
  if window < 2:
    raise ConfigError(f"--window must be at least 2 rows; got {window}")
  limits, source = run.data_limits, "run"
  need_data = max_time_jump < 0 or max_onset_notes < 0 or not max_length
  if (
    limits is not None
    and run.codec.name == "mmt"
    and "max_silence" not in limits
    and max_time_jump < 0
  ):
    # Saved before the silence limit existed: the run's dataset has it, if it is there.
    found = _limits_from_dataset(run)
    if found is not None:
      limits, source = {**limits, "max_silence": found["max_silence"]}, "run and dataset"
  if limits is None and need_data:
    limits, source = _limits_from_dataset(run), "dataset"
    if limits is None:
      source = "none"
      if warn is not None:
        warn(
          f"the run in {run.dataset or 'its workdir'} saved no statistics of its data and "
          "its dataset is not reachable: sampling without a limit on time jumps, "
          f"{WINDOWS_PER_SAMPLE} windows long; pass --max_time_jump, --max_onset_notes "
          "and --max_length"
        )
  limits = limits or {}
  if config.model.position_embedding == "learned" and window > config.model.max_seq_len:
    raise ConfigError(
      f"--window {window} exceeds the model's learned positions "
      f"({config.model.max_seq_len}): pass --window="
      f"{config.model.max_seq_len} or less"
    )
  if not max_length:
    max_length = int(limits.get("longest_song") or WINDOWS_PER_SAMPLE * window)
  if max_time_jump < 0:
    jump = int(limits.get("max_time_jump", 0))
    first = int(limits.get("max_first_time", jump)) if jump else 0
  else:
    jump = first = int(max_time_jump)
  onset = int(limits.get("max_onset_notes", 0)) if max_onset_notes < 0 else max_onset_notes
  # The silence limit goes with the time limits: on from the data, off with them.
  silence = limits.get("max_silence") if max_time_jump < 0 else None
  return SamplingLimits(
    window=window,
    max_length=int(max_length),
    max_time_jump=jump,
    max_first_time=first,
    max_onset_notes=onset,
    max_silence=None if silence is None else int(silence),
    source=source,
  )


def _limits_from_dataset(run: TrainedRun) -> dict | None:
  """`data_limits` of the run's training split, wherever `open_run_dataset` finds the
  dataset; None when it is gone."""
  from mtx.train.data import open_run_dataset

  try:
    data = open_run_dataset(run.config.data, None, run.dataset)
    return data_limits(data, run.config.data.train_split)
  except ConfigError:
    return None
