"""The Bach chorales keep their voices: music21's parts -> MIDI tracks with the
voices' programs -> mmt instruments (remi and mmm programs) -> decoded MIDI,
checked note for note against music21's own parse of the scores."""

from __future__ import annotations

import collections
import os
import subprocess
import sys

import miditoolkit
import numpy as np
import pytest
import tensorflow_datasets as tfds

from data_pipeline import jsb_chorales
from data_pipeline.configs import CONFIG_OPTIONS
from data_pipeline.music21_chorales import (
  FALLBACK_PROGRAM,
  VOICE_PROGRAMS,
  chorale_paths,
  is_current,
  part_programs,
  write_chorale,
)
from mtx.representation import get_codec
from mtx.representation.fields import INSTRUMENTS, PROGRAM_TO_INSTRUMENT_CODE
from mtx.representation.mmt import INSTRUMENT, NOTE

SAXOPHONES = {
  "soprano": "soprano-saxophone",
  "alto": "alto-saxophone",
  "tenor": "tenor-saxophone",
  "bass": "baritone-saxophone",
}
# The first chorales by id (the shared fixture's), with horn, cornetts and oboe
# parts among them, and two with voices named otherwise: "Soprano 1"/"Soprano 2"
# and "Soprano Oboe 1 Violin1"-style names.
FIRST = 12
MORE = ("bwv227.3", "bwv41.6")


def _code(program: int) -> int:
  return int(PROGRAM_TO_INSTRUMENT_CODE[program])


def _score_parts(chorale_id: str):
  """music21's parse of the chorale, repeats played out as its MIDI export
  plays them: [(part name, [(onset in quarters, pitch), ...]), ...]."""
  from music21 import corpus

  score = corpus.parse(str(chorale_paths()[chorale_id])).expandRepeats()
  return [
    (
      part.partName or part.id,
      sorted(
        (float(n.offset), p.midi) for n in part.flatten().stripTies().notes for p in n.pitches
      ),
    )
    for part in score.parts
  ]


@pytest.fixture(scope="module")
def chorales(music21_chorales, tmp_path_factory):
  """[(chorale id, MIDI path, music21's parts)] for the first chorales and MORE."""
  folder = tmp_path_factory.mktemp("voices")
  sources = chorale_paths()
  items = [(path.stem, path) for path in music21_chorales[:FIRST]]
  for chorale_id in MORE:
    write_chorale((folder / f"{chorale_id}.mid", sources[chorale_id]))
    items.append((chorale_id, folder / f"{chorale_id}.mid"))
  return [(chorale_id, path, _score_parts(chorale_id)) for chorale_id, path in items]


def test_part_names_give_the_voices_and_the_instruments_of_real_chorales():
  from music21 import corpus

  names = [p.partName for p in corpus.parse(str(chorale_paths()["bwv248.64-6"])).parts]
  assert names == [
    "Trumpet 1",
    "Trumpet 2",
    "Trumpet 3",
    "Timpani",
    "Oboe 1",
    "Oboe 2",
    "Violin 1",
    "Violin 2",
    "Viola",
    "Soprano",
    "Alto",
    "Tenor",
    "Bass",
    "Continuo",
  ]
  assert part_programs(names) == [56, 56, 56, 47, 68, 68, 40, 40, 41, 64, 65, 66, 67, 19]
  # Voices doubled by instruments are named by both; the voice is the first word.
  assert part_programs(
    [
      "Soprano\rOboe 1,2\rViolin1",
      "Alto Oboe 2 Viloin 2",
      "Tenor\rViola",
      "Bass Continuo",
      "Oboe da caccia",
      "Oboe d'amore",
    ]
  ) == [64, 65, 66, 67, 69, 68]
  assert part_programs(["Soprano 1", "Soprano 2", "Alto", "Tenor", "Bass"]) == [64, 64, 65, 66, 67]
  # Unknown names: four parts are the voices from the top; beside others, the organ.
  assert part_programs(["P1", None, "Part 3", ""]) == [64, 65, 66, 67]
  assert part_programs(["Cembalo", "Soprano", "Alto", "Tenor", "Bass"]) == [
    FALLBACK_PROGRAM,
    64,
    65,
    66,
    67,
  ]
  assert len({_code(p) for p in VOICE_PROGRAMS.values()}) == 4
  assert {INSTRUMENTS[_code(VOICE_PROGRAMS[v]) - 1] for v in VOICE_PROGRAMS} == set(
    SAXOPHONES.values()
  )


def test_each_part_is_a_track_with_its_voice_program_and_its_notes(chorales):
  for chorale_id, path, parts in chorales:
    midi = miditoolkit.MidiFile(str(path))
    names = [name for name, _ in parts]
    assert [i.name for i in midi.instruments] == names, chorale_id
    assert [i.program for i in midi.instruments] == part_programs(names), chorale_id
    assert not any(i.is_drum for i in midi.instruments)
    for instrument, (name, notes) in zip(midi.instruments, parts):
      assert sorted(n.pitch for n in instrument.notes) == sorted(p for _, p in notes), (
        chorale_id,
        name,
      )
    assert {"Soprano", "Alto", "Tenor", "Bass"} <= {name.split()[0] for name in names}
  # The voices' programs are the saxophones' wherever they sing.
  programs = {
    name.split()[0]: i.program
    for _, path, parts in chorales
    for (name, _), i in zip(parts, miditoolkit.MidiFile(str(path)).instruments)
  }
  assert {v: programs[v.capitalize()] for v in VOICE_PROGRAMS} == VOICE_PROGRAMS


def test_mmt_gives_each_voice_its_instrument_and_its_notes(chorales):
  """Each voice's notes in mmt are the notes music21 reads in the part of that
  name: same count, same pitches in order, onsets within the 1/12-beat grid."""
  mmt = get_codec("mmt")
  for chorale_id, path, parts in chorales:
    tokens = mmt.encode(path)
    header = {int(code) for code in tokens[tokens[:, 0] == INSTRUMENT, 5]}
    notes = tokens[tokens[:, 0] == NOTE]
    programs = part_programs([name for name, _ in parts])
    assert header == {_code(p) for p in programs}, chorale_id
    assert {_code(p) for p in VOICE_PROGRAMS.values()} <= header
    by_code = collections.Counter(programs)
    for (name, expected), program in zip(parts, programs):
      rows = notes[notes[:, 5] == _code(program)]
      got = sorted(((int(r[1]) - 1) * 12 + int(r[2]) - 1, int(r[3]) - 1) for r in rows)
      if by_code[program] > 1:  # two parts, one instrument: mmt keeps their union
        assert {p for _, p in expected} <= {p for _, p in got}, (chorale_id, name)
        continue
      assert len(got) == len(expected), (chorale_id, name)
      assert [p for _, p in got] == [p for _, p in expected], (chorale_id, name)
      assert max(abs(g - 12 * e) for (g, _), (e, _) in zip(got, expected)) <= 1


@pytest.mark.parametrize("representation", ["mmt", "remi", "mmm"])
def test_decoded_tokens_give_the_voices_back_as_their_programs(chorales, representation):
  codec = get_codec(representation, **dict(CONFIG_OPTIONS[representation]))
  for chorale_id, path, _ in chorales[:6]:
    written = collections.Counter()
    for instrument in miditoolkit.MidiFile(str(path)).instruments:
      written[instrument.program] += len(instrument.notes)
    decoded = codec.decode(codec.encode(path))
    got = collections.Counter()
    for instrument in decoded.instruments:
      got[instrument.program] += len(instrument.notes)
      assert not instrument.is_drum
    assert set(VOICE_PROGRAMS.values()) <= set(got), (representation, chorale_id)
    assert got == written, (representation, chorale_id)
    if len(written) == 4:  # a chorale of the four voices alone: four tracks come back
      assert sorted(i.program for i in decoded.instruments) == sorted(VOICE_PROGRAMS.values())


def _old_conversion(chorale_id: str) -> bytes:
  """What mtx wrote before the voices were kept: music21's MIDI, every part program 0."""
  from music21 import corpus, midi

  return midi.translate.streamToMidiFile(corpus.parse(str(chorale_paths()[chorale_id]))).writestr()


def test_a_cached_file_of_the_old_conversion_is_converted_again(tmp_path):
  first = list(chorale_paths())[:2]
  cache = tmp_path / "cache"
  cache.mkdir()
  (cache / f"{first[0]}.mid").write_bytes(_old_conversion(first[0]))
  assert {i.program for i in miditoolkit.MidiFile(str(cache / f"{first[0]}.mid")).instruments} == {
    0
  }
  assert not is_current(cache / f"{first[0]}.mid")
  files = jsb_chorales.list_files(cache, limit=2)
  for file in files:
    assert is_current(file.path)
    programs = [i.program for i in miditoolkit.MidiFile(str(file.path)).instruments]
    assert set(VOICE_PROGRAMS.values()) <= set(programs) and 0 not in programs
  stamps = [f.path.stat().st_mtime_ns for f in files]
  assert [f.path.stat().st_mtime_ns for f in jsb_chorales.list_files(cache, limit=2)] == stamps


def test_mtx_prepare_redoes_an_old_cache_keeps_the_voices_and_prints_no_unknown_size(tmp_path):
  data_dir = tmp_path / "data"
  cache = data_dir / "downloads" / "music21_chorales"  # where prepare caches without --manual_dir
  cache.mkdir(parents=True)
  ids = list(chorale_paths())[:4]
  (cache / f"{ids[1]}.mid").write_bytes(_old_conversion(ids[1]))
  result = subprocess.run(
    [
      sys.executable,
      "-m",
      "mtx.cli.prepare",
      "--dataset=jsb_chorales",
      f"--data_dir={data_dir}",
      "--limit=4",
      "--num_workers=2",
    ],
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert result.returncode == 0, result.stderr
  output = result.stdout + result.stderr
  assert "Unknown size" not in output and "Downloading and preparing" not in output
  assert result.stdout.startswith("4 converted, 0 skipped: see "), result.stdout
  source = tfds.data_source("jsb_chorales/mmt", data_dir=os.fspath(data_dir))
  examples = [example for split in source for example in source[split]]
  assert sorted(e["metadata"]["chorale_id"].decode() for e in examples) == sorted(ids)
  saxophones = {INSTRUMENTS.index(name) + 1 for name in SAXOPHONES.values()}
  for example in examples:
    tokens = example["tokens"]
    header = set(tokens[tokens[:, 0] == INSTRUMENT, 5].tolist())
    assert saxophones <= header, example["metadata"]["chorale_id"]
    assert set(np.unique(tokens[tokens[:, 0] == NOTE, 5])) == header
