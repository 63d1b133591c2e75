"""Tests of the performance codec (Music Transformer events) and of sustain.py.

The notes a decoded file must hold are computed here by `reference_notes`, with
plain Python loops that follow the rules as note_seq and the codec's docstring
state them (note_seq's sustain algorithm event by event, exact seconds with
Fractions, round half up, one note per pitch), never with the codec's code.
"""

from __future__ import annotations

import bisect
import collections
import dataclasses
import math
import os
import tempfile
from fractions import Fraction

import miditoolkit
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtx.errors import ConfigError, DecodeError, EmptyMidiError
from mtx.representation import get_codec
from mtx.representation.midi_io import read_note_table
from mtx.representation.notetable import from_notes
from mtx.representation.sustain import apply_sustain
from tests.midi_corpus import SHARED_MIDI, shared_params

CODEC = get_codec("performance")
VOCAB = CODEC.vocab
SOS, EOS, PAD = VOCAB.token("start-of-song"), VOCAB.token("end-of-song"), VOCAB.token("pad")


def on(pitch):
  return VOCAB.token("note-on", pitch)


def off(pitch):
  return VOCAB.token("note-off", pitch)


def shift(steps):
  return VOCAB.token("time-shift", steps - 1)


def vel(bin_index):
  return VOCAB.token("velocity", bin_index)


# ---- the independent reference -----------------------------------------------


def reference_sustain(notes, pedals):
  """note_seq's apply_sustain_control_changes, event by event.

  notes: list of (onset, offset, pitch, track) in table order; pedals: list of
  (tick, value, track). Returns (offsets, removed set of note indices)."""
  sustain_on, sustain_off, note_on, note_off = 0, 1, 2, 3
  events = [(n[0], note_on, i) for i, n in enumerate(notes)]
  events += [(n[1], note_off, i) for i, n in enumerate(notes)]
  for tick, value, track in pedals:
    events.append((tick, sustain_on if value >= 64 else sustain_off, track))
  events.sort(key=lambda e: (e[0], e[1]))  # stable: notes keep their order
  end = [n[1] for n in notes]
  removed = set()
  active = collections.defaultdict(list)
  down = collections.defaultdict(bool)
  time = 0
  for time, kind, who in events:
    if kind == sustain_on:
      down[who] = True
    elif kind == sustain_off:
      down[who] = False
      still = []
      for i in active[who]:
        if end[i] < time:
          end[i] = time
        else:
          still.append(i)
      active[who] = still
    elif kind == note_on:
      track = notes[who][3]
      if down[track]:
        still = []
        for i in active[track]:
          if notes[i][2] == notes[who][2]:
            end[i] = time
            if notes[i][0] == end[i]:
              removed.add(i)
          else:
            still.append(i)
        active[track] = still
      active[track].append(who)
    else:
      track = notes[who][3]
      if not down[track] and who in active[track]:
        active[track].remove(who)
  for track_notes in active.values():
    for i in track_notes:
      end[i] = time
  return end, removed


def reference_step_function(table, steps_per_second):
  """tick -> nearest step (halves up) of exact seconds through the tempo map."""
  ticks = [int(t) for t in table.tempo_tick]
  mspq = [int(m) for m in table.tempo_mspq]
  per_tick = [Fraction(m, 1_000_000 * table.ticks_per_beat) for m in mspq]
  starts = [Fraction(0)]
  for i in range(1, len(ticks)):
    starts.append(starts[-1] + (ticks[i] - ticks[i - 1]) * per_tick[i - 1])

  def step(tick):
    i = bisect.bisect_right(ticks, tick) - 1
    seconds = starts[i] + (tick - ticks[i]) * per_tick[i]
    return math.floor(seconds * steps_per_second + Fraction(1, 2))

  return step


def reference_notes(table, *, sustain=True, steps_per_second=100, num_velocity_bins=32):
  """Sorted (onset ms, offset ms, pitch, velocity, program) a decode must hold."""
  drum_tracks = {int(t) for t, d in zip(table.track, table.is_drum) if d}
  notes = [
    (
      int(table.onset[i]),
      int(table.offset[i]),
      int(table.pitch[i]),
      int(table.track[i]),
      int(table.velocity[i]),
    )
    for i in range(table.num_notes)
    if not table.is_drum[i]
  ]
  if sustain:
    pedals = [
      (int(t), int(v), int(k))
      for t, v, k in zip(table.sustain_tick, table.sustain_value, table.sustain_track)
      if int(k) not in drum_tracks
    ]
    ends, removed = reference_sustain(notes, pedals)
    notes = [(n[0], ends[i]) + n[2:] for i, n in enumerate(notes) if i not in removed]
  step = reference_step_function(table, steps_per_second)
  by_pitch = collections.defaultdict(list)
  for onset, offset, pitch, _, velocity in notes:
    start, end = step(onset), step(offset)
    if end == start:
      end = start + 1
    by_pitch[pitch].append((start, end, velocity))
  bin_size = math.ceil(127 / num_velocity_bins)
  ms_per_step = 1000 // steps_per_second
  result = []
  for pitch, group in by_pitch.items():
    # One key sounds once: same onset -> the longest (then loudest) note.
    best = {}
    for start, end, velocity in group:
      if start not in best or (end, velocity) > best[start]:
        best[start] = (end, velocity)
    starts = sorted(best)
    for k, start in enumerate(starts):
      end, velocity = best[start]
      if k + 1 < len(starts) and starts[k + 1] < end:
        end = starts[k + 1]
      velocity_bin = min((velocity - 1) // bin_size, num_velocity_bins - 1)
      result.append((start * ms_per_step, end * ms_per_step, pitch, 1 + velocity_bin * bin_size, 0))
  return sorted(result)


def decoded_notes(midi):
  """Sorted (start, end, pitch, velocity, program) of a decoded MidiFile."""
  assert len(midi.instruments) <= 1
  assert midi.ticks_per_beat == 1000
  assert [round(t.tempo, 6) for t in midi.tempo_changes] == [60.0]
  return sorted(
    (n.start, n.end, n.pitch, n.velocity, inst.program)
    for inst in midi.instruments
    if not inst.is_drum
    for n in inst.notes
  )


def check_round_trip(codec, table, **reference_options):
  tokens = codec.encode(table)
  assert tokens.dtype == np.int32 and tokens.ndim == 2 and tokens.shape[1] == 1
  assert tokens.min() >= 0 and tokens.max() < codec.fields[0].size
  assert tokens[0, 0] == SOS and tokens[-1, 0] == EOS
  midi, report = codec.decode(tokens, strict=True, return_report=True)
  assert report.dropped == 0
  assert decoded_notes(midi) == reference_notes(table, **reference_options)
  again = codec.encode(midi)
  np.testing.assert_array_equal(again, tokens)


# ---- real data -----------------------------------------------------------------


@pytest.mark.parametrize("path", shared_params())
def test_shared_file_round_trips_to_reference_notes(path):
  table = read_note_table(path)
  if table.is_drum.all():
    with pytest.raises(EmptyMidiError, match="drum"):
      CODEC.encode(table)
    return
  check_round_trip(CODEC, table)


def test_music21_chorales_round_trip(music21_chorales):
  for path in music21_chorales:
    check_round_trip(CODEC, read_note_table(path))


def maestro_files():
  return sorted((SHARED_MIDI / "other" / "miditok" / "maestro").glob("*.mid"))


@pytest.mark.skipif(not maestro_files(), reason="no MAESTRO files in ../shared/midi")
def test_maestro_pedal_lengthens_notes_and_can_be_turned_off():
  path = maestro_files()[0]
  table = read_note_table(path)
  assert table.sustain_tick.size > 0
  plain = get_codec("performance", sustain=False)
  check_round_trip(plain, table, sustain=False)
  with_pedal = decoded_notes(CODEC.decode(CODEC.encode(table)))
  without = decoded_notes(plain.decode(plain.encode(table)))
  held = sum(n[1] - n[0] for n in with_pedal)
  assert held > 1.2 * sum(n[1] - n[0] for n in without)


# ---- sustain.py on hand-built cases --------------------------------------------


def sustained(notes, pedals):
  """apply_sustain on lists: notes (onset, offset, pitch[, track]), pedals
  (tick, value[, track]); returns [(onset, new offset)] of kept notes."""
  notes = [n if len(n) == 4 else (*n, 0) for n in notes]
  pedals = [p if len(p) == 3 else (*p, 0) for p in pedals]
  onset, offset, pitch, track = (np.array([n[i] for n in notes], np.int64) for i in range(4))
  tick, value, ptrack = (np.array([p[i] for p in pedals], np.int64).reshape(-1) for i in range(3))
  new_offset, keep = apply_sustain(onset, offset, pitch, track, tick, value, ptrack)
  return [(int(a), int(b)) for a, b, k in zip(onset, new_offset, keep) if k]


@pytest.mark.parametrize(
  "notes, pedals, expected",
  [
    # pedal down 0-100: a note let go at 20 sounds until the release at 100
    ([(10, 20, 60)], [(0, 127), (100, 0)], [(10, 100)]),
    # let go after the release: unchanged
    ([(10, 150, 60)], [(0, 127), (100, 0)], [(10, 150)]),
    # no pedal at all, or only released: unchanged
    ([(10, 20, 60)], [], [(10, 20)]),
    ([(10, 20, 60)], [(0, 0)], [(10, 20)]),
    # 63 is up, 64 is down
    ([(10, 20, 60)], [(0, 63), (100, 0)], [(10, 20)]),
    ([(10, 20, 60)], [(0, 64), (100, 0)], [(10, 100)]),
    # released at the very tick of the note-off: the pedal is read first
    ([(10, 20, 60)], [(0, 127), (20, 0)], [(10, 20)]),
    # pressed at the very tick of the note-off: sustained
    ([(10, 20, 60)], [(20, 127), (80, 0)], [(10, 80)]),
    # press and release at one tick leave the pedal up from there
    ([(10, 20, 60)], [(0, 127), (50, 0), (50, 127)], [(10, 50)]),
    # the same key struck again under the pedal ends the sustained note
    ([(10, 20, 60), (30, 40, 60)], [(0, 127), (100, 0)], [(10, 30), (30, 100)]),
    # ... and a held one too
    ([(10, 80, 60), (30, 40, 60)], [(0, 127), (100, 0)], [(10, 30), (30, 100)]),
    # another pitch is not cut
    ([(10, 20, 60), (30, 40, 61)], [(0, 127), (100, 0)], [(10, 100), (30, 100)]),
    # struck again with the pedal up: the first note keeps its end
    ([(10, 50, 60), (30, 40, 60)], [], [(10, 50), (30, 40)]),
    # two strikes of one key at one instant under the pedal: the later is kept
    ([(10, 20, 60), (10, 30, 60)], [(0, 127), (100, 0)], [(10, 100)]),
    # ... even when both are struck at the very last event
    ([(50, 50, 60), (50, 50, 60)], [(0, 127)], [(50, 50)]),
    # never released: ends at the last event (here the last note-off, 60)
    ([(10, 20, 60), (50, 60, 62)], [(0, 127)], [(10, 60), (50, 60)]),
    # ... or a later pedal event
    ([(10, 20, 60)], [(0, 127), (200, 127)], [(10, 200)]),
    # a pedal acts only on its own track
    ([(10, 20, 60, 0), (10, 20, 62, 1)], [(0, 127, 1), (100, 0, 1)], [(10, 20), (10, 100)]),
    # pedal released and pressed again: the second press sustains a later release
    ([(10, 120, 60)], [(0, 127), (100, 0), (110, 127), (200, 0)], [(10, 200)]),
  ],
)
def test_sustain_hand_built(notes, pedals, expected):
  assert sustained(notes, pedals) == expected


@st.composite
def pedal_cases(draw):
  notes = draw(
    st.lists(
      st.tuples(st.integers(0, 60), st.integers(0, 30), st.integers(60, 62), st.integers(0, 1)),
      min_size=1,
      max_size=12,
    )
  )
  notes = sorted((a, a + d, p, k) for a, d, p, k in notes)
  pedals = draw(
    st.lists(
      st.tuples(st.integers(0, 100), st.sampled_from([0, 63, 64, 127]), st.integers(0, 1)),
      max_size=8,
    )
  )
  return notes, pedals


@settings(max_examples=200, deadline=None)
@given(pedal_cases())
def test_sustain_matches_note_seq_algorithm(case):
  notes, pedals = case
  ends, removed = reference_sustain(notes, pedals)
  expected = [(n[0], ends[i]) for i, n in enumerate(notes) if i not in removed]
  assert sustained(notes, pedals) == expected


# ---- generated note tables -----------------------------------------------------


@st.composite
def note_tables(draw, max_notes=40):
  """Tables with drums, duplicates, same-pitch overlaps, notes at 0, long gaps,
  tempo changes and pedal events."""
  tpb = draw(st.sampled_from([96, 384, 480, 1000]))
  pitch = st.one_of(st.integers(59, 61), st.integers(0, 127))
  rows = draw(
    st.lists(
      st.tuples(
        st.one_of(st.just(0), st.integers(0, 40 * tpb)),
        st.integers(0, 3 * tpb),
        pitch,
        st.integers(1, 127),
        st.sampled_from([0, 0, 40, 73]),
        st.booleans(),
        st.integers(0, 1),
      ),
      min_size=1,
      max_size=max_notes,
    )
  )
  notes = [
    [a, a + d, p, v, prog, drum if draw(st.integers(0, 3)) == 0 else False, k]
    for a, d, p, v, prog, drum, k in rows
  ]
  notes += [list(n) for n in draw(st.lists(st.sampled_from(notes), max_size=3))]  # duplicates
  tempos = draw(
    st.lists(st.tuples(st.integers(1, 40 * tpb), st.integers(200_000, 1_500_000)), max_size=4)
  )
  table = from_notes(
    np.array(notes, np.int64),
    ticks_per_beat=tpb,
    tempo_ticks=[0] + [t for t, _ in tempos],
    tempo_mspq=[draw(st.integers(300_000, 1_000_000))] + [m for _, m in tempos],
  )
  num_tracks = int(table.track.max()) + 1
  pedals = draw(
    st.lists(
      st.tuples(
        st.integers(0, 40 * tpb), st.sampled_from([0, 127]), st.integers(0, num_tracks - 1)
      ),
      max_size=6,
    )
  )
  return dataclasses.replace(
    table,
    sustain_tick=np.array([p[0] for p in pedals], np.int64),
    sustain_value=np.array([p[1] for p in pedals], np.int16),
    sustain_track=np.array([p[2] for p in pedals], np.int32),
  )


OPTIONS = [
  dict(),
  dict(steps_per_second=125, max_shift_steps=7, num_velocity_bins=16),
  dict(steps_per_second=50, max_shift_steps=250, num_velocity_bins=127, sustain=False),
]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(note_tables(), st.sampled_from(OPTIONS))
def test_generated_tables_round_trip_to_reference(table, options):
  codec = get_codec("performance", **options)
  reference_options = {k: v for k, v in options.items() if k != "max_shift_steps"}
  if table.is_drum.all():
    with pytest.raises(EmptyMidiError):
      codec.encode(table)
    return
  check_round_trip(codec, table, **reference_options)
  tokens = codec.encode(table)[:, 0]
  kinds = [codec.vocab.names[k] for k in codec.vocab.split(tokens)[0]]
  # Every note-on is announced by a velocity event exactly when its bin changes.
  bins = [v for k, v in zip(kinds, codec.vocab.split(tokens)[1]) if k == "velocity"]
  assert all(a != b for a, b in zip(bins, bins[1:]))
  assert kinds.count("note-on") == kinds.count("note-off")


# ---- targeted encodings (expected tokens follow from the stated rules) ----------


def ms_table(notes, **kwargs):
  """A table in which one tick is one millisecond (1000 ticks/beat, 60 qpm)."""
  rows = [(a, b, p, v, 0, False, 0) for a, b, p, v in notes]
  return from_notes(
    np.array(rows, np.int64), ticks_per_beat=1000, tempo_mspq=(1_000_000,), **kwargs
  )


def test_note_at_time_zero_has_no_shift_and_events_are_ordered():
  # bin of velocity 80 is (80-1)//4 = 19; of 40 is 9.
  table = ms_table([(0, 100, 64, 80), (0, 50, 60, 80), (50, 100, 67, 40), (100, 200, 62, 40)])
  expected = [
    SOS,
    vel(19),
    on(60),
    on(64),
    shift(5),
    off(60),
    vel(9),
    on(67),
    shift(5),
    off(64),
    off(67),
    on(62),
    shift(10),
    off(62),
    EOS,
  ]
  assert CODEC.encode(table)[:, 0].tolist() == expected


def test_long_gaps_become_greedy_one_second_shifts():
  table = ms_table([(2500, 2510, 60, 64)])
  expected = [SOS, shift(100), shift(100), shift(50), vel(15), on(60), shift(1), off(60), EOS]
  assert CODEC.encode(table)[:, 0].tolist() == expected


def test_exact_half_steps_round_up_and_tiny_notes_last_one_step():
  # 384 ticks per beat at 120 qpm: tick 96 is 125 ms = 12.5 steps -> 13;
  # a 1-tick note rounds onto its start and lasts one step.
  rows = [(96, 97, 60, 64, 0, False, 0)]
  table = from_notes(np.array(rows), ticks_per_beat=384, tempo_mspq=(500_000,))
  assert CODEC.encode(table)[:, 0].tolist() == [
    SOS,
    shift(13),
    vel(15),
    on(60),
    shift(1),
    off(60),
    EOS,
  ]


def test_same_pitch_overlap_ends_at_next_onset_and_duplicates_collapse():
  table = ms_table([(0, 300, 60, 100), (100, 200, 60, 20), (100, 200, 60, 20), (0, 50, 60, 8)])
  notes = decoded_notes(CODEC.decode(CODEC.encode(table)))
  # The longest note at 0 is kept; it ends where the key is struck again.
  assert notes == [(0, 100, 60, 97, 0), (100, 200, 60, 17, 0)]


def test_drums_are_dropped_and_only_drums_is_an_error():
  rows = [(0, 100, 36, 100, 0, True, 1), (0, 100, 60, 100, 25, False, 0)]
  table = from_notes(np.array(rows), ticks_per_beat=1000, tempo_mspq=(1_000_000,))
  assert decoded_notes(CODEC.decode(CODEC.encode(table))) == [(0, 100, 60, 97, 0)]
  drums = from_notes(np.array(rows[:1]), ticks_per_beat=480, source="drums.mid")
  with pytest.raises(EmptyMidiError, match="drums.mid"):
    CODEC.encode(drums)


def test_vocabulary_layout():
  assert VOCAB.names == (
    "pad",
    "start-of-song",
    "end-of-song",
    "note-on",
    "note-off",
    "time-shift",
    "velocity",
  )
  assert [k.count for k in VOCAB.kinds] == [1, 1, 1, 128, 128, 100, 32]
  assert PAD == 0 and CODEC.fields.sizes == (391,) and CODEC.fields.names == ("event",)


@pytest.mark.parametrize(
  "options",
  [
    dict(steps_per_second=30),
    dict(steps_per_second=0),
    dict(max_shift_steps=0),
    dict(num_velocity_bins=100),
    dict(num_velocity_bins=0),
    dict(resolution=4),
  ],
)
def test_bad_options_raise_config_error(options):
  with pytest.raises(ConfigError):
    get_codec("performance", **options)


# ---- tolerant decoding ---------------------------------------------------------


def decode_report(tokens, strict=False):
  return CODEC.decode(np.array(tokens, np.int64), strict=strict, return_report=True)


def test_note_off_without_note_on_is_dropped_and_counted():
  midi, report = decode_report([SOS, off(60), vel(10), on(60), shift(3), off(60), off(60), EOS])
  assert decoded_notes(midi) == [(0, 30, 60, 41, 0)]
  assert report.dropped == 2
  assert report.reasons == {"note-off of a pitch that is not sounding": 2}
  with pytest.raises(DecodeError, match="row 1"):
    decode_report([SOS, off(60), EOS], strict=True)


def test_restrike_closes_the_sounding_note_and_defaults_apply():
  # No velocity event: note_seq's default velocity 100 -> its bin's 97.
  midi, report = decode_report([SOS, on(60), shift(2), on(60), shift(2), on(62), EOS])
  # The open notes end at the final time; a note starting there lasts one step.
  assert decoded_notes(midi) == [(0, 20, 60, 97, 0), (20, 40, 60, 97, 0), (40, 50, 62, 97, 0)]
  assert report.dropped == 0


def test_strike_twice_at_one_time_keeps_one_note_and_counts_the_other():
  midi, report = decode_report([SOS, vel(5), on(60), vel(20), on(60), shift(4), off(60), EOS])
  assert decoded_notes(midi) == [(0, 40, 60, 81, 0)]
  assert report.reasons == {"note-on of a pitch already struck at the same time": 1}


def test_zero_length_note_lasts_one_step():
  midi, report = decode_report([SOS, on(60), off(60), shift(5), EOS])
  assert decoded_notes(midi) == [(0, 10, 60, 97, 0)] and report.dropped == 0


def test_time_only_moves_forward():
  # The vocabulary cannot go back: onsets follow token order.
  tokens = [SOS, shift(50), on(60), shift(1), off(60), on(61), shift(1), off(61), EOS]
  notes = decoded_notes(decode_report(tokens)[0])
  assert [n[0] for n in notes] == [500, 510]


def test_rows_after_end_pads_and_extra_starts_are_counted():
  midi, report = decode_report(
    [SOS, on(60), PAD, SOS, shift(1), off(60), EOS, on(61), shift(1), PAD, PAD]
  )
  assert decoded_notes(midi) == [(0, 10, 60, 97, 0)]
  assert report.reasons == {
    "pad inside the sequence": 1,
    "start-of-song after the first row": 1,
    "after end-of-song": 2,
  }
  assert report.dropped == 4
  # Trailing padding alone is not an error.
  tokens = CODEC.encode(ms_table([(0, 10, 60, 64)]))[:, 0].tolist() + [PAD] * 5
  assert decode_report(tokens, strict=True)[1].dropped == 0


def test_strict_decode_of_valid_encoding_passes_and_corrupted_raises():
  table = ms_table([(0, 100, 60, 64), (50, 300, 64, 90), (400, 420, 30, 10)])
  tokens = CODEC.encode(table)[:, 0].tolist()
  CODEC.decode(np.array(tokens), strict=True)
  for corrupted in (
    tokens[:1] + [off(100)] + tokens[1:],
    tokens + [on(1)],
    tokens[:3] + [SOS] + tokens[3:],
    tokens[:2] + [PAD] + tokens[2:],
  ):
    with pytest.raises(DecodeError):
      CODEC.decode(np.array(corrupted), strict=True)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, VOCAB.size - 1), max_size=300))
def test_random_tokens_decode_to_a_writable_midi(tokens):
  midi, report = decode_report(tokens)
  assert report.dropped <= len(tokens)
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "decoded.mid")
    midi.dump(path)
    back = miditoolkit.MidiFile(path)
  notes = decoded_notes(back)
  assert notes == decoded_notes(midi)
  last_end = {}
  for start, end, pitch, velocity, _ in sorted(notes):
    assert end > start and 1 <= velocity <= 127
    assert last_end.get(pitch, 0) <= start  # one sounding note per pitch
    last_end[pitch] = end
