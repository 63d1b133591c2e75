#!/usr/bin/env bash
# Training-step throughput and peak memory of the mtx decoder beside the MMT reference
# model (PyTorch + x-transformers), in one run on the CPU, plus the memory of skewed vs
# naive relative attention. The peer lives in the bench venv (.venv-bench), never in the
# test venv. Arguments go to the bench (e.g. bash scripts/bench_model.sh --long --steps 5).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
python="$(mtx_venv .venv-bench "" | tail -n 1)"
# torch pinned exactly: this version resolves to a CPU wheel; an unpinned torch pulls a
# multi-GB CUDA build. x-transformers 1.0.3 is the newest whose API the MMT code uses, and
# it imports entmax.
"$python" -m pip install --quiet torch==2.13.0 x-transformers==1.0.3 entmax
exec "$python" -m bench.model "$@"
