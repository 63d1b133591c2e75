"""Shared fixtures: the music21 chorales converted once per test session."""

from __future__ import annotations

import pytest

from tests.midi_corpus import NUM_MUSIC21_CHORALES


@pytest.fixture(scope="session")
def music21_chorales(tmp_path_factory):
  """Paths of the first NUM_MUSIC21_CHORALES chorales of music21's corpus as MIDI."""
  from data_pipeline.music21_chorales import write_chorales

  return write_chorales(tmp_path_factory.mktemp("chorales"), NUM_MUSIC21_CHORALES)
