"""The training loop `mtx-train` runs: resume or start, step, evaluate, save, log.

    result = train(config, workdir)   # config: a ConfigDict like configs/base.py's

What one run does, in order: check the config against the devices; open the
prepared dataset; build the mesh and the sharded state (restored from the
latest checkpoint in `workdir` when there is one, after checking it holds the
same model); then step until `train.num_steps`, with a progress line and
TensorBoard scalars every `train.log_every` steps, an evaluation every
`train.eval_every`, a checkpoint every `train.checkpoint_every` and at the end.

Faults: SIGTERM or Ctrl-C (preemption) finishes the step in flight, saves a
checkpoint and returns (`result.preempted`); one that comes before the first
step (JAX starting, a restore) returns as soon as it can, nothing trained. A
loss or gradient norm that is not finite, or parameters that overflow, raise
`DivergedError` before anything of that step is saved, so the latest
checkpoint is the last good one. Every checkpoint is verified when restored
(`mtx.train.checkpoint`): a damaged one is refused, or with
`fallback_to_intact` set aside for the newest intact one. A save that fails (a
full disk) stops training at the next step with `DiskFullError` or
`StorageError`, the previous checkpoint kept. The loop reads each step's loss
one step late, so the host never waits on the device between steps.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import time
from typing import Any

import jax
import numpy as np
from absl import logging
from etils import epath

from mtx.errors import (
  CheckpointError,
  DamagedCheckpointError,
  DiskFullError,
  DivergedError,
  MtxError,
  StorageError,
)
from mtx.model.loss import field_means
from mtx.train import sharding
from mtx.train.checkpoint import BEST_METRIC, Checkpoints
from mtx.train.config import model_signature, signature_differences, validate
from mtx.train.data import PreparedData, eval_iterator, train_iterator
from mtx.train.flops import flops_per_token, peak_flops_per_device
from mtx.train.state import TrainSetup, TrainState
from mtx.train.step import make_eval_step, make_train_step
from mtx.train.stop import StopSignals
from mtx.train.storage import disk_full
from mtx.train.summary import Summary, progress_line

RUN_CONFIG_FILE = "config.json"

__all__ = [
  "DivergedError",
  "RUN_CONFIG_FILE",
  "TrainResult",
  "Trainer",
  "report",
  "run_record",
  "train",
]


@dataclasses.dataclass
class TrainResult:
  step: int  # the step the state is at
  losses: dict[int, float]  # training loss of every step this run took (step -> loss)
  eval_metrics: dict[int, dict[str, float]]
  preempted: bool
  resumed_from: int | None
  state: TrainState | None = None

  @property
  def trained(self) -> bool:
    """Whether this run took a step (a stop before the first one takes none)."""
    return bool(self.losses)


def report(line: str) -> None:
  """A progress line on stdout (every process, tagged when there are several) and in the
  log: what a researcher watches, apart from the libraries' own logging."""
  if jax.process_count() > 1:
    line = f"[process {jax.process_index()}] {line}"
  print(line, flush=True)
  logging.info("%s", line)


def run_record(config: Any, data: PreparedData) -> dict:
  """What a checkpoint stores beside the state: the config, the model signature, and
  what the sampler needs to know of the training data (`sampling`: the largest time jump
  between notes, the longest song; `mtx.sample.restore.data_limits`)."""
  from mtx.sample.restore import data_limits

  metadata = dict(data.builder.info.metadata)
  return {
    "config": json.loads(config.to_json()),
    "signature": model_signature(config, data.codec.fields.sizes),
    "codec": {"name": metadata["representation"], "options": metadata["codec_options"]},
    "dataset": data.location,
    "sampling": data_limits(data, config.data.train_split),
  }


def _write_run_config(workdir: str, record: dict) -> None:
  if jax.process_index() != 0:
    return
  # Through etils.epath: the workdir may be a bucket (gs://...), as Orbax's checkpoints are.
  # An object store's upload is whole or absent, so it needs no temporary file; its
  # rename is a copy and a delete (gcsfs).
  path = epath.Path(workdir) / RUN_CONFIG_FILE
  tmp = path if "://" in os.fspath(workdir) else path.parent / f"{RUN_CONFIG_FILE}.tmp"
  try:
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True))
    if tmp != path:
      tmp.replace(path)
  except OSError as e:
    raise _write_error(os.fspath(path), e) from None


def _write_error(path: str, error: OSError) -> MtxError:
  if disk_full(error):
    return DiskFullError(
      f"the disk holding {path} is full: nothing was trained; free space or pass another --workdir"
    )
  return StorageError(
    f"{path} cannot be written ({error.strerror or error}): pass a --workdir you can write to"
  )


def _prepare_workdir(workdir: str) -> None:
  """The workdir made, and writable, before the dataset and the model are built."""
  from mtx.cli.paths import check_output_dir

  check_output_dir(workdir, "workdir", bucket_ok=True)


def _global(batch: dict, batch_sharding) -> dict:
  return {
    k: jax.make_array_from_process_local_data(batch_sharding, np.asarray(v))
    for k, v in batch.items()
  }


class MetricsWindow:
  """The train metrics of the steps since the last progress line, and their speed."""

  def __init__(self, model_flops: float, peak_total: float):
    self.model_flops = model_flops  # per token
    self.peak_total = peak_total  # FLOP/s of every device; 0: unknown, no MFU
    self.reset()

  def reset(self) -> None:
    self.steps: list[dict[str, float]] = []
    self.tokens = 0.0
    self.start = time.perf_counter()

  def add(self, values: dict[str, float]) -> None:
    self.steps.append(values)
    self.tokens += values["tokens"]

  def means(self) -> dict[str, float] | None:
    """Each metric's mean over the window (the learning rate: its last), tokens and steps
    per second, MFU; None when no step was added since the last reset."""
    if not self.steps:
      return None
    elapsed = max(time.perf_counter() - self.start, 1e-9)
    means = {k: float(np.mean([v[k] for v in self.steps])) for k in self.steps[-1] if k != "tokens"}
    means["tokens_per_second"] = self.tokens / elapsed
    means["steps_per_second"] = len(self.steps) / elapsed
    if self.peak_total:
      means["mfu"] = means["tokens_per_second"] * self.model_flops / self.peak_total
    means["learning_rate"] = self.steps[-1]["learning_rate"]
    return means


class Trainer:
  """One run's loop over the steps (nanodo's `Trainer`): step, and on their schedules
  log (`log`), evaluate (`evaluate`) and save (`save`).

  Each step's metrics are read one step late (`settle`), so the host never waits on
  the device between steps; whatever reads the state settles first, so a diverged step
  is refused before anything of it is logged or saved."""

  def __init__(
    self,
    setup: TrainSetup,
    config: Any,
    data: PreparedData,
    iterator,
    checkpoints: Checkpoints,
    summary: Summary,
    record: dict,
    stop: StopSignals,
  ):
    self.setup, self.config, self.data = setup, config, data
    self.iterator, self.checkpoints, self.summary = iterator, checkpoints, summary
    self.record, self.stop = record, stop
    self.num_steps = int(config.train.num_steps)
    self.train_step, self.eval_step = make_train_step(setup), make_eval_step(setup)
    self.batch_sharding = sharding.batch_sharding(setup.mesh)
    self.has_eval = data.has(config.data.eval_split)
    peak = peak_flops_per_device(jax.devices()[0], float(config.train.peak_flops_per_device))
    self.window = MetricsWindow(
      flops_per_token(config.model, data.codec.fields.sizes, int(config.data.seq_len)),
      peak * jax.device_count(),
    )
    self.state: TrainState | None = None
    self.result: TrainResult | None = None
    self._pending = None  # (step, device metrics) of the step before, read one step late

  def run(self, state: TrainState, resumed_from: int | None) -> TrainResult:
    """Steps from `state` to train.num_steps, or until a stop is asked for."""
    t = self.config.train
    if not self.has_eval:
      logging.warning(
        "no %s split in %s: no evaluation, no best checkpoint",
        self.config.data.eval_split,
        self.data.location,
      )
    self.state = state
    step = int(jax.device_get(state.step))
    self.result = TrainResult(
      step=step, losses={}, eval_metrics={}, preempted=False, resumed_from=resumed_from
    )
    self.window.reset()
    while step < self.num_steps:
      self.checkpoints.check()  # an asynchronous save that failed stops the run here
      batch = _global(next(self.iterator), self.batch_sharding)
      self.state, metrics = self.train_step(self.state, batch)
      self.settle()
      self._pending = (step + 1, metrics)
      step += 1
      last = step == self.num_steps
      if step % t.log_every == 0 or last:
        self.log(step)
      eval_metrics = None
      if self.has_eval and ((t.eval_every and step % t.eval_every == 0) or last):
        eval_metrics = self.evaluate(step)
      if step % t.checkpoint_every == 0 or last:
        self.save(step, None if eval_metrics is None else {BEST_METRIC: eval_metrics["loss"]})
      if self.stop.agreed():
        self.save(step, None, force=True)
        self.result.preempted = True
        report(
          f"stopped at step {step:,}; checkpoint saved in {self.checkpoints.directory}: "
          "run the same command to resume"
        )
        break
    self.settle()
    self.checkpoints.wait()
    self.summary.flush()
    self.result.step = step
    self.result.state = self.state
    return self.result

  def settle(self) -> None:
    """Reads the pending step's metrics: the divergence check and the metrics window."""
    if self._pending is None:
      return
    done_step, metrics = self._pending
    self._pending = None
    values = {k: float(v) for k, v in jax.device_get(metrics).items()}
    if not all(math.isfinite(values[k]) for k in ("loss", "grad_norm", "param_norm")):
      last = self.checkpoints.latest_step()
      raise DivergedError(
        f"training diverged at step {done_step}: loss {values['loss']}, gradient norm "
        f"{values['grad_norm']}, parameter norm {values['param_norm']}; nothing of it "
        "was saved, the last good checkpoint is "
        f"{'none' if last is None else f'step {last}'} in {self.checkpoints.directory}. "
        "Lower train.learning_rate, raise train.warmup_steps or set train.grad_clip_norm"
      )
    self.result.losses[done_step] = values["loss"]
    self.window.add(values)

  def log(self, step: int) -> None:
    """The window's means to TensorBoard and a progress line; a new window starts."""
    self.settle()
    means = self.window.means()
    if means is None:
      return
    self.summary.scalars(step, "train", means)
    report(progress_line(step, self.num_steps, means))
    self.window.reset()

  def evaluate(self, step: int) -> dict[str, float]:
    """Mean per-field loss and accuracy over the eval split (or train.eval_batches),
    logged and kept in the result."""
    self.settle()
    iterator = eval_iterator(self.data, self.config)
    limit = int(self.config.train.eval_batches)
    totals = None
    try:
      for index, batch in enumerate(iterator):
        if limit and index >= limit:
          break
        sums = self.eval_step(self.state.params, _global(batch, self.batch_sharding))
        totals = sums if totals is None else jax.tree.map(lambda a, b: a + b, totals, sums)
    finally:
      iterator.close()
    means = field_means(jax.device_get(totals), self.setup.codec.fields.names)
    metrics = {k: float(v) for k, v in means.items()}
    self.result.eval_metrics[step] = metrics
    self.summary.scalars(step, "eval", metrics)
    report(f"eval at step {step:,}: loss {metrics['loss']:.4f}")
    return metrics

  def save(self, step: int, metrics: dict | None, force: bool = False) -> None:
    """A checkpoint of the state at `step` (none when the latest already is)."""
    self.settle()
    if self.checkpoints.latest_step() == step:
      return
    self.checkpoints.save(
      step, self.state, self.iterator, self.record, metrics=metrics, force=force
    )


def _restore_or_init(
  setup: TrainSetup,
  checkpoints: Checkpoints,
  record: dict,
  iterator,
  workdir: str,
  fallback_to_intact: bool,
):
  """The newest checkpoint's state (and input position), or a fresh state. A damaged
  checkpoint is refused; with `fallback_to_intact` the damaged steps newer than the
  newest intact one are set aside (`Checkpoints.set_aside`) and that one restored."""
  steps = checkpoints.all_steps()
  if not steps:
    return setup.init(), None
  damaged = []
  for step in reversed(steps):
    try:
      saved = checkpoints.run_record(step)
      differences = signature_differences(saved.get("signature", {}), record["signature"])
      if differences:
        raise CheckpointError(
          f"{workdir} holds a checkpoint (step {step}) of a different model: "
          f"{'; '.join(differences)}. Resume with the config it was trained with "
          f"({os.path.join(workdir, RUN_CONFIG_FILE)}), or pass another --workdir"
        )
      state = checkpoints.restore(step, setup.abstract_state(), iterator)
    except DamagedCheckpointError as e:
      if not fallback_to_intact:
        raise
      report(f"checkpoint step {step} is damaged ({e.what}): falling back to an earlier one")
      damaged.append(step)
      continue
    if damaged:
      where = checkpoints.set_aside(damaged)
      report(f"damaged checkpoint step(s) {', '.join(map(str, damaged))} moved to {where}")
    report(f"resumed from {checkpoints.directory} at step {step:,}")
    return state, step
  raise CheckpointError(
    f"every checkpoint in {checkpoints.directory} is damaged (steps "
    f"{', '.join(map(str, steps))}): move that folder away to start afresh"
  )


def train(
  config: Any,
  workdir: str | os.PathLike,
  *,
  stop: StopSignals | None = None,
  fallback_to_intact: bool = False,
) -> TrainResult:
  """Trains (or resumes) the run in `workdir`; see the module docstring. `stop`: the
  binary's signal handlers, installed before JAX started (else installed here)."""
  workdir = os.fspath(workdir)
  with contextlib.ExitStack() as stack:
    if stop is None:
      stop = stack.enter_context(StopSignals())
    shape = validate(config, device_count=jax.device_count(), process_count=jax.process_count())
    _prepare_workdir(workdir)
    data = PreparedData(config.data)
    mesh = sharding.make_mesh(shape)
    setup = TrainSetup.create(config, data.codec, mesh)
    record = run_record(config, data)
    checkpoints = Checkpoints(workdir, config.train)
    stack.callback(checkpoints.close)
    iterator = train_iterator(data, config)
    stack.callback(iterator.close)
    state, resumed_from = _restore_or_init(
      setup, checkpoints, record, iterator, workdir, fallback_to_intact
    )
    step = int(jax.device_get(state.step))
    if stop.agreed():
      report(
        f"stopped before training a step: nothing was trained yet"
        f"{'' if resumed_from is None else f', the run is still at step {step:,}'}; "
        "run the same command to go on"
      )
      return TrainResult(
        step=step,
        losses={},
        eval_metrics={},
        preempted=True,
        resumed_from=resumed_from,
        state=state,
      )
    _write_run_config(workdir, record)
    # After a resume, TensorBoard hides what an interrupted run logged past the
    # checkpoint (the replayed steps would otherwise show twice).
    summary = Summary(
      workdir,
      enabled=jax.process_index() == 0,
      purge_step=None if resumed_from is None else resumed_from + 1,
    )
    stack.callback(summary.close)
    trainer = Trainer(setup, config, data, iterator, checkpoints, summary, record, stop)
    return trainer.run(state, resumed_from)
