"""The one error module of mtx.

Every error raised on bad outside input is an `MtxError` whose message names the
input (a file, a field, a token row) and says what to do. Binaries catch
`MtxError` at the top, print its message on one line and exit with status 2.
"""


class MtxError(Exception):
  """Base class: bad input that the user can fix."""


class MidiReadError(MtxError):
  """A MIDI file is missing, empty, truncated or not MIDI at all."""


class EmptyMidiError(MtxError):
  """A MIDI file parses but holds no notes that the representation can keep."""


class RepresentationOverflowError(MtxError):
  """Notes fall outside what a representation can express (e.g. past max_beat)."""


class DecodeError(MtxError):
  """A token array cannot be decoded (raised in strict mode only)."""


class ConfigError(MtxError):
  """A bad configuration value or codec option."""


class StorageError(MtxError):
  """The workdir cannot be written: not a directory, read-only, or the disk is full."""


class DiskFullError(MtxError):
  """A disk (or quota) filled up while writing: names the disk and what was kept (nothing
  that looks complete)."""


class CheckpointError(MtxError):
  """A checkpoint cannot be restored (another model, or damaged)."""


class DamagedCheckpointError(CheckpointError):
  """A checkpoint's files do not hold what was saved (or cannot be read at all).

  `step` and `what` (the part that differs) let a binary fall back to an intact step
  and say which part was damaged."""

  def __init__(self, message: str, step: int, what: str):
    super().__init__(message)
    self.step = step
    self.what = what


class DivergedError(MtxError):
  """The loss or the gradients stopped being finite."""
