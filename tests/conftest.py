"""Shared fixtures: the music21 chorales converted once per test session, the dataset
prepared from them, and a briefly trained tiny run (sampling and evaluation tests)."""

from __future__ import annotations

import shutil

import pytest

from tests.midi_corpus import NUM_MUSIC21_CHORALES


def pytest_configure(config):
  # A failed Orbax restore (the damaged-checkpoint tests) leaves reads unawaited; Python
  # reports them whenever they are collected, once inside pytest's own compile step,
  # where CPython 3.11 then failed the whole session. mtx's binaries drop the same reports
  # (mtx.train.checkpoint).
  config.addinivalue_line(
    "filterwarnings",
    "ignore:coroutine '(_read_array_index_and_device_put|Store._get_array_metadatas)'"
    ":RuntimeWarning",
  )
  config.addinivalue_line(
    "filterwarnings", "ignore:Exception ignored in:pytest.PytestUnraisableExceptionWarning"
  )


@pytest.fixture(scope="session")
def music21_chorales(tmp_path_factory):
  """Paths of the first NUM_MUSIC21_CHORALES chorales of music21's corpus as MIDI."""
  from data_pipeline.music21_chorales import write_chorales

  return write_chorales(tmp_path_factory.mktemp("chorales"), NUM_MUSIC21_CHORALES)


@pytest.fixture(scope="session")
def prepared_dir(music21_chorales, tmp_path_factory):
  """A data_dir holding midi_folder/mmt prepared from 16 music21 chorales (training and
  sampling tests)."""
  from data_pipeline.builders import get_builder_class
  from data_pipeline.prepare import prepare

  folder = tmp_path_factory.mktemp("train_chorales")
  for path in music21_chorales[:16]:
    shutil.copy(path, folder / path.name)
  data_dir = tmp_path_factory.mktemp("train_data")
  builder = get_builder_class("midi_folder")(
    config="mmt",
    data_dir=data_dir,
    num_workers=1,
    progress=False,
    corpus_options=dict(validation=0.25, test=0.0),
  )
  prepare(builder, manual_dir=folder)
  return data_dir


# Steps of the shared trained run: enough for the loss to fall well below its start.
TRAIN_STEPS = 40


@pytest.fixture(scope="session")
def trained_workdir(prepared_dir, tmp_path_factory):
  """A tiny run trained TRAIN_STEPS steps on the prepared chorales (no dropout)."""
  from mtx.train.loop import train
  from tests.train.helpers import small_config, use_compilation_cache

  use_compilation_cache()
  config = small_config(
    prepared_dir,
    num_steps=TRAIN_STEPS,
    checkpoint_every=TRAIN_STEPS,
    eval_every=TRAIN_STEPS,
    log_every=TRAIN_STEPS,
  )
  config.model.update(dropout_rate=0.0, attention_dropout_rate=0.0)
  workdir = tmp_path_factory.mktemp("trained")
  train(config, workdir)
  return workdir


@pytest.fixture(scope="session")
def trained_run(trained_workdir):
  from mtx.sample.restore import load_run

  return load_run(trained_workdir)
