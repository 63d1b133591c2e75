#!/usr/bin/env bash
# The test command: its own venv (.venv-test), a fresh install, the whole suite.
# Extra arguments go to pytest (e.g. bash scripts/test.sh -k mmt).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
python="$(mtx_venv .venv-test test | tail -n 1)"
workers="${MTX_TEST_WORKERS:-$(nproc)}"
exec "$python" -m pytest -n "$workers" -q "$@" tests
