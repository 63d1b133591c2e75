"""Every codec turns bad input into one mtx error naming the file and the problem."""

from __future__ import annotations

import miditoolkit
import numpy as np
import pytest

from mtx.errors import EmptyMidiError, MidiReadError, RepresentationOverflowError
from mtx.representation import CODEC_NAMES, get_codec
from mtx.representation.midi_io import note_table_to_miditoolkit
from mtx.representation.notetable import from_notes


def _write(table, path):
  note_table_to_miditoolkit(table).dump(str(path))
  return path


@pytest.fixture
def good_file(tmp_path):
  notes = np.array([[i * 240, i * 240 + 200, 60 + i % 12, 90, 0, 0, 0] for i in range(40)])
  return _write(from_notes(notes, ticks_per_beat=480), tmp_path / "good.mid")


@pytest.mark.parametrize("codec_name", CODEC_NAMES)
def test_bad_files_raise_one_mtx_error_naming_the_file(codec_name, tmp_path, good_file):
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
  notes = np.array([[p * 10, p * 10 + 100, 60, 80, p, 0, p] for p in range(128)]
                   + [[0, 50, 36, 100, 0, 1, 128]])
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
  assert np.array_equal(codec.encode(miditoolkit.MidiFile(str(good_file))),
                        codec.encode(good_file))
