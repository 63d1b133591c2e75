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
  full disk) otherwise. `bucket_ok`: a bucket's address (`gs://...`) is accepted and
  checked the same way through etils.epath (mtx-train's --workdir, mtx-prepare's
  --data_dir); otherwise it is refused: a local path library would make a folder named
  `gs:` in the current directory."""
  if "://" in os.fspath(folder):
    if not bucket_ok:
      raise ConfigError(f"--{flag} {folder}: must be a local folder here, not a bucket")
    return _check_bucket_folder(os.fspath(folder), flag)
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


def _check_bucket_folder(url: str, flag: str) -> str:
  """`url` once a file could be written and deleted there (etils.epath: gcsfs for gs://)."""
  from etils import epath

  try:
    folder = epath.Path(url)
    folder.mkdir(parents=True, exist_ok=True)
    probe = folder / f".mtx-write-check-{os.getpid()}"
    probe.write_text("")
    probe.unlink()
  except ImportError as e:
    raise bucket_client_missing(f"--{flag} {url}", e) from None
  except Exception as e:  # pylint: disable=broad-except
    message = " ".join(str(e).split())[:300]
    raise ConfigError(
      f"--{flag} {url}: cannot write there ({type(e).__name__}: {message}); check the bucket "
      "exists and the credentials (gcloud auth application-default login)"
    ) from None
  return url


def bucket_client_missing(what: str, error: ImportError) -> ConfigError:
  """The one line for a bucket's address where its file system is not installed (etils
  raises ImportError for gs:// without gcsfs)."""
  return ConfigError(
    f"{what}: reading a bucket needs its file system ({error}); install mtx with the gcs "
    "extra: pip install '.[gcs]'"
  )
