"""Music metrics of note tables and of sets of them, on MMT's evaluation grid.

The per-file metrics are `note_metrics.file_metrics` (MusPy 0.5.0's definitions,
vectorized, and mtx's own), named and defined in `metric_glossary`; both are importable
from here, the module the evaluator, the bench and a notebook use.

MusPy counts in ticks: beats are `resolution` ticks, MMT's evaluation measures at 12 per
beat, 4/4 measures of 48 ticks, after trimming to 64 beats. So the evaluator first puts
samples and ground truth on one grid: `trim(at_resolution(table, 12), 64)`, as MMT's
`evaluate.py` does (`adjust_resolution(12)` when converting, `music.trim(12 * 64)`).
A set of files is summarized per metric as MMT's `evaluate.py` reports it
(`summarize`); `to_muspy_music` and `muspy_metrics` are the bridge to MusPy's own
functions, which the tests and the bench compare against.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from mtx.errors import ConfigError
from mtx.evaluate.metric_glossary import (
  METRIC_DEFINITIONS,
  METRIC_NAMES,
  METRIC_UNITS,
  MUSPY_METRICS,
)
from mtx.evaluate.note_metrics import (
  BEATS_PER_ASSUMED_MEASURE,
  POLYPHONY_THRESHOLD,
  file_metrics,
  groove_consistency_meter,
  measure_starts,
)
from mtx.representation.fields import MMT_RESOLUTION  # MMT measures at 12 ticks per beat
from mtx.representation.notetable import (
  MICROSECONDS_PER_MINUTE,
  NoteTable,
  normalize_tempos,
  normalize_time_signatures,
)

__all__ = [
  "BEATS_PER_ASSUMED_MEASURE",
  "METRIC_DEFINITIONS",
  "METRIC_NAMES",
  "METRIC_UNITS",
  "MMT_RESOLUTION",
  "MMT_TRIM_BEATS",
  "MUSPY_METRICS",
  "POLYPHONY_THRESHOLD",
  "at_resolution",
  "file_metrics",
  "groove_consistency_meter",
  "measure_starts",
  "muspy_metrics",
  "segment",
  "set_metrics",
  "summarize",
  "to_muspy_music",
  "trim",
]

MMT_TRIM_BEATS = 64  # MMT's evaluation trims samples and ground truth to 64 beats


# ---- grid and trimming -------------------------------------------------------------


def at_resolution(table: NoteTable, resolution: int) -> NoteTable:
  """The table with every time re-expressed at `resolution` ticks per beat.

  As MusPy's `adjust_resolution(target)`: t' = round(t * resolution / ticks_per_beat) in
  float64 with Python's rounding (halves to even), for onsets and offsets alike, so a
  note's new duration is round(offset * f) - round(onset * f). A note that becomes zero
  ticks long is kept (MusPy keeps it; MMT's converter sets such durations to 1 afterwards,
  mtx's metrics take the table as it is). Tempo, time-signature and sustain ticks are
  scaled the same way; events that land on one tick keep the last, as the table's maps do.
  """
  if not isinstance(resolution, (int, np.integer)) or resolution < 1:
    raise ConfigError(
      f"at_resolution: resolution {resolution!r} is not a positive integer "
      "number of ticks per beat; pass e.g. 12."
    )
  factor = int(resolution) / table.ticks_per_beat

  def scale(ticks: np.ndarray) -> np.ndarray:
    return np.rint(ticks * factor).astype(np.int64)

  tempo_tick, ts_tick = scale(table.tempo_tick), scale(table.ts_tick)
  tempo_mspq, ts_num, ts_den = table.tempo_mspq, table.ts_numerator, table.ts_denominator
  if not _is_strictly_increasing(tempo_tick):  # events met on one tick: the map's rules
    tempo_tick, tempo_mspq = normalize_tempos(tempo_tick, tempo_mspq)
  if not _is_strictly_increasing(ts_tick):
    ts_tick, ts_num, ts_den = normalize_time_signatures(ts_tick, ts_num, ts_den)
  onset = scale(table.onset)
  # Rounding keeps the onsets' order; only notes whose onsets now tie may need reordering.
  new_ties = (onset[1:] == onset[:-1]) & (table.onset[1:] != table.onset[:-1])
  return _with_notes(
    table,
    onset,
    scale(table.offset),
    None,
    resort=bool(new_ties.any()),
    ticks_per_beat=int(resolution),
    tempo_tick=tempo_tick,
    tempo_mspq=tempo_mspq,
    ts_tick=ts_tick,
    ts_numerator=ts_num,
    ts_denominator=ts_den,
    sustain_tick=scale(table.sustain_tick),
  )


def _is_strictly_increasing(ticks: np.ndarray) -> bool:
  return bool(np.all(ticks[1:] > ticks[:-1]))


def trim(table: NoteTable, beats: int) -> NoteTable:
  """The table cut at `beats` beats, as MusPy's `Music.trim(resolution * beats)`.

  With end = ticks_per_beat * beats: notes with onset >= end are dropped, offsets past end
  are set to end (a note across the cut keeps its head); tempo, time-signature and
  sustain events at or after end are dropped.
  """
  if not isinstance(beats, (int, np.integer)) or beats < 0:
    raise ConfigError(
      f"trim: beats {beats!r} is not a non-negative integer; pass the "
      f"number of beats to keep, e.g. {MMT_TRIM_BEATS}."
    )
  end = table.ticks_per_beat * int(beats)
  tempos = table.tempo_tick < end
  signatures = table.ts_tick < end
  pedal = table.sustain_tick < end
  kept = table.onset < end
  cut = table.offset > end
  return _with_notes(
    table,
    table.onset,
    np.minimum(table.offset, end),
    kept,
    resort=bool(cut.any()),
    tempo_tick=table.tempo_tick[tempos],
    tempo_mspq=table.tempo_mspq[tempos],
    ts_tick=table.ts_tick[signatures],
    ts_numerator=table.ts_numerator[signatures],
    ts_denominator=table.ts_denominator[signatures],
    sustain_tick=table.sustain_tick[pedal],
    sustain_value=table.sustain_value[pedal],
    sustain_track=table.sustain_track[pedal],
  )


def segment(table: NoteTable, start_beat: int, beats: int) -> NoteTable:
  """The notes starting in beats [start_beat, start_beat + beats), moved to start at 0 and
  cut at the segment's end (as `trim`): how a long sample is measured along its length.
  Tempo and time-signature maps are reset to the ones in force at the segment's start."""
  if not isinstance(start_beat, (int, np.integer)) or start_beat < 0:
    raise ConfigError(f"segment: start beat {start_beat!r} is not a non-negative integer")
  shift = table.ticks_per_beat * int(start_beat)
  kept = table.onset >= shift
  tempo = max(int(np.searchsorted(table.tempo_tick, shift, side="right")) - 1, 0)
  signature = max(int(np.searchsorted(table.ts_tick, shift, side="right")) - 1, 0)
  moved = _with_notes(
    table,
    table.onset - shift,
    table.offset - shift,
    kept,
    resort=False,
    tempo_tick=np.zeros(1, np.int64),
    tempo_mspq=table.tempo_mspq[tempo : tempo + 1],
    ts_tick=np.zeros(min(table.ts_tick.size, 1), np.int64),
    ts_numerator=table.ts_numerator[signature : signature + 1],
    ts_denominator=table.ts_denominator[signature : signature + 1],
    sustain_tick=table.sustain_tick[:0],
    sustain_value=table.sustain_value[:0],
    sustain_track=table.sustain_track[:0],
  )
  return trim(moved, beats)


def _with_notes(
  table: NoteTable,
  onset: np.ndarray,
  offset: np.ndarray,
  keep: np.ndarray | None,
  *,
  resort: bool,
  **changes,
) -> NoteTable:
  """`table` with new note times, the rows in `keep` only (all where None), and `changes`
  to its other fields; sorted again into the canonical order (onset, track, pitch,
  offset, velocity) where `resort` says the new times may have broken it."""
  columns = dict(
    onset=onset,
    offset=offset,
    pitch=table.pitch,
    velocity=table.velocity,
    program=table.program,
    is_drum=table.is_drum,
    track=table.track,
  )
  if keep is not None:
    columns = {name: values[keep] for name, values in columns.items()}
  if resort:
    order = np.lexsort(
      (columns["velocity"], columns["offset"], columns["pitch"], columns["track"], columns["onset"])
    )
    columns = {name: values[order] for name, values in columns.items()}
  return dataclasses.replace(table, **columns, **changes)


# ---- sets of files -------------------------------------------------------------------


def summarize(values: Sequence[float]) -> dict:
  """Mean and spread of one metric over a set of files, as MMT's `evaluate.py` reports
  them: mean = np.nanmean, std = np.nanstd (population std, ddof 0), both over the values
  that are not NaN. `count` is the number of those values (every metric here is finite
  or NaN), `nan` the number of NaN ones. With no values left, mean and std are NaN."""
  values = np.asarray(values, np.float64).reshape(-1)
  missing = np.isnan(values)
  present = values[~missing]
  if present.size == 0:
    return {"mean": math.nan, "std": math.nan, "count": 0, "nan": int(missing.sum())}
  return {
    "mean": float(np.nanmean(values)),
    "std": float(np.nanstd(values)),
    "count": int(present.size),
    "nan": int(missing.sum()),
  }


def set_metrics(tables: Sequence[NoteTable]) -> tuple[list[dict[str, float]], dict[str, dict]]:
  """`file_metrics` of every table, and `summarize` of each metric over the set."""
  per_file = [file_metrics(table) for table in tables]
  summary = {name: summarize([values[name] for values in per_file]) for name in METRIC_NAMES}
  return per_file, summary


# ---- MusPy, the reference -------------------------------------------------------------


def to_muspy_music(table: NoteTable):
  """A `muspy.Music` holding the table's notes: one Track per `track` number with its
  program and drum flag, the tempo and time-signature maps, at the table's resolution.
  The bridge the tests and the bench measure MusPy's own metrics through (MusPy is not a
  dependency of mtx: imported here)."""
  import muspy

  notes = table.notes_array()
  tracks = []
  for track in np.unique(table.track).tolist():
    rows = notes[notes[:, 6] == track]
    tracks.append(
      muspy.Track(
        program=int(rows[0, 4]),
        is_drum=bool(rows[0, 5]),
        notes=[
          muspy.Note(time=onset, pitch=pitch, duration=offset - onset, velocity=velocity)
          for onset, offset, pitch, velocity in rows[:, :4].tolist()
        ],
      )
    )
  return muspy.Music(
    resolution=int(table.ticks_per_beat),
    tracks=tracks,
    tempos=[
      muspy.Tempo(time=int(t), qpm=MICROSECONDS_PER_MINUTE / float(m))
      for t, m in zip(table.tempo_tick, table.tempo_mspq)
    ],
    time_signatures=[
      muspy.TimeSignature(time=int(t), numerator=int(n), denominator=int(d))
      for t, n, d in zip(table.ts_tick, table.ts_numerator, table.ts_denominator)
    ],
  )


def muspy_metrics(music) -> dict[str, float]:
  """MusPy 0.5.0's own functions for the names in `MUSPY_METRICS`, called as
  `file_metrics` matches them; NaN where MusPy raises (a Music without tracks: `max()` of
  an empty sequence in its length-based metrics)."""
  import muspy

  measure_ticks = BEATS_PER_ASSUMED_MEASURE * music.resolution
  calls = {
    "pitch_class_entropy": muspy.pitch_class_entropy,
    "pitch_entropy": muspy.pitch_entropy,
    "scale_consistency": muspy.scale_consistency,
    "groove_consistency": lambda m: muspy.groove_consistency(m, measure_ticks),
    "polyphony": muspy.polyphony,
    "polyphony_rate": muspy.polyphony_rate,
    "pitch_range": muspy.pitch_range,
    "n_pitches_used": muspy.n_pitches_used,
    "n_pitch_classes_used": muspy.n_pitch_classes_used,
    "empty_beat_rate": muspy.empty_beat_rate,
    "empty_measure_rate": lambda m: muspy.empty_measure_rate(m, measure_ticks),
    "drum_pattern_consistency": muspy.drum_pattern_consistency,
    "drum_in_pattern_rate": lambda m: muspy.drum_in_pattern_rate(m, "duple"),
  }
  values = {}
  for name, call in calls.items():
    try:
      values[name] = float(call(music))
    except ValueError:
      values[name] = math.nan
  return values
