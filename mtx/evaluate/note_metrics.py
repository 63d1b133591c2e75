"""Per-file music metrics of a `NoteTable`: MusPy 0.5.0's definitions, vectorized.

MusPy's metrics (`muspy/metrics/metrics.py`) are the field's reference, and what the
MMT paper reports, but they loop over notes, beats and 24 scales in Python. Here each is
a few numpy passes over the table's columns that give the same value (the tests compare
every metric with MusPy's own function on a real corpus), plus mtx's own: a groove
consistency that follows the file's time signatures, and plain counts. The names, their
definitions and units are `metric_glossary`'s; the grid the tables are put on first,
and the sets, `music_metrics`'.

Notation in the definitions: a note is [onset, offset) in ticks, r = ticks per beat,
"pitched" notes are those of non-drum tracks, and `length` is the largest offset of any
note (drums included), as MusPy's `max(track.get_end_time())`.

Where MusPy's code departs from its docstrings, mtx follows the code (the values must be
equal), and says so in `METRIC_DEFINITIONS`:
- `polyphony_rate` counts steps with more than 2 pitches on (MusPy's `threshold=2` with
  `>`), not "multiple" pitches.
- `pitch_range` of a table holding only drum notes is 0 - 127 = -127 (MusPy starts the
  highest pitch at 0 and the lowest at 127 and never updates them).
- Beat and measure occupancy (`empty_beat_rate`, `empty_measure_rate`) counts drums, and a
  note marks every unit from onset // unit to offset // unit inclusive: a note ending on a
  beat line also marks the next beat, a zero-length note marks its own.
- A table with no notes makes MusPy's Music without tracks, on which its length-based
  metrics raise (`max()` of an empty sequence); mtx gives NaN there, as MMT's
  `evaluate.py` does for an empty sample.
"""

from __future__ import annotations

import math

import numpy as np

from mtx.representation.notetable import NoteTable

BEATS_PER_ASSUMED_MEASURE = 4  # MusPy's measure_resolution = 4 * resolution: one 4/4 meter
POLYPHONY_THRESHOLD = 2  # MusPy's polyphony_rate default: steps with more than 2 pitches

_MAJOR = np.array([1, 0, 1, 0, 1, 1, 0, 1, 0, 1, 0, 1], bool)
_MINOR = np.array([1, 0, 1, 1, 0, 1, 0, 1, 1, 0, 1, 0], bool)
# (24, 12): MusPy's order, major roots 0..11 then minor roots 0..11.
_SCALES = np.stack(
  [np.roll(_MAJOR, root) for root in range(12)] + [np.roll(_MINOR, root) for root in range(12)]
).astype(np.int64)


def file_metrics(table: NoteTable) -> dict[str, float]:
  """Every metric of `METRIC_NAMES` for one table, as floats (NaN where undefined).

  Each MusPy metric equals `muspy.<name>(music)` on the Music holding the same notes
  (`to_muspy_music`), with groove_consistency and empty_measure_rate at
  measure_resolution 4 * ticks_per_beat and drum_in_pattern_rate at meter "duple"; where
  MusPy raises (a table without notes) the value is NaN. Counts are floats too, so that
  a set of files summarizes uniformly.
  """
  resolution = table.ticks_per_beat
  onset = np.asarray(table.onset, np.int64)
  offset = np.asarray(table.offset, np.int64)
  is_drum = np.asarray(table.is_drum, bool)
  num_notes = int(onset.shape[0])
  # None: MusPy's Music has no track and its length-based metrics raise.
  length = int(offset.max()) if num_notes else None
  pitch = np.asarray(table.pitch, np.int64)
  if is_drum.any():
    pitched = ~is_drum
    pitch, pitched_onset, pitched_offset = pitch[pitched], onset[pitched], offset[pitched]
    drum_onset = onset[is_drum]
  else:
    pitched_onset, pitched_offset, drum_onset = onset, offset, onset[:0]
  measure_ticks = BEATS_PER_ASSUMED_MEASURE * resolution

  onsets = _distinct_sorted(onset)
  groove = _groove_consistency_constant(onsets, length, measure_ticks)
  meter_ticks = _constant_measure_ticks(table)
  if meter_ticks == measure_ticks:
    groove_meter = groove  # the same measures: one definition, computed once
  elif meter_ticks is not None:
    groove_meter = _groove_consistency_constant(onsets, length, meter_ticks)
  else:
    groove_meter = _groove_consistency_meter(table, onsets, length)
  pitch_counts = np.bincount(pitch, minlength=132)
  class_counts = pitch_counts.reshape(11, 12).sum(axis=0)
  pitch_counts = pitch_counts[:128]
  class_entropy, pitch_entropy = _entropies(class_counts, pitch_counts)
  empty_beats, empty_measures = _empty_rates(
    onset, offset, length, resolution, BEATS_PER_ASSUMED_MEASURE
  )
  cells, any_ticks, crowded_ticks = _pianoroll_counts(pitched_onset, pitched_offset, pitch)
  duple, triple = _drum_pattern_rates(drum_onset, resolution)
  metrics = {
    "pitch_class_entropy": class_entropy,
    "pitch_entropy": pitch_entropy,
    "scale_consistency": _scale_consistency(class_counts),
    "groove_consistency": groove,
    "groove_consistency_meter": groove_meter,
    "polyphony": cells / any_ticks if any_ticks else math.nan,
    "polyphony_rate": crowded_ticks / length if length else math.nan,
    "pitch_range": _pitch_range(pitch, num_notes),
    "n_pitches_used": float(np.count_nonzero(pitch_counts)),
    "n_pitch_classes_used": float(np.count_nonzero(class_counts)),
    "empty_beat_rate": empty_beats,
    "empty_measure_rate": empty_measures,
    "drum_pattern_consistency": duple if math.isnan(duple) else max(duple, triple),
    "drum_in_pattern_rate": duple,
    "notes_per_beat": num_notes / (length / resolution) if length else math.nan,
    "mean_duration_beats": (
      (int(offset.sum()) - int(onset.sum())) / num_notes / resolution if num_notes else math.nan
    ),
    "n_instruments": float(
      np.count_nonzero(
        np.bincount(np.asarray(table.program, np.int64) * 2 + is_drum, minlength=256)
      )
    ),
    "n_notes": float(num_notes),
  }
  return {name: float(value) for name, value in metrics.items()}


def _entropies(class_counts: np.ndarray, pitch_counts: np.ndarray) -> tuple[float, float]:
  """MusPy's `_entropy` of the pitch-class and the pitch histograms, term for term (the
  same float results): -nansum(p log2 p), its NaN terms (0 log 0) 0 here outright, each
  sum over the same vector in the same order. Both histograms count the same notes."""
  total = int(pitch_counts.sum())
  if total < 1:
    return math.nan, math.nan
  prob = np.concatenate([class_counts, pitch_counts]) / total
  terms = prob * np.log2(prob, out=np.zeros_like(prob), where=prob > 0)
  return float(-np.sum(terms[:12])), float(-np.sum(terms[12:]))


def _scale_consistency(class_counts: np.ndarray) -> float:
  total = int(class_counts.sum())
  if total < 1:
    return math.nan
  return float(np.max(_SCALES @ class_counts) / total)


def _pitch_range(pitch: np.ndarray, num_notes: int) -> float:
  if num_notes == 0:
    return 0.0
  if pitch.size == 0:
    return 0.0 - 127.0  # MusPy's highest = 0, lowest = 127, untouched
  return float(pitch.max() - pitch.min())


def _is_sorted(values: np.ndarray) -> bool:
  return bool(np.all(values[1:] >= values[:-1]))


def _distinct_sorted(values: np.ndarray) -> np.ndarray:
  """np.unique(values), without its sort where the values are sorted already (a
  canonical table's onsets are)."""
  if not _is_sorted(values):
    values = np.sort(values)
  keep = np.empty(values.size, bool)
  keep[:1] = True
  np.not_equal(values[1:], values[:-1], out=keep[1:])
  return values[keep]


def _empty_rates(
  onset, offset, length: int | None, beat_ticks: int, beats_per_measure: int
) -> tuple[float, float]:
  """MusPy's empty_beat_rate and empty_measure_rate (measures of `beats_per_measure`
  beats): 1 - covered / (length // unit + 1), a note covering units onset // unit to
  offset // unit inclusive. Beats are counted on a difference array; a measure is covered
  where one of its beats is, since floor division nests (t // 4r = (t // r) // 4).
  Ticks are non-negative, as in MIDI."""
  if length is None or length < 1:
    return math.nan, math.nan
  n_beats = length // beat_ticks + 1
  n_measures = (n_beats - 1) // beats_per_measure + 1  # = length // (4 r) + 1
  marks = np.bincount(onset // beat_ticks, minlength=n_beats + 1) - np.bincount(
    offset // beat_ticks + 1, minlength=n_beats + 1
  )
  covered = np.zeros(n_measures * beats_per_measure, bool)
  np.greater(np.cumsum(marks[:n_beats]), 0, out=covered[:n_beats])
  covered_beats = int(np.count_nonzero(covered))
  covered_measures = int(np.count_nonzero(covered.reshape(n_measures, -1).any(axis=1)))
  return 1 - (covered_beats / n_beats), 1 - (covered_measures / n_measures)


def _pianoroll_counts(onset, offset, pitch) -> tuple[int, int, int]:
  """MusPy's binary pianoroll (pitched notes, [onset, offset) per pitch) summarized without
  building it: (cells on, ticks with at least one pitch on, ticks with more than
  POLYPHONY_THRESHOLD pitches on).

  Each pitch's notes are first merged into disjoint runs (two overlapping notes of one
  pitch light one cell, as in the roll); then a sweep over the runs' starts and ends
  counts the distinct pitches sounding between consecutive events.
  """
  if onset.size == 0:
    return 0, 0, 0
  # A zero-length note needs no filtering: it lights no cell, and its start and end
  # fall on one tick, so the sweep gives it no width.
  # Keys pitch * span + tick order notes by (pitch, onset), and a higher pitch's keys
  # exceed any lower one's: a running max of offset keys is each pitch's reach so far.
  span = int(offset.max()) + 1
  base = pitch * span
  onset_key = base + onset
  order = np.argsort(onset_key)
  onset_key = onset_key[order]
  reach = np.maximum.accumulate((base + offset)[order])
  run_starts = np.empty(onset_key.size, bool)
  run_starts[0] = True
  np.greater(onset_key[1:], reach[:-1], out=run_starts[1:])
  run_ends = np.empty_like(run_starts)
  run_ends[:-1] = run_starts[1:]
  run_ends[-1] = True
  starts, ends = onset_key[run_starts] % span, reach[run_ends] % span
  cells = int(np.sum(ends - starts))

  # Events as 2 * tick + (1 for a start, 0 for an end): one sort orders them by tick.
  events = np.concatenate([2 * starts + 1, 2 * ends])
  events.sort()
  sounding_after = np.cumsum(2 * (events & 1) - 1)[:-1]  # pitches on until the next event
  widths = np.diff(events >> 1)
  any_ticks = int(widths @ (sounding_after >= 1))
  crowded_ticks = int(widths @ (sounding_after > POLYPHONY_THRESHOLD))
  return cells, any_ticks, crowded_ticks


def _drum_pattern_rates(drum_onset: np.ndarray, resolution: int) -> tuple[float, float]:
  """MusPy's drum_in_pattern_rate for the duple and the triple pattern (NaN, NaN without
  drum notes). A pattern marks positions within the beat (onset mod r): 0 always; duple
  also multiples of r / 4 (r divisible by 4) and of r / 2 (r even); triple multiples of
  r / 3 (r divisible by 3)."""
  if drum_onset.size == 0:
    return math.nan, math.nan
  position = drum_onset % resolution
  duple = position == 0
  if resolution % 4 == 0:
    duple |= position % (resolution // 4) == 0
  if resolution % 2 == 0:
    duple |= position % (resolution // 2) == 0
  triple = position == 0
  if resolution % 3 == 0:
    triple |= position % (resolution // 3) == 0
  total = drum_onset.size
  return int(np.count_nonzero(duple)) / total, int(np.count_nonzero(triple)) / total


def _present(sorted_values: np.ndarray, queries: np.ndarray) -> np.ndarray:
  """Whether each query is in `sorted_values` (sorted, unique)."""
  index = np.searchsorted(sorted_values, queries)
  index = np.minimum(index, sorted_values.size - 1)
  return sorted_values[index] == queries


def _groove_consistency_constant(onsets, length: int | None, measure_ticks: int) -> float:
  """MusPy's groove_consistency(music, measure_ticks).

  G_i[p] = 1 iff some note starts at tick i * measure_ticks + p, so the cells that are on
  are exactly the distinct onsets t; the Hamming distance of the T - 1 neighbouring pairs
  counts each onset t whose counterpart t + measure_ticks (in the next measure, when
  there is one) or t - measure_ticks (in the previous one) is not an onset. `onsets`:
  the distinct onsets, sorted.
  """
  if length is None:
    return math.nan
  n_measures = length // measure_ticks + 1
  if n_measures < 2:
    return math.nan
  ahead = onsets[onsets < (n_measures - 1) * measure_ticks]
  behind = onsets[onsets >= measure_ticks]
  hamming = np.count_nonzero(~_present(onsets, ahead + measure_ticks)) + np.count_nonzero(
    ~_present(onsets, behind - measure_ticks)
  )
  return 1 - hamming / (measure_ticks * (n_measures - 1))


def measure_starts(table: NoteTable, length: int) -> tuple[np.ndarray, np.ndarray]:
  """The measures of the table's time-signature map that cover ticks 0..length.

  Returns (starts, lengths), int64 ticks, one entry per measure. A signature n/d makes
  measures of n * 4 / d beats: measure k of a signature in force from tick s starts at
  s + floor(k * n * 4 * r / d) (whole ticks even where a measure is not); a change at tick
  c ends the measure in progress at c. A signature with a non-positive part, or none at
  tick 0, is read as 4/4 (the MIDI default). The last measure is the one holding `length`,
  at its full length.
  """
  resolution = table.ticks_per_beat
  change_ticks = np.asarray(table.ts_tick, np.int64)
  numerators = np.asarray(table.ts_numerator, np.int64)
  denominators = np.asarray(table.ts_denominator, np.int64)
  valid = (numerators > 0) & (denominators > 0)
  numerators = np.where(valid, numerators, 4)
  denominators = np.where(valid, denominators, 4)
  if change_ticks.size == 0 or change_ticks[0] > 0:
    change_ticks = np.concatenate([[0], change_ticks])
    numerators = np.concatenate([[4], numerators])
    denominators = np.concatenate([[4], denominators])
  in_piece = change_ticks <= length
  change_ticks, numerators, denominators = (
    change_ticks[in_piece],
    numerators[in_piece],
    denominators[in_piece],
  )

  starts, lengths = [], []
  for index, (start, numerator, denominator) in enumerate(
    zip(change_ticks.tolist(), numerators.tolist(), denominators.tolist())
  ):
    whole = numerator * 4 * resolution  # measure length x denominator, in ticks
    stop = change_ticks[index + 1] if index + 1 < change_ticks.size else length + 1
    count = -(-(stop - start) * denominator // whole)  # measures starting before stop
    bounds = start + (np.arange(count + 1, dtype=np.int64) * whole) // denominator
    if whole < denominator:  # a measure shorter than one tick holds no tick: dropped
      bounds = np.unique(bounds)
    cut = np.minimum(bounds[1:], stop) if index + 1 < change_ticks.size else bounds[1:]
    starts.append(bounds[:-1])
    lengths.append(cut - bounds[:-1])
  return np.concatenate(starts), np.concatenate(lengths)


def groove_consistency_meter(table: NoteTable) -> float:
  """mtx's meter-aware groove consistency (see `METRIC_DEFINITIONS`).

  With the measures of `measure_starts` and the distinct onsets t (all notes, drums
  included): a pair of neighbouring measures i, i + 1 of one length L is compared
  position by position, G_i[p] vs G_{i+1}[p], which are the ticks t and t + L. So the
  Hamming distance summed over the compared pairs counts each onset whose counterpart one
  measure ahead (or behind), in a compared pair, is not an onset. Divided by the compared
  positions, sum of L over the pairs; NaN when there is no pair.
  """
  if table.num_notes == 0:
    return math.nan
  onset = np.asarray(table.onset, np.int64)
  return _groove_consistency_meter(table, _distinct_sorted(onset), int(np.max(table.offset)))


def _constant_measure_ticks(table: NoteTable) -> int | None:
  """The measure length in ticks where one signature holds from tick 0 and its measures
  are whole ticks (or the map is empty: 4/4); None otherwise. There the meter-aware groove
  is MusPy's with that measure length: the same measures, all compared."""
  if table.ts_tick.size == 0:
    return BEATS_PER_ASSUMED_MEASURE * table.ticks_per_beat
  if table.ts_tick.size > 1 or int(table.ts_tick[0]) != 0:
    return None
  numerator, denominator = int(table.ts_numerator[0]), int(table.ts_denominator[0])
  if numerator <= 0 or denominator <= 0:
    return BEATS_PER_ASSUMED_MEASURE * table.ticks_per_beat
  whole = numerator * 4 * table.ticks_per_beat
  return whole // denominator if whole % denominator == 0 else None


def _groove_consistency_meter(table: NoteTable, onsets: np.ndarray, length: int | None) -> float:
  if length is None:
    return math.nan
  starts, lengths = measure_starts(table, length)
  same_length = lengths[:-1] == lengths[1:]  # pair (i, i + 1) is compared
  compared = int(lengths[:-1][same_length].sum())
  if compared == 0:
    return math.nan
  measure = np.searchsorted(starts, onsets, side="right") - 1
  span = lengths[measure]
  ahead = np.concatenate([same_length, [False]])[measure]
  behind = np.concatenate([[False], same_length])[measure]
  hamming = np.count_nonzero(~_present(onsets, onsets[ahead] + span[ahead])) + np.count_nonzero(
    ~_present(onsets, onsets[behind] - span[behind])
  )
  return 1 - hamming / compared
