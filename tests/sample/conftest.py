"""A briefly trained tiny run (real chorales) that the sampling tests draw from."""

from __future__ import annotations

import pytest

from tests.train.helpers import small_config, use_compilation_cache

use_compilation_cache()
TRAIN_STEPS = 40


@pytest.fixture(scope="session")
def trained_workdir(prepared_dir, tmp_path_factory):
  from mtx.train.loop import train

  config = small_config(prepared_dir, num_steps=TRAIN_STEPS, checkpoint_every=TRAIN_STEPS,
                        eval_every=TRAIN_STEPS, log_every=TRAIN_STEPS)
  config.model.update(dropout_rate=0.0, attention_dropout_rate=0.0)
  workdir = tmp_path_factory.mktemp("trained")
  train(config, workdir)
  return workdir


@pytest.fixture(scope="session")
def trained_run(trained_workdir):
  from mtx.sample.restore import load_run

  return load_run(trained_workdir)
