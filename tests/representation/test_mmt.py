"""The MMT codec: exact round trips on real music, tolerant decoding, limits."""

from __future__ import annotations

import collections
from fractions import Fraction

import miditoolkit
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtx.errors import DecodeError, EmptyMidiError, RepresentationOverflowError
from mtx.representation import get_codec
from mtx.representation.fields import INSTRUMENTS, KNOWN_DURATIONS, PROGRAM_INSTRUMENT
from mtx.representation.midi_io import note_table_from_miditoolkit, read_note_table
from mtx.representation.notetable import from_notes
from tests.midi_corpus import shared_params

RESOLUTION = 12


# ---- an independent reference of what MMT keeps of a note ----------------------


def _reference_step(tick: int, ticks_per_beat: int) -> int:
  """The MMT reference's quantization, written as MusPy writes it
  (`Music.adjust_resolution`: `round(time * factor)` with `factor = 12 / resolution`, a
  float, and Python's `round`, which sends exact halves to the even neighbour)."""
  factor = RESOLUTION / ticks_per_beat
  return round(tick * factor)


def _snap_duration(steps: int) -> int:
  return min(KNOWN_DURATIONS.tolist(), key=lambda known: (abs(known - steps), known))


def _instrument(program: int, is_drum: bool):
  return "drums" if is_drum else PROGRAM_INSTRUMENT[program]


def reference_notes(table, max_beat: int, max_duration: int = 384) -> collections.Counter:
  """(onset step, pitch, duration steps, instrument) of each note MMT keeps."""
  kept = set()
  for onset, offset, pitch, _, program, is_drum, _ in table.notes_array().tolist():
    start = _reference_step(onset, table.ticks_per_beat)
    end = _reference_step(offset, table.ticks_per_beat)
    instrument = _instrument(program, bool(is_drum))
    if instrument is None or start // RESOLUTION > max_beat:
      continue
    duration = _snap_duration(min(max(end - start, 1), max_duration))
    kept.add((start, pitch, duration, instrument))  # MMT deduplicates notes
  return collections.Counter(kept)


def decoded_notes(midi: miditoolkit.MidiFile) -> collections.Counter:
  table = note_table_from_miditoolkit(midi)
  scale = Fraction(RESOLUTION, table.ticks_per_beat)
  out = collections.Counter()
  for onset, offset, pitch, _, program, is_drum, _ in table.notes_array().tolist():
    start, end = onset * scale, offset * scale
    assert start.denominator == 1 and end.denominator == 1, "decoded notes sit on the grid"
    out[(int(start), pitch, int(end - start), _instrument(program, bool(is_drum)))] += 1
  return out


def check_round_trip(codec, table):
  tokens = codec.encode(table)
  assert tokens.dtype == np.int32 and tokens.shape[1] == 6
  assert (tokens >= 0).all() and (tokens < np.array(codec.fields.sizes)).all()
  midi, report = codec.decode(tokens, strict=True, return_report=True)
  assert report.dropped == 0
  assert np.array_equal(codec.encode(midi), tokens)
  assert decoded_notes(midi) == reference_notes(table, codec.max_beat)
  return tokens


@pytest.mark.parametrize("path", shared_params())
def test_real_files_round_trip_exactly(path):
  codec = get_codec("mmt", overflow="truncate")
  check_round_trip(codec, read_note_table(path))


def test_music21_chorales_round_trip_exactly(music21_chorales):
  codec = get_codec("mmt")
  for path in music21_chorales:
    check_round_trip(codec, read_note_table(path))


def test_rows_follow_the_mmt_grammar_and_order(music21_chorales):
  codec = get_codec("mmt")
  tokens = codec.encode(music21_chorales[0]).astype(np.int64)
  kinds = tokens[:, 0].tolist()
  assert kinds[0] == 0 and kinds[-1] == 4
  son = kinds.index(2)
  assert set(kinds[1:son]) == {1} and set(kinds[son + 1 : -1]) == {3}
  notes = tokens[son + 1 : -1]
  keys = [tuple(row) for row in notes[:, 1:].tolist()]
  assert keys == sorted(set(keys))  # sorted by beat, position, pitch, duration, instrument
  assert sorted(tokens[1:son, 5].tolist()) == sorted(set(notes[:, 5].tolist()))


def test_fields_match_the_reference_sizes():
  codec = get_codec("mmt", max_beat=256)
  assert codec.fields.names == ("type", "beat", "position", "pitch", "duration", "instrument")
  # MMT: 5 types, beats 0..max_beat + none, 12 positions + none, 128 pitches +
  # none, 32 durations + none, 64 instruments + none; mtx adds drums.
  assert codec.fields.sizes == (5, 258, 13, 129, 33, 66)
  assert INSTRUMENTS[-1] == "drums" and len(set(PROGRAM_INSTRUMENT) - {None}) == 64


# ---- generated note lists -------------------------------------------------------

note_rows = st.lists(
  st.tuples(
    st.integers(0, 40 * 480),  # onset tick (up to beat 40)
    st.integers(0, 3000),  # duration ticks, zero included
    st.integers(0, 127),  # pitch
    st.integers(1, 127),  # velocity
    st.integers(0, 127),  # program
    st.booleans(),  # drum
    st.integers(0, 3),
  ),  # track
  min_size=1,
  max_size=60,
)


def _table(rows, ticks_per_beat):
  notes = np.array(
    [[on, on + dur, p, v, prog, drum, track] for on, dur, p, v, prog, drum, track in rows], np.int64
  )
  # overlapping same-pitch notes and notes at time 0 come up often; add both
  notes = np.concatenate(
    [notes, notes[:1] * [1, 1, 1, 1, 1, 1, 1] + [0, 7, 0, 0, 0, 0, 0], [[0, 1, 60, 100, 0, 0, 0]]]
  )
  return from_notes(notes, ticks_per_beat=ticks_per_beat)


@settings(max_examples=150, deadline=None)
@given(
  rows=note_rows,
  ticks_per_beat=st.sampled_from([96, 100, 384, 480, 960]),
  max_beat=st.integers(4, 48),
)
def test_generated_notes_round_trip_and_notes_past_max_beat_are_dropped(
  rows, ticks_per_beat, max_beat
):
  table = _table(rows, ticks_per_beat)
  codec = get_codec("mmt", max_beat=max_beat, overflow="truncate")
  check_round_trip(codec, table)
  beats = [_reference_step(on, ticks_per_beat) // RESOLUTION for on in table.onset.tolist()]
  late = any(
    b > max_beat and _instrument(p, d) is not None
    for b, p, d in zip(beats, table.program.tolist(), table.is_drum.tolist())
  )
  strict = get_codec("mmt", max_beat=max_beat)
  if late:
    with pytest.raises(RepresentationOverflowError, match="max_beat"):
      strict.encode(table)
  else:
    assert np.array_equal(strict.encode(table), codec.encode(table))


def test_drums_are_their_own_instrument_and_come_back_as_drums():
  notes = np.array([[0, 240, 36, 100, 0, 1, 0], [0, 240, 36, 100, 0, 0, 1]])
  codec = get_codec("mmt")
  midi = codec.decode(codec.encode(from_notes(notes, ticks_per_beat=480)))
  kinds = sorted((inst.is_drum, inst.program) for inst in midi.instruments)
  assert kinds == [(False, 0), (True, 0)]


def test_notes_of_instruments_mmt_does_not_know_are_dropped():
  notes = np.array([[0, 240, 60, 100, 0, 0, 0], [0, 240, 62, 100, 97, 0, 1]])
  codec = get_codec("mmt")
  midi = codec.decode(codec.encode(from_notes(notes, ticks_per_beat=480)))
  assert [n.pitch for inst in midi.instruments for n in inst.notes] == [60]
  only_effects = from_notes(notes[1:], ticks_per_beat=480, source="effects.mid")
  with pytest.raises(EmptyMidiError, match="effects.mid"):
    codec.encode(only_effects)


def test_a_file_past_max_beat_names_the_file(tmp_path):
  notes = np.array([[0, 240, 60, 100, 0, 0, 0], [480 * 300, 480 * 301, 62, 100, 0, 0, 0]])
  from mtx.representation.midi_io import note_table_to_miditoolkit

  path = tmp_path / "long_song.mid"
  note_table_to_miditoolkit(from_notes(notes, ticks_per_beat=480)).dump(str(path))
  with pytest.raises(RepresentationOverflowError) as info:
    get_codec("mmt", max_beat=256).encode(path)
  assert "long_song.mid" in str(info.value) and "overflow='truncate'" in str(info.value)


# ---- tolerant decoding ----------------------------------------------------------

SMALL = get_codec("mmt", max_beat=30)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(*[st.integers(0, size - 1) for size in SMALL.fields.sizes]), max_size=80))
def test_any_in_range_tokens_decode_to_a_writable_midi(tmp_path_factory, rows):
  tokens = np.array(rows, np.int64).reshape(-1, 6)
  midi, report = SMALL.decode(tokens, return_report=True)
  path = tmp_path_factory.mktemp("decoded") / "x.mid"
  midi.dump(str(path))
  again = miditoolkit.MidiFile(str(path))
  assert sum(len(i.notes) for i in again.instruments) == sum(len(i.notes) for i in midi.instruments)
  assert report.dropped == sum(report.reasons.values()) <= len(rows)
  # what survived is itself a valid song: re-encoding and decoding drops nothing
  if sum(len(i.notes) for i in midi.instruments):
    _, second = SMALL.decode(SMALL.encode(midi), return_report=True)
    assert second.dropped == 0
  if report.dropped or (len(rows) and rows[0][0] != 0):
    with pytest.raises(DecodeError):
      SMALL.decode(tokens, strict=True)
  else:
    SMALL.decode(tokens, strict=True)


def test_tolerant_decoding_drops_exactly_the_bad_rows():
  sos, son, eos = [0, 0, 0, 0, 0, 0], [2, 0, 0, 0, 0, 0], [4, 0, 0, 0, 0, 0]
  piano = [1, 0, 0, 0, 0, 1]
  note = lambda beat, pos, pitch: [3, beat + 1, pos + 1, pitch + 1, 5, 1]  # noqa: E731
  tokens = np.array(
    [
      sos,
      piano,
      note(0, 0, 60),  # before start-of-notes
      son,
      note(2, 0, 62),
      note(1, 0, 64),  # beat goes backwards
      [3, 3, 1, 0, 5, 1],  # empty pitch
      note(2, 6, 65),
      piano,  # instrument row among the notes
      eos,
      note(5, 0, 67),
    ]
  )  # after the end
  midi, report = SMALL.decode(tokens, return_report=True)
  kept = sorted((n.start, n.pitch) for i in midi.instruments for n in i.notes)
  assert kept == [(2 * 480, 62), (2 * 480 + 6 * 40, 65)]
  assert report.dropped == 5
  assert report.reasons == {
    "note before start-of-notes": 1,
    "note earlier than the note before it": 1,
    "note with an empty field": 1,
    "instrument row after start-of-notes": 1,
    "after end-of-song": 1,
  }
  with pytest.raises(DecodeError, match="token row 2: note before start-of-notes"):
    SMALL.decode(tokens, strict=True)


def test_trailing_zero_rows_are_padding_not_dropped_rows():
  tokens = get_codec("mmt").encode(
    from_notes(np.array([[0, 480, 60, 90, 0, 0, 0]]), ticks_per_beat=480)
  )
  padded = np.concatenate([tokens, np.zeros((7, 6), np.int32)])
  midi, report = get_codec("mmt").decode(padded, strict=True, return_report=True)
  assert report.dropped == 0 and [n.pitch for n in midi.instruments[0].notes] == [60]
  zeros_inside = np.concatenate([tokens[:3], np.zeros((2, 6), np.int32), tokens[3:]])
  _, report = get_codec("mmt").decode(zeros_inside, return_report=True)
  assert report.reasons == {"start-of-song after the first row": 2}


def test_exact_half_steps_round_to_the_even_step_as_the_reference_does():
  """MusPy's `adjust_resolution` (the reference's data) uses Python's `round`: at 96
  ticks per beat a 1/12-beat step is 8 ticks, so ticks 4, 12 and 20 are 0.5, 1.5 and
  2.5 steps and go to steps 0, 2 and 2 (half up would give 1, 2 and 3)."""
  notes = np.array([[tick, tick + 96, 60 + i, 90, 0, 0, 0] for i, tick in enumerate([4, 12, 20])])
  tokens = get_codec("mmt").encode(from_notes(notes, ticks_per_beat=96))
  rows = tokens[tokens[:, 0] == 3]
  steps = (rows[:, 1] - 1) * RESOLUTION + rows[:, 2] - 1
  assert steps.tolist() == [0, 2, 2]
