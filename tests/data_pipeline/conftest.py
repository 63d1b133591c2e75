"""Fixtures of the data pipeline's tests: corpus folders made of real MIDI files
(the music21 chorales, and ../shared/midi where present) with bad files among
them, each bad in one of the ways a real corpus is."""

from __future__ import annotations

import shutil
from pathlib import Path

import miditoolkit
import pytest

from tests.midi_corpus import SHARED_MIDI, SHARED_MIDI_FILES

# A 42-minute symphony: past mmt's max_beat, so the mmt config truncates it.
LONG_SHARED_FILE = SHARED_MIDI / "other" / "symusic" / "minimidi" / "mahler.mid"


def pytest_configure(config):
  config.addinivalue_line(
    "markers",
    "beam: runs a prepare on Apache Beam's DirectRunner "
    "(skipped where apache_beam is not installed: pip install -e .[beam])",
  )


def write_bad_files(folder: Path, source: Path) -> dict[str, str]:
  """Writes one file of each kind of bad under `folder`, derived from the real
  file `source`; returns {path: the error type expected in its reason}."""
  folder.mkdir(parents=True, exist_ok=True)
  data = source.read_bytes()
  bad = {
    "empty.mid": (b"", "MidiReadError"),
    "truncated.mid": (data[:100], "MidiReadError"),
    # Garbage in the middle of the events: a data byte out of range.
    "corrupt.mid": (
      data[: len(data) // 2] + bytes(range(256)) * 2 + data[len(data) // 2 :],
      "MidiReadError",
    ),
    "not_midi.midi": (b"RIFF" + data[4:], "MidiReadError"),
  }
  expected = {}
  for name, (content, error) in bad.items():
    (folder / name).write_bytes(content)
    expected[str(folder / name)] = error
  noteless = miditoolkit.MidiFile(str(source))
  for instrument in noteless.instruments:
    instrument.notes = []
  noteless.dump(str(folder / "noteless.mid"))
  expected[str(folder / "noteless.mid")] = "EmptyMidiError"
  return expected


def make_corpus_folder(root: Path, good: list[Path]) -> tuple[list[Path], dict[str, str]]:
  """`root` with the `good` files (copied, half of them in a subfolder) and the
  bad ones under `root/bad/`; returns (good paths there, {bad path: error})."""
  placed = []
  for index, path in enumerate(good):
    target = root / ("nested/deeper" if index % 2 else "") / path.name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, target)
    placed.append(target)
  return placed, write_bad_files(root / "bad", good[0])


@pytest.fixture
def corpus_folder(tmp_path, music21_chorales):
  """A small midi_folder: 8 chorales, the long symphony where ../shared/midi is
  present, and 5 bad files. Returns (root, good paths, {bad path: error type})."""
  good = list(music21_chorales[:8])
  if SHARED_MIDI_FILES and LONG_SHARED_FILE.exists():
    good.append(LONG_SHARED_FILE)
  root = tmp_path / "corpus"
  placed, bad = make_corpus_folder(root, good)
  return root, placed, bad
