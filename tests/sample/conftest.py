"""The sampling tests draw from the shared trained run (tests/conftest.py)."""

from tests.train.helpers import use_compilation_cache

use_compilation_cache()
