"""The contract every codec keeps, stated once and checked for each (`CODEC_NAMES`):

- a real file encodes to int32 tokens of shape (n, n_fields), every field in its range;
- decoding loses only what the codec documents it loses when encoding (quantization,
  instruments or lengths it cannot express): the decoded song encodes to the same tokens;
- any in-range tokens decode tolerantly (rows that make no sense dropped and counted) to a
  MIDI file that can be written and read back;
- bad input is refused with one mtx error: a bad file (`MidiReadError`, `EmptyMidiError`,
  naming the file), tokens out of range or of the wrong shape (`DecodeError`, naming the
  field and value).

Each codec's own properties (its grammar, its reference implementation, its limits) are in
its own file (test_mmt.py, test_performance.py, test_remi.py, test_mmm.py).
"""

from __future__ import annotations

import miditoolkit
import numpy as np
import pytest

from mtx.errors import (
  DecodeError,
  EmptyMidiError,
  MidiReadError,
  MtxError,
  RepresentationOverflowError,
)
from mtx.representation import CODEC_NAMES, get_codec
from mtx.representation.midi_io import note_table_to_miditoolkit
from mtx.representation.notetable import from_notes
from tests.midi_corpus import NEEDS_SHARED, SHARED_MIDI

# A few real files of different kinds (a chorale, piano, multitrack pop, a score): the
# whole shared corpus runs through every codec in each codec's own test.
CONTRACT_FILES = (
  "bach_chorales/bwv1.6.mid",
  "other/miditoolkit/1390.mid",
  "other/music21/k525short.mid",
  "other/partitura/score_example.mid",
  "other/symusic/1.midi",
)


@NEEDS_SHARED
@pytest.mark.parametrize("codec_name", CODEC_NAMES)
def test_real_files_encode_to_tokens_in_range_and_decode_within_the_documented_losses(codec_name):
  codec = get_codec(codec_name)
  for name in CONTRACT_FILES:
    path = SHARED_MIDI / name
    try:
      tokens = codec.encode(path)
    except RepresentationOverflowError:  # past the codec's length limit: refused, documented
      continue
    assert tokens.dtype == np.int32 and tokens.ndim == 2, name
    assert tokens.shape[0] > 0 and tokens.shape[1] == codec.n_fields, name
    assert (tokens >= 0).all() and (tokens < np.array(codec.fields.sizes)).all(), name
    midi, report = codec.decode(tokens, strict=True, return_report=True)
    assert report.dropped == 0, name
    np.testing.assert_array_equal(codec.encode(midi), tokens, err_msg=name)


@pytest.mark.parametrize("codec_name", CODEC_NAMES)
def test_random_in_range_tokens_decode_tolerantly_to_a_midi_file_that_reads_back(
  codec_name, tmp_path
):
  """Uniform draws over every field: most rows make no sense, and decoding drops and
  counts them (each codec's own file draws tokens its grammar makes likelier)."""
  codec = get_codec(codec_name)
  sizes = np.array(codec.fields.sizes)
  rng = np.random.default_rng(0)
  for trial in range(25):
    rows = int(rng.integers(0, 200))
    tokens = rng.integers(0, sizes, size=(rows, codec.n_fields))
    midi, report = codec.decode(tokens, return_report=True)
    assert 0 <= report.dropped == sum(report.reasons.values()) <= rows
    path = tmp_path / f"{trial}.mid"
    midi.dump(str(path))
    back = miditoolkit.MidiFile(str(path))
    assert sum(len(i.notes) for i in back.instruments) == sum(
      len(i.notes) for i in midi.instruments
    )


@pytest.mark.parametrize("codec_name", CODEC_NAMES)
def test_tokens_out_of_range_or_of_the_wrong_shape_are_refused_with_decode_error(codec_name):
  codec = get_codec(codec_name)
  sizes = codec.fields.sizes
  for col in range(codec.n_fields):
    tokens = np.zeros((2, codec.n_fields), np.int64)
    tokens[1, col] = sizes[col]
    with pytest.raises(
      DecodeError,
      match=rf"token row 1: field '{codec.fields[col].name}' is "
      rf"{sizes[col]}, outside 0\.\.{sizes[col] - 1}",
    ):
      codec.decode(tokens)
    tokens[1, col] = -1
    with pytest.raises(DecodeError, match="outside"):
      codec.decode(tokens)
  with pytest.raises(DecodeError, match=rf"shape \(n, {codec.n_fields}\)"):
    codec.decode(np.zeros((3, codec.n_fields + 1), np.int64))
  with pytest.raises(DecodeError, match="must be integers"):
    codec.decode(np.zeros((3, codec.n_fields), np.float32))
  with pytest.raises(DecodeError, match="not a rectangular array"):
    codec.decode([[0] * codec.n_fields, [0] * (codec.n_fields + 1)])
  assert issubclass(DecodeError, MtxError)


def _write(table, path):
  note_table_to_miditoolkit(table).dump(str(path))
  return path


@pytest.fixture
def good_file(tmp_path):
  notes = np.array([[i * 240, i * 240 + 200, 60 + i % 12, 90, 0, 0, 0] for i in range(40)])
  return _write(from_notes(notes, ticks_per_beat=480), tmp_path / "good.mid")


@pytest.mark.parametrize("codec_name", CODEC_NAMES)
def test_bad_files_are_refused_with_one_mtx_error_naming_the_file(codec_name, tmp_path, good_file):
  codec = get_codec(codec_name)
  data = good_file.read_bytes()
  (tmp_path / "empty.mid").write_bytes(b"")
  (tmp_path / "truncated.mid").write_bytes(data[: len(data) // 2])
  (tmp_path / "notes.txt.mid").write_text("not a MIDI file\n")
  silent = miditoolkit.MidiFile()
  silent.instruments.append(miditoolkit.Instrument(program=0))
  silent.dump(str(tmp_path / "silent.mid"))
  cases = [
    ("missing.mid", MidiReadError, "no such file"),
    ("empty.mid", MidiReadError, "empty"),
    ("truncated.mid", MidiReadError, "corrupt, truncated or not MIDI"),
    ("notes.txt.mid", MidiReadError, "corrupt, truncated or not MIDI"),
    ("silent.mid", EmptyMidiError, "no notes"),
  ]
  for name, error, words in cases:
    with pytest.raises(error) as info:
      codec.encode(tmp_path / name)
    message = str(info.value)
    assert name in message and words in message, message
  assert codec.encode(good_file).shape[0] > 40  # the intact file is fine


def test_a_file_whose_notes_overflow_mmt_names_the_file_and_the_limit(tmp_path):
  notes = np.array([[0, 240, 60, 90, 0, 0, 0], [480 * 2000, 480 * 2001, 62, 90, 0, 0, 0]])
  path = _write(from_notes(notes, ticks_per_beat=480), tmp_path / "very_long.mid")
  with pytest.raises(RepresentationOverflowError) as info:
    get_codec("mmt").encode(path)
  assert "very_long.mid" in str(info.value) and "after beat 1024" in str(info.value)


def test_all_128_programs_and_drums_survive_writing_and_reading(tmp_path):
  from mtx.representation.midi_io import read_note_table

  notes = np.array(
    [[p * 10, p * 10 + 100, 60, 80, p, 0, p] for p in range(128)] + [[0, 50, 36, 100, 0, 1, 128]]
  )
  table = from_notes(notes, ticks_per_beat=96)
  again = read_note_table(_write(table, tmp_path / "gm.mid"))
  assert again.equals(table)


def test_unknown_representations_and_options_raise_config_errors():
  from mtx.errors import ConfigError

  with pytest.raises(ConfigError, match="unknown representation 'midi-like'; choose one of mmt"):
    get_codec("midi-like")
  with pytest.raises(ConfigError, match="bad option for representation 'remi'"):
    get_codec("remi", no_such_option=1)
  with pytest.raises(ConfigError, match="overflow must be 'error' or 'truncate'"):
    get_codec("mmt", overflow="wrap")


@pytest.mark.parametrize("codec_name", CODEC_NAMES)
def test_every_codec_reads_a_miditoolkit_object_like_its_file(codec_name, good_file):
  codec = get_codec(codec_name)
  assert codec.fields.names and all(size > 1 for size in codec.fields.sizes)
  assert np.array_equal(codec.encode(miditoolkit.MidiFile(str(good_file))), codec.encode(good_file))
