"""MMM's MultiTrack representation: tracks one after another, bar by bar.

MMM (Ens & Pasquier 2020, "MMM: Exploring Conditional Multi-Track Music
Generation with the Transformer") writes a piece as a sequence of tracks, each
a sequence of bars of note-on / note-off / time-shift events, so that a model
can be asked for one track given the others. It is the MMT paper's second
baseline. mtx follows its MultiTrack layout with these choices:

- Grid: `resolution` steps per quarter note (12 by default, MMT's grid, so 16ths
  and triplets are exact; a multiple of 4 so every bar is whole). Onsets and
  offsets round half up to the grid; a note lasts at least one step.
- Velocity is not represented (as in MMM); decoded notes get `velocity` (64).
  Tempo is not represented either (decoded MIDI is 120 qpm). Sustain pedal is
  ignored: offsets are the written note-offs. Key signatures, lyrics and other
  controllers are dropped.
- Tracks: one MMM track per source track (a track of the `NoteTable`: one
  program, drum flag apart). Each is Track-start, Instrument (the program
  0..127, or 128 for drums: a drum track's own program is lost), its bars,
  Track-end. MMM's note-density token and its bar/track infilling tokens are
  not produced (they are conditioning controls, not music).
- Track order: the canonical order that `notetable.from_notes` gives the
  *quantized* tracks (drum flag, program, first note, ...), which is the order
  the decoder's table will have. This is the source table's order except where
  quantization changes the key of two tracks of one program (e.g. their first
  notes round to the same step); writing the decoded order makes
  `encode(decode(encode(m))) == encode(m)` hold exactly.
- Bars follow the file's time signatures through `bars.bar_grid` (signatures
  without a token are read as 4/4; a change takes effect at the next barline).
  Every track holds every bar of the piece, from step 0 to the bar holding the
  last offset of any note, empty bars included: Bar-start ... Bar-end.
  mtx's addition: a Time-signature token follows Bar-start in a track's first
  bar and in every bar whose signature differs from the previous bar's (MMM
  assumed 4/4 throughout).
- Inside a bar, events go in time order; at one step note-offs come first
  (ascending pitch), then note-ons (ascending pitch). A Time-shift token of
  1..max bar length steps (8 beats) moves time forward within the bar; a bar
  starts at its first step and Bar-end moves to the next bar's start, so no
  time-shift is written to reach the bar end unless a note-off sits there.
  A note-on belongs to the bar where it starts (start <= onset < end); a
  note-off to the bar where it ends (start < offset <= end), so a note that
  crosses barlines has its note-off in a later bar (as MMM does), and a note
  ending on a barline ends at the end of the earlier bar.
- Same-pitch notes of one track: notes of one (track, pitch) that start on one
  step are all kept (MMM writes one note-on each, as MidiTok's MMM and mtx's
  REMI keep them: fast repeated notes quantize onto one step, 13.6% of the
  Mahler symphony's notes), each with its own note-off; their note-offs are
  interchangeable, since the notes share pitch and onset. A note still sounding
  when its pitch starts again on a later step ends there, which keeps note-off
  pairing unambiguous. A note that quantizes to zero length lasts one step.
- Length: every track holds every bar up to the last offset, so rows grow with
  length x tracks, and a damaged file whose one note ends a million beats away
  would be millions of rows (a 61-byte file made 22 million). Notes sounding
  past beat `max_beat` (default 32,768: 4.5 hours at 120 qpm, seven times the
  longest file in ../shared/midi) raise `RepresentationOverflowError` before
  any bar is laid out; with `overflow="truncate"` notes that start after it are
  dropped and the others end at its end (mmt's rule). Within it a note may span
  any number of bars.

Decoding is tolerant; every dropped row is counted in the report:
- Decoding stops at the first end-of-song; non-pad rows after it are dropped
  ("after end-of-song"). Trailing pads are ignored; a pad before the last
  non-pad row is dropped, and so is a start-of-song that is not row 0.
- Events outside a track (Track-end, Instrument, Bar-start with no open track)
  and events outside a bar (notes, time-shifts, Bar-end before the track's
  first Bar-start or between Bar-end and the next Bar-start) are dropped.
- Instrument counts once per track, before its first bar; elsewhere dropped. A
  track with no Instrument token plays program 0.
- A Time-signature token counts only directly after Bar-start; elsewhere
  dropped. A bar without one keeps the previous bar's signature in that track
  (4/4 for a track's first bar).
- A Time-shift past the bar's end is dropped (time stays where it was).
- Note-offs pair with an open note-on of their pitch in the track; a note-off
  with none open is dropped. A note-on of a pitch that is already sounding
  closes the sounding notes at that step (not counted: no row is lost), unless
  they started on this very step: then it is one more note of that onset. A
  note-off on its note-on's step is dropped (a note lasts at least one step;
  the note sounds on until a later note-off).
- A Bar-start while a bar is open ends that bar first, and a Track-start while a
  track is open ends that track first (not counted). Notes still sounding when
  their track ends (Track-end, a new Track-start, end-of-song or the end of the
  tokens) end at that time, at least one step after their onset (not counted:
  the note is kept).
Decoded MIDI has `ticks_per_beat` (480 by default, a multiple of
`resolution`), one track per MMM track that holds notes, with its program
(drums: is_drum, program 0), the time signatures of the first track that has a
bar (where its Time-signature tokens are), and the default tempo.
"""

from __future__ import annotations

import numpy as np

from mtx.errors import ConfigError, EmptyMidiError, RepresentationOverflowError
from mtx.representation import bars
from mtx.representation.codec import (
  Codec,
  DecodeReport,
  check_grid,
  check_limit,
  check_overflow_mode,
  song_rows,
)
from mtx.representation.fields import EventKind, EventVocabulary, Field, FieldTable
from mtx.representation.notetable import NoteTable, from_notes
from mtx.representation.quantize import ticks_to_steps

NUM_INSTRUMENTS = 129  # programs 0..127 and 128 for drums
DRUM_INSTRUMENT = 128
DEFAULT_MAX_BEAT = 32_768


class MMMCodec(Codec):
  """MMM MultiTrack tokens: one field, `event`, laid out by `self.vocab`."""

  name = "mmm"

  def __init__(
    self,
    resolution: int = 12,
    ticks_per_beat: int = 480,
    velocity: int = 64,
    max_beat: int = DEFAULT_MAX_BEAT,
    overflow: str = "error",
  ):
    check_grid("mmm", resolution, ticks_per_beat, "steps")
    if not 1 <= velocity <= 127:
      raise ConfigError(
        f"mmm velocity (given to every decoded note) must be in 1..127; got {velocity}"
      )
    check_limit("mmm", "max_beat", max_beat)
    check_overflow_mode("mmm", overflow)
    self.max_beat = int(max_beat)
    self.overflow = overflow
    self.resolution = int(resolution)
    self.ticks_per_beat = int(ticks_per_beat)
    self.velocity = int(velocity)
    self.vocab = EventVocabulary(
      [
        EventKind("pad", 1, "padding"),
        EventKind("start-of-song", 1, "first token of a sequence (MMM's PIECE_START)"),
        EventKind("end-of-song", 1, "last token of a sequence"),
        EventKind("track-start", 1, "a track begins"),
        EventKind("track-end", 1, "the track ends"),
        EventKind("instrument", NUM_INSTRUMENTS, "the track's program; 128 = drums"),
        EventKind("bar-start", 1, "the track's next bar begins"),
        EventKind("bar-end", 1, "the bar ends; time moves to the next bar's start"),
        EventKind(
          "time-signature",
          len(bars.TIME_SIGNATURES),
          "signature of this bar, index into bars.TIME_SIGNATURES",
        ),
        EventKind("note-on", 128, "a note of this pitch starts"),
        EventKind("note-off", 128, "the sounding note of this pitch ends"),
        EventKind(
          "time-shift",
          bars.max_bar_steps(self.resolution),
          f"value v: time moves v + 1 steps (1/{self.resolution} beat)",
        ),
      ]
    )
    self.fields = FieldTable(
      [Field("event", self.vocab.size, "MMM event: " + ", ".join(self.vocab.names))]
    )

  # ---- encoding -------------------------------------------------------------

  def encode_table(self, table: NoteTable) -> np.ndarray:
    if table.num_notes == 0:
      raise EmptyMidiError(
        f"{table.source}: the MIDI file holds no notes; there is "
        "nothing to encode: drop it from the corpus."
      )
    res, vocab = self.resolution, self.vocab
    notes = quantized_notes(table, res, self.velocity)
    limit = (self.max_beat + 1) * res  # the end of beat max_beat, in steps
    if int(notes.offset.max()) > limit:  # checked before bar_grid lays out the bars
      if self.overflow == "error":
        late = int(np.count_nonzero(notes.offset > limit))
        raise RepresentationOverflowError(
          f"{table.source}: {late} notes sound past beat {self.max_beat:,} (the last ends "
          f"in beat {(int(notes.offset.max()) - 1) // res:,}); raise max_beat for a piece "
          "this long, or pass overflow='truncate' to drop the notes after it and end the "
          "others there (a damaged file often holds one note far away in time: check it)"
        )
      notes = quantized_notes(table, res, self.velocity, limit_step=limit)
    on, off = notes.onset, notes.offset
    pitch, track = notes.pitch.astype(np.int64), notes.track.astype(np.int64)
    _, first_row = np.unique(track, return_index=True)  # tracks are 0..num_tracks-1
    num_tracks = first_row.size
    instrument = np.where(
      notes.is_drum[first_row], DRUM_INSTRUMENT, notes.program[first_row].astype(np.int64)
    )

    bar_start, bar_ts = bars.bar_grid(table, res, int(off.max()) - 1)
    num_bars = bar_start.size
    ts_changed = np.flatnonzero(np.concatenate([[True], bar_ts[1:] != bar_ts[:-1]]))

    # Note events: offs (kind 0) before ons (kind 1) at one step.
    n = on.size
    ev_track = np.concatenate([track, track])
    ev_kind = np.repeat([0, 1], n)
    ev_pitch = np.concatenate([pitch, pitch])
    ev_bar = np.concatenate(
      [
        np.searchsorted(bar_start, off, side="left") - 1,
        np.searchsorted(bar_start, on, side="right") - 1,
      ]
    )
    ev_pos = np.concatenate([off, on]) - bar_start[ev_bar]
    order = np.lexsort((ev_pitch, ev_kind, ev_pos, ev_bar, ev_track))
    ev_track, ev_kind, ev_pitch = ev_track[order], ev_kind[order], ev_pitch[order]
    ev_bar, ev_pos = ev_bar[order], ev_pos[order]
    ev_token = ev_pitch + np.where(ev_kind == 1, vocab.offset("note-on"), vocab.offset("note-off"))
    same_bar = np.zeros(2 * n, bool)
    same_bar[1:] = (ev_track[1:] == ev_track[:-1]) & (ev_bar[1:] == ev_bar[:-1])
    previous_pos = np.where(same_bar, np.concatenate([[0], ev_pos[:-1]]), 0)
    shift = ev_pos - previous_pos
    shifted = shift > 0
    rank = np.arange(2 * n)

    # Every token gets a sort key (track, bar, slot, rank): (track, bar, slot)
    # packed in one int64, the rank beside it; the track header sorts as bar -1
    # and Track-end as bar num_bars.
    def key(track, bar, slot, rank=0):
      major = (track * (num_bars + 2) + bar + 1) * 4 + slot
      return np.stack(np.broadcast_arrays(major, rank), axis=-1).reshape(-1, 2)

    tracks = np.arange(num_tracks)
    every_bar = (tracks[:, None], np.arange(num_bars)[None, :])
    bar_keys = key(*every_bar, 0)
    ts_keys = key(tracks[:, None], ts_changed[None, :], 1)
    parts = [  # (sort keys, tokens)
      (key(tracks, -1, 0), np.full(num_tracks, vocab.offset("track-start"))),
      (key(tracks, -1, 1), vocab.offset("instrument") + instrument),
      (bar_keys, np.full(len(bar_keys), vocab.offset("bar-start"))),
      (ts_keys, np.tile(vocab.offset("time-signature") + bar_ts[ts_changed], num_tracks)),
      (
        key(ev_track, ev_bar, 2, 2 * rank)[shifted],
        vocab.offset("time-shift") + shift[shifted] - 1,
      ),
      (key(ev_track, ev_bar, 2, 2 * rank + 1), ev_token),
      (key(*every_bar, 3), np.full(len(bar_keys), vocab.offset("bar-end"))),
      (key(tracks, num_bars, 0), np.full(num_tracks, vocab.offset("track-end"))),
    ]
    keys = np.concatenate([p[0] for p in parts])
    body = np.concatenate([p[1] for p in parts])[np.lexsort((keys[:, 1], keys[:, 0]))]
    return np.concatenate(
      [[vocab.token("start-of-song")], body, [vocab.token("end-of-song")]]
    ).astype(np.int64)[:, None]

  # ---- decoding -------------------------------------------------------------

  def decode_table(self, tokens: np.ndarray, report: DecodeReport) -> NoteTable:
    return _MMMDecoder(self).run(tokens[:, 0], report)


def quantized_notes(
  table: NoteTable, resolution: int, velocity: int, limit_step: int | None = None
) -> NoteTable:
  """The notes as MMM can hold them, as a table whose ticks are steps.

  Onsets and offsets round to the grid and notes last at least one step; with
  `limit_step`, notes starting at or after it are dropped and the others end
  there at the latest. In one (track, pitch), every note ends at the latest on
  the next later onset, so notes of one pitch never overlap except those that
  start together, which are all kept. Drum tracks get program 0, as decoded. The
  table is rebuilt by `from_notes`, so its track numbers are the canonical order
  the decoder's table will have. Raises `EmptyMidiError` when the limit leaves
  no note.
  """
  tpb = table.ticks_per_beat
  on = ticks_to_steps(table.onset, tpb, resolution)
  off = np.maximum(ticks_to_steps(table.offset, tpb, resolution), on + 1)
  pitch = table.pitch.astype(np.int64)
  track = table.track.astype(np.int64)
  is_drum = table.is_drum
  program = np.where(is_drum, 0, table.program)  # as decoded: drums are program 0
  if limit_step is not None:
    keep = on < limit_step
    if not keep.any():
      raise EmptyMidiError(
        f"{table.source}: every note starts after the limit of "
        f"{limit_step // resolution:,} beats (max_beat); nothing is left "
        "to encode"
      )
    on, off, pitch, track = on[keep], np.minimum(off[keep], limit_step), pitch[keep], track[keep]
    is_drum, program = is_drum[keep], program[keep]
  order = np.lexsort((off, on, pitch, track))
  on, off, pitch, track = on[order], off[order], pitch[order], track[order]
  is_drum, program = is_drum[order], program[order]
  # Groups of notes of one voice (track, pitch) and onset; each group ends at
  # the latest where the voice's next group starts.
  new_voice = np.concatenate([[True], (track[1:] != track[:-1]) | (pitch[1:] != pitch[:-1])])
  new_group = new_voice | np.concatenate([[True], on[1:] != on[:-1]])
  group = np.cumsum(new_group) - 1
  first = np.flatnonzero(new_group)
  next_in_voice = np.append(~new_voice[first[1:]], False)
  group_end = np.where(next_in_voice, np.append(on[first[1:]], 0), np.iinfo(np.int64).max)
  off = np.minimum(off, group_end[group])
  notes = np.stack([on, off, pitch, np.full(on.size, velocity), program, is_drum, track], axis=1)
  return from_notes(notes, ticks_per_beat=resolution, source=table.source)


class _MMMDecoder:
  """The tolerant state machine that reads one token sequence."""

  def __init__(self, codec: MMMCodec):
    self.res = codec.resolution
    self.ticks_per_step = codec.ticks_per_beat // codec.resolution
    self.ticks_per_beat = codec.ticks_per_beat
    self.velocity = codec.velocity
    self.vocab = codec.vocab

  def run(self, events: np.ndarray, report: DecodeReport) -> NoteTable:
    rows, kinds, values = song_rows(self.vocab, events, report)
    self.notes = []  # (onset step, offset step, pitch, instrument, track)
    self.signatures = None  # (step, ts index) of the first track with a bar
    self.num_tracks = 0
    self.in_track = False
    for row, kind, value in zip(rows.tolist(), kinds.tolist(), values.tolist()):
      name = self.vocab.names[kind]
      if name == "track-start":
        self._end_track()
        self._start_track()
      elif not self.in_track:
        report.drop(row, f"{name} outside a track")
      else:
        self._track_event(row, name, value, report)
    self._end_track()
    return self._table()

  def _start_track(self):
    self.in_track = True
    self.track = self.num_tracks
    self.num_tracks += 1
    self.instrument = None
    self.open_notes = {}  # pitch -> [onset step, notes of that onset still sounding]
    self.ts = bars.DEFAULT_TS_INDEX
    self.next_bar = 0  # start step of the track's next bar
    self.in_bar = False
    self.had_bar = False
    self.track_signatures = []

  def _end_track(self):
    if not self.in_track:
      return
    now = self.bar_start + self.pos if self.in_bar else self.next_bar
    for pitch, (onset, count) in self.open_notes.items():
      for _ in range(count):
        self._add_note(onset, now, pitch)
    if self.had_bar and self.signatures is None:
      self.signatures = self.track_signatures
    self.in_track = False

  def _end_bar(self):
    self.next_bar = self.bar_start + self.bar_len
    self.in_bar = False

  def _add_note(self, onset, offset, pitch):
    instrument = 0 if self.instrument is None else self.instrument
    self.notes.append((onset, max(offset, onset + 1), pitch, instrument, self.track))

  def _track_event(self, row, name, value, report):
    if name == "track-end":
      self._end_track()
    elif name == "instrument":
      if self.instrument is not None or self.had_bar:
        report.drop(row, "instrument repeated or after the track's first bar")
      else:
        self.instrument = value
    elif name == "bar-start":
      if self.in_bar:
        self._end_bar()
      self.in_bar = self.had_bar = self.ts_open = True
      self.bar_start, self.pos = self.next_bar, 0
      self.bar_len = bars.bar_steps(self.ts, self.res)
    elif not self.in_bar:
      report.drop(row, f"{name} outside a bar")
    elif name == "bar-end":
      self._end_bar()
    elif name == "time-signature":
      if not self.ts_open:
        report.drop(row, "time-signature not right after bar-start")
        return
      self.ts_open = False
      self.ts = value
      self.bar_len = bars.bar_steps(value, self.res)
      self.track_signatures.append((self.bar_start, value))
    else:
      self.ts_open = False
      self._bar_event(row, name, value, report)

  def _bar_event(self, row, name, value, report):
    now = self.bar_start + self.pos
    if name == "time-shift":
      if self.pos + value + 1 > self.bar_len:
        report.drop(row, "time-shift past the bar end")
      else:
        self.pos += value + 1
    elif name == "note-on":
      sounding = self.open_notes.get(value)
      if sounding is not None and sounding[0] == now:
        sounding[1] += 1  # one more note of this onset
        return
      if sounding is not None:
        for _ in range(sounding[1]):
          self._add_note(sounding[0], now, value)
      self.open_notes[value] = [now, 1]
    else:  # note-off
      sounding = self.open_notes.get(value)
      if sounding is None:
        report.drop(row, "note-off without a sounding note")
      elif sounding[0] == now:
        report.drop(row, "note-off on its note-on's step")
      else:
        self._add_note(sounding[0], now, value)
        sounding[1] -= 1
        if not sounding[1]:
          del self.open_notes[value]

  def _table(self) -> NoteTable:
    tps = self.ticks_per_step
    rows = np.asarray(self.notes, np.int64).reshape(-1, 5)
    onset, offset, pitch, instrument, track = rows.T
    is_drum = instrument == DRUM_INSTRUMENT
    notes = np.stack(
      [
        onset * tps,
        offset * tps,
        pitch,
        np.full(onset.size, self.velocity),
        np.where(is_drum, 0, instrument),
        is_drum,
        track,
      ],
      axis=1,
    )
    ts = np.asarray(self.signatures or [], np.int64).reshape(-1, 2)
    return from_notes(
      notes,
      ticks_per_beat=self.ticks_per_beat,
      ts_ticks=ts[:, 0] * tps,
      ts_numerators=[bars.TIME_SIGNATURES[i][0] for i in ts[:, 1]],
      ts_denominators=[bars.TIME_SIGNATURES[i][1] for i in ts[:, 1]],
    )
