"""The folders a binary writes into, checked before any work.

A binary that loads a model for 20 s and then finds that `--output_dir` is a
file has wasted the user's time and shown a traceback; `check_output_dir` says
so at once, in one line, as every bad input is reported (`mtx.cli.app`).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from mtx.errors import ConfigError


def check_output_dir(folder: str | os.PathLike, flag: str, bucket_ok: bool = False) -> Path | str:
  """`folder`, made if missing, once it is sure files can be written there; a
  ConfigError naming `--flag` and the problem (a file in the way, no permission, a
  full disk) otherwise. `bucket_ok`: a bucket's address (`gs://...`) is passed as it is,
  its writer reporting its own errors (mtx-prepare's --data_dir)."""
  if bucket_ok and "://" in os.fspath(folder):
    return os.fspath(folder)
  path = Path(folder).expanduser()
  blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
  if blocker == path:
    raise ConfigError(
      f"--{flag} {path}: is a file, not a folder; pass a folder (it is made if missing)"
    )
  if blocker is not None:
    raise ConfigError(
      f"--{flag} {path}: {blocker} is a file, so no folder can be made under "
      "it; pass another folder"
    )
  try:
    path.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path, prefix=".mtx-write-check"):
      pass
  except OSError as e:
    raise ConfigError(
      f"--{flag} {path}: cannot write there ({e.strerror or e}); pass a folder you can write to"
    ) from None
  return path
