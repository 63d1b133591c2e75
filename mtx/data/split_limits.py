"""The sampler's limits of each split of a prepared dataset, kept beside its records.

`mtx.sample.grammar.time_limits` reads every song of a split once. A run computes them for
its training split when it starts (`mtx.train.loop.run_record`), and on a dataset in a bucket
that is one request per song; so mtx-prepare computes them once, while the records are on
its own disk, into `sampling_limits.json` in the dataset's folder, and a run reads that file
(falling back to the scan for a dataset prepared before the file existed). The file is a
function of the records alone: the test checks it equals the scan.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
from etils import epath

LIMITS_FILE = "sampling_limits.json"


def scan_limits(codec, source) -> dict:
  """`time_limits` of every song of `source` (a split's data source), read once."""
  from mtx.sample.grammar import time_limits

  n_fields = codec.n_fields
  songs = (np.asarray(source[i]["tokens"]).reshape(-1, n_fields) for i in range(len(source)))
  return time_limits(codec, songs)


def write_limits(dataset_dir: str | os.PathLike, codec, sources: dict[str, Any]) -> dict:
  """The limits of every split in `sources` written to the dataset's folder (local: the
  prepare's), through a temporary file so a reader never sees half of one."""
  limits = {split: scan_limits(codec, source) for split, source in sources.items()}
  path = os.path.join(os.fspath(dataset_dir), LIMITS_FILE)
  tmp = f"{path}.tmp"
  with open(tmp, "w") as f:
    json.dump({"splits": limits}, f, indent=2, sort_keys=True)
  os.replace(tmp, path)
  return limits


def read_limits(dataset_dir: str, split: str) -> dict | None:
  """The split's limits from the dataset's file, or None (no file, no such split, unreadable:
  the caller scans)."""
  try:
    text = (epath.Path(dataset_dir) / LIMITS_FILE).read_text()
    return json.loads(text)["splits"][split]
  except (OSError, KeyError, TypeError, ValueError):
    return None
