"""The performance representation of PerformanceRNN and Music Transformer.

One token per event (Oore et al. 2018; Huang et al. 2019, as Magenta's
note_seq `Performance` encodes MAESTRO): note-on and note-off of each of the
128 pitches, time-shifts of 10 ms to 1 s, and velocity changes in 32 bins.
Time is absolute (seconds, not beats), so expressive timing and tempo survive
exactly to 10 ms, and the model never sees a bar or a beat.

Vocabulary (one field, `event`; the default options give 391 ids):

    pad 1 | start-of-song 1 | end-of-song 1 | note-on 128 | note-off 128 |
    time-shift max_shift_steps (value k: advance k + 1 steps) |
    velocity num_velocity_bins (value b: the following note-ons get
    `bin_to_velocity(b)`)

Encoding, in this order:
1. Drum notes are dropped (the representation has one pitched instrument);
   a file holding only drums raises `EmptyMidiError`. All other tracks are
   merged into one piano part: programs are not kept.
2. The sustain pedal (controller 64) of each track lengthens that track's
   notes as in Magenta's data pipeline (`sustain.apply_sustain`), unless
   `sustain=False`. A note sustained to the end of the piece ends at the last
   note-off or pedal event of the pitched tracks (drum tracks' pedals are
   ignored, with their notes).
3. Times go to seconds through the tempo map and to the nearest step of
   1/steps_per_second s (halves up). The rounding is done in exact integer
   arithmetic (ticks x microseconds per quarter), so a time that falls exactly
   between two steps rounds the same way on every platform. A note whose end
   rounds onto its start lasts one step, as in note_seq.
4. One sounding note per pitch (a piano key cannot sound twice): notes of one
   pitch starting at the same step collapse to one (the longest, then the
   loudest), and a note still sounding when its pitch is struck again ends
   there. This is what makes every note-off name exactly one note.
5. Events at each step: note-offs (ascending pitch), then note-ons (ascending
   pitch; note_seq orders the note-ons of one step by their unquantized start
   time instead, so two notes 3 ms apart may be written in the other order),
   each note-on preceded by a velocity event when its bin differs
   from the previous note-on's (the first note-on always has one). A gap
   longer than max_shift_steps is several time-shifts, the longest first.
   The sequence starts at time 0 (leading silence is encoded) and ends at the
   last note-off, between start-of-song and end-of-song.

Length: any pitch, velocity and time has a token, so the only limit is how
long the music lasts, checked on the notes in steps before a single token is
made (a gap costs one time-shift per second: a 68-byte damaged file whose
times reach 12 years became 375 million tokens). `max_seconds` (default 4
hours, 14,400 s: six times the longest file in ../shared/midi, 42 minutes of
Mahler, and far past any MAESTRO performance) bounds the last note-off, sustain
included. Past it, `overflow="error"` (the
default) raises `RepresentationOverflowError`; `overflow="truncate"` keeps the
start: notes that begin at or after the limit are dropped and the others end
there at the latest. Cropping a long piece into training windows is the data
pipeline's job. What is lost: timing below 10 ms, velocity within a bin,
programs, drums, pedal events (folded into durations) and overlaps of one
pitch.

Decoding writes one piano track (program 0) with 1000 ticks per beat at 60
qpm, so one tick is one millisecond and a step is a whole number of ticks;
velocities are the bins' lowest values. It is tolerant:
- a note-off of a pitch that is not sounding is dropped (counted);
- a note-on of a pitch already sounding first ends the sounding note there;
  if that note started at the same step, the two collapse as in encoding and
  the one lost is counted;
- a note-on before any velocity event gets the bin of velocity 100 (note_seq's
  default velocity);
- a note that starts and ends at one step lasts one step;
- notes still sounding at end-of-song (or at the end of the tokens) end at
  the final time, at least one step after their start; they are kept and not
  counted, so that a sample cut short still decodes;
- rows after the first end-of-song, pads before the trailing padding, and a
  start-of-song after the first row are counted as dropped.
Time-shifts only move forward, so time cannot go backwards.
"""

from __future__ import annotations

import numpy as np

from mtx.errors import ConfigError, EmptyMidiError, RepresentationOverflowError
from mtx.representation.codec import (
  Codec,
  DecodeReport,
  check_limit,
  check_overflow_mode,
  song_rows,
)
from mtx.representation.fields import (
  EventKind,
  EventVocabulary,
  Field,
  FieldTable,
  bin_to_velocity,
  velocity_to_bin,
)
from mtx.representation.notetable import NoteTable, from_notes
from mtx.representation.sustain import apply_sustain

NUM_PITCHES = 128
DECODE_TICKS_PER_BEAT = 1000
DECODE_MSPQ = 1_000_000  # 60 qpm: with 1000 ticks per beat, one tick is 1 ms
DEFAULT_VELOCITY = 100  # note_seq's velocity for note-ons without a velocity event
DEFAULT_MAX_SECONDS = 4 * 3600

# Kind indices in the vocabulary, in id order.
PAD, START, END, NOTE_ON, NOTE_OFF, TIME_SHIFT, VELOCITY = range(7)


class PerformanceCodec(Codec):
  """MIDI <-> Music Transformer performance events (see the module docstring)."""

  name = "performance"

  def __init__(
    self,
    *,
    steps_per_second: int = 100,
    max_shift_steps: int = 100,
    num_velocity_bins: int = 32,
    sustain: bool = True,
    max_seconds: int = DEFAULT_MAX_SECONDS,
    overflow: str = "error",
  ):
    _check_options(steps_per_second, max_shift_steps, num_velocity_bins)
    check_limit("performance", "max_seconds", max_seconds)
    check_overflow_mode("performance", overflow)
    self.max_seconds = int(max_seconds)
    self.overflow = overflow
    self.steps_per_second = int(steps_per_second)
    self.max_shift_steps = int(max_shift_steps)
    self.num_velocity_bins = int(num_velocity_bins)
    self.sustain = bool(sustain)
    self.ticks_per_step = 1000 // self.steps_per_second  # in decoded (1 ms) ticks
    step_ms = 1000 // self.steps_per_second
    self.vocab = EventVocabulary(
      [
        EventKind("pad", 1, "padding; ignored"),
        EventKind("start-of-song", 1, "first token of every sequence"),
        EventKind("end-of-song", 1, "last token; decoding stops here"),
        EventKind("note-on", NUM_PITCHES, "start a note of this MIDI pitch"),
        EventKind("note-off", NUM_PITCHES, "end the sounding note of this MIDI pitch"),
        EventKind(
          "time-shift", self.max_shift_steps, f"value k: move time forward (k + 1) x {step_ms} ms"
        ),
        EventKind("velocity", self.num_velocity_bins, "velocity bin of the following note-ons"),
      ]
    )
    self.fields = FieldTable([Field("event", self.vocab.size, "one performance event")])
    self._default_bin = int(velocity_to_bin(DEFAULT_VELOCITY, self.num_velocity_bins))

  # ---- encoding -------------------------------------------------------------

  def encode_table(self, table: NoteTable) -> np.ndarray:
    onset, offset, pitch, velocity = self.performance_notes(table)
    bins = velocity_to_bin(velocity, self.num_velocity_bins)
    return self._events_to_tokens(onset, offset, pitch, bins)[:, None]

  def performance_notes(self, table: NoteTable):
    """The notes the tokens will hold, in steps: (onset, offset, pitch, velocity).

    Drums dropped, sustain applied, times quantized, one note per pitch at a
    time; sorted by (onset, pitch)."""
    pitched = ~table.is_drum
    if not pitched.any():
      raise EmptyMidiError(
        f"{table.source}: every note is a drum note, and the performance "
        "representation drops drums; there is nothing to encode: drop the file or "
        "choose a representation with drums (mmt, remi, mmm)."
      )
    onset, offset = table.onset[pitched], table.offset[pitched]
    pitch, velocity = table.pitch[pitched], table.velocity[pitched]
    if self.sustain and table.sustain_tick.size:
      track = table.track[pitched]
      pedal = np.isin(table.sustain_track, track)
      offset, keep = apply_sustain(
        onset,
        offset,
        pitch,
        track,
        table.sustain_tick[pedal],
        table.sustain_value[pedal],
        table.sustain_track[pedal],
      )
      onset, offset, pitch, velocity = onset[keep], offset[keep], pitch[keep], velocity[keep]
    on, off = ticks_to_time_steps(np.stack([onset, offset]), table, self.steps_per_second)
    off = np.maximum(off, on + 1)
    on, off, pitch, velocity = self._within_limit(table, on, off, pitch, velocity)
    on, off, pitch, velocity, _ = one_note_per_pitch(on, off, pitch, velocity)
    return on, off, pitch, velocity

  def _within_limit(self, table: NoteTable, on, off, pitch, velocity):
    """The notes inside `max_seconds`, or `RepresentationOverflowError`: checked
    here, on one number per note, before the tokens (whose count grows with the
    length in seconds) exist."""
    limit = self.max_seconds * self.steps_per_second
    end = int(off.max(initial=0))
    if end <= limit:
      return on, off, pitch, velocity
    if self.overflow == "error":
      raise RepresentationOverflowError(
        f"{table.source}: the music lasts {end / self.steps_per_second:,.0f} s (to its last "
        f"note-off{', sustain pedal included' if self.sustain else ''}), past "
        f"max_seconds={self.max_seconds:,}; raise max_seconds for a piece this long, or "
        "pass overflow='truncate' to keep its start (a damaged file often holds one note "
        "far away in time: check it)"
      )
    keep = on < limit
    if not keep.any():
      raise EmptyMidiError(
        f"{table.source}: every note starts after max_seconds="
        f"{self.max_seconds:,}; nothing is left to encode"
      )
    return on[keep], np.minimum(off[keep], limit), pitch[keep], velocity[keep]

  def _events_to_tokens(self, onset, offset, pitch, bins) -> np.ndarray:
    """Token ids (vectorized): shifts, velocity and the event, per note event."""
    vocab = self.vocab
    n = onset.size
    time = np.concatenate([offset, onset])
    is_on = np.concatenate([np.zeros(n, bool), np.ones(n, bool)])
    event_pitch = np.concatenate([pitch, pitch]).astype(np.int64)
    event_bin = np.concatenate([np.full(n, -1, np.int64), bins])
    order = np.lexsort((event_pitch, is_on, time))
    time, is_on, event_pitch, event_bin = (
      time[order],
      is_on[order],
      event_pitch[order],
      event_bin[order],
    )

    on_bins = event_bin[is_on]
    new_bin = np.ones(on_bins.size, bool)
    new_bin[1:] = on_bins[1:] != on_bins[:-1]
    needs_velocity = np.zeros(time.size, bool)
    needs_velocity[is_on] = new_bin

    gap = np.diff(time, prepend=0)
    shifts = -(-gap // self.max_shift_steps)  # time-shift tokens before each event
    length = shifts + needs_velocity + 1
    start = 1 + np.cumsum(length) - length  # row 0 is start-of-song
    tokens = np.empty(int(length.sum()) + 2, np.int64)
    tokens[0] = vocab.token("start-of-song")
    tokens[-1] = vocab.token("end-of-song")

    shift_rows = np.repeat(start - np.cumsum(shifts) + shifts, shifts) + np.arange(
      int(shifts.sum())
    )
    tokens[shift_rows] = vocab.offset("time-shift") + self.max_shift_steps - 1
    has_shift = shifts > 0
    last_shift = gap - (shifts - 1) * self.max_shift_steps  # 1..max_shift_steps
    tokens[(start + shifts - 1)[has_shift]] = vocab.offset("time-shift") + last_shift[has_shift] - 1
    velocity_rows = (start + shifts)[needs_velocity]
    tokens[velocity_rows] = vocab.offset("velocity") + event_bin[needs_velocity]
    event_kind = np.where(is_on, vocab.offset("note-on"), vocab.offset("note-off"))
    tokens[start + shifts + needs_velocity] = event_kind + event_pitch
    return tokens

  # ---- decoding -------------------------------------------------------------

  def decode_table(self, tokens: np.ndarray, report: DecodeReport) -> NoteTable:
    rows, kinds, values = song_rows(self.vocab, tokens[:, 0], report)

    time, current_bin = 0, self._default_bin
    sounding = {}  # pitch -> (onset step, velocity bin, row of its note-on)
    notes = []  # (onset, offset, pitch, bin, row)
    for row, kind, value in zip(rows.tolist(), kinds.tolist(), values.tolist()):
      if kind == TIME_SHIFT:
        time += value + 1
      elif kind == NOTE_ON:
        if value in sounding:
          start, b, on_row = sounding[value]
          notes.append((start, time, value, b, on_row))
        sounding[value] = (time, current_bin, row)
      elif kind == NOTE_OFF:
        if value in sounding:
          start, b, on_row = sounding.pop(value)
          notes.append((start, time, value, b, on_row))
        else:
          report.drop(row, "note-off of a pitch that is not sounding")
      elif kind == VELOCITY:
        current_bin = value
    for pitch, (start, b, on_row) in sounding.items():
      notes.append((start, time, pitch, b, on_row))

    rows = np.array(notes, np.int64).reshape(-1, 5)
    onset = rows[:, 0]
    offset = np.maximum(rows[:, 1], onset + 1)
    onset, offset, pitch, bins, kept = one_note_per_pitch(onset, offset, rows[:, 2], rows[:, 3])
    lost = np.setdiff1d(np.arange(rows.shape[0]), kept)
    for row in np.sort(rows[lost, 4]).tolist():
      report.drop(row, "note-on of a pitch already struck at the same time")

    velocity = bin_to_velocity(bins, self.num_velocity_bins)
    zeros = np.zeros(onset.size, np.int64)
    table = np.stack(
      [
        onset * self.ticks_per_step,
        offset * self.ticks_per_step,
        pitch,
        velocity,
        zeros,
        zeros,
        zeros,
      ],
      axis=1,
    )
    return from_notes(
      table, ticks_per_beat=DECODE_TICKS_PER_BEAT, tempo_ticks=(0,), tempo_mspq=(DECODE_MSPQ,)
    )


def _check_options(steps_per_second, max_shift_steps, num_velocity_bins) -> None:
  if (
    not isinstance(steps_per_second, (int, np.integer))
    or steps_per_second < 1
    or 1000 % steps_per_second
  ):
    raise ConfigError(
      f"performance: steps_per_second={steps_per_second!r} must be a whole divisor of "
      "1000 (e.g. 100 for 10 ms steps) so that decoded steps fall on 1 ms ticks"
    )
  if not isinstance(max_shift_steps, (int, np.integer)) or max_shift_steps < 1:
    raise ConfigError(f"performance: max_shift_steps={max_shift_steps!r} must be an integer >= 1")
  if (
    not isinstance(num_velocity_bins, (int, np.integer))
    or not 1 <= num_velocity_bins <= 127
    or bin_to_velocity(num_velocity_bins - 1, num_velocity_bins) > 127
  ):
    raise ConfigError(
      f"performance: num_velocity_bins={num_velocity_bins!r} must be in 1..127 with "
      "every bin holding a MIDI velocity (e.g. 32, 64, 127; not 100)"
    )


def ticks_to_time_steps(ticks, table: NoteTable, steps_per_second: int) -> np.ndarray:
  """Ticks -> the nearest step of 1/steps_per_second s, halves up, exactly.

  The same as rounding `quantize.ticks_to_seconds(...) * steps_per_second`,
  but in integers: time in (ticks x microseconds per quarter) units is exact,
  so a time exactly halfway between two steps (common: 384 ticks per beat at
  120 qpm puts tick 96 at 12.5 steps) does not depend on float rounding.
  """
  ticks = np.asarray(ticks, np.int64)
  tempo_tick = table.tempo_tick.astype(np.int64)
  mspq = table.tempo_mspq.astype(np.int64)
  bound = (int(ticks.max(initial=0)) + 1) * (int(mspq.max()) + 1) * 2 * steps_per_second
  if bound >= 2**62:  # a pathological tempo map: compute with Python integers
    ticks, tempo_tick, mspq = (a.astype(object) for a in (ticks, tempo_tick, mspq))
  segment_units = np.diff(tempo_tick) * mspq[:-1]
  start_units = np.concatenate([np.zeros(1, segment_units.dtype), np.cumsum(segment_units)])
  segment = np.searchsorted(table.tempo_tick, np.asarray(ticks, np.int64), side="right") - 1
  units = start_units[segment] + (ticks - tempo_tick[segment]) * mspq[segment]
  per_second = 1_000_000 * int(table.ticks_per_beat)  # units in one second
  return np.asarray((2 * units * steps_per_second + per_second) // (2 * per_second), np.int64)


def one_note_per_pitch(onset, offset, pitch, velocity):
  """Notes with at most one sounding per pitch, sorted by (onset, pitch).

  Notes of one pitch with the same onset collapse to the longest (then the
  loudest); a note still sounding at the next onset of its pitch ends there.
  Requires offset > onset. Returns (onset, offset, pitch, velocity, kept):
  `kept` indexes the input notes that survive, in output order."""
  onset, offset = np.asarray(onset, np.int64), np.asarray(offset, np.int64)
  pitch, velocity = np.asarray(pitch, np.int64), np.asarray(velocity, np.int64)
  order = np.lexsort((-velocity, -offset, onset, pitch))
  first = np.ones(order.size, bool)
  first[1:] = (pitch[order][1:] != pitch[order][:-1]) | (onset[order][1:] != onset[order][:-1])
  kept = order[first]
  onset, offset, pitch, velocity = onset[kept], offset[kept].copy(), pitch[kept], velocity[kept]
  struck_again = pitch[1:] == pitch[:-1]
  offset[:-1] = np.where(struck_again, np.minimum(offset[:-1], onset[1:]), offset[:-1])
  by_time = np.lexsort((pitch, onset))
  return (onset[by_time], offset[by_time], pitch[by_time], velocity[by_time], kept[by_time])
