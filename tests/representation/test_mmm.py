"""MMM MultiTrack codec: exact round trips, the track/bar grammar, and tolerant decoding."""

from __future__ import annotations

import collections
import os
import tempfile

import hypothesis.strategies as st
import miditoolkit
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from mtx.errors import ConfigError, DecodeError, EmptyMidiError
from mtx.representation import bars, get_codec
from mtx.representation.midi_io import note_table_from_miditoolkit, read_note_table
from mtx.representation.notetable import from_notes
from tests.midi_corpus import SHARED_MIDI_FILES, shared_params

RES = 12  # the default resolution: steps per quarter note
OUT_TPB = 480  # the default ticks per beat of decoded MIDI
TPS = OUT_TPB // RES  # ticks per step in decoded MIDI
DRUMS = 128

CODEC = get_codec("mmm")
VOCAB = CODEC.vocab
SIZE = CODEC.fields.sizes[0]


def tok(kind: str, value: int = 0) -> int:
  return VOCAB.token(kind, value)


def kinds_of(tokens) -> list[tuple[str, int]]:
  kind, value = VOCAB.split(np.asarray(tokens).reshape(-1))
  return [(VOCAB.names[k], v) for k, v in zip(kind.tolist(), value.tolist())]


def ts_index(numerator: int, denominator: int) -> int:
  return bars.TIME_SIGNATURES.index((numerator, denominator))


# ---- the reference, written independently of the codec -----------------------


def to_step(tick: int, ticks_per_beat: int, resolution: int = RES) -> int:
  """Nearest step, halves rounded up."""
  return (2 * tick * resolution + ticks_per_beat) // (2 * ticks_per_beat)


def reference_tracks(table, resolution: int = RES):
  """What MMM keeps of each track, as a sorted list of (instrument, notes).

  Each note is (onset step, offset step, pitch); an offset is at least one step
  after its onset; in one track, every note is kept, and a note ends at the latest
  on the next later onset of its pitch (notes of one onset all sound together).
  """
  tpb = table.ticks_per_beat
  voices = collections.defaultdict(list)  # (track, pitch) -> [(onset, offset)]
  instrument = {}
  for onset, offset, pitch, _, program, is_drum, track in table.notes_array().tolist():
    start = to_step(onset, tpb, resolution)
    end = max(to_step(offset, tpb, resolution), start + 1)
    voices[(track, pitch)].append((start, end))
    instrument[track] = DRUMS if is_drum else program
  tracks = collections.defaultdict(list)
  for (track, pitch), notes in voices.items():
    onsets = sorted({start for start, _ in notes})
    for start, end in notes:
      later = [o for o in onsets if o > start]
      tracks[track].append((start, min([end] + later[:1]), pitch))
  return sorted((instrument[t], sorted(notes)) for t, notes in tracks.items())


def decoded_tracks(midi, resolution: int = RES, velocity: int = 64):
  """The decoded MIDI in the reference's form (read back as a table, so the layers
  the writer splits a track into are one track again); checks the tick grid and
  velocity."""
  tps = midi.ticks_per_beat // resolution
  table = note_table_from_miditoolkit(midi)
  tracks = collections.defaultdict(list)
  instrument = {}
  for onset, offset, pitch, vel, program, is_drum, track in table.notes_array().tolist():
    assert onset % tps == 0 and offset % tps == 0
    assert vel == velocity
    if is_drum:
      assert program == 0
    instrument[track] = DRUMS if is_drum else program
    tracks[track].append((onset // tps, offset // tps, pitch))
  return sorted((instrument[t], sorted(notes)) for t, notes in tracks.items())


def expected_grid(table, tracks):
  """The bar grid the tokens must follow: up to the bar holding the last offset."""
  last_offset = max(end for _, notes in tracks for _, end, _ in notes)
  return bars.bar_grid(table, RES, last_offset - 1)


# ---- the grammar, checked on every encoding -----------------------------------


def check_grammar(tokens, table, tracks):
  """tokens = SOS, then per track: Track-start Instrument, every bar of the grid
  (Bar-start [Time-signature] events Bar-end), Track-end; then EOS."""
  events = kinds_of(tokens)
  assert events[0] == ("start-of-song", 0) and events[-1] == ("end-of-song", 0)
  starts, signatures = expected_grid(table, tracks)
  changed = [b == 0 or signatures[b] != signatures[b - 1] for b in range(len(starts))]
  instruments = []
  i = 1
  while events[i][0] == "track-start":
    assert events[i + 1][0] == "instrument"
    instruments.append(events[i + 1][1])
    i += 2
    sounding = {}  # pitch -> (onset, notes of it sounding)
    for bar in range(len(starts)):
      assert events[i] == ("bar-start", 0)
      i += 1
      if changed[bar]:
        assert events[i] == ("time-signature", int(signatures[bar]))
        i += 1
      length = bars.bar_steps(int(signatures[bar]), RES)
      position, last = 0, (0, -1, -1)  # (position, off 0 / on 1, pitch)
      while events[i][0] != "bar-end":
        name, value = events[i]
        if name == "time-shift":
          position += value + 1
          assert position <= length
        else:
          assert name in ("note-on", "note-off")
          order = (position, int(name == "note-on"), value)
          assert order >= last  # offs before ons, ascending pitch (a pitch repeats)
          last = order
          # an onset on a barline opens the later bar, an offset there ends the earlier
          assert position < length if name == "note-on" else position > 0
          now = (bar, position)
          if name == "note-on":  # a sounding pitch starts again only with its onset
            onset, count = sounding.get(value, (now, 0))
            assert onset == now
            sounding[value] = (now, count + 1)
          else:
            onset, count = sounding.pop(value)
            if count > 1:
              sounding[value] = (onset, count - 1)
        i += 1
      i += 1
    assert not sounding
    assert events[i] == ("track-end", 0)
    i += 1
  assert i == len(events) - 1
  assert sorted(instruments) == sorted(inst for inst, _ in tracks)


def check_round_trip(codec, source, table, *, resolution=RES, velocity=64):
  """Encoding is in range, follows the grammar (at the default resolution),
  decodes to the reference's notes and re-encodes to the same tokens."""
  tokens = codec.encode(source)
  assert tokens.dtype == np.int32 and tokens.ndim == 2 and tokens.shape[1] == 1
  assert tokens.min() >= 0 and tokens.max() < codec.fields.sizes[0]
  reference = reference_tracks(table, resolution)
  if resolution == RES:
    check_grammar(tokens, table, reference)
  midi, report = codec.decode(tokens, strict=True, return_report=True)
  assert report.dropped == 0
  assert decoded_tracks(midi, resolution, velocity) == reference
  np.testing.assert_array_equal(codec.encode(midi), tokens)
  return tokens, midi


def check_time_signatures(midi, table, tracks):
  """Decoded MIDI carries the grid's signature at each bar where it changes."""
  starts, signatures = expected_grid(table, tracks)
  expected = [
    (int(starts[b]) * TPS, bars.TIME_SIGNATURES[int(signatures[b])])
    for b in range(len(starts))
    if b == 0 or signatures[b] != signatures[b - 1]
  ]
  got = [(ts.time, (ts.numerator, ts.denominator)) for ts in midi.time_signature_changes]
  assert got == expected


# ---- real data -----------------------------------------------------------------


@pytest.mark.parametrize("path", shared_params())
def test_real_files_round_trip_exactly_and_decode_to_the_quantized_notes(path):
  table = read_note_table(path)
  _, midi = check_round_trip(CODEC, path, table)
  check_time_signatures(midi, table, reference_tracks(table))


def test_music21_chorales_round_trip_exactly_and_decode_to_the_quantized_notes(music21_chorales):
  assert music21_chorales
  for path in music21_chorales:
    table = read_note_table(path)
    _, midi = check_round_trip(CODEC, path, table)
    check_time_signatures(midi, table, reference_tracks(table))


# ---- generated note lists ------------------------------------------------------

SIGNATURES = [
  (4, 4),
  (3, 4),
  (6, 8),
  (5, 4),
  (7, 8),
  (2, 2),
  (9, 16),
  (1, 16),
  (3, 32),
  (17, 4),
]  # the last two have no token: read as 4/4


@st.composite
def note_tables(draw, max_notes=30):
  """Tables of up to 4 tracks (drums among them) with same-pitch overlaps,
  exact duplicates, notes at tick 0, notes shorter than a step and time
  signature changes off the barlines."""
  tpb = draw(st.sampled_from([24, 96, 100, 120, 384, 480]))
  programs = draw(st.lists(st.integers(0, 127), min_size=4, max_size=4))
  drums = draw(st.lists(st.booleans(), min_size=4, max_size=4))
  rows = []
  for _ in range(draw(st.integers(1, max_notes))):
    if rows and draw(st.integers(0, 5)) == 0:
      rows.append(rows[draw(st.integers(0, len(rows) - 1))])  # exact duplicate
      continue
    track = draw(st.integers(0, 3))
    onset = draw(st.one_of(st.just(0), st.integers(0, 20 * tpb)))
    duration = draw(st.one_of(st.integers(0, tpb // 12), st.integers(0, 12 * tpb)))
    pitch = draw(st.one_of(st.integers(60, 62), st.integers(0, 127)))
    velocity = draw(st.integers(1, 127))
    rows.append(
      [onset, onset + duration, pitch, velocity, programs[track], int(drums[track]), track]
    )
  changes = draw(
    st.lists(st.tuples(st.integers(0, 24 * tpb), st.sampled_from(SIGNATURES)), max_size=3)
  )
  return from_notes(
    np.array(rows),
    ticks_per_beat=tpb,
    ts_ticks=[tick for tick, _ in changes],
    ts_numerators=[sig[0] for _, sig in changes],
    ts_denominators=[sig[1] for _, sig in changes],
  )


@settings(max_examples=200, deadline=None)
@given(note_tables())
def test_generated_tables_round_trip_and_keep_every_track_and_quantized_note(table):
  _, midi = check_round_trip(CODEC, table, table)
  check_time_signatures(midi, table, reference_tracks(table))


@settings(max_examples=30, deadline=None)
@given(note_tables(max_notes=12), st.sampled_from([4, 8, 24]))
def test_other_resolutions_round_trip_and_keep_the_quantized_notes(table, resolution):
  codec = get_codec("mmm", resolution=resolution, ticks_per_beat=resolution * 10, velocity=100)
  check_round_trip(codec, table, table, resolution=resolution, velocity=100)


def test_a_note_far_in_time_is_kept_with_every_empty_bar_before_it():
  tpb = 96
  notes = [[0, tpb, 60, 90, 0, 0, 0], [4000 * tpb, 4001 * tpb, 61, 90, 0, 0, 0]]
  table = from_notes(np.array(notes), ticks_per_beat=tpb)
  tokens, midi = check_round_trip(CODEC, table, table)
  events = kinds_of(tokens)
  assert sum(name == "bar-start" for name, _ in events) == 1001  # 4/4 bars 0..1000
  assert decoded_tracks(midi)[0][1][-1] == (4000 * RES, 4001 * RES, 61)


def test_a_note_crossing_barlines_has_its_note_off_in_the_bar_where_it_ends():
  tpb = 480
  notes = [
    [tpb, 4 * tpb, 60, 90, 40, 0, 0],  # ends on the barline of bar 1
    [2 * tpb, 10 * tpb, 62, 90, 40, 0, 0],  # from bar 0 to the middle of bar 2
    [12 * tpb, 16 * tpb, 64, 90, 40, 0, 0],
  ]  # fills bar 3, the last bar
  table = from_notes(np.array(notes), ticks_per_beat=tpb)
  tokens, _ = check_round_trip(CODEC, table, table)
  bar_of = {}
  bar = -1
  for name, value in kinds_of(tokens):
    if name == "bar-start":
      bar += 1
    elif name in ("note-on", "note-off"):
      bar_of[(name, value)] = bar
  assert bar_of == {
    ("note-on", 60): 0,
    ("note-off", 60): 0,
    ("note-on", 62): 0,
    ("note-off", 62): 2,
    ("note-on", 64): 3,
    ("note-off", 64): 3,
  }
  assert bar == 3  # the note ending on the barline of bar 4 needs no bar 4


def test_same_pitch_overlaps_shorten_the_earlier_note_and_same_onset_notes_are_all_kept():
  tpb = 12
  notes = [
    [0, 24, 60, 80, 0, 0, 0],
    [12, 36, 60, 80, 0, 0, 0],  # overlap
    [48, 50, 62, 80, 0, 0, 0],
    [48, 60, 62, 80, 0, 0, 0],  # same onset
    [72, 80, 62, 80, 0, 0, 0],
    [72, 80, 62, 90, 0, 0, 0],  # exact duplicates
    [73, 90, 62, 80, 0, 0, 0],  # ends both duplicates one step after their onset
    [0, 0, 64, 80, 0, 0, 0],
  ]  # zero length
  table = from_notes(np.array(notes), ticks_per_beat=tpb)
  tokens, midi = check_round_trip(CODEC, table, table)
  assert decoded_tracks(midi) == [
    (
      0,
      [
        (0, 1, 64),
        (0, 12, 60),
        (12, 36, 60),
        (48, 50, 62),
        (48, 60, 62),
        (72, 73, 62),
        (72, 73, 62),
        (73, 90, 62),
      ],
    )
  ]
  assert kinds_of(tokens).count(("note-on", 62)) == 5


def test_fast_repeated_notes_of_real_files_are_all_kept():
  """Every note of a file survives the round trip, whatever shares its step: the
  Mahler symphony's fast repeated notes quantize onto one step for 13.6% of its notes."""
  if not SHARED_MIDI_FILES:
    pytest.skip("no real MIDI corpus at ../shared/midi")
  path = next(p for p in SHARED_MIDI_FILES if p.name == "mahler.mid")
  table = read_note_table(path)
  _, midi = check_round_trip(CODEC, path, table)
  assert sum(len(notes) for _, notes in decoded_tracks(midi)) == table.num_notes


def test_drum_tracks_get_instrument_128_and_decode_as_drums():
  notes = [[0, 100, 36, 100, 25, 1, 0], [0, 100, 60, 100, 25, 0, 1]]
  table = from_notes(np.array(notes), ticks_per_beat=100)
  tokens, midi = check_round_trip(CODEC, table, table)
  assert ("instrument", DRUMS) in kinds_of(tokens)
  assert ("instrument", 25) in kinds_of(tokens)
  assert sorted((i.is_drum, i.program) for i in midi.instruments) == [(False, 25), (True, 0)]


def test_two_tracks_of_one_program_stay_two_tracks():
  notes = [[0, 480, 60, 80, 0, 0, 0], [0, 480, 60, 80, 0, 0, 1]]
  table = from_notes(np.array(notes), ticks_per_beat=480)
  _, midi = check_round_trip(CODEC, table, table)
  assert len(midi.instruments) == 2


def test_tables_without_notes_raise_empty_midi_error():
  empty = from_notes(np.zeros((0, 7)), ticks_per_beat=480, source="silence.mid")
  with pytest.raises(EmptyMidiError, match="silence.mid"):
    CODEC.encode(empty)
  with pytest.raises(EmptyMidiError, match="silence.mid"):
    CODEC.encode_table(empty)


@pytest.mark.parametrize(
  "options",
  [
    dict(resolution=6),
    dict(resolution=0),
    dict(ticks_per_beat=100),
    dict(velocity=0),
    dict(velocity=128),
    dict(colour="red"),
  ],
)
def test_bad_options_raise_config_error(options):
  with pytest.raises(ConfigError):
    get_codec("mmm", **options)


def test_the_vocabulary_has_the_documented_blocks_and_sizes():
  counts = {k.name: k.count for k in VOCAB.kinds}
  assert list(counts) == [
    "pad",
    "start-of-song",
    "end-of-song",
    "track-start",
    "track-end",
    "instrument",
    "bar-start",
    "bar-end",
    "time-signature",
    "note-on",
    "note-off",
    "time-shift",
  ]
  assert counts["instrument"] == 129 and counts["note-on"] == counts["note-off"] == 128
  assert counts["time-signature"] == len(bars.TIME_SIGNATURES)
  assert counts["time-shift"] == 8 * RES  # up to one bar of 8 beats
  assert tok("pad") == 0 and CODEC.fields.names == ("event",)
  assert SIZE == sum(counts.values()) == VOCAB.size


# ---- tolerant decoding ---------------------------------------------------------


def song(*body):
  return np.array([tok("start-of-song"), *body, tok("end-of-song")])


def track(instrument, *bars_body):
  return [tok("track-start"), tok("instrument", instrument), *bars_body, tok("track-end")]


def bar(*body, ts=None):
  head = [tok("bar-start")] + ([] if ts is None else [tok("time-signature", ts)])
  return head + list(body) + [tok("bar-end")]


def on(pitch):
  return tok("note-on", pitch)


def off(pitch):
  return tok("note-off", pitch)


def shift(steps):
  return tok("time-shift", steps - 1)


FOUR = ts_index(4, 4)


def decode(tokens):
  midi, report = CODEC.decode(tokens, return_report=True)
  return decoded_tracks(midi), report


def test_a_valid_hand_written_sequence_decodes_to_its_notes():
  tokens = song(
    *track(
      0,
      *bar(on(60), shift(12), off(60), on(62), shift(36), off(62), ts=FOUR),
      *bar(on(64), shift(6), off(64)),
    )
  )
  tracks, report = decode(tokens)
  assert report.dropped == 0
  assert tracks == [(0, [(0, 12, 60), (12, 48, 62), (48, 54, 64)])]
  CODEC.decode(tokens, strict=True)


def test_a_note_off_without_its_note_on_is_dropped_and_counted():
  tokens = song(*track(0, *bar(off(60), on(60), shift(12), off(60), off(61), ts=FOUR)))
  tracks, report = decode(tokens)
  assert tracks == [(0, [(0, 12, 60)])]
  assert report.dropped == 2
  assert report.reasons == {"note-off without a sounding note": 2}
  with pytest.raises(DecodeError, match="row 5"):
    CODEC.decode(tokens, strict=True)


def test_time_cannot_run_past_the_bar_end_and_never_goes_back():
  # MMM time only moves forward (time-shifts are positive); the malformed case
  # is a shift past the bar's end, which is dropped, leaving time where it was.
  tokens = song(
    *track(
      0,
      *bar(shift(40), shift(12), on(60), shift(8), off(60), ts=FOUR),
      *bar(on(61), shift(48), off(61)),
    )
  )
  tracks, report = decode(tokens)
  assert tracks == [(0, [(40, 48, 60), (48, 96, 61)])]
  assert report.reasons == {"time-shift past the bar end": 1}


def test_the_time_signature_sets_the_bar_length_and_is_written_from_the_first_track():
  three = ts_index(3, 4)
  tokens = song(
    *track(
      0,
      *bar(ts=three),
      *bar(on(60), shift(1), off(60)),
      *bar(ts=FOUR),
      *bar(on(62), shift(1), off(62)),
    ),
    *track(40, *bar(ts=ts_index(7, 8)), *bar(on(50), shift(1), off(50))),
  )
  midi, report = CODEC.decode(tokens, return_report=True)
  assert report.dropped == 0
  assert decoded_tracks(midi) == [(0, [(36, 37, 60), (120, 121, 62)]), (40, [(42, 43, 50)])]
  assert [(t.time, t.numerator, t.denominator) for t in midi.time_signature_changes] == [
    (0, 3, 4),
    (72 * TPS, 4, 4),
  ]


def test_misplaced_structure_tokens_are_dropped_and_counted():
  tokens = song(
    on(60),  # outside a track
    tok("track-start"),
    on(61),
    tok("bar-end"),  # outside a bar
    tok("instrument", 5),
    tok("bar-start"),
    tok("time-signature", FOUR),
    on(62),
    tok("time-signature", FOUR),  # time signature inside the bar
    tok("instrument", 7),  # instrument inside a bar
    shift(1),
    off(62),
    tok("bar-end"),
    shift(1),  # between bars
    tok("track-end"),
    tok("track-end"),
    tok("bar-start"),
  )  # outside a track
  tracks, report = decode(tokens)
  assert tracks == [(5, [(0, 1, 62)])]
  assert report.reasons == {
    "note-on outside a track": 1,
    "note-on outside a bar": 1,
    "bar-end outside a bar": 1,
    "time-signature not right after bar-start": 1,
    "instrument repeated or after the track's first bar": 1,
    "time-shift outside a bar": 1,
    "track-end outside a track": 1,
    "bar-start outside a track": 1,
  }
  assert report.dropped == 8


def test_a_track_without_instrument_plays_program_0():
  tracks, report = decode(
    song(tok("track-start"), *bar(on(60), shift(3), off(60)), tok("track-end"))
  )
  assert tracks == [(0, [(0, 3, 60)])] and report.dropped == 0


def test_notes_still_sounding_end_with_their_track():
  tokens = song(
    *track(0, *bar(on(60), shift(6), on(64), ts=FOUR)),  # ends at the bar end
    *track(33, *bar(on(40), shift(5))[:-1]),  # no bar-end: ends at step 5
    tok("track-start"),
    *bar(shift(12), on(70))[:-1],
  )  # end-of-song: at 12
  tracks, report = decode(tokens)
  assert report.dropped == 0
  assert tracks == [(0, [(0, 48, 60), (6, 48, 64)]), (0, [(12, 13, 70)]), (33, [(0, 5, 40)])]


def test_a_note_on_of_a_sounding_pitch_ends_the_sounding_note():
  tokens = song(
    *track(
      0,
      *bar(on(60), shift(6), on(60), on(60), shift(6), off(60), on(61), off(61), shift(3), off(61)),
    )
  )
  tracks, report = decode(tokens)
  # the second note-on at step 6 is one more note of that onset: one note-off ends one
  # of the two, the other sounds on to the end of the track (the bar's end, 48)
  assert tracks == [(0, [(0, 6, 60), (6, 12, 60), (6, 48, 60), (12, 15, 61)])]
  assert report.reasons == {"note-off on its note-on's step": 1}


def test_rows_after_end_of_song_and_stray_pads_and_starts_are_counted():
  body = track(0, *bar(on(60), shift(1), off(60)))
  tokens = np.array(
    [
      tok("start-of-song"),
      *body[:3],
      tok("pad"),
      tok("start-of-song"),
      *body[3:],
      tok("end-of-song"),
      on(61),
      tok("pad"),
      off(61),
      tok("pad"),
      tok("pad"),
    ]
  )
  tracks, report = decode(tokens)
  assert tracks == [(0, [(0, 1, 60)])]
  assert report.reasons == {
    "pad inside the sequence": 1,
    "start-of-song after the first row": 1,
    "after end-of-song": 2,
  }
  # trailing pads after a complete song are not counted
  tracks, report = decode(np.append(song(*body), [tok("pad")] * 3))
  assert report.dropped == 0 and tracks == [(0, [(0, 1, 60)])]


def test_strict_decoding_accepts_encodings_and_rejects_corrupted_ones():
  notes = [[0, 480, 60, 80, 0, 0, 0], [480, 960, 64, 80, 0, 0, 0]]
  tokens = CODEC.encode(from_notes(np.array(notes), ticks_per_beat=480))
  CODEC.decode(tokens, strict=True)
  first_off = next(i for i, (name, _) in enumerate(kinds_of(tokens)) if name == "note-off")
  corrupted = np.insert(tokens, first_off, off(70), axis=0)
  with pytest.raises(DecodeError):
    CODEC.decode(corrupted, strict=True)
  past_end = np.insert(tokens, first_off, shift(96), axis=0)
  with pytest.raises(DecodeError):
    CODEC.decode(past_end, strict=True)
  assert CODEC.decode(past_end).instruments  # tolerant decoding keeps the notes


def _event_tokens():
  """Tokens drawn kind first, so structure tokens are as likely as notes."""
  return st.tuples(st.sampled_from(VOCAB.names), st.integers(0, 1 << 20)).map(
    lambda kv: VOCAB.offset(kv[0]) + kv[1] % VOCAB.count(kv[0])
  )


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
  st.one_of(
    st.lists(st.integers(0, SIZE - 1), max_size=200), st.lists(_event_tokens(), max_size=200)
  )
)
def test_random_tokens_always_decode_to_midi_that_miditoolkit_reads_back(tokens):
  tokens = np.array(tokens, np.int64)
  midi, report = CODEC.decode(tokens, return_report=True)
  assert 0 <= report.dropped <= len(tokens)
  decoded = decoded_tracks(midi)
  for _, notes in decoded:
    assert all(end > start >= 0 for start, end, _ in notes)
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "decoded.mid")
    midi.dump(path)
    back = miditoolkit.MidiFile(path)
  assert decoded_tracks(back) == decoded
  if decoded:
    # decoded music is already in MMM's form: encoding it loses nothing
    assert decoded_tracks(CODEC.decode(CODEC.encode(midi))) == decoded
