"""report.json: the same report gives the same bytes, written so a report that exists is a
complete one.

Sorted keys, floats rounded to a fixed number of significant digits, NaN as null since
JSON has no NaN, infinities as the strings "inf" and "-inf"; written atomically (a
temporary file renamed over the target), as report.html and the figures are too.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

JSON_SIGNIFICANT_DIGITS = 8


def write_atomic(path: str | os.PathLike, data: bytes) -> Path:
  """Writes `data` to `path` through a temporary file in the same folder and a rename:
  a reader (or a crash) sees the old file or the new one, never half of one."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the report from the rest of a team
    os.replace(tmp, path)
  except BaseException:
    try:
      os.unlink(tmp)
    except FileNotFoundError:
      pass
    raise
  return path


def to_jsonable(value: Any, *, digits: int = JSON_SIGNIFICANT_DIGITS, where: str = "report") -> Any:
  """Plain JSON types from a report that may hold numpy scalars and arrays, tuples,
  paths and non-string keys. Floats keep `digits` significant digits (the last bits of
  a float sum differ between machines and say nothing); NaN -> None, +-inf -> "inf"
  / "-inf". Anything else is a TypeError naming where it sits in the report."""
  if isinstance(value, np.ndarray):
    value = value.tolist()
  elif isinstance(value, np.generic):
    value = value.item()
  if value is None or isinstance(value, (bool, str)):
    return value
  if isinstance(value, int):
    return int(value)
  if isinstance(value, float):
    if math.isnan(value):
      return None
    if math.isinf(value):
      return "inf" if value > 0 else "-inf"
    return float(f"{value:.{digits}g}")
  if isinstance(value, os.PathLike):
    return os.fspath(value)
  if isinstance(value, Mapping):
    out = {}
    for key, item in value.items():
      name = key if isinstance(key, str) else str(to_jsonable(key, digits=digits, where=where))
      if name in out:
        raise ValueError(f"{where} has two keys that both read {name!r}")
      out[name] = to_jsonable(item, digits=digits, where=f"{where}.{name}")
    return out
  if isinstance(value, (list, tuple)):
    return [to_jsonable(item, digits=digits, where=f"{where}[{i}]") for i, item in enumerate(value)]
  raise TypeError(
    f"{where} is a {type(value).__name__}; a report holds numbers, strings, lists and dicts"
  )


def dumps_json(report: Mapping) -> str:
  """The report as JSON text: sorted keys, two-space indents, a final newline."""
  return (
    json.dumps(to_jsonable(report), sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False)
    + "\n"
  )


def write_json(report: Mapping, path: str | os.PathLike) -> Path:
  """Writes `dumps_json(report)` atomically; nothing is written when a value cannot
  be serialized."""
  return write_atomic(path, dumps_json(report).encode("utf-8"))
