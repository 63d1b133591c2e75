#!/usr/bin/env bash
# The main job end to end on the embedded default data: its own venv
# (.venv-demo), a fresh install, then the Bach chorales from music21's corpus
# tokenized with every representation and written back as MIDI under demo_out/.
# MTX_DEMO_LIMIT=N limits the number of chorales (CI's quick setting).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
python="$(mtx_venv .venv-demo "" | tail -n 1)"
out="${MTX_DEMO_OUT:-demo_out}"
"$python" -m data_pipeline.music21_chorales --out_dir="$out/chorales" --limit="${MTX_DEMO_LIMIT:-0}"
"$(dirname "$python")/mtx-tokenize" --input_dir="$out/chorales" --output_dir="$out/tokens" \
  --representations=mmt,performance,remi,mmm
