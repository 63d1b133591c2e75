"""The disk under a workdir: whether an error means it is full, how much a folder holds."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterable


def _causes(error: BaseException) -> Iterable[BaseException]:
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    yield error
    error = error.__cause__ or error.__context__


def disk_full(error: BaseException) -> bool:
  """Whether `error` (or one it was raised from) says the disk is full."""
  for e in _causes(error):
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
      return True
    # C++ writers (ArrayRecord's "write() failed: No space left on device", TensorStore)
    # raise errors of their own with errno's text in the message.
    if any(text in str(e) for text in ("No space left on device", "ENOSPC", "Disk quota exceeded")):
      return True
  return False


def folder_size(path: str | os.PathLike) -> int:
  """Bytes of the files under `path` (0 when it cannot be read)."""
  total = 0
  for root, _, names in os.walk(os.fspath(path)):
    for name in names:
      with contextlib.suppress(OSError):
        total += os.path.getsize(os.path.join(root, name))
  return total
