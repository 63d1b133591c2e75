#!/usr/bin/env bash
# The model's GPU check, in one command on a GPU machine (the device tool's `run`, with
# .whl/ from scripts/gpu_wheels.sh in `carry`). Uses the machine's own python3 (its jax
# with CUDA, flax, optax, torch); installs only the carried wheels, into /tmp/site.
# Writes $OUT/gpu.md and $OUT/gpu.json (gpu_out/ without $OUT). Arguments go to
# bench/gpu.py (e.g. --rows mtx-mmt-bf16:8x1024,torch-bf16:8x1024 --steps 5).
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python3}"
# MTX_GPU_IMAGE_FLAX=1 keeps the image's flax and optax (if the carried ones fail there).
wheels=()
for wheel in .whl/*.whl; do
  [[ -e "$wheel" ]] || continue
  case "$(basename "$wheel")" in flax-*|optax-*) [[ -n "${MTX_GPU_IMAGE_FLAX:-}" ]] && continue;; esac
  wheels+=("$wheel")
done
if (( ${#wheels[@]} )); then
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site "${wheels[@]}"
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
out="${OUT:-gpu_out}"
exec "$python" -m bench.gpu --out "$out/gpu.md" "$@"
