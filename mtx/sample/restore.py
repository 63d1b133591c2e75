"""A trained run, restored for sampling: its config, codec and parameters.

    run = load_run("runs/jsb_tiny")                 # latest; step="best" or an int
    model = run.setup.model(run.params)

Everything comes from the checkpoint's own run record (the config and the
codec options it was trained with), so no model flags are needed. The mesh is
data-parallel over every local device (the batch of samples splits over it).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
import ml_collections

from mtx.errors import ConfigError
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


def choose_step(checkpoints: Checkpoints, step: str | int | None, workdir: str) -> int:
  steps = checkpoints.all_steps()
  if not steps:
    raise ConfigError(f"no checkpoint in {checkpoint_dir(workdir)}: train first with "
                      f"mtx-train --workdir={workdir}, or point --workdir at a trained run")
  if step in (None, "", "latest"):
    return checkpoints.latest_step()
  if step == "best":
    best = checkpoints.best_step()
    if best is None:
      raise ConfigError(f"no checkpoint in {workdir} was evaluated, so none is best; pass "
                        f"--step=latest or one of {steps}")
    return best
  try:
    step = int(step)
  except (TypeError, ValueError):
    raise ConfigError(f"--step must be latest, best or a step number; got {step!r}") from None
  if step not in steps:
    raise ConfigError(f"{workdir} has no checkpoint at step {step}; it has {steps}")
  return step


def load_run(workdir: str | os.PathLike, step: str | int | None = None) -> TrainedRun:
  workdir = os.fspath(workdir)
  if not os.path.isdir(workdir):
    raise ConfigError(f"--workdir {workdir} does not exist: pass the workdir mtx-train wrote")
  checkpoints = Checkpoints(workdir, read_only=True)
  try:
    chosen = choose_step(checkpoints, step, workdir)
    record = checkpoints.run_record(chosen)
    config = ml_collections.ConfigDict(record["config"])
    codec = get_codec(record["codec"]["name"], **record["codec"]["options"])
    mesh = sharding.make_mesh((jax.device_count(), 1, 1))
    setup = TrainSetup.create(config, codec, mesh)
    state = checkpoints.restore(chosen, setup.abstract_state())
  finally:
    checkpoints.close()
  return TrainedRun(config=config, codec=codec, setup=setup, params=state["params"],
                    step=chosen, dataset=record.get("dataset"))
