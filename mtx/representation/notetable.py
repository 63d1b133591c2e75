"""The normalized note table every codec reads and writes.

Two MIDI readers (symusic from a path, miditoolkit objects from the public API)
both produce a `NoteTable`, and codecs never touch a MIDI library themselves.
The table is canonical: notes are sorted, tracks are numbered in a fixed order
and the tempo and time-signature maps are deduplicated, so that two readers that
agree on the music give equal tables (`NoteTable.equals`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

DEFAULT_QPM = 120.0
DEFAULT_MSPQ = 500_000  # microseconds per quarter note at 120 qpm
MICROSECONDS_PER_MINUTE = 60_000_000

NOTE_COLUMNS = ("onset", "offset", "pitch", "velocity", "program", "is_drum", "track")


@dataclasses.dataclass(frozen=True)
class ReadReport:
  """What the MIDI reader could not turn into notes, counted so that a loss is
  never silent.

  `note_ons` counts the note-on events (velocity > 0) in the file's bytes;
  `unreleased` the ones that no note-off (or note-on of velocity 0) of their
  channel and pitch ever ends. symusic, like miditoolkit, drops such a note-on
  (MusPy instead extends it to the end of its track): the table holds
  `note_ons - unreleased` notes. None on a table not read from a file.
  """

  note_ons: int = 0
  unreleased: int = 0


@dataclasses.dataclass(frozen=True, eq=False)
class NoteTable:
  """Notes and the maps that place them in time; all arrays are numpy.

  Times are integer ticks at `ticks_per_beat` (a beat is a quarter note, as in
  the MIDI header). `track` numbers the source tracks 0..n-1 in canonical order.
  Tempo is kept as microseconds per quarter (`tempo_mspq`), the exact integer MIDI
  stores, so no float rounding separates two readers. Sustain holds the raw
  controller-64 events of each track (value >= 64 means pedal down).
  """

  ticks_per_beat: int
  onset: np.ndarray  # (n,) int64 ticks
  offset: np.ndarray  # (n,) int64 ticks, >= onset
  pitch: np.ndarray  # (n,) int16, 0..127
  velocity: np.ndarray  # (n,) int16, 1..127
  program: np.ndarray  # (n,) int16, 0..127 (drums keep their program, usually 0)
  is_drum: np.ndarray  # (n,) bool
  track: np.ndarray  # (n,) int32
  tempo_tick: np.ndarray  # (t,) int64, starts at 0
  tempo_mspq: np.ndarray  # (t,) int64
  ts_tick: np.ndarray  # (s,) int64
  ts_numerator: np.ndarray  # (s,) int16
  ts_denominator: np.ndarray  # (s,) int16
  sustain_tick: np.ndarray  # (p,) int64
  sustain_value: np.ndarray  # (p,) int16
  sustain_track: np.ndarray  # (p,) int32
  source: str = "<memory>"
  read_report: ReadReport | None = None  # set by the file reader

  @property
  def num_notes(self) -> int:
    return int(self.onset.shape[0])

  @property
  def tempo_qpm(self) -> np.ndarray:
    return MICROSECONDS_PER_MINUTE / self.tempo_mspq.astype(np.float64)

  def notes_array(self) -> np.ndarray:
    """(n, 7) int64 array with columns `NOTE_COLUMNS`, handy for comparisons."""
    return np.stack([np.asarray(getattr(self, c), np.int64) for c in NOTE_COLUMNS], axis=1)

  def equals(self, other: NoteTable, *, ignore=()) -> bool:
    """Field-by-field equality; `ignore` names note columns left out."""
    if self.ticks_per_beat != other.ticks_per_beat:
      return False
    keep = [i for i, c in enumerate(NOTE_COLUMNS) if c not in ignore]
    a = _sorted_rows(self.notes_array()[:, keep])
    b = _sorted_rows(other.notes_array()[:, keep])
    if a.shape != b.shape or not np.array_equal(a, b):
      return False
    for name in ("tempo_tick", "tempo_mspq", "ts_tick", "ts_numerator", "ts_denominator"):
      if not np.array_equal(getattr(self, name), getattr(other, name)):
        return False
    return True


def _sorted_rows(rows: np.ndarray) -> np.ndarray:
  if rows.shape[0] == 0:
    return rows
  return rows[np.lexsort(rows.T[::-1])]


def _as(values, dtype) -> np.ndarray:
  return np.asarray(values, dtype=dtype).reshape(-1)


def normalize_tempos(ticks, mspq) -> tuple[np.ndarray, np.ndarray]:
  """Canonical tempo map: sorted, last event wins at a tick, a tempo at tick 0
  (120 qpm when the file sets none before its first note), repeats dropped. A tempo of
  0 microseconds per quarter (an infinite tempo: a damaged file) is dropped, so the
  tempo before it stays in force."""
  ticks = _as(ticks, np.int64)
  mspq = _as(mspq, np.int64)
  valid = mspq > 0
  ticks, mspq = ticks[valid], mspq[valid]
  order = np.argsort(ticks, kind="stable")
  ticks, mspq = ticks[order], mspq[order]
  if ticks.size:
    last_at_tick = np.append(ticks[1:] != ticks[:-1], True)
    ticks, mspq = ticks[last_at_tick], mspq[last_at_tick]
  if not ticks.size or ticks[0] != 0:
    ticks = np.concatenate([[0], ticks])
    mspq = np.concatenate([[DEFAULT_MSPQ], mspq])
  changed = np.concatenate([[True], mspq[1:] != mspq[:-1]])
  return ticks[changed], mspq[changed]


def normalize_time_signatures(ticks, numerators, denominators):
  """Canonical time-signature map: sorted, last wins at a tick, 4/4 at tick 0
  where the file sets nothing there (the MIDI default), repeats dropped."""
  ticks = _as(ticks, np.int64)
  num = _as(numerators, np.int16)
  den = _as(denominators, np.int16)
  order = np.argsort(ticks, kind="stable")
  ticks, num, den = ticks[order], num[order], den[order]
  if ticks.size:
    last_at_tick = np.append(ticks[1:] != ticks[:-1], True)
    ticks, num, den = ticks[last_at_tick], num[last_at_tick], den[last_at_tick]
  if not ticks.size or ticks[0] != 0:
    ticks = np.concatenate([[0], ticks])
    num = np.concatenate([[4], num]).astype(np.int16)
    den = np.concatenate([[4], den]).astype(np.int16)
  changed = np.concatenate([[True], (num[1:] != num[:-1]) | (den[1:] != den[:-1])])
  return ticks[changed], num[changed], den[changed]


def build_note_table(
  *,
  ticks_per_beat: int,
  tracks: list[dict],
  tempo_ticks,
  tempo_mspq,
  ts_ticks,
  ts_numerators,
  ts_denominators,
  source: str = "<memory>",
  read_report: ReadReport | None = None,
) -> NoteTable:
  """Assembles a canonical `NoteTable` from per-track arrays.

  `tracks` holds one dict per source track with keys onset, offset, pitch,
  velocity (arrays), program (int), is_drum (bool), and optionally sustain_tick,
  sustain_value. Tracks without notes are dropped; the rest are numbered by a
  key that does not depend on the reader's track order (drum flag, program,
  first note, note count), and notes are sorted by (onset, track, pitch, offset,
  velocity).
  """
  kept = []
  for t in tracks:
    onset = _as(t["onset"], np.int64)
    if onset.size == 0:
      continue
    offset = np.maximum(_as(t["offset"], np.int64), onset)
    pitch = _as(t["pitch"], np.int16)
    velocity = _as(t["velocity"], np.int16)
    order = np.lexsort((velocity, offset, pitch, onset))
    onset, offset, pitch, velocity = onset[order], offset[order], pitch[order], velocity[order]
    key = (
      bool(t["is_drum"]),
      int(t["program"]),
      int(onset[0]),
      int(pitch[0]),
      onset.size,
      int(offset.sum()),
      int(pitch.astype(np.int64).sum()),
      int(velocity.astype(np.int64).sum()),
    )
    kept.append((key, onset, offset, pitch, velocity, t))
  kept.sort(key=lambda item: item[0])

  cols = {c: [] for c in NOTE_COLUMNS}
  sus_tick, sus_value, sus_track = [], [], []
  for index, (key, onset, offset, pitch, velocity, t) in enumerate(kept):
    n = onset.size
    cols["onset"].append(onset)
    cols["offset"].append(offset)
    cols["pitch"].append(pitch)
    cols["velocity"].append(velocity)
    cols["program"].append(np.full(n, key[1], np.int16))
    cols["is_drum"].append(np.full(n, key[0], bool))
    cols["track"].append(np.full(n, index, np.int32))
    st = _as(t.get("sustain_tick", ()), np.int64)
    sv = _as(t.get("sustain_value", ()), np.int16)
    order = np.argsort(st, kind="stable")
    sus_tick.append(st[order])
    sus_value.append(sv[order])
    sus_track.append(np.full(st.size, index, np.int32))

  dtypes = {
    "onset": np.int64,
    "offset": np.int64,
    "pitch": np.int16,
    "velocity": np.int16,
    "program": np.int16,
    "is_drum": bool,
    "track": np.int32,
  }
  arrays = {
    c: (np.concatenate(v) if v else np.zeros(0, dtypes[c])).astype(dtypes[c])
    for c, v in cols.items()
  }
  order = np.lexsort(
    (arrays["velocity"], arrays["offset"], arrays["pitch"], arrays["track"], arrays["onset"])
  )
  arrays = {c: v[order] for c, v in arrays.items()}

  tempo_tick, mspq = normalize_tempos(tempo_ticks, tempo_mspq)
  ts_tick, ts_num, ts_den = normalize_time_signatures(ts_ticks, ts_numerators, ts_denominators)

  def cat(parts, dtype):
    return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)

  return NoteTable(
    ticks_per_beat=int(ticks_per_beat),
    tempo_tick=tempo_tick,
    tempo_mspq=mspq,
    ts_tick=ts_tick,
    ts_numerator=ts_num,
    ts_denominator=ts_den,
    sustain_tick=cat(sus_tick, np.int64),
    sustain_value=cat(sus_value, np.int16),
    sustain_track=cat(sus_track, np.int32),
    source=source,
    read_report=read_report,
    **arrays,
  )


def from_notes(
  notes: np.ndarray,
  *,
  ticks_per_beat: int,
  tempo_ticks=(0,),
  tempo_mspq=(DEFAULT_MSPQ,),
  ts_ticks=(),
  ts_numerators=(),
  ts_denominators=(),
  source: str = "<memory>",
) -> NoteTable:
  """Builds a table from an (n, 7) array with columns `NOTE_COLUMNS`.

  Codecs decode into this; rows sharing (track, program, is_drum) form one track.
  """
  notes = np.asarray(notes, np.int64).reshape(-1, len(NOTE_COLUMNS))
  tracks = []
  if notes.shape[0]:
    keys = notes[:, [6, 4, 5]]
    for key in np.unique(keys, axis=0):
      rows = notes[np.all(keys == key, axis=1)]
      tracks.append(
        dict(
          onset=rows[:, 0],
          offset=rows[:, 1],
          pitch=rows[:, 2],
          velocity=rows[:, 3],
          program=int(key[1]),
          is_drum=bool(key[2]),
        )
      )
  return build_note_table(
    ticks_per_beat=ticks_per_beat,
    tracks=tracks,
    tempo_ticks=tempo_ticks,
    tempo_mspq=tempo_mspq,
    ts_ticks=ts_ticks,
    ts_numerators=ts_numerators,
    ts_denominators=ts_denominators,
    source=source,
  )
