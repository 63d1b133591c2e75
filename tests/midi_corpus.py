"""The real MIDI files the tests run on.

- `SHARED_MIDI_FILES`: every file of `../shared/midi/` (458 real files with a
  manifest; see its README). Tests over them skip, with the reason, only where
  that folder is absent, as on a user's fresh clone.
- `music21_chorale_files(tmp_dir)`: Bach chorales converted from music21's
  corpus, present wherever mtx installs, so the core tests run everywhere.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_MIDI = Path(os.environ.get("MTX_SHARED_MIDI", REPO.parent / "shared" / "midi"))
SHARED_MIDI_FILES = (
  sorted(p for p in SHARED_MIDI.rglob("*") if p.suffix.lower() in (".mid", ".midi"))
  if SHARED_MIDI.is_dir()
  else []
)
NEEDS_SHARED = pytest.mark.skipif(
  not SHARED_MIDI_FILES,
  reason=f"no real MIDI corpus at {SHARED_MIDI} (../shared/midi "
  "is present in CI; set MTX_SHARED_MIDI to point elsewhere)",
)

# Number of music21 chorales the core tests convert (each ~0.1 s).
NUM_MUSIC21_CHORALES = int(os.environ.get("MTX_TEST_CHORALES", "40"))


def shared_params():
  """pytest params over the shared files, with readable ids."""
  if not SHARED_MIDI_FILES:
    return [pytest.param(None, marks=NEEDS_SHARED, id="no-shared-midi")]
  return [pytest.param(p, id=str(p.relative_to(SHARED_MIDI))) for p in SHARED_MIDI_FILES]
