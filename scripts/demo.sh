#!/usr/bin/env bash
# The main job end to end on the embedded default data, in its own venv
# (.venv-demo) installed from scratch: the Bach chorales bundled with music21 are
# prepared as token records (TFDS ArrayRecord) in every representation with
# mtx-prepare, then tokenized and decoded back to MIDI with mtx-tokenize; then
# mtx-train trains the tiny config (configs/jsb_tiny.py) on the mmt tokens, with
# checkpoints and TensorBoard events in demo_out/runs/jsb_tiny; then mtx-sample
# writes new chorales from it (demo_out/samples: MIDI, tokens, and WAV where
# FluidSynth is or can be installed); last, mtx-eval measures the run (likelihood of
# the test split, music metrics of new samples beside the test chorales, attention and
# embeddings, training curves) and writes demo_out/eval/report.html.
# MTX_DEMO_LIMIT=N limits the number of chorales, MTX_DEMO_STEPS=N the training steps
# and MTX_DEMO_EVAL_SAMPLES=N the samples mtx-eval draws (CI's quick setting).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
python="$(mtx_venv .venv-demo "" | tail -n 1)"
bin="$(dirname "$python")"
out="${MTX_DEMO_OUT:-demo_out}"
limit="${MTX_DEMO_LIMIT:-0}"
steps="${MTX_DEMO_STEPS:-}"
eval_samples="${MTX_DEMO_EVAL_SAMPLES:-}"
for representation in mmt performance remi mmm; do
  "$bin/mtx-prepare" --dataset=jsb_chorales --manual_dir="$out/chorales" \
    --data_dir="$out/data" --representation="$representation" --limit="$limit"
done
"$bin/mtx-tokenize" --input_dir="$out/chorales" --output_dir="$out/tokens" \
  --representations=mmt,performance,remi,mmm
"$bin/mtx-train" --config=configs/jsb_tiny.py --workdir="$out/runs/jsb_tiny" \
  --config.data.data_dir="$out/data" ${steps:+--config.train.num_steps=$steps}
# Audio: FluidSynth and a General MIDI soundfont (Debian packages), installed when this
# user can; without them mtx-sample says so and writes MIDI only.
if ! command -v fluidsynth >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  if [[ "$(id -u)" == 0 ]]; then apt_get=(apt-get); else apt_get=(sudo -n apt-get); fi
  timeout 300 "${apt_get[@]}" install -y -qq --no-install-recommends fluidsynth \
    fluid-soundfont-gm >/dev/null 2>&1 || echo "FluidSynth could not be installed: no audio"
fi
"$bin/mtx-sample" --workdir="$out/runs/jsb_tiny" --output_dir="$out/samples" \
  --num_samples=4 --render=wav
"$bin/mtx-eval" --workdir="$out/runs/jsb_tiny" --output_dir="$out/eval" \
  ${eval_samples:+--num_samples=$eval_samples}
echo "demo done: datasets in $out/data, tokens in $out/tokens, the trained model in" \
  "$out/runs/jsb_tiny (tensorboard --logdir=$out/runs/jsb_tiny/tensorboard), new music in" \
  "$out/samples, the evaluation report in $out/eval/report.html"
