"""REMI+ codec: round trips on real files, tolerant decoding, bars and tempo.

The quantized reference that decoded notes are compared with is computed here
with plain Python over the table's notes, independently of the codec.
"""

from __future__ import annotations

import math

import miditoolkit
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtx.errors import ConfigError, DecodeError, EmptyMidiError
from mtx.representation import get_codec
from mtx.representation.bars import TIME_SIGNATURES
from mtx.representation.fields import KNOWN_DURATIONS
from mtx.representation.midi_io import note_table_from_miditoolkit, read_note_table
from mtx.representation.notetable import from_notes
from tests.midi_corpus import shared_params

RES = 12  # the codec's default positions per quarter note
DRUMS = 128
CODEC = get_codec("remi")
VOCAB = CODEC.vocab
KNOWN = [int(d) for d in KNOWN_DURATIONS]
# Half the ratio between neighbouring tempo bins (24..320 qpm, 32 bins), in log.
HALF_TEMPO_BIN = math.log(320 / 24) / 31 / 2


# ---- the independent reference ----------------------------------------------


def round_half_up_steps(ticks: int, ticks_per_beat: int, res: int = RES) -> int:
  """ticks * res / ticks_per_beat rounded to the nearest integer, halves up."""
  numerator = ticks * res
  whole, rest = divmod(numerator, ticks_per_beat)
  return whole + (1 if 2 * rest >= ticks_per_beat else 0)


def snap_duration(steps: int) -> int:
  best = KNOWN[0]
  for d in KNOWN:
    if abs(d - steps) < abs(best - steps):
      best = d
  return best


def velocity_bin(velocity: int) -> int:
  return min((max(velocity, 1) - 1) // 4, 31)  # Magenta: 32 bins of 4 velocities


def reference_notes(table, res: int = RES) -> list[tuple]:
  """(onset step, pitch, duration steps, program or 128, velocity bin), sorted."""
  notes = []
  for onset, offset, pitch, velocity, program, is_drum, _ in table.notes_array().tolist():
    start = round_half_up_steps(onset, table.ticks_per_beat, res)
    end = round_half_up_steps(offset, table.ticks_per_beat, res)
    notes.append(
      (
        start,
        pitch,
        snap_duration(max(end - start, 1)),
        DRUMS if is_drum else program,
        velocity_bin(velocity),
      )
    )
  return sorted(notes)


def decoded_notes(midi: miditoolkit.MidiFile, res: int = RES) -> list[tuple]:
  """The same tuples read off a decoded file, whose ticks lie on the grid."""
  ticks_per_step = midi.ticks_per_beat // res
  notes = []
  for inst in midi.instruments:
    for note in inst.notes:
      assert note.start % ticks_per_step == 0 and note.end % ticks_per_step == 0
      notes.append(
        (
          note.start // ticks_per_step,
          note.pitch,
          (note.end - note.start) // ticks_per_step,
          DRUMS if inst.is_drum else inst.program,
          velocity_bin(note.velocity),
        )
      )
  return sorted(notes)


def names(tokens) -> list[str]:
  return [VOCAB.describe(int(t)).split(":")[0] for t in np.asarray(tokens).reshape(-1)]


def check_round_trip(table, codec=CODEC, res: int = RES):
  tokens = codec.encode(table)
  assert tokens.dtype == np.int32 and tokens.shape[1] == 1
  assert tokens.min() >= 0 and tokens.max() < codec.fields[0].size
  midi, report = codec.decode(tokens, strict=True, return_report=True)
  assert report.dropped == 0
  assert decoded_notes(midi, res) == reference_notes(table, res)
  again = codec.encode(note_table_from_miditoolkit(midi))
  np.testing.assert_array_equal(again, tokens)
  return tokens, midi


def tok(kind: str, value: int = 0) -> int:
  return VOCAB.token(kind, value)


def note(program: int, pitch: int, velocity_bin_: int, duration_index: int) -> list[int]:
  return [
    tok("program", program),
    tok("pitch", pitch),
    tok("velocity", velocity_bin_),
    tok("duration", duration_index),
  ]


# ---- real data ----------------------------------------------------------------


@pytest.mark.parametrize("path", shared_params())
def test_shared_file_round_trips_to_its_quantized_notes(path):
  check_round_trip(read_note_table(path))


def test_music21_chorales_round_trip(music21_chorales):
  assert music21_chorales
  for path in music21_chorales:
    check_round_trip(read_note_table(path))


# ---- generated note lists -------------------------------------------------------

TICKS_PER_BEAT = st.sampled_from([96, 100, 220, 384, 480, 960])


@st.composite
def note_tables(draw):
  """Tables with drums, same-pitch overlaps, notes at 0, very long and zero-length
  notes, several tempos and time signatures (some without a token)."""
  tpb = draw(TICKS_PER_BEAT)
  n = draw(st.integers(1, 40))
  rows = []
  for _ in range(n):
    onset = draw(st.one_of(st.just(0), st.integers(0, 40 * tpb)))
    length = draw(st.one_of(st.just(0), st.integers(1, 4 * tpb), st.integers(30 * tpb, 100 * tpb)))
    is_drum = draw(st.booleans())
    program = draw(st.integers(0, 127))
    rows.append(
      (
        onset,
        onset + length,
        draw(st.integers(0, 127)),
        draw(st.integers(1, 127)),
        program,
        is_drum,
        draw(st.integers(0, 3)),
      )
    )
  if draw(st.booleans()):  # a same-pitch overlap and an exact duplicate
    onset, offset, pitch, velocity, program, is_drum, track = rows[0]
    rows.append((onset + 1, offset + tpb, pitch, velocity, program, is_drum, track))
    rows.append(rows[0])
  tempos = draw(
    st.lists(st.tuples(st.integers(0, 45 * tpb), st.integers(100_000, 3_500_000)), max_size=6)
  )
  signatures = draw(
    st.lists(
      st.tuples(
        st.integers(0, 45 * tpb),
        st.sampled_from([(4, 4), (3, 4), (6, 8), (5, 4), (7, 8), (2, 2), (12, 8), (9, 7)]),
      ),
      max_size=4,
    )
  )
  return from_notes(
    np.array(rows, np.int64),
    ticks_per_beat=tpb,
    tempo_ticks=[t for t, _ in tempos],
    tempo_mspq=[m for _, m in tempos],
    ts_ticks=[t for t, _ in signatures],
    ts_numerators=[s[0] for _, s in signatures],
    ts_denominators=[s[1] for _, s in signatures],
  )


def tempo_at(step: int, steps: list[int], qpms: list[float]) -> float:
  """The tempo in force at `step` of a map given as sorted steps (last one wins)."""
  current = qpms[0]
  for s, q in zip(steps, qpms):
    if s <= step:
      current = q
  return current


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(note_tables())
def test_generated_tables_round_trip_and_keep_their_tempo(table):
  _, midi = check_round_trip(table)
  # Tempo: at every note, the decoded tempo is the original one (clipped to
  # 24..320 qpm) within half a tempo bin.
  original_steps = [round_half_up_steps(t, table.ticks_per_beat) for t in table.tempo_tick]
  original_qpm = [min(max(q, 24.0), 320.0) for q in table.tempo_qpm.tolist()]
  tps = midi.ticks_per_beat // RES
  decoded_steps = [t.time // tps for t in midi.tempo_changes]
  decoded_qpm = [t.tempo for t in midi.tempo_changes]
  assert decoded_steps[0] == 0
  for start, *_ in reference_notes(table):
    want = tempo_at(start, original_steps, original_qpm)
    got = tempo_at(start, decoded_steps, decoded_qpm)
    assert abs(math.log(got / want)) <= HALF_TEMPO_BIN + 1e-5


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(note_tables())
def test_tokens_follow_the_remi_plus_grammar_and_note_order(table):
  """Bar [time-signature] then per position: Position, [Tempo], notes as
  Program Pitch Velocity Duration, sorted by (program, pitch, duration, velocity)."""
  tokens = CODEC.encode(table)[:, 0]
  kinds = names(tokens)
  assert kinds[0] == "start-of-song" and kinds[-1] == "end-of-song" and kinds[1] == "bar"
  groups = []  # note keys of each position
  positions = []
  for i, kind in enumerate(kinds):
    value = int(tokens[i]) - VOCAB.offset(kind)
    if kind == "time-signature":
      assert kinds[i - 1] == "bar"
    elif kind == "tempo":
      assert kinds[i - 1] == "position"
    elif kind == "bar":
      positions = []
    elif kind == "position":
      assert not positions or value > positions[-1]
      positions.append(value)
      groups.append([])
    elif kind == "program":
      assert kinds[i : i + 4] == ["program", "pitch", "velocity", "duration"]
      values = [int(t) - VOCAB.offset(k) for t, k in zip(tokens[i : i + 4], kinds[i : i + 4])]
      groups[-1].append((values[0], values[1], values[3], values[2]))
  assert kinds.count("program") == table.num_notes
  for group in groups:
    assert group == sorted(group)


def test_notes_past_the_limits_long_short_and_drums():
  """A note longer than 32 beats is written 32 beats long, a zero-length note
  one step long; drums keep their pitch and come back on a drum track."""
  tpb = 480
  rows = [
    (0, 100 * tpb, 60, 100, 5, 0, 0),  # 100 beats
    (0, 0, 62, 100, 5, 0, 0),  # zero length
    (tpb, 2 * tpb, 36, 90, 0, 1, 1),
  ]  # a kick drum
  _, midi = check_round_trip(from_notes(np.array(rows), ticks_per_beat=tpb))
  by_pitch = {n.pitch: (n, inst) for inst in midi.instruments for n in inst.notes}
  assert by_pitch[60][0].end - by_pitch[60][0].start == 32 * midi.ticks_per_beat
  assert by_pitch[62][0].end - by_pitch[62][0].start == midi.ticks_per_beat // RES
  assert by_pitch[36][1].is_drum and not by_pitch[60][1].is_drum
  assert by_pitch[36][1].program == 0 and by_pitch[60][1].program == 5


def test_overlapping_same_pitch_notes_and_duplicates_are_all_kept():
  tpb = 480
  rows = [
    (0, 2 * tpb, 60, 80, 0, 0, 0),
    (tpb, 3 * tpb, 60, 80, 0, 0, 0),
    (tpb, 3 * tpb, 60, 80, 0, 0, 0),
  ]
  _, midi = check_round_trip(from_notes(np.array(rows), ticks_per_beat=tpb))
  assert sum(len(inst.notes) for inst in midi.instruments) == 3


def test_sustain_is_ignored_and_tracks_merge_by_program():
  tpb = 480
  midi = miditoolkit.MidiFile(ticks_per_beat=tpb)
  for pitch in (60, 64):  # two tracks with one program
    inst = miditoolkit.Instrument(program=40)
    inst.notes = [miditoolkit.Note(80, pitch, 0, tpb)]
    inst.control_changes = [
      miditoolkit.ControlChange(64, 127, 0),
      miditoolkit.ControlChange(64, 0, 4 * tpb),
    ]
    midi.instruments.append(inst)
  decoded = CODEC.decode(CODEC.encode(midi))
  assert len(decoded.instruments) == 1 and decoded.instruments[0].program == 40
  assert sorted((n.pitch, n.start, n.end) for n in decoded.instruments[0].notes) == [
    (60, 0, tpb),
    (64, 0, tpb),
  ]
  assert not decoded.instruments[0].control_changes


def test_other_resolution_is_exact_on_its_grid():
  codec = get_codec("remi", resolution=24, ticks_per_beat=960)
  rows = [(0, 5, 60, 64, 0, 0, 0), (10, 100, 62, 64, 0, 0, 0), (470, 500, 64, 64, 0, 0, 0)]
  check_round_trip(from_notes(np.array(rows), ticks_per_beat=480), codec=codec, res=24)
  assert codec.vocab.count("position") == 8 * 24


@pytest.mark.parametrize(
  "options", [dict(resolution=6), dict(resolution=0), dict(resolution=12, ticks_per_beat=100)]
)
def test_bad_options_raise_config_error(options):
  with pytest.raises(ConfigError):
    get_codec("remi", **options)


def test_empty_table_raises_empty_midi_error():
  table = from_notes(np.zeros((0, 7)), ticks_per_beat=480, source="empty.mid")
  with pytest.raises(EmptyMidiError, match="empty.mid"):
    CODEC.encode_table(table)


# ---- bars, time signatures and tempo in the token stream ----------------------


def test_every_bar_up_to_the_last_onset_has_a_bar_token_empty_bars_included():
  tpb = 480
  # 4/4: bars of 4 beats. Notes in bar 0 and bar 5 (beat 21.5).
  rows = [(0, tpb, 60, 64, 0, 0, 0), (21 * tpb + tpb // 2, 22 * tpb, 62, 64, 0, 0, 0)]
  tokens, _ = check_round_trip(from_notes(np.array(rows), ticks_per_beat=tpb))
  kinds = names(tokens)
  assert kinds[0] == "start-of-song" and kinds[-1] == "end-of-song"
  assert kinds.count("bar") == 6
  assert kinds[1:5] == ["bar", "time-signature", "position", "tempo"]
  assert kinds.count("time-signature") == 1
  # The second note is at position 1.5 beats = 18 steps of the last bar.
  last_bar = len(kinds) - 1 - kinds[::-1].index("bar")
  assert tokens[last_bar + 1, 0] == tok("position", 18)


def test_time_signature_tokens_follow_the_signature_changes():
  tpb = 480
  # 3/4 for two bars (6 beats), then 6/8 (3 beats a bar) from beat 6, with a
  # change at beat 10 (mid-bar of 6/8) to 2/4, which starts at the next barline (12).
  rows = [(b * tpb, b * tpb + 10, 60, 64, 0, 0, 0) for b in range(0, 16)]
  table = from_notes(
    np.array(rows),
    ticks_per_beat=tpb,
    ts_ticks=[0, 6 * tpb, 10 * tpb],
    ts_numerators=[3, 6, 2],
    ts_denominators=[4, 8, 4],
  )
  tokens, midi = check_round_trip(table)
  kinds = names(tokens)
  assert kinds.count("bar") == 2 + 2 + 2  # beats 0-6, 6-12, 12-16 in 2/4
  assert kinds.count("time-signature") == 3
  got = [(t.time // tpb, t.numerator, t.denominator) for t in midi.time_signature_changes]
  assert got == [(0, 3, 4), (6, 6, 8), (12, 2, 4)]


def test_unsupported_time_signature_is_read_as_four_four():
  tpb = 480
  rows = [(0, tpb, 60, 64, 0, 0, 0), (5 * tpb, 6 * tpb, 60, 64, 0, 0, 0)]
  table = from_notes(
    np.array(rows), ticks_per_beat=tpb, ts_ticks=[0], ts_numerators=[9], ts_denominators=[7]
  )
  tokens, midi = check_round_trip(table)
  assert names(tokens).count("bar") == 2
  assert [(t.numerator, t.denominator) for t in midi.time_signature_changes] == [(4, 4)]


def test_tempo_changes_are_written_where_the_binned_tempo_changes():
  tpb = 480
  rows = [(b * tpb, b * tpb + tpb, 60, 64, 0, 0, 0) for b in range(12)]
  # 120 qpm, a change to 120.5 qpm at beat 2 (same bin: no token), 60 qpm at
  # beat 5, and a change past the last bar (beat 40: dropped).
  mspq = [500_000, round(60e6 / 120.5), 1_000_000, 400_000]
  table = from_notes(
    np.array(rows), ticks_per_beat=tpb, tempo_ticks=[0, 2 * tpb, 5 * tpb, 40 * tpb], tempo_mspq=mspq
  )
  tokens, midi = check_round_trip(table)
  assert names(tokens).count("tempo") == 2
  changes = [(t.time // tpb, t.tempo) for t in midi.tempo_changes]
  assert [beat for beat, _ in changes] == [0, 5]
  assert abs(math.log(changes[0][1] / 120)) <= HALF_TEMPO_BIN
  assert abs(math.log(changes[1][1] / 60)) <= HALF_TEMPO_BIN


def test_every_tempo_bin_survives_the_midi_round_trip():
  """bin -> integer microseconds per quarter -> the same bin, for all 32 bins."""
  bins = list(range(32))
  body = [tok("start-of-song")]
  for b in bins:  # one bar per bin, written as the encoder writes it
    signature = [tok("time-signature", TIME_SIGNATURES.index((4, 4)))] if b == 0 else []
    body += [tok("bar"), *signature, tok("position", 0), tok("tempo", b), *note(0, 60, 10, 11)]
  body.append(tok("end-of-song"))
  midi = CODEC.decode(np.array(body), strict=True)
  tokens = CODEC.encode(midi)[:, 0]
  np.testing.assert_array_equal(tokens, body)
  qpms = [t.tempo for t in midi.tempo_changes]
  assert min(qpms) == pytest.approx(24, rel=1e-4) and max(qpms) == pytest.approx(320, rel=1e-4)
  assert midi.ticks_per_beat == 480


# ---- tolerant decoding --------------------------------------------------------


def valid_tokens():
  rows = [(0, 480, 60, 64, 0, 0, 0), (240, 480, 64, 64, 0, 0, 0), (960, 1440, 36, 100, 0, 1, 1)]
  return CODEC.encode(from_notes(np.array(rows), ticks_per_beat=480))[:, 0]


def decode_report(tokens):
  return CODEC.decode(np.asarray(tokens), return_report=True)


def test_strict_decode_of_a_valid_encoding_raises_nothing():
  tokens = valid_tokens()
  midi, report = CODEC.decode(tokens, strict=True, return_report=True)
  assert report.dropped == 0 and sum(len(i.notes) for i in midi.instruments) == 3
  padded = np.concatenate([tokens, [tok("pad")] * 5])  # trailing pads are fine
  CODEC.decode(padded, strict=True)


@pytest.mark.parametrize(
  "corrupt",
  [
    lambda t: np.insert(t, 2, tok("pitch", 60)),  # a pitch without its program
    lambda t: np.delete(t, len(t) - 2),  # the last note loses its duration
    lambda t: np.insert(t, len(t) - 1, tok("position", 0)),  # position backwards
    lambda t: np.insert(t, 1, tok("program", 0)),  # a note before the first bar
    lambda t: np.insert(t, 4, tok("start-of-song")),
  ],
)
def test_strict_decode_of_a_corrupted_encoding_raises(corrupt):
  with pytest.raises(DecodeError):
    CODEC.decode(corrupt(valid_tokens()), strict=True)


def test_incomplete_notes_are_dropped_and_counted():
  body = [
    tok("start-of-song"),
    tok("bar"),
    tok("position", 0),
    tok("program", 0),
    tok("pitch", 60),
    tok("velocity", 10),  # no duration
    *note(0, 62, 10, 11),
    tok("program", 0),
    tok("pitch", 64),  # cut by a position
    tok("position", 12),
    *note(0, 65, 10, 11),
    tok("velocity", 3),  # a velocity without program and pitch
    tok("program", 0),
    tok("end-of-song"),
  ]  # cut by the end
  midi, report = decode_report(body)
  assert sorted(n.pitch for i in midi.instruments for n in i.notes) == [62, 65]
  assert report.reasons["incomplete note"] == 3 + 2 + 1
  assert report.reasons["velocity out of note order"] == 1
  assert report.dropped == 7


def test_a_position_backwards_is_dropped_and_notes_stay_at_the_last_position():
  body = [
    tok("start-of-song"),
    tok("bar"),
    tok("position", 24),
    *note(0, 60, 10, 11),
    tok("position", 12),
    *note(0, 62, 10, 11),  # backwards: stays at 24
    tok("position", 23),
    *note(0, 63, 10, 11),  # one step backwards
    tok("position", 95),
    *note(0, 64, 10, 11),  # past the end of a 4/4 bar
    tok("bar"),
    *note(0, 65, 10, 11),  # no position yet: position 0
    tok("end-of-song"),
  ]
  midi, report = decode_report(body)
  starts = {n.pitch: n.start for i in midi.instruments for n in i.notes}
  step = midi.ticks_per_beat // RES
  assert starts == {60: 24 * step, 62: 24 * step, 63: 24 * step, 64: 24 * step, 65: 48 * step}
  assert report.dropped == 3
  assert report.reasons["position backwards or past the bar end"] == 3


def test_time_signature_inside_a_bar_is_dropped_and_bars_follow_the_signature():
  three_four = TIME_SIGNATURES.index((3, 4))
  body = [
    tok("start-of-song"),
    tok("bar"),
    tok("time-signature", three_four),
    tok("position", 0),
    tok("time-signature", 0),  # inside the bar: dropped
    *note(0, 60, 10, 11),
    tok("bar"),
    tok("position", 6),
    *note(0, 62, 10, 11),
    tok("end-of-song"),
  ]
  midi, report = decode_report(body)
  step = midi.ticks_per_beat // RES
  starts = {n.pitch: n.start for i in midi.instruments for n in i.notes}
  assert starts == {60: 0, 62: (36 + 6) * step}  # a 3/4 bar is 36 steps
  assert report.reasons == {"time-signature inside a bar": 1}
  assert [(t.numerator, t.denominator, t.time) for t in midi.time_signature_changes] == [(3, 4, 0)]


def test_end_of_song_pad_and_start_of_song_rows():
  body = list(valid_tokens())
  n_after = 3
  tail = [*note(0, 70, 10, 11)[:n_after], tok("pad"), tok("pad")]
  midi, report = decode_report(body + tail)
  assert report.reasons == {"after end-of-song": n_after}
  assert sum(len(i.notes) for i in midi.instruments) == 3
  # A pad inside the sequence and a second start-of-song are dropped; neither
  # breaks the note they interrupt.
  inner = body[:-1]
  at = inner.index(tok("pitch", 64))
  inner[at:at] = [tok("pad"), tok("start-of-song")]
  midi, report = decode_report(inner)  # and no end-of-song at all
  assert report.reasons == {"pad inside the sequence": 1, "start-of-song after the first row": 1}
  assert sum(len(i.notes) for i in midi.instruments) == 3
  # A pad right before the end-of-song is inside the sequence too.
  midi, report = decode_report(body[:-1] + [tok("pad"), body[-1]])
  assert report.reasons == {"pad inside the sequence": 1}


def test_tokens_before_the_first_bar_are_dropped():
  body = [
    tok("start-of-song"),
    tok("position", 3),
    tok("tempo", 5),
    *note(0, 60, 1, 1),
    tok("bar"),
    *note(0, 61, 1, 1),
    tok("end-of-song"),
  ]
  midi, report = decode_report(body)
  assert report.dropped == 6
  assert [n.pitch for i in midi.instruments for n in i.notes] == [61]


@st.composite
def token_arrays(draw):
  """Uniform ids, or ids drawn kind first so that notes and bars are frequent."""
  size = CODEC.fields[0].size
  if draw(st.booleans()):
    return draw(st.lists(st.integers(0, size - 1), max_size=300))
  kinds = st.sampled_from(
    [
      "bar",
      "time-signature",
      "position",
      "tempo",
      "program",
      "pitch",
      "velocity",
      "duration",
      "program",
      "pitch",
      "velocity",
      "duration",
      "pad",
      "start-of-song",
      "end-of-song",
    ]
  )
  ids = []
  for kind in draw(st.lists(kinds, max_size=300)):
    ids.append(tok(kind, draw(st.integers(0, VOCAB.count(kind) - 1))))
  return ids


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(token_arrays())
def test_any_in_range_tokens_decode_to_a_writable_midi_file(tmp_path_factory, ids):
  midi, report = CODEC.decode(np.array(ids, np.int64), return_report=True)
  assert 0 <= report.dropped <= len(ids)
  path = tmp_path_factory.mktemp("remi") / "decoded.mid"
  midi.dump(str(path))
  back = miditoolkit.MidiFile(str(path))
  assert sum(len(i.notes) for i in back.instruments) == sum(len(i.notes) for i in midi.instruments)
  # Decoded notes encode again into a sequence that decodes to the same notes.
  if any(i.notes for i in midi.instruments):
    again = CODEC.decode(CODEC.encode(midi), strict=True)
    assert decoded_notes(again) == decoded_notes(midi)
