"""REMI with the multitrack program token of REMI+: one event per token.

REMI (Huang & Yang 2020, "Pop Music Transformer") writes music bar by bar: a
Bar token opens each bar, a Position token places the following events inside
it, and each note is a group of tokens. REMI+ (von Rutte et al. 2023, FIGARO)
adds a Program token in front of every note so that all tracks share one
stream. mtx follows REMI+ with these choices:

- Grid: `resolution` positions per quarter note (12 by default, MMT's grid, so
  16ths and triplets are exact). Onsets round half up to the grid; a duration
  is (quantized offset - quantized onset), at least 1 step, snapped to the
  nearest of MMT's 32 `KNOWN_DURATIONS` (ties to the shorter). A note longer
  than 384 steps (32 beats at 12 per beat) is written 384 steps long.
- Bars follow the file's time signatures through `bars.bar_grid`: signatures
  without a token are read as 4/4 and a change takes effect at the next
  barline. Every bar from the first to the one holding the last onset gets a
  Bar token, empty bars included. A Time-signature token follows the Bar token
  in the first bar and wherever the signature differs from the previous bar's.
- Tempo: 32 bins spaced evenly in log(qpm) from 24 to 320 qpm (bin k is
  24 * (320/24) ** (k/31) qpm; a tempo binned to the nearest in log space,
  tempos outside the range clip to the end bins). Decoding writes bin k as the
  integer microseconds per quarter nearest to that qpm, which bins back to k.
  The initial tempo (the tempo in force at step 0) is written at position 0 of
  the first bar; afterwards a Tempo token appears at the quantized step of each
  tempo change whose bin differs from the current one (several changes on one
  step: the last wins). Tempo changes after the last bar are dropped.
- Notes of all tracks are merged and sorted by (onset step, program code,
  pitch, duration code, velocity bin). Program code is the track's program
  0..127, or 128 for drums (a drum track's own program is lost). Each note is
  Program, Pitch, Velocity (32 Magenta bins), Duration: REMI+'s order, with the
  Program repeated for every note as REMI+ does.
- Per position: Position (when it differs from the previous position in the
  bar, which is always true for the first event of a bar), then the Tempo
  token if the tempo changes there, then the notes.
- Not represented: sustain pedal (ignored: offsets are the written note-offs),
  track identity beyond the program (two tracks with one program merge),
  lyrics, key signatures and other controllers. Overlapping same-pitch notes and
  exact duplicates are all kept, since each note carries its own duration.
- Length: a Bar token for every bar up to the last onset, so a damaged file
  whose one note sits a million beats away would be a million tokens (a
  1.7 KB file took 91 s and 3.5 GiB). Onsets past beat `max_beat` (default
  32,768: 4.5 hours at 120 qpm, seven times the longest file in
  ../shared/midi) raise `RepresentationOverflowError` before any bar is laid
  out, or, with `overflow="truncate"`, are dropped (mmt's rule).

Decoding is tolerant; every dropped token is counted in the report:
- Decoding stops at the first end-of-song; non-pad rows after it are dropped
  ("after end-of-song"). Trailing pads are ignored; a pad before the last
  non-pad row is dropped, and so is a start-of-song that is not row 0. They
  never disturb the note being read.
- Tokens before the first Bar token are dropped. A Time-signature token counts
  only directly after a Bar token (before any Position, Tempo or note of that
  bar); elsewhere, or a second one in the same bar, it is dropped.
- A bar starts at position 0, so notes before its first Position sit at 0. A
  Position backwards in the bar, or past the bar's length, is dropped and the
  position stays where it was: the notes after it land on the last valid
  position.
- A note is complete when Program, Pitch, Velocity and Duration arrive in this
  order. A token out of that order is dropped, and an unfinished note (cut by
  another Program or by any other event) is dropped with all its tokens
  ("incomplete note").
Decoded MIDI has `ticks_per_beat` (480 by default, a multiple of
`resolution`), one track per program code (drums apart, written as program 0;
the writer splits a track into layers where same-pitch notes overlap), the time
signature of the first bar and of each bar where it changes, and the tempo
changes; a tempo map that starts after step 0 gets 120 qpm before it.

`KNOWN_DURATIONS` count steps of the grid: 1/12 beat at the default resolution
(another resolution keeps the 32 step counts, not their lengths in beats).
"""

from __future__ import annotations

import numpy as np

from mtx.errors import EmptyMidiError, RepresentationOverflowError
from mtx.representation import bars
from mtx.representation.codec import (
  Codec,
  DecodeReport,
  check_grid,
  check_limit,
  check_overflow_mode,
  song_rows,
)
from mtx.representation.fields import (
  KNOWN_DURATIONS,
  EventKind,
  EventVocabulary,
  Field,
  FieldTable,
  bin_to_velocity,
  velocity_to_bin,
)
from mtx.representation.notetable import MICROSECONDS_PER_MINUTE, NoteTable, from_notes
from mtx.representation.quantize import nearest_index, ticks_to_steps

NUM_TEMPO_BINS = 32
MIN_QPM = 24.0
MAX_QPM = 320.0
NUM_VELOCITY_BINS = 32
NUM_PROGRAMS = 129  # 0..127 and 128 for drums
DRUM_PROGRAM_CODE = 128
DEFAULT_MAX_BEAT = 32_768

# Order of the event types that share one step (the encoder's sort key).
_BAR, _TIME_SIGNATURE, _POSITION, _TEMPO, _NOTE = range(5)


def qpm_to_tempo_bin(qpm) -> np.ndarray:
  """Nearest of the log-spaced tempo bins; tempos outside the range clip."""
  qpm = np.clip(np.asarray(qpm, np.float64), MIN_QPM, MAX_QPM)
  scaled = np.log(qpm / MIN_QPM) / np.log(MAX_QPM / MIN_QPM) * (NUM_TEMPO_BINS - 1)
  return np.clip(np.rint(scaled).astype(np.int64), 0, NUM_TEMPO_BINS - 1)


def tempo_bin_to_mspq(tempo_bin) -> np.ndarray:
  """Microseconds per quarter of a bin's qpm, as the integer MIDI stores."""
  fraction = np.asarray(tempo_bin, np.float64) / (NUM_TEMPO_BINS - 1)
  qpm = MIN_QPM * (MAX_QPM / MIN_QPM) ** fraction
  return np.rint(MICROSECONDS_PER_MINUTE / qpm).astype(np.int64)


class RemiCodec(Codec):
  """REMI+ tokens: one field, `event`, laid out by `self.vocab`."""

  name = "remi"

  def __init__(
    self,
    resolution: int = 12,
    ticks_per_beat: int = 480,
    max_beat: int = DEFAULT_MAX_BEAT,
    overflow: str = "error",
  ):
    check_grid("remi", resolution, ticks_per_beat, "positions")
    check_limit("remi", "max_beat", max_beat)
    check_overflow_mode("remi", overflow)
    self.max_beat = int(max_beat)
    self.overflow = overflow
    self.resolution = int(resolution)
    self.ticks_per_beat = int(ticks_per_beat)
    self.vocab = EventVocabulary(
      [
        EventKind("pad", 1, "padding"),
        EventKind("start-of-song", 1, "first token of a sequence"),
        EventKind("end-of-song", 1, "last token of a sequence"),
        EventKind("bar", 1, "start of the next bar"),
        EventKind(
          "time-signature",
          len(bars.TIME_SIGNATURES),
          "signature of this bar, index into bars.TIME_SIGNATURES",
        ),
        EventKind(
          "position",
          bars.max_bar_steps(self.resolution),
          f"steps (1/{self.resolution} beat) since the bar start",
        ),
        EventKind("tempo", NUM_TEMPO_BINS, f"log-spaced tempo bin, {MIN_QPM:g}..{MAX_QPM:g} qpm"),
        EventKind("program", NUM_PROGRAMS, "program of the next note; 128 = drums"),
        EventKind("pitch", 128, "MIDI pitch"),
        EventKind("velocity", NUM_VELOCITY_BINS, "velocity bin (Magenta's 32 bins)"),
        EventKind(
          "duration",
          len(KNOWN_DURATIONS),
          "index into fields.KNOWN_DURATIONS (in steps of the grid)",
        ),
      ]
    )
    self.fields = FieldTable(
      [Field("event", self.vocab.size, "REMI+ event: " + ", ".join(self.vocab.names))]
    )

  # ---- encoding -------------------------------------------------------------

  def encode_table(self, table: NoteTable) -> np.ndarray:
    if table.num_notes == 0:
      raise EmptyMidiError(
        f"{table.source}: the MIDI file holds no notes; there is "
        "nothing to encode: drop it from the corpus."
      )
    res, tpb, vocab = self.resolution, table.ticks_per_beat, self.vocab
    onset = ticks_to_steps(table.onset, tpb, res)
    offset = ticks_to_steps(table.offset, tpb, res)
    duration = nearest_index(np.maximum(offset - onset, 1), KNOWN_DURATIONS)
    program = np.where(table.is_drum, DRUM_PROGRAM_CODE, table.program.astype(np.int64))
    pitch = table.pitch.astype(np.int64)
    velocity = velocity_to_bin(table.velocity, NUM_VELOCITY_BINS)
    late = onset // res > self.max_beat  # before bar_grid: its bars grow with the last onset
    if late.any():
      if self.overflow == "error":
        raise RepresentationOverflowError(
          f"{table.source}: {int(late.sum())} notes start after beat {self.max_beat:,} "
          f"(the last at beat {int(onset.max()) // res:,}); raise max_beat for a piece this "
          "long, or pass overflow='truncate' to drop them (a damaged file often holds one "
          "note far away in time: check it)"
        )
      if late.all():
        raise EmptyMidiError(
          f"{table.source}: every note starts after beat "
          f"{self.max_beat:,} (max_beat); nothing is left to encode"
        )
      onset, duration, program = onset[~late], duration[~late], program[~late]
      pitch, velocity = pitch[~late], velocity[~late]
    order = np.lexsort((velocity, duration, pitch, program, onset))
    onset, program, pitch = onset[order], program[order], pitch[order]
    velocity, duration = velocity[order], duration[order]

    bar_start, bar_ts = bars.bar_grid(table, res, int(onset[-1]))
    bar_end = bar_start[-1] + bars.bar_steps(int(bar_ts[-1]), res)
    tempo_step, tempo_bin = self._tempo_events(table, bar_end)

    # Every token gets a sort key (step, event type, rank within its type).
    ts_changed = np.concatenate([[True], bar_ts[1:] != bar_ts[:-1]])
    content_step = np.unique(np.concatenate([onset, tempo_step]))
    bar_of_content = np.searchsorted(bar_start, content_step, side="right") - 1
    note_tokens = np.stack(
      [
        vocab.offset("program") + program,
        vocab.offset("pitch") + pitch,
        vocab.offset("velocity") + velocity,
        vocab.offset("duration") + duration,
      ],
      axis=1,
    )
    n = onset.size
    parts = [  # (step, type, rank, token)
      (bar_start, _BAR, 0, np.full(bar_start.size, vocab.offset("bar"))),
      (
        bar_start[ts_changed],
        _TIME_SIGNATURE,
        0,
        vocab.offset("time-signature") + bar_ts[ts_changed],
      ),
      (
        content_step,
        _POSITION,
        0,
        vocab.offset("position") + content_step - bar_start[bar_of_content],
      ),
      (tempo_step, _TEMPO, 0, vocab.offset("tempo") + tempo_bin),
      (np.repeat(onset, 4), _NOTE, np.arange(4 * n), note_tokens.reshape(-1)),
    ]
    step = np.concatenate([p[0] for p in parts])
    kind = np.concatenate([np.full(p[0].size, p[1]) for p in parts])
    rank = np.concatenate([np.broadcast_to(p[2], p[0].shape) for p in parts])
    tokens = np.concatenate([p[3] for p in parts])
    body = tokens[np.lexsort((rank, kind, step))]
    return np.concatenate(
      [[vocab.token("start-of-song")], body, [vocab.token("end-of-song")]]
    ).astype(np.int64)[:, None]

  def _tempo_events(self, table: NoteTable, end_step: int):
    """(steps, bins) of the tempo changes to write: the tempo at step 0, then
    each step before `end_step` where the binned tempo changes."""
    step = ticks_to_steps(table.tempo_tick, table.ticks_per_beat, self.resolution)
    tempo_bin = qpm_to_tempo_bin(table.tempo_qpm)
    last_at_step = np.append(step[1:] != step[:-1], True)  # tempo_tick is sorted
    step, tempo_bin = step[last_at_step], tempo_bin[last_at_step]
    keep = step < end_step
    step, tempo_bin = step[keep], tempo_bin[keep]
    changed = np.concatenate([[True], tempo_bin[1:] != tempo_bin[:-1]])
    return step[changed], tempo_bin[changed]

  # ---- decoding -------------------------------------------------------------

  def decode_table(self, tokens: np.ndarray, report: DecodeReport) -> NoteTable:
    return _RemiDecoder(self).run(tokens[:, 0], report)


class _RemiDecoder:
  """The tolerant state machine that reads one token sequence."""

  def __init__(self, codec: RemiCodec):
    self.res = codec.resolution
    self.ticks_per_step = codec.ticks_per_beat // codec.resolution
    self.ticks_per_beat = codec.ticks_per_beat
    self.vocab = codec.vocab

  def run(self, events: np.ndarray, report: DecodeReport) -> NoteTable:
    rows, kinds, values = song_rows(self.vocab, events, report)
    bar_start = -1  # step of the current bar's start; -1 before the first Bar
    bar_ts = bars.DEFAULT_TS_INDEX
    ts_open = False  # a Time-signature token may still set this bar's signature
    position = 0
    note_rows: list[int] = []  # rows of the note being read
    note_values: list[int] = []
    notes, tempos, signatures = [], [], []  # (step, ...) rows

    def drop_note():
      if note_rows:
        report.drop(note_rows[0], "incomplete note", count=len(note_rows))
        note_rows.clear()
        note_values.clear()

    for row, kind, value in zip(rows.tolist(), kinds.tolist(), values.tolist()):
      name = self.vocab.names[kind]
      if name in _NOTE_ORDER:
        expected = len(note_values)
        if name == "program":
          drop_note()
        elif _NOTE_ORDER[name] != expected:
          report.drop(row, f"{name} out of note order")
          continue
        if bar_start < 0:
          report.drop(row, "note before the first bar")
          continue
        ts_open = False
        note_rows.append(row)
        note_values.append(value)
        if len(note_values) == 4:
          notes.append((bar_start + position, *note_values))
          note_rows.clear()
          note_values.clear()
        continue
      drop_note()
      if name == "bar":
        if bar_start < 0:
          bar_start = 0
        else:
          bar_start += bars.bar_steps(bar_ts, self.res)
        position = 0
        ts_open = True
        if not signatures:
          signatures.append((bar_start, bar_ts))
      elif bar_start < 0:
        report.drop(row, f"{name} before the first bar")
      elif name == "time-signature":
        if not ts_open:
          report.drop(row, "time-signature inside a bar")
          continue
        ts_open = False
        bar_ts = value
        if signatures[-1][1] != value:  # in bar 0 it follows the default (last wins)
          signatures.append((bar_start, value))
      elif name == "position":
        if value < position or value >= bars.bar_steps(bar_ts, self.res):
          report.drop(row, "position backwards or past the bar end")
          continue
        ts_open = False
        position = value
      elif name == "tempo":
        ts_open = False
        tempos.append((bar_start + position, value))
    drop_note()
    return self._table(notes, tempos, signatures)

  def _table(self, notes, tempos, signatures) -> NoteTable:
    tps = self.ticks_per_step
    rows = np.asarray(notes, np.int64).reshape(-1, 5)
    step, program, pitch, velocity, duration = rows.T
    onset = step * tps
    is_drum = program == DRUM_PROGRAM_CODE
    notes_array = np.stack(
      [
        onset,
        onset + KNOWN_DURATIONS[duration] * tps,
        pitch,
        bin_to_velocity(velocity, NUM_VELOCITY_BINS),
        np.where(is_drum, 0, program),
        is_drum,
        program,
      ],
      axis=1,
    )
    tempo = np.asarray(tempos, np.int64).reshape(-1, 2)
    ts = np.asarray(signatures, np.int64).reshape(-1, 2)
    numerators = [bars.TIME_SIGNATURES[i][0] for i in ts[:, 1]]
    denominators = [bars.TIME_SIGNATURES[i][1] for i in ts[:, 1]]
    return from_notes(
      notes_array,
      ticks_per_beat=self.ticks_per_beat,
      tempo_ticks=tempo[:, 0] * tps,
      tempo_mspq=tempo_bin_to_mspq(tempo[:, 1]),
      ts_ticks=ts[:, 0] * tps,
      ts_numerators=numerators,
      ts_denominators=denominators,
    )


_NOTE_ORDER = {"program": 0, "pitch": 1, "velocity": 2, "duration": 3}
