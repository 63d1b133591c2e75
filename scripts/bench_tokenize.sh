#!/usr/bin/env bash
# Tokenization throughput of the mtx codecs beside the peers (MidiTok, MusPy +
# MMT's encoding, plain readers), in one run on one core. The peers live in a
# venv of their own (.venv-bench), never in the test venv.
# Arguments go to the bench (e.g. bash scripts/bench_tokenize.sh --repeats 5).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
python="$(mtx_bench_venv | tail -n 1)"
# One core: no thread pools in numpy's BLAS or anything built on OpenMP/MKL.
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
exec "$python" -m bench.tokenize "$@"
