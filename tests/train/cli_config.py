"""The test-sized config as a file for mtx-train subprocesses (pass
--config.data.data_dir=...)."""

from tests.train.helpers import small_config


def get_config():
  return small_config("")
