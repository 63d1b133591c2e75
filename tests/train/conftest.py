"""A small prepared dataset (real chorales) and a test-sized training config."""

from __future__ import annotations

import shutil

import pytest

from tests.train.helpers import NUM_FILES, small_config, use_compilation_cache

use_compilation_cache()


@pytest.fixture(scope="session")
def prepared_dir(music21_chorales, tmp_path_factory):
  """data_dir holding midi_folder/mmt prepared from NUM_FILES music21 chorales."""
  from data_pipeline.builder import prepare
  from data_pipeline.builders import get_builder_class

  folder = tmp_path_factory.mktemp("train_chorales")
  for path in music21_chorales[:NUM_FILES]:
    shutil.copy(path, folder / path.name)
  data_dir = tmp_path_factory.mktemp("train_data")
  builder = get_builder_class("midi_folder")(
      config="mmt", data_dir=data_dir, num_workers=1, progress=False,
      corpus_options=dict(validation=0.25, test=0.0))
  prepare(builder, manual_dir=folder)
  return data_dir


@pytest.fixture
def config(prepared_dir):
  return small_config(prepared_dir)
