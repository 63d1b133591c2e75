"""Orbax checkpoints of a training run: state, input position and config together.

    checkpoints = Checkpoints(workdir, config.train)
    checkpoints.save(step, state, train_iterator, run_record, metrics={"eval_loss": x})
    state = checkpoints.restore(step, setup.abstract_state(), train_iterator)

One checkpoint (`<workdir>/checkpoints/<step>/`) holds three items: `state`
(params, optimizer state, step, RNG: `StandardSave`, written asynchronously
after a device-to-host copy), `data` (the input iterator's position, through
grain's handler: one file per process) and `run` (the config and the model
signature, JSON). Orbax writes into a temporary folder and renames it when
every item is complete, so a run killed mid-save leaves the previous
checkpoint as the latest complete one; the leftover temporary folder is
cleaned up on the next start.

Kept: the latest `train.keep_checkpoints`, and also the one with the lowest
validation loss (`best_step`).
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Any

import grain
import orbax.checkpoint as ocp
from etils import epath
from orbax.checkpoint import checkpoint_managers as policies

from mtx.errors import MtxError

BEST_METRIC = "eval_loss"


class CheckpointError(MtxError):
  """A checkpoint cannot be restored (another model, or damaged)."""


def checkpoint_dir(workdir: str | os.PathLike) -> epath.Path:
  """`workdir`/checkpoints, made absolute for a local path: Orbax's array writer
  refuses a relative one (and a relative one would change with the cwd)."""
  path = os.fspath(workdir)
  if "://" not in path:
    path = os.path.abspath(os.path.expanduser(path))
  return epath.Path(path) / "checkpoints"


@contextlib.contextmanager
def _without_read_only_warning():
  """Orbax warns "Given directory is read only" for every manager opened read-only: on
  every mtx-sample run, a warning for what was asked for (the directory itself is
  writable). Dropped while the manager is built; every other message goes through."""
  def keep(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("Given directory is read only")

  absl_logger = logging.getLogger("absl")
  absl_logger.addFilter(keep)
  try:
    yield
  finally:
    absl_logger.removeFilter(keep)


def _best_metric(metrics: dict) -> float:
  return float(metrics[BEST_METRIC])


class Checkpoints:
  """The run's CheckpointManager with the items and policies above."""

  def __init__(self, workdir: str | os.PathLike, train_config: Any | None = None, *,
               read_only: bool = False):
    keep = int(train_config.keep_checkpoints) if train_config is not None else 1
    asynchronous = bool(train_config.async_checkpointing) if train_config is not None else False
    preservation = policies.AnyPreservationPolicy([
        policies.LatestN(n=keep),
        policies.BestN(get_metric_fn=_best_metric, reverse=True, n=1,
                       keep_checkpoints_without_metrics=False),
    ])
    options = ocp.CheckpointManagerOptions(
        preservation_policy=preservation, best_fn=_best_metric, best_mode="min",
        enable_async_checkpointing=asynchronous,
        cleanup_tmp_directories=not read_only, create=not read_only, read_only=read_only,
        save_interval_steps=0 if read_only else 1)  # Orbax warns when read_only meets 1
    self.directory = checkpoint_dir(workdir)
    with _without_read_only_warning() if read_only else contextlib.nullcontext():
      self.manager = ocp.CheckpointManager(self.directory, item_names=("state", "data", "run"),
                                           options=options)

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self.manager.all_steps())

  def best_step(self) -> int | None:
    """The kept step with the lowest validation loss (None: none was evaluated)."""
    scored = []
    for step in self.manager.all_steps():
      metrics = self.manager.metrics(step)
      if metrics and BEST_METRIC in metrics:
        scored.append((float(metrics[BEST_METRIC]), step))
    return min(scored)[1] if scored else None

  def save(self, step: int, state: Any, iterator, run_record: dict,
           metrics: dict | None = None, *, force: bool = False) -> bool:
    args = ocp.args.Composite(state=ocp.args.StandardSave(state),
                              data=grain.checkpoint.CheckpointSave(iterator),
                              run=ocp.args.JsonSave(run_record))
    return self.manager.save(step, args=args, metrics=metrics, force=force)

  def run_record(self, step: int) -> dict:
    """The JSON item (config and model signature) of a checkpoint."""
    try:
      restored = self.manager.restore(step, args=ocp.args.Composite(run=ocp.args.JsonRestore()))
    except Exception as e:  # a damaged or foreign checkpoint: say which, not how
      raise CheckpointError(f"checkpoint {self.directory / str(step)} has no readable run "
                            f"record ({type(e).__name__}: {_first_line(e)}); was it written "
                            "by mtx-train?") from None
    return dict(restored.run)

  def restore(self, step: int, abstract_state: Any, iterator=None) -> Any:
    """The state of checkpoint `step` placed as `abstract_state`'s shardings say;
    moves `iterator` (if given) to the saved input position."""
    items = {"state": ocp.args.StandardRestore(abstract_state)}
    if iterator is not None:
      items["data"] = grain.checkpoint.CheckpointRestore(iterator)
    try:
      restored = self.manager.restore(step, args=ocp.args.Composite(**items))
    except MtxError:
      raise
    except Exception as e:
      raise CheckpointError(f"checkpoint {self.directory / str(step)} could not be restored "
                            f"({type(e).__name__}: {_first_line(e)}); it may be damaged: "
                            "delete that step's folder to resume from an earlier one") from None
    return restored.state

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.close()


def _first_line(error: Exception) -> str:
  text = str(error).strip().splitlines()
  return text[0][:300] if text else ""
