#!/usr/bin/env bash
# The main job end to end on the embedded default data, in its own venv
# (.venv-demo) installed from scratch: the Bach chorales bundled with music21 are
# prepared as token records (TFDS ArrayRecord) in every representation with
# mtx-prepare, then tokenized and decoded back to MIDI with mtx-tokenize.
# Training and sampling join when they land.
# MTX_DEMO_LIMIT=N limits the number of chorales (CI's quick setting).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
python="$(mtx_venv .venv-demo "" | tail -n 1)"
bin="$(dirname "$python")"
out="${MTX_DEMO_OUT:-demo_out}"
limit="${MTX_DEMO_LIMIT:-0}"
for representation in mmt performance remi mmm; do
  "$bin/mtx-prepare" --dataset=jsb_chorales --manual_dir="$out/chorales" \
    --data_dir="$out/data" --representation="$representation" --limit="$limit"
done
"$bin/mtx-tokenize" --input_dir="$out/chorales" --output_dir="$out/tokens" \
  --representations=mmt,performance,remi,mmm
