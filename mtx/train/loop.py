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

import dataclasses
import json
import math
import contextlib
import os
import time
from typing import Any

import jax
import numpy as np
from absl import logging

from mtx.errors import DiskFullError, MtxError, StorageError
from mtx.train import sharding
from mtx.train.checkpoint import (BEST_METRIC, CheckpointError, Checkpoints,
                                  DamagedCheckpointError, disk_full)
from mtx.train.config import model_signature, signature_differences, validate
from mtx.train.data import PreparedData, eval_iterator, train_iterator
from mtx.train.flops import flops_per_token, peak_flops_per_device
from mtx.train.state import TrainSetup
from mtx.train.step import field_metrics, make_eval_step, make_train_step
from mtx.train.stop import StopSignals
from mtx.train.summary import Summary, progress_line

RUN_CONFIG_FILE = "config.json"


class DivergedError(MtxError):
  """The loss or the gradients stopped being finite."""


@dataclasses.dataclass
class TrainResult:
  step: int  # the step the state is at
  losses: dict[int, float]  # training loss of every step this run took (step -> loss)
  eval_metrics: dict[int, dict[str, float]]
  preempted: bool
  resumed_from: int | None
  state: Any = None

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
  return {"config": json.loads(config.to_json()),
          "signature": model_signature(config, data.codec.fields.sizes),
          "codec": {"name": metadata["representation"],
                    "options": metadata["codec_options"]},
          "dataset": data.location,
          "sampling": data_limits(data, config.data.train_split)}


def _write_run_config(workdir: str, record: dict) -> None:
  if jax.process_index() != 0:
    return
  path = os.path.join(workdir, RUN_CONFIG_FILE)
  tmp = f"{path}.tmp"
  try:
    with open(tmp, "w") as f:
      json.dump(record, f, indent=2, sort_keys=True)
    os.replace(tmp, path)
  except OSError as e:
    raise _write_error(path, e) from None


def _write_error(path: str, error: OSError) -> MtxError:
  if disk_full(error):
    return DiskFullError(f"the disk holding {path} is full: nothing was trained; free "
                         "space or pass another --workdir")
  return StorageError(f"{path} cannot be written ({error.strerror or error}): pass a "
                      "--workdir you can write to")


def _prepare_workdir(workdir: str) -> None:
  """The workdir made, and writable, before the dataset and the model are built."""
  from mtx.cli.paths import check_output_dir

  check_output_dir(workdir, "workdir")


def _global(batch: dict, batch_sharding) -> dict:
  return {k: jax.make_array_from_process_local_data(batch_sharding, np.asarray(v))
          for k, v in batch.items()}


def evaluate(setup: TrainSetup, eval_step, params, data: PreparedData, config: Any) -> dict:
  """Mean per-field loss and accuracy over the eval split (or train.eval_batches)."""
  batch_sharding = sharding.batch_sharding(setup.mesh)
  iterator = eval_iterator(data, config)
  limit = int(config.train.eval_batches)
  totals = None
  try:
    for index, batch in enumerate(iterator):
      if limit and index >= limit:
        break
      sums = eval_step(params, _global(batch, batch_sharding))
      totals = sums if totals is None else jax.tree.map(lambda a, b: a + b, totals, sums)
  finally:
    iterator.close()
  metrics = field_metrics(jax.device_get(totals), setup.codec.fields.names)
  return {k: float(v) for k, v in metrics.items()}


def _restore_or_init(setup: TrainSetup, checkpoints: Checkpoints, record: dict, iterator,
                     workdir: str, fallback_to_intact: bool):
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
            f"({os.path.join(workdir, RUN_CONFIG_FILE)}), or pass another --workdir")
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
  raise CheckpointError(f"every checkpoint in {checkpoints.directory} is damaged (steps "
                        f"{', '.join(map(str, steps))}): move that folder away to start afresh")


def train(config: Any, workdir: str | os.PathLike, *, stop: StopSignals | None = None,
          fallback_to_intact: bool = False) -> TrainResult:
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
    state, resumed_from = _restore_or_init(setup, checkpoints, record, iterator, workdir,
                                           fallback_to_intact)
    step = int(jax.device_get(state["step"]))
    if stop.agreed():
      report(f"stopped before training a step: nothing was trained yet"
             f"{'' if resumed_from is None else f', the run is still at step {step:,}'}; "
             "run the same command to go on")
      return TrainResult(step=step, losses={}, eval_metrics={}, preempted=True,
                         resumed_from=resumed_from, state=state)
    _write_run_config(workdir, record)
    # After a resume, TensorBoard hides what an interrupted run logged past the
    # checkpoint (the replayed steps would otherwise show twice).
    summary = Summary(workdir, enabled=jax.process_index() == 0,
                      purge_step=None if resumed_from is None else resumed_from + 1)
    stack.callback(summary.close)
    return _loop(setup, config, data, state, iterator, checkpoints, summary, record,
                 resumed_from, stop)


def _loop(setup, config, data, state, iterator, checkpoints, summary, record, resumed_from,
          stop):
  t = config.train
  num_steps = int(t.num_steps)
  train_step, eval_step = make_train_step(setup), make_eval_step(setup)
  batch_sharding = sharding.batch_sharding(setup.mesh)
  has_eval = data.has(config.data.eval_split)
  if not has_eval:
    logging.warning("no %s split in %s: no evaluation, no best checkpoint",
                    config.data.eval_split, data.location)
  model_flops = flops_per_token(config.model, data.codec.fields.sizes, int(config.data.seq_len))
  peak = peak_flops_per_device(jax.devices()[0], float(t.peak_flops_per_device))
  peak_total = peak * jax.device_count()

  step = int(jax.device_get(state["step"]))
  result = TrainResult(step=step, losses={}, eval_metrics={}, preempted=False,
                       resumed_from=resumed_from)
  pending = None  # (step, device metrics) of the step before, read one step late
  window = {"loss": [], "tokens": 0.0, "start": time.perf_counter(), "steps": 0}

  def settle():
    """Reads the pending step's metrics: the divergence check and the log window."""
    nonlocal pending
    if pending is None:
      return
    done_step, metrics = pending
    pending = None
    values = {k: float(v) for k, v in jax.device_get(metrics).items()}
    if not all(math.isfinite(values[k]) for k in ("loss", "grad_norm", "param_norm")):
      last = checkpoints.latest_step()
      raise DivergedError(
          f"training diverged at step {done_step}: loss {values['loss']}, gradient norm "
          f"{values['grad_norm']}, parameter norm {values['param_norm']}; nothing of it "
          "was saved, the last good checkpoint is "
          f"{'none' if last is None else f'step {last}'} in {checkpoints.directory}. "
          "Lower train.learning_rate, raise train.warmup_steps or set train.grad_clip_norm")
    result.losses[done_step] = values["loss"]
    window["loss"].append(values)
    window["tokens"] += values["tokens"]
    window["steps"] += 1

  def log_window(at_step: int):
    settle()
    if not window["loss"]:
      return
    elapsed = max(time.perf_counter() - window["start"], 1e-9)
    means = {k: float(np.mean([v[k] for v in window["loss"]])) for k in window["loss"][-1]
             if k != "tokens"}
    means["tokens_per_second"] = window["tokens"] / elapsed
    means["steps_per_second"] = window["steps"] / elapsed
    if peak_total:
      means["mfu"] = means["tokens_per_second"] * model_flops / peak_total
    means["learning_rate"] = window["loss"][-1]["learning_rate"]
    summary.scalars(at_step, "train", means)
    report(progress_line(at_step, num_steps, means))
    window.update(loss=[], tokens=0.0, start=time.perf_counter(), steps=0)

  def save(at_step: int, metrics: dict | None, force: bool = False):
    settle()
    if checkpoints.latest_step() == at_step:
      return
    checkpoints.save(at_step, state, iterator, record, metrics=metrics, force=force)

  while step < num_steps:
    checkpoints.check()  # an asynchronous save that failed stops the run here
    batch = _global(next(iterator), batch_sharding)
    state, metrics = train_step(state, batch)
    settle()
    pending = (step + 1, metrics)
    step += 1
    if step % t.log_every == 0 or step == num_steps:
      log_window(step)
    eval_metrics = None
    if has_eval and ((t.eval_every and step % t.eval_every == 0) or step == num_steps):
      settle()
      eval_metrics = evaluate(setup, eval_step, state["params"], data, config)
      result.eval_metrics[step] = eval_metrics
      summary.scalars(step, "eval", eval_metrics)
      report(f"eval at step {step:,}: loss {eval_metrics['loss']:.4f}")
    if step % t.checkpoint_every == 0 or step == num_steps:
      save(step, None if eval_metrics is None else {BEST_METRIC: eval_metrics["loss"]})
    if stop.agreed():
      save(step, None, force=True)
      result.preempted = True
      report(f"stopped at step {step:,}; checkpoint saved in {checkpoints.directory}: "
             "run the same command to resume")
      break
  settle()
  checkpoints.wait()
  summary.flush()
  result.step = step
  result.state = state
  return result
