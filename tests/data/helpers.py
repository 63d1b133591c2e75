"""What tokens decode to, for tests that check the data pipeline through the codecs."""

from __future__ import annotations

import numpy as np

from mtx.representation.codec import Codec, DecodeReport
from mtx.representation.notetable import NoteTable

ONSET, OFFSET, PITCH, VELOCITY, PROGRAM, IS_DRUM, TRACK = range(7)


def decoded(codec: Codec, tokens) -> tuple[NoteTable, DecodeReport]:
  """The note table tokens decode to, and the decoder's report."""
  report = DecodeReport()
  return codec.decode_table(codec.check_tokens(tokens), report), report


def note_rows(table: NoteTable) -> np.ndarray:
  """(n, 6) notes without the track column (track numbers follow the notes'
  order, which transposition may change), sorted."""
  rows = np.delete(table.notes_array(), TRACK, axis=1)
  return rows[np.lexsort(rows.T[::-1])] if rows.size else rows


def sorted_rows(rows: np.ndarray) -> np.ndarray:
  return rows[np.lexsort(rows.T[::-1])] if rows.size else rows


def value_at(ticks, times, values) -> np.ndarray:
  """The value of a step map (times sorted, starting at 0) in force at each tick."""
  return np.asarray(values)[np.searchsorted(times, ticks, side="right") - 1]
