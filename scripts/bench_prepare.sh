#!/usr/bin/env bash
# Prepare throughput: mtx-prepare beside the MMT reference pipeline (MusPy read +
# its conversion and extraction, written to disk) on the same files, with 1 and 2
# workers, and the input pipeline's batches/s. The peers live in a venv of their
# own (.venv-bench, shared with bench_tokenize.sh), never in the test venv.
# Arguments go to the bench (e.g. bash scripts/bench_prepare.sh --repeats 5).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
python="$(mtx_bench_venv | tail -n 1)"
# One thread per process: no thread pools in numpy's BLAS or anything built on
# OpenMP/MKL (the worker processes are the parallelism measured).
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
exec "$python" -m bench.prepare "$@"
