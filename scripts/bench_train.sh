#!/usr/bin/env bash
# Training throughput of mtx-train's step (1 and 8 CPU devices) beside the MMT reference
# training step (PyTorch + x-transformers) in one run. The peer lives in the bench venv
# (.venv-bench), never in the test venv. Arguments go to the bench (--rows, --steps).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
python="$(mtx_venv .venv-bench "" | tail -n 1)"
"$python" -m pip install --quiet torch==2.13.0 x-transformers==1.0.3 entmax
exec "$python" -m bench.train "$@"
