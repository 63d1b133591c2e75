"""A test-sized training config over the session's prepared chorales (tests/conftest.py)."""

from __future__ import annotations

import pytest

from tests.train.helpers import small_config, use_compilation_cache

use_compilation_cache()


@pytest.fixture
def config(prepared_dir):
  return small_config(prepared_dir)
