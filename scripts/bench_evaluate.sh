#!/usr/bin/env bash
# Music-metric throughput: mtx's file_metrics beside MusPy's own metric functions on the
# same files (Bach chorales, then all of ../shared/midi), in one run on one core, with the
# largest difference between their values per metric. MusPy lives in a venv of its own
# (.venv-bench, shared with bench_tokenize.sh), never in the test venv.
# Arguments go to the bench (e.g. bash scripts/bench_evaluate.sh --repeats 5).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
python="$(mtx_bench_venv | tail -n 1)"
# One core: no thread pools in numpy's BLAS or anything built on OpenMP/MKL.
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
exec "$python" -m bench.evaluate "$@"
