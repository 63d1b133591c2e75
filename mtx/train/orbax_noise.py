"""What Orbax and tensorstore say on the way to an error mtx reports in one line.

mtx turns a failed save, a damaged checkpoint or a read-only directory into one
`MtxError` line (`mtx.train.checkpoint`); Orbax meanwhile logs tracebacks, and a
failed restore leaves coroutines that Python reports when it collects them. This
module drops those reports (`install_log_filter` while a manager is open; the
coroutine reports for the whole process, once imported) and shortens the errors
that remain (`first_line`).
"""

from __future__ import annotations

import logging
import re
import sys
import warnings

# Orbax log lines mtx turns into its own one-line errors (or that report what was
# asked for): dropped so that a failure reads as one line, not a traceback.
_QUIET = (
  "Given directory is read only",  # every read-only manager (mtx-sample)
  "Requested `tracked_metric`",
)  # every save without an evaluation
# Orbax's reports of what mtx raises as one line instead: a failed save's logged
# tracebacks, a damaged or missing step metadata file (`_check_step_metadata`).
_QUIET_ERRORS = (
  "[step=",
  "[process=",
  "Failed to json parse Metadata file",
  "Failed to read Metadata file",
  "Metadata file does not exist",
)


def _quiet(record: logging.LogRecord) -> bool:
  message = str(record.msg)
  if message.startswith(_QUIET):
    return False
  return not (record.levelno >= logging.WARNING and message.startswith(_QUIET_ERRORS))


def install_log_filter() -> logging.Logger:
  """Drops the lines above from absl's logger (Orbax's); returns it for `remove_log_filter`."""
  logger = logging.getLogger("absl")
  logger.addFilter(_quiet)
  return logger


def remove_log_filter(logger: logging.Logger) -> None:
  logger.removeFilter(_quiet)


# A restore that fails inside Orbax leaves its other reads' coroutines unawaited or
# failed; Python reports each (a warning, an "Exception ignored" traceback) when it is
# collected, after mtx has reported the damaged checkpoint in one line.
_ORBAX_READ = "_read_array_index_and_device_put"
warnings.filterwarnings("ignore", message=f"coroutine '{_ORBAX_READ}'")


def _drop_orbax_read_reports(previous):
  def hook(unraisable):
    if _ORBAX_READ not in repr(getattr(unraisable, "object", None)):
      previous(unraisable)

  hook.mtx_orbax_filter = True
  return hook


if not getattr(sys.unraisablehook, "mtx_orbax_filter", False):
  sys.unraisablehook = _drop_orbax_read_reports(sys.unraisablehook)


def first_line(error: BaseException) -> str:
  """The first line of an error's message, without what tensorstore appends (its
  spec, behind the repr of a pybind11 bound method) or other objects' reprs."""
  text = str(error).split("See full TensorStore details")[0]
  text = re.sub(r"<bound method.*", "", text)
  text = re.sub(r"<[\w.]+ object at 0x[0-9a-f]+>", "", text)
  lines = [l.strip() for l in text.strip().splitlines() if l.strip()]
  return " ".join(lines[0].split())[:300].rstrip(" .:") if lines else type(error).__name__
