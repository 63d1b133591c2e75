"""Shared fixtures: the music21 chorales converted once per test session."""

from __future__ import annotations

import shutil

import pytest

from tests.midi_corpus import NUM_MUSIC21_CHORALES


@pytest.fixture(scope="session")
def music21_chorales(tmp_path_factory):
  """Paths of the first NUM_MUSIC21_CHORALES chorales of music21's corpus as MIDI."""
  from data_pipeline.music21_chorales import write_chorales

  return write_chorales(tmp_path_factory.mktemp("chorales"), NUM_MUSIC21_CHORALES)


@pytest.fixture(scope="session")
def prepared_dir(music21_chorales, tmp_path_factory):
  """A data_dir holding midi_folder/mmt prepared from 16 music21 chorales (training and
  sampling tests)."""
  from data_pipeline.builder import prepare
  from data_pipeline.builders import get_builder_class

  folder = tmp_path_factory.mktemp("train_chorales")
  for path in music21_chorales[:16]:
    shutil.copy(path, folder / path.name)
  data_dir = tmp_path_factory.mktemp("train_data")
  builder = get_builder_class("midi_folder")(
      config="mmt", data_dir=data_dir, num_workers=1, progress=False,
      corpus_options=dict(validation=0.25, test=0.0))
  prepare(builder, manual_dir=folder)
  return data_dir
