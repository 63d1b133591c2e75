"""`--shift_to_first_note` and `--min_notes`: the MMT reference's data preparation
(first note into beat 0, songs under 50 notes left out) beside mtx's default (leading
silence kept), each a dataset of its own that is never taken for the other."""

from __future__ import annotations

import json
import os

import miditoolkit
import numpy as np
import pytest

from data_pipeline.bad_files import read_bad_files
from data_pipeline.builders import get_builder_class
from data_pipeline.convert import CodecSpec, Converted, convert_file, shift_to_first_beat
from data_pipeline.corpus import CorpusFile
from mtx.datasets import config_name
from mtx.errors import ConfigError
from mtx.representation.midi_io import read_note_table
from mtx.representation.mmt import BEAT, NOTE, POSITION, TYPE
from tests.data_pipeline.test_prepare import MMT, _records, _run, _summary_line


def _moved(source, target, beats: float, keep_notes: int | None = None):
  """A real chorale starting `beats` later (tempo and meter moved with it), or only its
  first `keep_notes` notes."""
  midi = miditoolkit.MidiFile(str(source))
  shift = round(beats * midi.ticks_per_beat)
  kept = 0
  for instrument in midi.instruments:
    for note in instrument.notes:
      note.start, note.end = note.start + shift, note.end + shift
    if keep_notes is not None:
      instrument.notes = instrument.notes[: max(0, keep_notes - kept)]
      kept += len(instrument.notes)
  for event in midi.tempo_changes + midi.time_signature_changes:
    event.time = event.time + shift if event.time else 0
  midi.dump(str(target))
  return target


def _note_rows(tokens):
  return tokens[tokens[:, TYPE] == NOTE]


def test_shift_moves_the_first_note_into_beat_0_as_the_reference_does(tmp_path, music21_chorales):
  source = music21_chorales[2]
  late = _moved(source, tmp_path / "late.mid", beats=4.5)
  original = _note_rows(MMT.encode(source))
  assert original[:, BEAT].min() == 1  # the chorale starts in beat 0 (codes are beat + 1)
  unshifted = _note_rows(MMT.encode(late))
  shifted = _note_rows(MMT.encode(shift_to_first_beat(read_note_table(late), MMT.resolution)))
  # The reference: notes[:, 0] -= notes[0, 0]. Whole beats: positions stay.
  expected = unshifted.copy()
  expected[:, BEAT] -= unshifted[:, BEAT].min() - 1
  assert np.array_equal(shifted, expected)
  assert shifted[:, BEAT].min() == 1 and np.array_equal(
    shifted[:, POSITION], unshifted[:, POSITION]
  )
  # A song already starting in beat 0 is unchanged, tempo and meter included.
  table = read_note_table(source)
  assert shift_to_first_beat(table, MMT.resolution).equals(table)
  moved = shift_to_first_beat(read_note_table(late), MMT.resolution)
  assert moved.tempo_tick[0] == 0 and np.array_equal(moved.tempo_mspq, table.tempo_mspq)


def test_min_notes_leaves_out_short_songs_as_dropped_not_broken(tmp_path, music21_chorales):
  short = _moved(music21_chorales[0], tmp_path / "short.mid", beats=0, keep_notes=20)
  spec = CodecSpec("mmt", (("overflow", "truncate"),), min_notes=50)
  result = convert_file(CorpusFile(short, "train", "short"), spec)
  assert result.dropped and result.reason == (
    "TooFewNotes: 20 notes as mmt keeps them, fewer than --min_notes 50"
  )
  assert isinstance(convert_file(CorpusFile(music21_chorales[0], "train", "k"), spec), Converted)


def test_config_names_name_the_preparation():
  assert config_name("mmt") == "mmt"
  assert config_name("mmt", shift_to_first_note=True, min_notes=50) == "mmt_shift_min50"
  assert config_name("remi", min_notes=10) == "remi_min10"
  with pytest.raises(ConfigError, match="--min_notes must be >= 0"):
    config_name("mmt", min_notes=-1)
  builder = get_builder_class("sod")(config="mmt_shift_min50", data_dir="unused")
  assert builder.builder_config.spec == CodecSpec(
    "mmt", (("overflow", "truncate"),), shift_to_first_note=True, min_notes=50
  )
  with pytest.raises(ValueError):
    get_builder_class("sod")(config="mmt_min050", data_dir="unused")  # not a canonical name


def test_prepare_with_the_reference_options_is_its_own_dataset(tmp_path, music21_chorales):
  root = tmp_path / "corpus"
  root.mkdir()
  late = [_moved(p, root / p.name, beats=3.5) for p in music21_chorales[:4]]
  short = _moved(music21_chorales[5], root / "short.mid", beats=0, keep_notes=30)
  data_dir = tmp_path / "data"
  common = (
    "--dataset=midi_folder",
    f"--manual_dir={root}",
    f"--data_dir={data_dir}",
    "--validation_ratio=0",
    "--test_ratio=0",
    "--num_workers=2",
  )
  reference = _run(*common, "--shift_to_first_note", "--min_notes=50")
  assert reference.returncode == 0, reference.stderr
  line = _summary_line(reference.stdout)
  assert (line.group(1), line.group(2)) == ("4", "1")
  assert "1 of the skipped files have fewer than --min_notes 50 notes" in reference.stdout
  assert line.group(3) == f"{data_dir}/midi_folder/mmt_shift_min50/1.1.0/bad_files.tsv"
  (row,) = read_bad_files(line.group(3))
  assert row.path == str(short) and row.dropped
  metadata = json.loads((data_dir / "midi_folder/mmt_shift_min50/1.1.0/metadata.json").read_text())
  assert metadata["preparation"] == {"shift_to_first_note": True, "min_notes": 50}
  assert metadata["prepare"]["too_few_notes"] == 1
  shifted = _records("midi_folder", data_dir, "mmt_shift_min50")["train"]
  assert len(shifted) == 4
  for example in shifted:
    assert _note_rows(example["tokens"])[:, BEAT].min() == 1  # beat 0

  # mtx's default, beside it: leading silence kept, the short song kept.
  plain = _run(*common)
  assert plain.returncode == 0 and "already prepared" not in plain.stdout, plain.stderr
  assert _summary_line(plain.stdout).group(1) == "5"
  records = _records("midi_folder", data_dir, "mmt")["train"]
  starts = {
    os.path.basename(e["path"].decode()): _note_rows(e["tokens"])[:, BEAT].min() for e in records
  }
  assert all(starts[p.name] == 4 for p in late)  # 3.5 beats of silence: beat 3
  # What training opens by the config's name.
  for name in ("mmt", "mmt_shift_min50"):
    builder = get_builder_class("midi_folder")(config=name, data_dir=data_dir)
    assert builder.is_prepared()
  again = _run(*common, "--shift_to_first_note", "--min_notes=50")
  assert again.returncode == 0 and "already prepared" in again.stdout


def test_a_negative_min_notes_is_one_line(tmp_path):
  result = _run(
    "--dataset=midi_folder",
    f"--manual_dir={tmp_path}",
    f"--data_dir={tmp_path / 'data'}",
    "--min_notes=-3",
  )
  assert result.returncode == 2 and "--min_notes must be >= 0" in result.stderr
  assert len(result.stderr.strip().splitlines()) == 1
