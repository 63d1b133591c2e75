"""What sampling starts from: a primer's first beats or notes, or a fixed MMT header.

Continuation keeps the primer's rows exactly and generates after them;
instrument-informed sampling (MMT) fixes the header (start-of-song, one row per
instrument, start-of-notes) and generates only notes. Instruments are named as
MMT names them (`piano`, `violin`, `cello`, `drums`, ...) or given as General
MIDI program numbers (0-127).
"""

from __future__ import annotations

import difflib
import os

import numpy as np

from mtx.errors import ConfigError
from mtx.representation.codec import Codec
from mtx.representation.fields import INSTRUMENTS, PROGRAM_TO_INSTRUMENT_CODE


def instrument_codes(names: list[str]) -> list[int]:
  """MMT instrument codes for names or GM program numbers; ConfigError for unknown ones."""
  codes = []
  for name in names:
    name = name.strip().lower()
    if name.isdigit():
      program = int(name)
      if not 0 <= program <= 127:
        raise ConfigError(f"--instruments: program {program} is not a General MIDI program (0-127)")
      code = int(PROGRAM_TO_INSTRUMENT_CODE[program])
      if code == 0:
        raise ConfigError(
          f"--instruments: program {program} has no MMT instrument "
          "(programs 76-78, 96-103, 112-116 and 120-127 have none)"
        )
    elif name in INSTRUMENTS:
      code = INSTRUMENTS.index(name) + 1
    else:
      close = difflib.get_close_matches(name, INSTRUMENTS, n=3)
      hint = (
        f"; did you mean {', '.join(close)}?" if close else (f"; known: {', '.join(INSTRUMENTS)}")
      )
      raise ConfigError(f"--instruments: unknown instrument {name!r}{hint}")
    codes.append(code)
  if not codes:
    raise ConfigError("--instruments names no instrument")
  return sorted(set(codes))


def mmt_header(codec: Codec, codes: list[int]) -> np.ndarray:
  """start-of-song, one row per instrument (ascending), start-of-notes."""
  from mtx.representation import mmt

  rows = np.zeros((len(codes) + 2, codec.n_fields), np.int32)
  rows[0, mmt.TYPE] = mmt.START_OF_SONG
  rows[1:-1, mmt.TYPE] = mmt.INSTRUMENT
  rows[1:-1, mmt.INSTRUMENT_FIELD] = codes
  rows[-1, mmt.TYPE] = mmt.START_OF_NOTES
  return rows


def start_rows(codec: Codec) -> np.ndarray:
  """The unconditioned start: the start-of-song row."""
  if codec.name == "mmt":
    return np.zeros((1, codec.n_fields), np.int32)  # start-of-song is all zeros
  row = np.zeros((1, codec.n_fields), np.int32)
  row[0, 0] = codec.vocab.token("start-of-song")
  return row


def primer_rows(
  codec: Codec, path: str | os.PathLike, *, beats: int | None = None, notes: int | None = None
) -> np.ndarray:
  """The primer's tokens up to its first `beats` beats or `notes` notes (mmt), or whole
  (other codecs, `notes` counting note-on events for performance); never its
  end-of-song."""
  tokens = codec.encode(path)  # MidiReadError / EmptyMidiError name the file
  if codec.name == "mmt":
    from mtx.representation import mmt

    kind = tokens[:, mmt.TYPE]
    header = tokens[kind != mmt.NOTE]
    header = header[header[:, mmt.TYPE] != mmt.END_OF_SONG]
    note_rows = tokens[kind == mmt.NOTE]
    if not len(note_rows):  # the codec dropped every note: all start after its max_beat
      raise ConfigError(
        f"--primer {path}: every note starts after beat {codec.max_beat}, "
        "the representation's last, so nothing of it is left to continue; "
        "pass a primer whose music starts earlier, or use --instruments"
      )
    if beats is not None:
      first_beat = int(note_rows[0, mmt.BEAT]) - 1
      note_rows = note_rows[note_rows[:, mmt.BEAT] - 1 < beats]
      if not len(note_rows):
        raise ConfigError(
          f"--primer_beats {beats}: the primer's first {beats} beats hold "
          f"no notes (its first note starts on beat {first_beat}); raise "
          "--primer_beats, or use --primer_notes"
        )
    if notes is not None:
      note_rows = note_rows[:notes]
    # The whole header stays: the song's instruments, including those that enter later.
    return np.concatenate([header, note_rows]).astype(np.int32)
  if beats is not None:
    raise ConfigError(f"--primer_beats applies to mmt; {codec.name} primers take --primer_notes")
  tokens = tokens[tokens[:, 0] != codec.vocab.token("end-of-song")]
  if notes is not None and codec.name == "performance":
    on = codec.vocab.offset("note-on")
    is_on = (tokens[:, 0] >= on) & (tokens[:, 0] < on + codec.vocab.count("note-on"))
    past = np.flatnonzero(np.cumsum(is_on) > notes)
    if past.size:
      tokens = tokens[: past[0]]
  return tokens.astype(np.int32)
