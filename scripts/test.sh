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
# The browser test of report.html needs Chromium (Debian's package), installed when this
# user can (the package lists refreshed once if the first try fails); without it that
# test is skipped.
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  if [[ "$(id -u)" == 0 ]]; then apt_get=(apt-get); else apt_get=(sudo -n apt-get); fi
  { timeout 300 "${apt_get[@]}" install -y -qq --no-install-recommends chromium \
      || { timeout 120 "${apt_get[@]}" update -qq \
           && timeout 300 "${apt_get[@]}" install -y -qq --no-install-recommends chromium; }
  } >/dev/null 2>&1 || echo "Chromium could not be installed: the browser test of report.html is skipped"
fi
# Lint and format first (ruff.toml): a violation fails the command in seconds.
"$python" -m ruff check --quiet .
"$python" -m ruff format --check --quiet .
"$python" -m pytest -n "$workers" -q "$@" tests
if [[ "${MTX_SKIP_BEAM:-0}" != 1 && $# -eq 0 ]]; then
  beam_python="$(mtx_venv .venv-beam test,beam | tail -n 1)"
  "$beam_python" -m pytest -q -m beam tests/data_pipeline
fi
