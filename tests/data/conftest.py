"""Token fixtures for the data pipeline tests: real songs encoded by each codec."""

from __future__ import annotations

import pytest

from mtx.representation import CODEC_NAMES, get_codec
from tests.midi_corpus import SHARED_MIDI, SHARED_MIDI_FILES

NUM_SONGS = 12  # chorales per source: enough for shards and batches, fast to encode

# Real files with what most chorales lack: drums (Lakh); many tempo changes
# (Mozart K.525, Beethoven 7/ii); time-signature changes (two chorales, a
# POP909 song).
DRUM_FILES = ("other/miditok/lakh/",)
CHANGING_FILES = (
  "other/music21/k525MIDIMvt1.mid",
  "other/music21/testPrimitive/test04.mid",
  "bach_chorales/bwv171.6.mid",
  "other/miditok/pop909/POP909_010.mid",
)


@pytest.fixture(scope="session")
def chorale_tokens(music21_chorales):
  """Representation name -> tokens of the first NUM_SONGS music21 chorales."""
  files = music21_chorales[:NUM_SONGS]
  return {name: [get_codec(name).encode(f) for f in files] for name in CODEC_NAMES}


def _shared(parts) -> list:
  """The shared files under `parts`; none where ../shared/midi is absent (a
  fresh clone), so the tests still run on the chorales alone."""
  return [
    p
    for p in SHARED_MIDI_FILES
    if any(str(p.relative_to(SHARED_MIDI)).startswith(part) for part in parts)
  ]


@pytest.fixture(scope="session")
def drum_files():
  """Real multitrack files with drum tracks (Lakh MIDI); [] without ../shared/midi."""
  return _shared(DRUM_FILES)


@pytest.fixture(scope="session")
def changing_files():
  """Real files whose tempo or time signature changes; [] without ../shared/midi."""
  return _shared(CHANGING_FILES)
