#!/usr/bin/env bash
# The matmul floor of the MMT-size training step: every matrix product of one step timed
# alone, in XLA (mtx) and in PyTorch, alternating; prints each side's floor and the
# tokens/s it bounds. torch lives in the bench venv (.venv-bench), never in the test venv.
# Arguments go to the bench (--shapes 8x512,2x1024 --rounds 3).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
python="$(mtx_venv .venv-bench "" | tail -n 1)"
# torch pinned exactly: this version resolves to a CPU wheel (see scripts/bench_model.sh).
"$python" -m pip install --quiet torch==2.13.0
exec "$python" -m bench.kernels "$@"
