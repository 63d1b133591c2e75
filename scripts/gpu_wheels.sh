#!/usr/bin/env bash
# Run here, before a GPU check: downloads into .whl/ the pure-Python packages that
# bench/gpu.py needs and the GPU machine's image lacks, and the flax and optax mtx is
# tested with (the image's own may differ; its jax with CUDA, torch, absl-py, etils,
# einops and matplotlib are used as they are there). The device tool carries .whl/ (name
# it in `carry`); scripts/gpu_check.sh installs it there.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python3}"
rm -rf .whl && mkdir .whl
"$python" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
  -d .whl ml-collections==1.1.0 miditoolkit==1.0.1 mido==1.3.3 x-transformers==1.0.3 \
  entmax==1.3 flax==0.12.8 optax==0.2.8
ls -l .whl
