"""mtx's music metrics equal MusPy 0.5.0's own functions on real files, and give the known
answers on hand-built tables, including the metrics MusPy lacks."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from mtx.errors import ConfigError
from mtx.evaluate import music_metrics as mm
from mtx.representation.midi_io import read_note_table
from mtx.representation.notetable import from_notes
from tests.midi_corpus import NEEDS_SHARED, SHARED_MIDI, SHARED_MIDI_FILES

muspy = pytest.importorskip("muspy")

# MusPy's functions as this test calls them (its own table, not the module's muspy_metrics),
# with the arguments mtx matches: 4/4 measures of 4 beats, the duple drum pattern.
MUSPY_CALLS = {
  "pitch_class_entropy": muspy.pitch_class_entropy,
  "pitch_entropy": muspy.pitch_entropy,
  "scale_consistency": muspy.scale_consistency,
  "groove_consistency": lambda m: muspy.groove_consistency(m, 4 * m.resolution),
  "polyphony": muspy.polyphony,
  "polyphony_rate": muspy.polyphony_rate,
  "pitch_range": muspy.pitch_range,
  "n_pitches_used": muspy.n_pitches_used,
  "n_pitch_classes_used": muspy.n_pitch_classes_used,
  "empty_beat_rate": muspy.empty_beat_rate,
  "empty_measure_rate": lambda m: muspy.empty_measure_rate(m, 4 * m.resolution),
  "drum_pattern_consistency": muspy.drum_pattern_consistency,
  "drum_in_pattern_rate": lambda m: muspy.drum_in_pattern_rate(m, "duple"),
}
# MusPy's metrics that loop over every tick or beat of every note: together 0.2-0.7 s a
# chorale at its native 10080 ticks per beat, so compared at the native resolution on a
# subset only (every one is compared on every file at resolution 12).
SLOW_MUSPY = {
  "groove_consistency",
  "polyphony",
  "polyphony_rate",
  "empty_beat_rate",
  "empty_measure_rate",
}
# Files of the corpus on which MusPy raises for some metric: none (it raises on a Music
# without tracks only; see test_a_table_without_notes_gives_nan_where_muspy_raises).
MUSPY_RAISES_ON: set[str] = set()

C4 = 60


def _table(rows, ticks_per_beat=12, **maps):
  """rows: (onset, offset, pitch[, program, is_drum, track]) with velocity 80."""
  notes = [(*r[:3], 80, *(list(r[3:]) + [0, 0, 0])[:3]) for r in rows]
  return from_notes(np.array(notes, np.int64).reshape(-1, 7), ticks_per_beat=ticks_per_beat, **maps)


def _muspy_values(music, names):
  """(values, names MusPy raised on)."""
  values, raised = {}, set()
  for name in names:
    try:
      values[name] = float(MUSPY_CALLS[name](music))
    except ValueError:
      values[name] = math.nan
      raised.add(name)
  return values, raised


def _mismatches(label, ours, theirs):
  return [
    f"{label} {name}: mtx {ours[name]!r} MusPy {value!r}"
    for name, value in theirs.items()
    if not np.isclose(ours[name], value, rtol=1e-12, atol=0.0, equal_nan=True)
  ]


def _note_rows(table):
  return sorted(map(tuple, table.notes_array()[:, :6].tolist()))


def _in_canonical_order(table):
  """Notes sorted by (onset, track, pitch, offset, velocity), as NoteTable promises."""
  rows = table.notes_array()[:, [0, 6, 2, 1, 3]]
  return all(tuple(a) <= tuple(b) for a, b in zip(rows[:-1].tolist(), rows[1:].tolist()))


def _muspy_note_rows(music):
  return sorted(
    (n.time, n.end, n.pitch, n.velocity, t.program, int(t.is_drum))
    for t in music.tracks
    for n in t.notes
  )


def _compare_on_corpus(paths, label_of, native_slow):
  """Compares every MusPy metric of every file at its native resolution (the slow ones
  where native_slow(path)), at resolution 12 and at 12 trimmed to 64 beats, with
  the grid and the trim checked note for note against MusPy's own. Returns (mismatches,
  files MusPy raised on)."""
  mismatches, raised_on = [], set()
  for path in paths:
    label = label_of(path)
    table = read_note_table(path)
    music = mm.to_muspy_music(table)
    names = [n for n in mm.MUSPY_METRICS if n not in SLOW_MUSPY or native_slow(path)]
    theirs, raised = _muspy_values(music, names)
    mismatches += _mismatches(f"{label} native", mm.file_metrics(table), theirs)

    music.adjust_resolution(mm.MMT_RESOLUTION)
    grid = mm.at_resolution(table, mm.MMT_RESOLUTION)
    if _note_rows(grid) != _muspy_note_rows(music) or not _in_canonical_order(grid):
      mismatches.append(
        f"{label}: at_resolution's notes differ from adjust_resolution's "
        "or are out of canonical order"
      )
    theirs, raised_12 = _muspy_values(music, mm.MUSPY_METRICS)
    mismatches += _mismatches(f"{label} at 12", mm.file_metrics(grid), theirs)

    music.trim(mm.MMT_RESOLUTION * mm.MMT_TRIM_BEATS)
    trimmed = mm.trim(grid, mm.MMT_TRIM_BEATS)
    if _note_rows(trimmed) != _muspy_note_rows(music) or not _in_canonical_order(trimmed):
      mismatches.append(
        f"{label}: trim's notes differ from Music.trim's or are out of canonical order"
      )
    theirs, raised_trim = _muspy_values(music, mm.MUSPY_METRICS)
    mismatches += _mismatches(f"{label} trimmed", mm.file_metrics(trimmed), theirs)
    if raised or raised_12 or raised_trim:
      raised_on.add(label)
  return mismatches, raised_on


@NEEDS_SHARED
def test_every_metric_equals_muspy_on_the_shared_corpus():
  """All 458 files of ../shared/midi, every MusPy metric at resolution 12 (the evaluator's
  grid), also after the 64-beat trim, and at each file's own resolution. At the native
  resolution MusPy's five tick- and beat-looping metrics (SLOW_MUSPY) take about 0.2 s a
  chorale at 10080 ticks per beat, so there they run on every file outside
  bach_chorales/ (Mahler and the MAESTRO files included) and on the first 5 chorales."""
  chorales = SHARED_MIDI / "bach_chorales"
  slow_natively = {p for p in SHARED_MIDI_FILES if p.parent != chorales}
  slow_natively |= set([p for p in SHARED_MIDI_FILES if p.parent == chorales][:5])
  mismatches, raised_on = _compare_on_corpus(
    SHARED_MIDI_FILES, lambda p: str(p.relative_to(SHARED_MIDI)), slow_natively.__contains__
  )
  assert not mismatches, "\n".join(mismatches[:20])
  assert raised_on == MUSPY_RAISES_ON


def test_every_metric_equals_muspy_on_the_music21_chorales(music21_chorales):
  """The chorales of music21's corpus (present wherever mtx installs): every metric at 12
  and trimmed; at the native 10080 ticks per beat the slow ones on the first 3."""
  mismatches, raised_on = _compare_on_corpus(
    music21_chorales, lambda p: p.name, set(music21_chorales[:3]).__contains__
  )
  assert not mismatches, "\n".join(mismatches[:20])
  assert not raised_on


@NEEDS_SHARED
def test_the_meter_aware_groove_of_file_metrics_follows_its_general_definition():
  """file_metrics takes MusPy's formula with the signature's measure length where one
  signature holds throughout; `groove_consistency_meter` always cuts the measures from
  the map. They agree on every file, and equal MusPy's groove on the 4/4 ones."""
  tables = [mm.at_resolution(read_note_table(p), mm.MMT_RESOLUTION) for p in SHARED_MIDI_FILES]
  values = [mm.file_metrics(t) for t in tables]
  for path, table, value in zip(SHARED_MIDI_FILES, tables, values):
    general = mm.groove_consistency_meter(table)
    assert np.isclose(
      general, value["groove_consistency_meter"], rtol=1e-12, atol=0.0, equal_nan=True
    ), path
    if table.ts_tick.size == 1 and (table.ts_numerator[0], table.ts_denominator[0]) == (4, 4):
      assert np.isclose(
        general, value["groove_consistency"], rtol=1e-12, atol=0.0, equal_nan=True
      ), path
  # What the corpus exercises: meter changes, other meters, drums, dense chords.
  assert sum(t.ts_tick.size > 1 for t in tables) >= 5
  assert any(v["groove_consistency"] != v["groove_consistency_meter"] for v in values)
  assert sum(not math.isnan(v["drum_pattern_consistency"]) for v in values) >= 2
  assert any(v["polyphony_rate"] > 0 for v in values)


# ---- hand-built tables with known answers --------------------------------------------------


def test_a_c_major_scale_is_fully_in_scale():
  pitches = [60, 62, 64, 65, 67, 69, 71, 72]
  values = mm.file_metrics(_table([(12 * i, 12 * i + 12, p) for i, p in enumerate(pitches)]))
  assert values["scale_consistency"] == 1.0
  # classes C twice, six others once: -(1/4 log2 1/4 + 6 * 1/8 log2 1/8) = 1/2 + 9/4
  assert values["pitch_class_entropy"] == pytest.approx(2.75)
  assert values["pitch_entropy"] == pytest.approx(3.0)  # 8 pitches, once each
  assert values["n_pitches_used"] == 8 and values["n_pitch_classes_used"] == 7
  assert values["pitch_range"] == 12
  assert values["polyphony"] == 1.0 and values["polyphony_rate"] == 0.0
  chromatic = mm.file_metrics(_table([(12 * i, 12 * i + 6, C4 + i) for i in range(12)]))
  assert chromatic["scale_consistency"] == pytest.approx(7 / 12)
  assert chromatic["pitch_class_entropy"] == pytest.approx(math.log2(12))


def _repeated_bars(pattern, bar_ticks, bars, **maps):
  """One onset pattern repeated `bars` times; the last note ends 1 tick before the last
  bar line (a note ending on it would open one more, empty measure)."""
  rows = [
    (bar * bar_ticks + onset, bar * bar_ticks + onset + 3, C4 + k)
    for bar in range(bars)
    for k, onset in enumerate(pattern)
  ]
  rows[-1] = (rows[-1][0], bars * bar_ticks - 1, rows[-1][2])
  return _table(rows, **maps)


def test_a_perfectly_repeated_4_4_bar_has_groove_consistency_one():
  table = _repeated_bars([0, 12, 18, 30, 36], 48, bars=6)
  values = mm.file_metrics(table)
  assert values["groove_consistency"] == 1.0
  assert values["groove_consistency_meter"] == 1.0
  assert float(muspy.groove_consistency(mm.to_muspy_music(table), 48)) == 1.0


def test_a_piece_ending_on_a_bar_line_gets_an_empty_last_measure_as_in_muspy():
  """MusPy counts length // 48 + 1 measures: a last offset on the bar line adds an empty
  measure, whose neighbour differs in every onset of the last bar (5 of 48 x 5 cells)."""
  table = _repeated_bars([0, 12, 18, 30, 36], 48, bars=5)
  rows = table.notes_array()
  rows[-1, 1] = 5 * 48
  table = from_notes(rows, ticks_per_beat=12)
  values = mm.file_metrics(table)
  assert values["groove_consistency"] == pytest.approx(1 - 5 / (48 * 5))
  assert values["groove_consistency"] == muspy.groove_consistency(mm.to_muspy_music(table), 48)
  assert values["groove_consistency_meter"] == values["groove_consistency"]


def test_a_repeated_3_4_bar_is_consistent_only_when_measured_in_3_4():
  three_four = dict(ts_ticks=[0], ts_numerators=[3], ts_denominators=[4])
  table = _repeated_bars([0, 12, 18, 24], 36, bars=8, **three_four)
  values = mm.file_metrics(table)
  assert values["groove_consistency_meter"] == 1.0
  assert values["groove_consistency"] < 0.95  # MusPy's 48-tick windows slide over the bars
  assert values["groove_consistency"] == muspy.groove_consistency(mm.to_muspy_music(table), 48)


def test_measures_follow_the_time_signature_map():
  changes = dict(ts_ticks=[0, 96], ts_numerators=[4, 3], ts_denominators=[4, 4])
  table = _table([(0, 200, C4)], **changes)
  starts, lengths = mm.measure_starts(table, 200)
  assert starts.tolist() == [0, 48, 96, 132, 168]  # two 4/4 bars, then 3/4 to tick 200
  assert lengths.tolist() == [48, 48, 36, 36, 36]
  # A change in mid-measure cuts the measure in progress short.
  mid = _table([(0, 100, C4)], ts_ticks=[0, 60], ts_numerators=[4, 6], ts_denominators=[4, 8])
  starts, lengths = mm.measure_starts(mid, 100)
  assert starts.tolist() == [0, 48, 60, 96] and lengths.tolist() == [48, 12, 36, 36]


def test_groove_meter_compares_only_measures_of_one_length():
  """Bars 0-1 in 4/4 hold onsets {0, 12}, bars 2-4 in 3/4 hold {0, 24}: the pairs (0, 1),
  (2, 3), (3, 4) are compared and identical; (1, 2) has two lengths and is skipped."""
  changes = dict(ts_ticks=[0, 96], ts_numerators=[4, 3], ts_denominators=[4, 4])
  rows = [(s + o, s + o + 6, C4) for s in (0, 48) for o in (0, 12)]
  rows += [(s + o, s + o + 6, C4) for s in (96, 132, 168) for o in (0, 24)]
  rows[-1] = (rows[-1][0], 200, C4)
  values = mm.file_metrics(_table(rows, **changes))
  assert values["groove_consistency_meter"] == 1.0
  one_measure = mm.file_metrics(_table([(0, 40, C4)]))
  assert math.isnan(one_measure["groove_consistency_meter"])
  assert math.isnan(one_measure["groove_consistency"])


def test_polyphony_counts_distinct_pitches_and_rate_needs_more_than_two():
  chord = mm.file_metrics(_table([(0, 24, 60), (0, 24, 64), (12, 24, 67)]))
  assert chord["polyphony"] == pytest.approx((24 + 24 + 12) / 24)
  assert chord["polyphony_rate"] == pytest.approx(12 / 24)  # 3 pitches on ticks 12..23
  two = mm.file_metrics(_table([(0, 24, 60), (0, 24, 64)]))
  assert two["polyphony_rate"] == 0.0  # two pitches are not "more than 2"
  same_pitch = mm.file_metrics(_table([(0, 24, 60), (12, 36, 60)]))
  assert same_pitch["polyphony"] == 1.0  # one pitch sounding twice lights one cell


def test_notes_per_beat_and_mean_duration_on_a_hand_made_table():
  rows = [(0, 12, 60), (12, 36, 62), (48, 54, 64), (90, 96, 65)]  # 1, 2, 0.5, 0.5 beats
  values = mm.file_metrics(_table(rows))
  assert values["notes_per_beat"] == pytest.approx(4 / 8)  # last offset at beat 8
  assert values["mean_duration_beats"] == pytest.approx(1.0)
  assert values["n_notes"] == 4
  # Beats 0..8 (length // 12 + 1 = 9); notes touch 0-1, 1-3, 4, 7-8: beats 5 and 6 empty.
  assert values["empty_beat_rate"] == pytest.approx(2 / 9)


def test_instruments_are_distinct_program_and_drum_pairs():
  rows = [(0, 12, 60, 0, 0, 0), (0, 12, 64, 0, 0, 1), (0, 12, 40, 33, 0, 2), (0, 12, 36, 0, 1, 3)]
  assert mm.file_metrics(_table(rows))["n_instruments"] == 3


def test_a_table_without_notes_gives_nan_where_muspy_raises():
  empty = _table([])
  values = mm.file_metrics(empty)
  music = mm.to_muspy_music(empty)
  assert not music.tracks
  theirs, raised = _muspy_values(music, mm.MUSPY_METRICS)
  assert raised == {
    "groove_consistency",
    "polyphony",
    "polyphony_rate",
    "empty_beat_rate",
    "empty_measure_rate",
  }
  assert not _mismatches("empty", values, theirs)
  for name in (
    "pitch_class_entropy",
    "groove_consistency_meter",
    "notes_per_beat",
    "mean_duration_beats",
    "drum_pattern_consistency",
  ):
    assert math.isnan(values[name]), name
  for name in ("pitch_range", "n_pitches_used", "n_instruments", "n_notes"):
    assert values[name] == 0, name
  assert mm.muspy_metrics(music).keys() == set(mm.MUSPY_METRICS)


def test_drum_only_and_drumless_tables_match_muspy_quirks_included():
  """Drums only: MusPy's pitch_range is 0 - 127 (its untouched starting values) and its
  pitched metrics are NaN; without drums its drum metrics are NaN."""
  drums = _table(
    [(0, 3, 36, 0, 1, 0), (6, 9, 38, 0, 1, 0), (8, 11, 42, 0, 1, 0), (12, 15, 36, 0, 1, 0)]
  )
  values = mm.file_metrics(drums)
  assert values["pitch_range"] == -127
  assert math.isnan(values["scale_consistency"]) and math.isnan(values["polyphony"])
  assert values["polyphony_rate"] == 0.0
  # Positions in the beat (onset mod 12): 0, 6, 8, 0; duple holds 0, 3, 6, 9; triple 0, 4, 8.
  assert values["drum_in_pattern_rate"] == pytest.approx(3 / 4)
  assert values["drum_pattern_consistency"] == pytest.approx(3 / 4)
  music = mm.to_muspy_music(drums)
  assert not _mismatches("drums", values, _muspy_values(music, mm.MUSPY_METRICS)[0])
  assert not _mismatches("drums", values, mm.muspy_metrics(music))
  pitched = mm.file_metrics(_table([(0, 12, 60)]))
  assert math.isnan(pitched["drum_pattern_consistency"])
  assert math.isnan(pitched["drum_in_pattern_rate"])


def test_at_resolution_rounds_halves_to_even_and_keeps_zero_length_notes():
  table = _table(
    [(1, 3, 60), (5, 6, 62), (7, 7, 64)],
    ticks_per_beat=24,
    ts_ticks=[0, 48],
    ts_numerators=[4, 3],
    ts_denominators=[4, 4],
  )
  grid = mm.at_resolution(table, 12)
  # 0.5 -> 0, 1.5 -> 2, 2.5 -> 2, 3 -> 3, 3.5 -> 4: [0, 2), [2, 3), [4, 4)
  assert grid.ticks_per_beat == 12
  assert _note_rows(grid) == [(0, 2, 60, 80, 0, 0), (2, 3, 62, 80, 0, 0), (4, 4, 64, 80, 0, 0)]
  assert grid.ts_tick.tolist() == [0, 24]
  music = mm.to_muspy_music(table).adjust_resolution(12)
  assert _note_rows(grid) == _muspy_note_rows(music)
  assert mm.at_resolution(grid, 12).equals(grid)
  # Onsets 1 and 2 round together to 0: the lower pitch, second before, goes first.
  tied = mm.at_resolution(_table([(1, 6, 64), (2, 6, 60)], ticks_per_beat=48), 12)
  assert tied.onset.tolist() == [0, 0] and tied.pitch.tolist() == [60, 64]


def test_trim_drops_late_notes_and_cuts_offsets_as_muspy_does():
  table = _table(
    [(0, 12, 60), (40, 60, 62), (48, 50, 64), (50, 55, 65)],
    ts_ticks=[0, 48],
    ts_numerators=[4, 3],
    ts_denominators=[4, 4],
  )
  trimmed = mm.trim(table, 4)
  assert _note_rows(trimmed) == [(0, 12, 60, 80, 0, 0), (40, 48, 62, 80, 0, 0)]
  assert trimmed.ts_tick.tolist() == [0]
  assert _note_rows(trimmed) == _muspy_note_rows(mm.to_muspy_music(table).trim(48))


def test_bad_grid_and_trim_arguments_raise_a_config_error_naming_them():
  table = _table([(0, 12, 60)])
  for resolution in (0, -12, 12.5):
    with pytest.raises(ConfigError, match="resolution"):
      mm.at_resolution(table, resolution)
  with pytest.raises(ConfigError, match="beats"):
    mm.trim(table, -1)


def test_summarize_is_nan_aware_with_population_std():
  summary = mm.summarize([1.0, 2.0, math.nan, 4.0])
  mean = 7 / 3
  std = math.sqrt(((1 - mean) ** 2 + (2 - mean) ** 2 + (4 - mean) ** 2) / 3)
  assert summary["mean"] == pytest.approx(mean) and summary["std"] == pytest.approx(std)
  assert summary["count"] == 3 and summary["nan"] == 1
  with warnings.catch_warnings():
    warnings.simplefilter("error")  # no "mean of empty slice" on an all-NaN metric
    for values in ([], [math.nan, math.nan]):
      summary = mm.summarize(values)
      assert math.isnan(summary["mean"]) and math.isnan(summary["std"])
      assert summary["count"] == 0 and summary["nan"] == len(values)


def test_set_metrics_gives_one_row_per_file_and_a_summary_per_metric():
  tables = [_table([(0, 12, 60), (12, 24, 64)]), _table([]), _table([(0, 6, 67)])]
  per_file, summary = mm.set_metrics(tables)
  assert [row["n_notes"] for row in per_file] == [2, 0, 1]
  assert set(summary) == set(mm.METRIC_NAMES)
  assert summary["n_notes"] == {
    "mean": 1.0,
    "std": pytest.approx(math.sqrt(2 / 3)),
    "count": 3,
    "nan": 0,
  }
  assert summary["pitch_class_entropy"]["count"] == 2  # the empty table's is NaN


def test_every_metric_has_a_definition_a_unit_and_an_origin():
  assert set(mm.METRIC_DEFINITIONS) == set(mm.METRIC_UNITS) == set(mm.METRIC_NAMES)
  assert set(mm.file_metrics(_table([(0, 12, 60)]))) == set(mm.METRIC_NAMES)
  for name, text in mm.METRIC_DEFINITIONS.items():
    origin = "MusPy's" if name in mm.MUSPY_METRICS else "mtx's"
    assert text.startswith(origin), name


def test_a_segment_is_the_trimmed_table_moved_to_start_at_zero(music21_chorales):
  table = mm.at_resolution(read_note_table(music21_chorales[0]), 12)
  first = mm.segment(table, 0, 16)
  np.testing.assert_array_equal(first.notes_array(), mm.trim(table, 16).notes_array())
  later = mm.segment(table, 8, 8)
  inside = (table.onset >= 8 * 12) & (table.onset < 16 * 12)
  np.testing.assert_array_equal(later.onset, table.onset[inside] - 8 * 12)
  np.testing.assert_array_equal(later.pitch, table.pitch[inside])
  assert (later.offset <= 8 * 12).all()
  # measured alone, a segment of a 4/4 piece's bars has the metric of those bars
  assert mm.file_metrics(later)["n_notes"] == inside.sum()
