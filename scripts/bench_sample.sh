#!/usr/bin/env bash
# Sampling speed of mtx-sample's decoder (cached and uncached) beside the MMT reference's
# generate (PyTorch + x-transformers) in one run. The peer lives in the bench venv
# (.venv-bench). Arguments go to the bench (--lengths, --batches, --only).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
python="$(mtx_venv .venv-bench "" | tail -n 1)"
"$python" -m pip install --quiet torch==2.13.0 x-transformers==1.0.3 entmax
exec "$python" -m bench.sample "$@"
