"""The Multitrack Music Transformer representation (Dong et al., ICASSP 2023).

Each row is (type, beat, position, pitch, duration, instrument):

    start-of-song            (0, 0, 0, 0, 0, 0)
    instrument  (one a kind) (1, 0, 0, 0, 0, instrument)
    start-of-notes           (2, 0, 0, 0, 0, 0)
    note        (time order) (3, beat+1, position+1, pitch+1, duration code, instrument)
    end-of-song              (4, 0, 0, 0, 0, 0)

as the reference code (`mmt/representation.py`) lays it out: 12 positions per
beat, beats 0..max_beat, the 32 known durations (in 1/12 beats, a note snaps to
the nearest), the reference's program -> instrument map over 64 instruments, and
code 0 in a field meaning "none". Rows are sorted by their codes (beat,
position, pitch, duration, instrument) and duplicates removed, as the reference
sorts and deduplicates its notes.

Times go to the grid as the reference's data does (MusPy's `adjust_resolution`:
Python's `round` of tick x 12 / ticks per beat, so exact half steps go to the
even step), a note's end rounded the same way and its duration the difference,
at least 1 (`quantize.ticks_to_steps_like_muspy`).

mtx's deviations, each documented in docs/representations.md: drums are kept,
as a 65th instrument (the reference's `extract_notes` skips drum tracks, so its
data has no drums at all); sorting and deduplication happen on the final codes
rather than on raw programs, so `encode(decode(tokens)) == tokens` holds
exactly; notes past
`max_beat` raise `RepresentationOverflowError` unless `overflow="truncate"`
(the reference's behaviour: drop them).
"""

from __future__ import annotations

import numpy as np

from mtx.errors import ConfigError, EmptyMidiError, RepresentationOverflowError
from mtx.representation.codec import Codec, DecodeReport, check_limit, check_overflow_mode
from mtx.representation.fields import (
  DRUM_INSTRUMENT_CODE,
  INSTRUMENT_PROGRAM,
  INSTRUMENTS,
  KNOWN_DURATIONS,
  MMT_RESOLUTION,
  PROGRAM_TO_INSTRUMENT_CODE,
  Field,
  FieldTable,
)
from mtx.representation.notetable import MICROSECONDS_PER_MINUTE, NoteTable, from_notes
from mtx.representation.quantize import nearest_index, ticks_to_steps_like_muspy

START_OF_SONG, INSTRUMENT, START_OF_NOTES, NOTE, END_OF_SONG = range(5)
ROW_TYPES = ("start-of-song", "instrument", "start-of-notes", "note", "end-of-song")
TYPE, BEAT, POSITION, PITCH, DURATION, INSTRUMENT_FIELD = range(6)

# Instrument code -> program it is written with (index 0 unused).
_CODE_PROGRAM = np.array([0] + [INSTRUMENT_PROGRAM[name] for name in INSTRUMENTS], np.int64)


class MMTCodec(Codec):
  """MIDI <-> MMT rows. Options:

  resolution: positions per beat (12 in MMT).
  max_beat: last beat a note may start on (MMT's data uses 1024).
  max_duration: longest duration in positions before snapping (MMT: 384).
  overflow: "error" raises on notes past max_beat; "truncate" drops them.
  velocity, qpm, ticks_per_beat: what decoded MIDI gets (MMT keeps no velocity
    or tempo; the reference writes 100 qpm).
  """

  name = "mmt"

  def __init__(
    self,
    *,
    resolution: int = MMT_RESOLUTION,
    max_beat: int = 1024,
    max_duration: int = 384,
    overflow: str = "error",
    velocity: int = 64,
    qpm: float = 100.0,
    ticks_per_beat: int = 480,
  ):
    for option, value in (
      ("resolution", resolution),
      ("max_beat", max_beat),
      ("max_duration", max_duration),
    ):
      check_limit("mmt", option, value)
    check_overflow_mode("mmt", overflow)
    if ticks_per_beat % resolution:
      raise ConfigError(
        f"mmt: ticks_per_beat ({ticks_per_beat}) must be a multiple of "
        f"resolution ({resolution}) so decoded notes sit on the grid"
      )
    if not 1 <= velocity <= 127 or qpm <= 0:
      raise ConfigError(f"mmt: velocity must be 1..127 and qpm positive; got {velocity}, {qpm}")
    self.resolution = resolution
    self.max_beat = max_beat
    self.max_duration = max_duration
    self.overflow = overflow
    self.velocity = velocity
    self.qpm = qpm
    self.ticks_per_beat = ticks_per_beat
    self.fields = FieldTable(
      [
        Field(
          "type",
          len(ROW_TYPES),
          "row type: " + ", ".join(f"{i}={t}" for i, t in enumerate(ROW_TYPES)),
        ),
        Field("beat", max_beat + 2, "beat of the onset + 1 (0: none)"),
        Field("position", resolution + 1, f"onset within the beat in 1/{resolution} + 1 (0: none)"),
        Field("pitch", 129, "MIDI pitch + 1 (0: none)"),
        Field(
          "duration", len(KNOWN_DURATIONS) + 1, "index + 1 of the nearest known duration (0: none)"
        ),
        Field(
          "instrument", len(INSTRUMENTS) + 1, "MMT instrument + 1, the last one drums (0: none)"
        ),
      ]
    )

  def field_mask_table(self) -> np.ndarray:
    """Fields that mean something per row type (the rest are the code 0, "none"):
    start-of-song, start-of-notes, end-of-song: type only; instrument: type and
    instrument; note: all six.

    The MMT reference's training loss does not mask: it sums, over the six
    fields, `F.cross_entropy` over every position with ignore_index -100, so the
    forced zeros of non-note rows (and padding) count too. Its sampler writes
    those zeros without sampling them (`MusicAutoregressiveWrapper.generate`);
    this table makes the loss agree with the sampler, so a model is neither
    scored nor trained on predicting the filler.
    """
    table = np.zeros((len(ROW_TYPES), self.n_fields), bool)
    table[:, TYPE] = True
    table[INSTRUMENT, INSTRUMENT_FIELD] = True
    table[NOTE, :] = True
    return table

  # -- encoding -----------------------------------------------------------------

  def encode_table(self, table: NoteTable) -> np.ndarray:
    res = self.resolution
    onset = ticks_to_steps_like_muspy(table.onset, table.ticks_per_beat, res)
    offset = ticks_to_steps_like_muspy(table.offset, table.ticks_per_beat, res)
    duration = np.clip(offset - onset, 1, self.max_duration)
    instrument = np.where(
      table.is_drum,
      DRUM_INSTRUMENT_CODE,
      PROGRAM_TO_INSTRUMENT_CODE[table.program.astype(np.int64)],
    )
    known = instrument > 0
    if not known.any():
      raise EmptyMidiError(
        f"{table.source}: none of its {table.num_notes} notes is played by "
        "an instrument MMT knows (programs 76-78, 96-103, 112-116 and "
        "120-127 have none); nothing to encode"
      )
    beat = onset // res
    late = known & (beat > self.max_beat)
    if late.any():
      if self.overflow == "error":
        raise RepresentationOverflowError(
          f"{table.source}: {int(late.sum())} notes start after beat {self.max_beat} (the "
          f"last at beat {int(beat.max())}); raise max_beat, or pass overflow='truncate' "
          "to drop them as the MMT reference does"
        )
      known &= ~late
    notes = np.stack(
      [
        np.full(onset.shape, NOTE),
        beat + 1,
        onset % res + 1,
        table.pitch.astype(np.int64) + 1,
        nearest_index(duration, KNOWN_DURATIONS) + 1,
        instrument,
      ],
      axis=1,
    )[known]
    notes = _unique_rows(notes)
    instruments = np.unique(notes[:, INSTRUMENT_FIELD])
    header = np.zeros((instruments.size + 1, 6), np.int64)
    header[0, TYPE] = START_OF_SONG
    header[1:, TYPE] = INSTRUMENT
    header[1:, INSTRUMENT_FIELD] = instruments
    start_of_notes = np.array([[START_OF_NOTES, 0, 0, 0, 0, 0]], np.int64)
    end_of_song = np.array([[END_OF_SONG, 0, 0, 0, 0, 0]], np.int64)
    return np.concatenate([header, start_of_notes, notes, end_of_song]).astype(np.int32)

  # -- decoding -----------------------------------------------------------------

  def decode_table(self, tokens: np.ndarray, report: DecodeReport) -> NoteTable:
    # Trailing all-zero rows are padding, as in the MMT reference's batches
    # (an all-zero row is also start-of-song, so the first row always stays).
    content = np.flatnonzero(tokens.any(axis=1))
    tokens = tokens[: max(int(content[-1]) + 1 if content.size else 0, min(len(tokens), 1))]
    rows = tokens.shape[0]
    kind = tokens[:, TYPE]
    index = np.arange(rows)
    ends = np.flatnonzero(kind == END_OF_SONG)
    end = ends[0] if ends.size else rows
    starts = np.flatnonzero((kind == START_OF_NOTES) & (index < end))
    notes_from = starts[0] if starts.size else rows
    live = index < end

    problems = [  # (mask of rows, reason), each row counted under its first reason
      (index > end, "after end-of-song"),
      (live & (kind == START_OF_SONG) & (index > 0), "start-of-song after the first row"),
      (live & (kind == START_OF_NOTES) & (index > notes_from), "second start-of-notes"),
      (live & (kind == INSTRUMENT) & (index > notes_from), "instrument row after start-of-notes"),
      (
        live & (kind == INSTRUMENT) & (tokens[:, INSTRUMENT_FIELD] == 0),
        "instrument row without an instrument",
      ),
      (live & (kind == NOTE) & (index < notes_from), "note before start-of-notes"),
      (live & (kind == NOTE) & np.any(tokens[:, BEAT:] == 0, axis=1), "note with an empty field"),
    ]
    if rows and kind[0] != START_OF_SONG:
      report.drop(0, "tokens do not begin with start-of-song", count=0)
    dropped = np.zeros(rows, bool)
    first_bad = []
    for mask, reason in problems:
      mask = mask & ~dropped
      if mask.any():
        first_bad.append((int(np.argmax(mask)), reason, int(mask.sum())))
        dropped |= mask

    candidate = live & (kind == NOTE) & ~dropped
    time = (tokens[:, BEAT] - 1) * self.resolution + (tokens[:, POSITION] - 1)
    time = np.where(candidate, time, -1)
    latest_before = np.maximum.accumulate(np.concatenate([[-1], time[:-1]]))
    backwards = candidate & (time < latest_before)
    if backwards.any():
      first_bad.append(
        (int(np.argmax(backwards)), "note earlier than the note before it", int(backwards.sum()))
      )
    for row, reason, count in sorted(first_bad):
      report.drop(row, reason, count)

    kept = tokens[candidate & ~backwards]
    scale = self.ticks_per_beat // self.resolution
    instrument = kept[:, INSTRUMENT_FIELD]
    onset = ((kept[:, BEAT] - 1) * self.resolution + kept[:, POSITION] - 1) * scale
    notes = np.stack(
      [
        onset,
        onset + KNOWN_DURATIONS[kept[:, DURATION] - 1] * scale,
        kept[:, PITCH] - 1,
        np.full(onset.shape, self.velocity),
        _CODE_PROGRAM[instrument],
        instrument == DRUM_INSTRUMENT_CODE,
        instrument,
      ],
      axis=1,
    )
    return from_notes(
      notes,
      ticks_per_beat=self.ticks_per_beat,
      tempo_ticks=[0],
      tempo_mspq=[round(MICROSECONDS_PER_MINUTE / self.qpm)],
    )


def _unique_rows(rows: np.ndarray) -> np.ndarray:
  """Rows sorted lexicographically with duplicates removed."""
  if rows.shape[0] == 0:
    return rows
  rows = rows[np.lexsort(rows.T[::-1])]
  keep = np.concatenate([[True], np.any(rows[1:] != rows[:-1], axis=1)])
  return rows[keep]
