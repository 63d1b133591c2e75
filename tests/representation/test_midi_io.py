"""The two MIDI readers agree, the writer round-trips, and bad files fail clearly."""

from __future__ import annotations

import collections

import miditoolkit
import numpy as np
import pytest

from mtx.errors import EmptyMidiError, MidiReadError, MtxError
from mtx.representation import midi_io
from mtx.representation.notetable import from_notes
from tests.midi_corpus import NEEDS_SHARED, SHARED_MIDI, SHARED_MIDI_FILES, shared_params

# Files where a track changes program while a note sounds: symusic keeps the
# program at the note-on, miditoolkit the one at the note-off (see midi_io).
PROGRAM_CHANGE_DISAGREEMENTS = {
  "other/music21/testPrimitive/test04.mid",
  "other/symusic/minimidi/mahler.mid",
}


@pytest.mark.parametrize("path", shared_params())
def test_symusic_and_miditoolkit_readers_give_the_same_note_table(path):
  fast = midi_io.read_note_table(path)
  slow = midi_io.read_with_miditoolkit(path)
  assert fast.num_notes > 0
  assert fast.equals(slow, ignore=("program", "track"))
  name = str(path.relative_to(SHARED_MIDI))
  if name in PROGRAM_CHANGE_DISAGREEMENTS:
    # Only a handful of notes move to another program, never timing or pitch.
    a = collections.Counter(map(tuple, fast.notes_array()[:, :6].tolist()))
    b = collections.Counter(map(tuple, slow.notes_array()[:, :6].tolist()))
    moved = sum((a - b).values())
    assert 0 < moved <= 0.01 * fast.num_notes
  else:
    assert fast.equals(slow)
  # The sustain pedal events agree too (as sets: miditoolkit repeats a
  # channel's controllers on every program of the channel).
  assert set(zip(fast.sustain_tick.tolist(), fast.sustain_value.tolist())) == set(
    zip(slow.sustain_tick.tolist(), slow.sustain_value.tolist())
  )


@NEEDS_SHARED
def test_the_corpus_covers_the_cases_the_readers_must_handle():
  tables = [midi_io.read_note_table(p) for p in SHARED_MIDI_FILES]
  assert any(t.is_drum.any() for t in tables)  # drums on channel 10
  assert len({t.ticks_per_beat for t in tables}) > 2  # resolutions other than 480
  assert max(len(t.tempo_tick) for t in tables) > 100  # many tempo changes
  assert any(len(t.ts_tick) > 1 for t in tables)  # several time signatures
  assert max(t.track.max() for t in tables) > 30  # 33-track Mahler
  assert any((t.sustain_value >= 64).any() for t in tables)  # pedalled piano
  type0 = SHARED_MIDI / "other/miditok/lakh/d6caebd1964d9e4a3c5ea59525230e2a.mid"
  table = midi_io.read_note_table(type0)
  assert table.is_drum.any() and len(np.unique(table.program)) > 3


@pytest.mark.parametrize("path", shared_params())
def test_writing_a_table_and_reading_it_back_gives_the_same_table(path, tmp_path):
  table = midi_io.read_note_table(path)
  out = tmp_path / "out.mid"
  midi_io.note_table_to_miditoolkit(table).dump(str(out))
  again = midi_io.read_note_table(out)
  # Same-pitch overlaps go to separate layers, so they read back exactly. A
  # zero-length note may vanish (its note-off can be written before its on).
  sounding = table.onset < table.offset
  if sounding.all():
    assert again.equals(table, ignore=("track",))
  else:
    expected = _multiset(table.notes_array()[sounding, :6])
    assert expected <= _multiset(again.notes_array()[:, :6])
    assert again.num_notes >= sounding.sum()


def _multiset(rows):
  return collections.Counter(map(tuple, rows.tolist()))


def _has_same_pitch_overlap(table) -> bool:
  notes = table.notes_array()
  for key in np.unique(notes[:, [6, 2]], axis=0):
    rows = notes[(notes[:, 6] == key[0]) & (notes[:, 2] == key[1])]
    rows = rows[np.argsort(rows[:, 0], kind="stable")]
    if (rows[1:, 0] < rows[:-1, 1]).any():
      return True
  return False


def test_music21_chorales_read_the_same_with_both_readers(music21_chorales):
  assert len(music21_chorales) >= 10
  for path in music21_chorales:
    fast = midi_io.read_note_table(path)
    assert fast.num_notes > 0
    assert fast.equals(midi_io.read_with_miditoolkit(path)), path


def test_a_miditoolkit_object_and_its_file_give_the_same_table(tmp_path):
  notes = np.array(
    [[0, 480, 60, 90, 0, 0, 0], [240, 960, 64, 70, 40, 0, 1], [0, 120, 36, 100, 0, 1, 2]]
  )
  table = from_notes(
    notes, ticks_per_beat=480, ts_ticks=[0, 1920], ts_numerators=[4, 3], ts_denominators=[4, 4]
  )
  midi = midi_io.note_table_to_miditoolkit(table)
  midi.dump(str(tmp_path / "x.mid"))
  assert midi_io.load_note_table(midi).equals(table)
  assert midi_io.load_note_table(tmp_path / "x.mid").equals(table)


# ---- bad input ---------------------------------------------------------------


def _midi_bytes() -> bytes:
  midi = miditoolkit.MidiFile()
  inst = miditoolkit.Instrument(program=0)
  inst.notes = [miditoolkit.Note(80, 60 + i, i * 240, i * 240 + 200) for i in range(40)]
  midi.instruments.append(inst)
  import io

  buffer = io.BytesIO()
  midi.dump(file=buffer)
  return buffer.getvalue()


def bad_files(tmp_path):
  """name -> (path, words the message must hold)."""
  good = _midi_bytes()
  cases = {
    "missing": (tmp_path / "nope.mid", "no such file"),
    "directory": (tmp_path, "not a file"),
    "empty": (tmp_path / "empty.mid", "empty"),
    "truncated": (tmp_path / "truncated.mid", "corrupt, truncated or not MIDI"),
    "not_midi": (tmp_path / "text.mid", "corrupt, truncated or not MIDI"),
  }
  (tmp_path / "empty.mid").write_bytes(b"")
  (tmp_path / "truncated.mid").write_bytes(good[: len(good) // 2])
  (tmp_path / "text.mid").write_text("this is a text file, not a song\n" * 4)
  return cases


@pytest.mark.parametrize("case", ["missing", "directory", "empty", "truncated", "not_midi"])
@pytest.mark.parametrize("reader", [midi_io.read_note_table, midi_io.read_with_miditoolkit])
def test_bad_files_raise_one_mtx_error_naming_the_file(tmp_path, case, reader):
  path, words = bad_files(tmp_path)[case]
  with pytest.raises(MidiReadError) as info:
    reader(path)
  assert str(path) in str(info.value)
  assert words in str(info.value)


def test_a_midi_file_without_notes_raises_empty_midi_error(tmp_path):
  midi = miditoolkit.MidiFile()
  midi.instruments.append(miditoolkit.Instrument(program=0))
  midi.dump(str(tmp_path / "silent.mid"))
  with pytest.raises(EmptyMidiError) as info:
    midi_io.load_note_table(tmp_path / "silent.mid")
  assert "silent.mid" in str(info.value) and "no notes" in str(info.value)


def test_an_object_that_is_not_midi_raises_an_mtx_error():
  with pytest.raises(MtxError, match="cannot read MIDI from a int"):
    midi_io.load_note_table(42)


def test_karaoke_and_riff_wrapped_midi_read_like_the_plain_file(music21_chorales, tmp_path):
  """A .kar file is a Standard MIDI File under another name; an .rmi file wraps one in a
  RIFF "data" chunk (here behind an odd-sized chunk the reader must step over, padding
  included). Both read to the plain file's table, and a corpus scan finds both."""
  from data_pipeline.corpus import midi_files_under

  plain = music21_chorales[0]
  data = plain.read_bytes()
  kar = tmp_path / "song.KAR"
  kar.write_bytes(data)
  body = (
    b"RMID"
    + b"INFO"
    + (3).to_bytes(4, "little")
    + b"abc\x00"
    + b"data"
    + len(data).to_bytes(4, "little")
    + data
  )
  rmi = tmp_path / "song.rmi"
  rmi.write_bytes(b"RIFF" + len(body).to_bytes(4, "little") + body)
  want = midi_io.read_note_table(plain)
  for path in (kar, rmi):
    assert midi_io.read_note_table(path).equals(want), path
  assert set(midi_files_under(tmp_path)) == {kar, rmi}
  # A RIFF file without a data chunk is no MIDI file: one clear error.
  broken = tmp_path / "broken.rmi"
  broken.write_bytes(b"RIFF" + (4).to_bytes(4, "little") + b"RMID")
  with pytest.raises(MidiReadError, match="broken.rmi.*corrupt, truncated or not MIDI"):
    midi_io.read_note_table(broken)


def test_a_tempo_of_zero_is_dropped_and_the_tempo_before_it_holds(music21_chorales, tmp_path):
  """A set_tempo of 0 microseconds per quarter (an infinite tempo: a damaged file) at
  tick 0, after the file's own tempo there, would win as the last event at its tick; it
  is dropped instead, silently (no division-by-zero warning), so the table and every
  codec's tokens equal the intact file's."""
  import warnings

  import mido

  from mtx.representation import CODEC_NAMES, get_codec

  plain = music21_chorales[1]
  midi = mido.MidiFile(plain)
  first = midi.tracks[0]
  at_zero = (
    next(i for i, m in enumerate(first) if m.time > 0)
    if any(m.time > 0 for m in first)
    else len(first) - 1
  )
  first.insert(at_zero, mido.MetaMessage("set_tempo", tempo=0, time=0))
  damaged = tmp_path / "tempo_zero.mid"
  midi.save(damaged)
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    table = midi_io.read_note_table(damaged)
    assert table.equals(midi_io.read_note_table(plain))
    for name in CODEC_NAMES:
      np.testing.assert_array_equal(get_codec(name).encode(damaged), get_codec(name).encode(plain))
