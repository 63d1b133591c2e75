"""Damage done to a real checkpoint's files, and what reading it back gives.

`read_back(workdir, config)` opens a workdir as mtx-train does (the latest step,
its run record, state, metrics and input position) and returns everything read,
or the error raised; tests compare it with the undamaged read to tell a damage
that was detected, one that changed nothing read, and one read silently wrong.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np

# The kinds of file in a step folder, by where they lie (tests name each).
FILE_KINDS = {
  "data": lambda rel: rel.startswith("state/") and "/d/" in rel,
  "state metadata": lambda rel: rel.startswith("state/") and "/d/" not in rel,
  "iterator state": lambda rel: rel.startswith("data/") and rel.endswith(".json"),
  "run record": lambda rel: rel == "run/metadata",
  "metrics": lambda rel: rel == "metrics/metrics",
  "digest": lambda rel: rel == "digest/metadata",
  "step metadata": lambda rel: rel == "_CHECKPOINT_METADATA",
}


def kind_of(rel: str) -> str | None:
  for kind, matches in FILE_KINDS.items():
    if matches(rel):
      return kind
  return None


def step_files(step_dir: Path) -> dict[str, Path]:
  """Relative path -> file, for every file of a step but Orbax's commit markers
  (written last, read by nothing)."""
  return {
    str(p.relative_to(step_dir)): p
    for p in sorted(step_dir.rglob("*"))
    if p.is_file() and p.name != "commit_success.txt"
  }


def flip_bit(path: Path, position: int, bit: int) -> None:
  data = bytearray(path.read_bytes())
  data[position] ^= 1 << bit
  path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
  data = path.read_bytes()
  path.write_bytes(data[: len(data) // 2])


def flip_positions(size: int, count: int, seed: int) -> list[int]:
  """`count` byte positions spread over a file: its first and last byte, and others
  drawn at random between."""
  rng = np.random.default_rng(seed)
  if size <= count:
    return list(range(size))
  return sorted({0, size - 1, *rng.choice(size, count - 2, replace=False).tolist()})


@dataclasses.dataclass
class ReadBack:
  step: int | None = None
  params: dict | None = None
  iterator_state: bytes | None = None
  record: dict | None = None
  metrics: dict | None = None
  best: int | None = None
  error: BaseException | None = None

  def same_as(self, other: ReadBack) -> bool:
    if (self.step, self.iterator_state, self.record, self.metrics, self.best) != (
      other.step,
      other.iterator_state,
      other.record,
      other.metrics,
      other.best,
    ):
      return False
    return self.params.keys() == other.params.keys() and all(
      self.params[k].dtype == other.params[k].dtype
      and self.params[k].tobytes() == other.params[k].tobytes()
      for k in self.params
    )


def read_back(workdir, config) -> ReadBack:
  """What mtx-train reads from `workdir` to resume (latest step), plus the best step."""
  import jax

  from mtx.errors import MtxError
  from mtx.train import sharding
  from mtx.train.checkpoint import Checkpoints
  from mtx.train.data import PreparedData, train_iterator
  from mtx.train.state import TrainSetup

  data = PreparedData(config.data)
  setup = TrainSetup.create(config, data.codec, sharding.make_mesh((jax.device_count(), 1, 1)))
  iterator = train_iterator(data, config)
  result = ReadBack()
  try:
    checkpoints = Checkpoints(workdir, read_only=True)
    try:
      result.step = checkpoints.latest_step()
      result.record = checkpoints.run_record(result.step)
      state = checkpoints.restore(result.step, setup.abstract_state(), iterator)
      result.metrics = checkpoints.manager.metrics(result.step)
      result.best = checkpoints.best_step()
    finally:
      checkpoints.close()
    flat = jax.tree_util.tree_flatten_with_path(jax.device_get(state))[0]
    result.params = {jax.tree_util.keystr(p): np.asarray(v) for p, v in flat}
    result.iterator_state = iterator.get_state()
  except MtxError as e:
    result.error = e
  finally:
    iterator.close()
  return result


def copy_workdir(source: Path, target: Path) -> Path:
  if target.exists():
    shutil.rmtree(target)
  shutil.copytree(source, target)
  return target
