"""Preparing into a bucket (`mtx-prepare --data_dir=gs://...`).

ArrayRecord's writer opens local files only (its reader reads gs:// itself), so a prepare
for a bucket runs as usual into a local staging folder and then uploads the finished dataset
folder. dataset_info.json goes last: a reader (mtx.train.data) takes a folder without it for
no dataset, so an upload cut short never looks complete, and the next run replaces it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import tempfile

from etils import epath

from mtx.errors import ConfigError, StorageError

# What TFDS writes last when a dataset is whole, and what readers look for.
COMPLETE_MARKER = "dataset_info.json"


def is_bucket(path: str | None) -> bool:
  return bool(path) and "://" in os.fspath(path)


def check_bucket_target(data_dir: str, name: str, config: str, version: str, overwrite: bool):
  """ConfigError when the bucket already holds the dataset and --overwrite is not given."""
  remote = epath.Path(data_dir) / name / config / version
  if (remote / COMPLETE_MARKER).exists() and not overwrite:
    raise ConfigError(
      f"{remote} already holds {name}/{config}: pass --overwrite to rebuild it, or another "
      "--data_dir"
    )


@contextlib.contextmanager
def staging_dir(parent: str | None = None):
  """A local folder for the prepare, removed afterwards (TMPDIR or `parent` picks the disk)."""
  folder = tempfile.mkdtemp(prefix="mtx-prepare-", dir=parent)
  try:
    yield folder
  finally:
    shutil.rmtree(folder, ignore_errors=True)


def upload(local_dataset_dir: str, data_dir: str, relative: str) -> str:
  """Copies the prepared folder to `data_dir`/`relative` (replacing what was there), its
  completion marker last; returns the remote folder."""
  remote = epath.Path(data_dir) / relative
  names = sorted(os.listdir(local_dataset_dir), key=lambda n: n == COMPLETE_MARKER)
  try:
    if remote.exists():
      remote.rmtree()
    remote.mkdir(parents=True, exist_ok=True)
    for name in names:  # streamed: a record shard can be larger than memory allows
      with open(os.path.join(local_dataset_dir, name), "rb") as src:
        with (remote / name).open("wb") as dst:
          shutil.copyfileobj(src, dst, length=16 * 2**20)
  except Exception as e:  # pylint: disable=broad-except  # any client's error, one line
    message = " ".join(str(e).split())[:300]
    raise StorageError(
      f"uploading the prepared dataset to {remote} failed ({type(e).__name__}: {message}); "
      "it is not marked complete there: run the same command again"
    ) from None
  return os.fspath(remote)


def relocated(summary, remote_dir: str):
  """The prepare's summary, pointing at the bucket's copy."""
  return dataclasses.replace(summary, dataset_dir=remote_dir)
