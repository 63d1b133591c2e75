"""Orbax checkpoints of a training run: state, input position and config together,
verified when read back.

    checkpoints = Checkpoints(workdir, config.train)
    checkpoints.save(step, state, train_iterator, run_record, metrics={"eval_loss": x})
    state = checkpoints.restore(step, setup.abstract_state(), train_iterator)

One checkpoint (`<workdir>/checkpoints/<step>/`) holds four items: `state`
(the `TrainState` as the dict {"step", "params", "opt_state", "rng"}, the layout
every checkpoint has had: `StandardSave`, written asynchronously
after a device-to-host copy), `data` (the input iterator's position, through
grain's handler: one file per process), `run` (the config and the model
signature, JSON) and `digest` (JSON: `mtx.train.digest`'s digest of every array
of `state`, of each process's iterator state, of the run record and of the
metrics). Orbax writes into a temporary folder and renames it when every item is
complete, so a run killed mid-save leaves the previous checkpoint as the latest
complete one; the leftover temporary folder is cleaned up on the next start.

Why the digest: Orbax's files carry no checksum, so a flipped bit in a data
file restores without error (docs/benchmarks.md, "Checkpoints"). The checks
are `mtx.train.verify`'s. Every read here (`restore`, `run_record`, `best_step`) checks what it read
against the digest and raises `DamagedCheckpointError` naming the step, what
differs and the other steps kept; damage that stops Orbax itself (a truncated
file, a missing one) gives the same error. A checkpoint written before digests
(its run record has no `digest_format`) is read unverified, with a warning.

A save that fails (a full disk) raises `DiskFullError` or `StorageError` at
the next step (`check`) rather than being logged by Orbax and trained past;
Orbax then keeps the older checkpoints. A disk without room for the next
checkpoint is refused before the save starts.

Kept: the latest `train.keep_checkpoints`, and also the one with the lowest
validation loss (`best_step`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterable
from typing import Any

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging as absl_logging
from etils import epath
from orbax.checkpoint import checkpoint_managers as policies

from mtx.errors import (
  CheckpointError,
  DamagedCheckpointError,
  DiskFullError,
  MtxError,
  StorageError,
)
from mtx.train import verify
from mtx.train.digest import tree_digests
from mtx.train.orbax_noise import first_line, install_log_filter, remove_log_filter
from mtx.train.state import TrainState
from mtx.train.storage import disk_full, folder_size

BEST_METRIC = "eval_loss"
ITEMS = ("state", "data", "run", "digest")
DIGEST_FORMAT = verify.DIGEST_FORMAT
# Where damaged checkpoints go when a run falls back to an intact one: outside
# `checkpoints/`, so Orbax neither lists them nor refuses to save steps below them.
SET_ASIDE_DIR = "damaged_checkpoints"


def checkpoint_dir(workdir: str | os.PathLike) -> epath.Path:
  """`workdir`/checkpoints, made absolute for a local path: Orbax's array writer
  refuses a relative one (and a relative one would change with the cwd)."""
  path = os.fspath(workdir)
  if "://" not in path:
    path = os.path.abspath(os.path.expanduser(path))
  return epath.Path(path) / "checkpoints"


def _best_metric(metrics: dict) -> float:
  return float(metrics[BEST_METRIC])


class _Manager(ocp.CheckpointManager):
  """Orbax's manager, keeping a step whose metrics file cannot be parsed in
  `unreadable_metrics` (Orbax parses every step's when it opens the directory and
  raises out of the constructor: no step would be usable, not even the intact ones); its
  metrics read as missing, and reading that step raises `DamagedCheckpointError`."""

  def __init__(self, *args, **kwargs):
    self.unreadable_metrics: dict[int, str] = {}
    super().__init__(*args, **kwargs)

  def metrics(self, step: int):
    try:
      return super().metrics(step)
    except Exception as e:  # pylint: disable=broad-except
      self.unreadable_metrics[step] = f"{type(e).__name__}: {first_line(e)}"
      return None


class Checkpoints:
  """The run's CheckpointManager with the items, policies and checks above.

  `damaged_hint` ends the message of a damaged checkpoint: what the binary reading
  it offers (mtx-train: fall back to the newest intact step; mtx-sample: --step)."""

  def __init__(
    self,
    workdir: str | os.PathLike,
    train_config: Any | None = None,
    *,
    read_only: bool = False,
    damaged_hint: str | None = None,
  ):
    keep = int(train_config.keep_checkpoints) if train_config is not None else 1
    asynchronous = bool(train_config.async_checkpointing) if train_config is not None else False
    preservation = policies.AnyPreservationPolicy(
      [
        policies.LatestN(n=keep),
        policies.BestN(
          get_metric_fn=_best_metric, reverse=True, n=1, keep_checkpoints_without_metrics=False
        ),
      ]
    )
    options = ocp.CheckpointManagerOptions(
      preservation_policy=preservation,
      best_fn=_best_metric,
      best_mode="min",
      enable_async_checkpointing=asynchronous,
      cleanup_tmp_directories=not read_only,
      create=not read_only,
      read_only=read_only,
      save_interval_steps=0 if read_only else 1,
    )  # Orbax warns when read_only meets 1
    self.directory = checkpoint_dir(workdir)
    self.workdir = os.fspath(workdir)
    self.damaged_hint = damaged_hint or (
      "move that step's folder away to resume from the newest of them, or pass "
      "--fallback_to_intact_checkpoint to mtx-train"
    )
    self._unverified_warned = False
    self._pending: int | None = None  # the step of an asynchronous save in flight
    self._absl_logger = install_log_filter()
    try:
      self.manager = _Manager(self.directory, item_names=ITEMS, options=options)
    except Exception as e:  # pylint: disable=broad-except
      remove_log_filter(self._absl_logger)
      if disk_full(e):
        raise DiskFullError(
          f"the disk holding {self.directory} is full: free space or pass another --workdir"
        ) from None
      raise CheckpointError(
        f"the checkpoints in {self.directory} could not be opened "
        f"({type(e).__name__}: {first_line(e)}): move that folder away "
        "(or pass another --workdir) to start afresh"
      ) from None

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def all_steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def best_step(self) -> int | None:
    """The kept step with the lowest validation loss (None: none was evaluated). Each
    step's metrics are checked against its digest: a damaged metrics file would
    otherwise choose another step."""
    scored = []
    for step in self.all_steps():
      metrics = self._metrics(step)
      if metrics and BEST_METRIC in metrics:
        scored.append((float(metrics[BEST_METRIC]), step))
    return min(scored)[1] if scored else None

  # Saving.

  def save(
    self,
    step: int,
    state: Any,
    iterator,
    run_record: dict,
    metrics: dict | None = None,
    *,
    force: bool = False,
  ) -> bool:
    """Saves asynchronously when configured. A failure of the previous save, a disk
    without room for this one (checked first: a save that runs out of space midway
    leaves tensorstore's tracebacks behind), or a synchronous save that fails raises
    `DiskFullError` or `StorageError`. `state`: a `TrainState` or any pytree."""
    state = _on_disk(state)
    try:
      self.manager.wait_until_finished()  # what manager.save does first anyway
    except Exception as e:  # pylint: disable=broad-except
      raise self._save_error(self._pending if self._pending is not None else step, e) from None
    self._pending = None
    self._check_room(step, state)
    iterator_state = iterator.get_state()
    record = {**run_record, "digest_format": DIGEST_FORMAT}
    digest = verify.digest_item(step, tree_digests(state), iterator_state, record, metrics)
    args = ocp.args.Composite(
      state=ocp.args.StandardSave(state),
      data=grain.checkpoint.CheckpointSave(iterator),
      run=ocp.args.JsonSave(record),
      digest=ocp.args.JsonSave(digest),
    )
    try:
      saved = self.manager.save(step, args=args, metrics=metrics, force=force)
    except Exception as e:  # pylint: disable=broad-except
      raise self._save_error(step, e) from None
    if saved:
      self._pending = step
    return saved

  def _check_room(self, step: int, state: Any) -> None:
    """Refuses a save the disk has no room for: about the size of the latest complete
    checkpoint (else of the arrays), with a tenth to spare."""
    latest = self.manager.latest_step()
    needed = folder_size(self.directory / str(latest)) if latest is not None else 0
    if not needed:
      needed = sum(int(getattr(leaf, "nbytes", 0)) for leaf in jax.tree.leaves(state))
    needed = int(needed * 1.1) + 2**16
    try:
      free = shutil.disk_usage(os.fspath(self.directory)).free
    except OSError:
      return
    short = free < needed
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils

      short = bool(np.any(multihost_utils.process_allgather(np.array(short))))
    if short:
      raise DiskFullError(
        f"the disk holding {self.directory} is full ({free / 2**20:.1f} MiB free, the "
        f"checkpoint of step {step} needs about {needed / 2**20:.1f} MiB): training "
        f"stopped before saving it; {self._previous_text(step)} once there is space (or "
        "pass another --workdir)"
      )

  def check(self) -> None:
    """Raises the error of an asynchronous save that failed: called every step, so
    the run stops at the step after the failure, never trains on for long."""
    if self._pending is None or self.manager.is_saving_in_progress():
      return
    step, self._pending = self._pending, None
    try:
      self.manager.wait_until_finished()  # returns at once; raises the save's failure
    except Exception as e:  # pylint: disable=broad-except
      raise self._save_error(step, e) from None

  def _previous_text(self, failed_step: int) -> str:
    with contextlib.suppress(Exception):
      self.manager.reload()
    kept = [s for s in self.manager.all_steps() if s != failed_step]
    return (
      f"the latest complete checkpoint is step {max(kept)}, intact: rerun to resume from it"
      if kept
      else "no earlier checkpoint was kept"
    )

  def _save_error(self, step: int, error: BaseException) -> MtxError:
    if isinstance(error, MtxError):
      return error
    previous = self._previous_text(step)
    if disk_full(error):
      try:
        free = shutil.disk_usage(os.fspath(self.directory)).free
        free_text = f" ({free / 2**20:.1f} MiB free)"
      except OSError:
        free_text = ""
      return DiskFullError(
        f"the disk holding {self.directory} is full{free_text}: the "
        f"checkpoint of step {step} could not be written and training "
        f"stopped; {previous} once there is space (or pass another "
        "--workdir)"
      )
    return StorageError(
      f"the checkpoint of step {step} could not be written to "
      f"{self.directory} ({type(error).__name__}: {first_line(error)}); "
      f"training stopped; {previous}"
    )

  # Reading.

  def run_record(self, step: int) -> dict:
    """The JSON item (config and model signature) of a checkpoint, verified."""
    record, _ = self._record_and_digest(step)
    return record

  def _record_and_digest(self, step: int) -> tuple[dict, dict | None]:
    """The step's run record (checked) and digest item (None: saved before digests)."""
    self._refuse(
      step, verify.step_metadata_problem(self.directory / str(step) / "_CHECKPOINT_METADATA")
    )
    try:
      restored = self.manager.restore(step, args=ocp.args.Composite(run=ocp.args.JsonRestore()))
      record = dict(restored.run)
    except Exception as e:  # a damaged or foreign checkpoint: say which, not how
      raise self._damaged(
        step,
        f"its run record cannot be read ({type(e).__name__}: "
        f"{first_line(e)}); was it written by mtx-train?",
      ) from None
    digest = self._digest(step, record)
    if digest is not None:
      self._refuse(step, verify.run_record_problem(record, digest))
    record.pop("digest_format", None)
    return record, digest

  def restore(self, step: int, abstract_state: Any, iterator=None) -> Any:
    """The state of checkpoint `step` placed as `abstract_state`'s shardings say;
    moves `iterator` (if given) to the saved input position. Everything read is
    checked against the step's digest before the iterator moves. A `TrainState`
    comes back for an abstract `TrainState`."""
    typed = isinstance(abstract_state, TrainState)
    abstract_state = _on_disk(abstract_state)
    _, digest = self._record_and_digest(step)
    self._metrics(step, digest)
    try:
      restored = self.manager.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state))
      )
    except Exception as e:  # pylint: disable=broad-except
      raise self._damaged(
        step, f"its state cannot be read ({type(e).__name__}: {first_line(e)})"
      ) from None
    state = restored.state
    problem = None
    if digest is not None:
      problem = verify.state_mismatch(tree_digests(state), digest.get("state") or {})
    iterator_state = None
    if iterator is not None and problem is None:
      iterator_state, problem = verify.read_iterator_state(self._data_file(step), digest)
    self._refuse(step, verify.agree(problem))
    if iterator is not None:
      try:
        iterator.set_state(iterator_state)
      except MtxError as e:
        # Verified (or at least JSON): the pipeline is built differently now (another
        # seed...), which the user changes back; otherwise the file is damaged.
        if digest is None and not verify.is_json(iterator_state):
          raise self._damaged(
            step, f"its input-iterator state {self._data_file(step)} is not JSON"
          ) from None
        raise type(e)(
          f"checkpoint step {step} in {self.directory} ({self._data_file(step).name}): {e}"
        ) from None
    return TrainState.from_dict(state) if typed else state

  def _data_file(self, step: int) -> epath.Path:
    """This process's iterator-state file: grain's handler writes
    `process_<i>-of-<n>.json` in the `data` item (grain 0.2.18)."""
    name = f"process_{jax.process_index()}-of-{jax.process_count()}.json"
    return self.directory / str(step) / "data" / name

  def _digest(self, step: int, record: dict) -> dict | None:
    """The step's digest item; None (with a warning, once) for a checkpoint saved
    before digests. A run record that says a digest was saved needs one."""
    if "digest_format" not in record:
      if not self._unverified_warned:
        absl_logging.warning(
          "checkpoint step %d in %s was saved before checkpoints held "
          "digests: restored without verification",
          step,
          self.directory,
        )
        self._unverified_warned = True
      return None
    try:
      restored = self.manager.restore(step, args=ocp.args.Composite(digest=ocp.args.JsonRestore()))
      digest = dict(restored.digest)
    except Exception as e:  # pylint: disable=broad-except
      raise self._damaged(
        step, f"its digest (digest/metadata) cannot be read ({type(e).__name__}: {first_line(e)})"
      ) from None
    self._refuse(step, verify.digest_problem(digest, step))
    return digest

  def _metrics(self, step: int, digest: dict | None = None) -> dict | None:
    """The step's metrics, checked against its digest."""
    if step in self.manager.unreadable_metrics:
      raise self._damaged(
        step,
        "its metrics file (metrics/metrics) cannot be read ("
        f"{self.manager.unreadable_metrics[step]})",
      )
    metrics = self.manager.metrics(step)
    if digest is None:
      _, digest = self._record_and_digest(step)
      if digest is None:
        return metrics
    self._refuse(step, verify.metrics_problem(metrics, digest))
    return metrics

  def _refuse(self, step: int, problem: str | None) -> None:
    if problem is not None:
      raise self._damaged(step, problem)

  def _damaged(self, step: int, what: str) -> DamagedCheckpointError:
    others = [s for s in self.all_steps() if s != step]
    if others:
      todo = (
        f"restore an earlier step (the other steps kept: "
        f"{', '.join(map(str, others))}): {self.damaged_hint}"
      )
    else:
      todo = (
        "no other step is kept: move that folder away to start afresh (mtx-train), or train again"
      )
    return DamagedCheckpointError(
      f"checkpoint step {step} in {self.directory} is damaged: {what}; {todo}", step, what
    )

  def set_aside(self, steps: Iterable[int]) -> epath.Path:
    """Moves damaged steps to `<workdir>/damaged_checkpoints/` (kept to inspect; out
    of Orbax's sight, which would not save a step below them) and rereads the rest."""
    target = epath.Path(os.fspath(self.directory.parent)) / SET_ASIDE_DIR
    if jax.process_index() == 0:
      target.mkdir(parents=True, exist_ok=True)
      for step in steps:
        destination = target / str(step)
        suffix = 1
        while destination.exists():
          destination = target / f"{step}.{suffix}"
          suffix += 1
        (self.directory / str(step)).rename(destination)
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils

      multihost_utils.sync_global_devices("mtx_set_aside_damaged_checkpoints")
    self.manager.reload()
    return target

  def wait(self) -> None:
    """Waits for the save in flight; raises its failure."""
    try:
      self.manager.wait_until_finished()
    except Exception as e:  # pylint: disable=broad-except
      step = self._pending if self._pending is not None else self.manager.latest_step()
      raise self._save_error(step, e) from None
    self._pending = None

  def close(self) -> None:
    """Closes the manager; a save failure not yet reported is reported by `check`,
    never as a second error from here."""
    try:
      self.manager.close()
    except Exception:  # pylint: disable=broad-except
      pass
    finally:
      remove_log_filter(self._absl_logger)


def _on_disk(state: Any) -> Any:
  """The tree Orbax reads and writes: a `TrainState` as its dict (the layout of every
  checkpoint so far, whose digests name `params/...`), any other pytree as it is."""
  return state.as_dict() if isinstance(state, TrainState) else state
