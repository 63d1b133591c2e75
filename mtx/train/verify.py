"""What a checkpoint read back is checked against: its digest item, built at save.

The digest item (JSON, `Checkpoints.save`) holds `mtx.train.digest`'s digest of
every array of the state, of each process's iterator state, of the run record
and of the metrics. Each function here compares one part read back with it and
returns what differs, in words (None when it matches); `mtx.train.checkpoint`
turns that into `DamagedCheckpointError`. On several processes the verdicts are
agreed (`agree`), so every process refuses the same checkpoint.
"""

from __future__ import annotations

import json
from typing import Any

import jax
import numpy as np
from etils import epath

from mtx.train.digest import bytes_digest, json_digest

DIGEST_FORMAT = 1
# Orbax's per-step items whose handlers `_CHECKPOINT_METADATA` must list.
REQUIRED_ITEMS = {"state", "data", "run"}


def digest_item(
  step: int,
  state_digests: dict[str, str],
  iterator_state: bytes,
  record: dict,
  metrics: dict | None,
) -> dict:
  """The digest item saved beside the state (a collective on several processes)."""
  return {
    "format": DIGEST_FORMAT,
    "step": int(step),
    "state": state_digests,
    "data": gather_data_digests(iterator_state),
    "run": json_digest(record),
    "metrics": None if metrics is None else json_digest(metrics),
  }


def digest_problem(digest: dict, step: int) -> str | None:
  if digest.get("format") != DIGEST_FORMAT or digest.get("step") != step:
    return "its digest (digest/metadata) is not the one saved with it"
  return None


def run_record_problem(record: dict, digest: dict) -> str | None:
  if json_digest(record) != digest.get("run"):
    return "its run record (run/metadata) differs from what was saved"
  return None


def metrics_problem(metrics: Any, digest: dict) -> str | None:
  found = None if metrics is None else json_digest(dict(metrics))
  if digest.get("metrics", None) == found:
    return None
  if metrics is None:
    return "its metrics file (metrics/metrics) is missing"
  return "its metrics file (metrics/metrics) differs from what was saved"


def step_metadata_problem(path: epath.Path) -> str | None:
  """Orbax's `_CHECKPOINT_METADATA` of a step: written after the digest, so not in
  it; Orbax logs and carries on when it is unreadable. A problem when it does not
  parse or does not list the items (a flipped digit of a timestamp goes through:
  nothing restored depends on it)."""
  try:
    handlers = json.loads(path.read_text()).get("item_handlers")
    complete = isinstance(handlers, dict) and REQUIRED_ITEMS <= set(handlers)
  except (OSError, ValueError, AttributeError):
    complete = False
  return None if complete else f"its step metadata ({path.name}) is missing or unreadable"


def read_iterator_state(path: epath.Path, digest: dict | None) -> tuple[bytes | None, str | None]:
  """(the bytes of this process's iterator-state file, None) or (None, the problem)."""
  try:
    data = path.read_bytes()
  except OSError as e:
    return None, f"its input-iterator state {path} cannot be read ({type(e).__name__})"
  if digest is not None:
    saved = (digest.get("data") or {}).get(path.stem)
    if saved != bytes_digest(data):
      return None, f"its input-iterator state {path} differs from what was saved"
  return data, None


def is_json(data: bytes) -> bool:
  try:
    json.loads(data)
  except ValueError:
    return False
  return True


def state_mismatch(found: dict[str, str], saved: dict[str, str]) -> str | None:
  """What differs between the restored arrays' digests and the saved ones."""
  for name in sorted(set(found) | set(saved)):
    if name not in saved:
      return f"its digest has no entry for the array {name}"
    if name not in found:
      return f"the array {name} is missing from its state"
    if found[name] != saved[name]:
      return f"the array {name} differs from what was saved (its data files are damaged)"
  return None


def gather_data_digests(iterator_state: bytes) -> dict[str, str]:
  """`process_<i>-of-<n>` -> digest of that process's iterator state (a collective on
  several processes: each knows only its own)."""
  count = jax.process_count()
  mine = bytes_digest(iterator_state)
  if count == 1:
    return {"process_0-of-1": mine}
  from jax.experimental import multihost_utils

  crc, length = mine.split("-")
  gathered = np.asarray(
    multihost_utils.process_allgather(np.array([int(crc, 16), int(length)], dtype=np.uint32))
  ).reshape(count, 2)
  return {f"process_{i}-of-{count}": f"{int(c):08x}-{int(n)}" for i, (c, n) in enumerate(gathered)}


def agree(problem: str | None) -> str | None:
  """The same verdict on every process: one whose own files are intact still refuses
  a checkpoint another process found damaged."""
  if jax.process_count() == 1:
    return problem
  from jax.experimental import multihost_utils

  flags = np.asarray(multihost_utils.process_allgather(np.array(problem is not None)))
  if problem is None and flags.any():
    return f"process {int(np.argmax(flags))} found its part of it damaged"
  return problem
