#!/usr/bin/env bash
# The test command: its own venv (.venv-test), a fresh install, the whole suite;
# then the Apache Beam tests in a venv of their own (.venv-beam: apache-beam pins
# older protobuf and pyarrow than the main stack). MTX_SKIP_BEAM=1 skips those.
# Extra arguments go to the main pytest run (e.g. bash scripts/test.sh -k mmt).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
python="$(mtx_venv .venv-test test | tail -n 1)"
workers="${MTX_TEST_WORKERS:-$(nproc)}"
"$python" -m pytest -n "$workers" -q "$@" tests
if [[ "${MTX_SKIP_BEAM:-0}" != 1 && $# -eq 0 ]]; then
  beam_python="$(mtx_venv .venv-beam test,beam | tail -n 1)"
  "$beam_python" -m pytest -q -m beam tests/data_pipeline
fi
