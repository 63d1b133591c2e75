"""`mtx-eval`: measures a trained run and writes a report a researcher can open.

    mtx-eval --workdir=runs/jsb_tiny --output_dir=eval
    mtx-eval --workdir=runs/mmt_sod --output_dir=eval --step=best --split=test \\
        --num_samples=100 --analyses=nll,metrics
    mtx-eval --workdir=runs/jsb_tiny --output_dir=eval --samples_dir=samples

Restores the checkpoint (latest, best or a step number) with the config and codec saved
with it, opens the dataset it was trained on (or --data_dir), and writes
OUT/report.json (every figure with its definition, deterministic for a checkpoint, split
and seed), OUT/report.html (one self-contained page: tables, plots, piano rolls, audio)
and OUT/figures/, OUT/samples/ (the samples it drew), OUT/audio/. Analyses:
nll (likelihood of the whole split), metrics (music metrics of samples beside the
ground truth, and their distances), attention (mean relative attention, the MMT paper's
analysis), embeddings (cosine similarity of the learned tables), curves (the run's
training curves). Bad input exits with status 2 and one line.
"""

from __future__ import annotations

import os
import sys

from absl import flags, logging

from mtx.cli.app import run as run_app
from mtx.errors import ConfigError
from mtx.sample.audio import DEFAULT_SOUNDFONT

_WORKDIR = flags.DEFINE_string("workdir", None, "The run mtx-train wrote.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Where the report goes.")
_STEP = flags.DEFINE_string("step", "latest", "Checkpoint: latest, best or a step number.")
_SPLIT = flags.DEFINE_string("split", "test", "The dataset split to measure against.")
_DATA_DIR = flags.DEFINE_string(
  "data_dir", None, "Where the run's dataset was prepared, if not where the run's config says."
)
_ANALYSES = flags.DEFINE_list(
  "analyses",
  None,
  "Some of nll,metrics,attention,embeddings,"
  "curves (default: all that apply to the representation).",
)
_NUM_SAMPLES = flags.DEFINE_integer(
  "num_samples", 64, "Samples to draw (as mtx-sample draws them) when --samples_dir is not given."
)
_SAMPLES_DIR = flags.DEFINE_string(
  "samples_dir",
  None,
  "Measure these MIDI files (e.g. mtx-sample's output) instead of drawing samples.",
)
_SAMPLE_LENGTH = flags.DEFINE_integer("sample_length", 1024, "Rows per drawn sample (MMT: 1024).")
_SAMPLING = flags.DEFINE_enum(
  "sampling",
  "run",
  ["run", "mmt"],
  "Draw samples with the "
  "run's config.sample (what mtx-sample uses) or MMT's "
  "evaluation settings (temperature 1, top-k of a tenth).",
)
_TRIM_BEATS = flags.DEFINE_integer(
  "trim_beats",
  64,
  "Measure the first N beats of samples and ground truth (MMT: 64); 0 measures them whole.",
)
_RESOLUTION = flags.DEFINE_integer(
  "resolution", 12, "Time steps per beat the music metrics count in (MMT: 12)."
)
_MAX_SONGS = flags.DEFINE_integer("max_songs", 0, "Use the split's first N songs (0: all).")
_STRIDE = flags.DEFINE_integer(
  "stride", 0, "Likelihood windows advance this many rows (0: half the model's window)."
)
_BATCH_SIZE = flags.DEFINE_integer(
  "batch_size", 0, "Windows or samples per model call (0: the run's eval batch size)."
)
_ATTENTION_SEQUENCES = flags.DEFINE_integer(
  "attention_sequences", 32, "Test songs whose attention is analysed."
)
_SEED = flags.DEFINE_integer("seed", 0, "Same seed, same samples and report.")
_NUM_AUDIO = flags.DEFINE_integer(
  "num_audio", 4, "Samples and songs rendered to WAV for the report (FluidSynth, when installed)."
)
_SOUNDFONT = flags.DEFINE_string(
  "soundfont", DEFAULT_SOUNDFONT, "General MIDI soundfont for the audio."
)


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise ConfigError(f"unexpected arguments {argv[1:]}; every input is a --flag")
  if not _WORKDIR.value or not _OUTPUT_DIR.value:
    raise ConfigError("pass --workdir (a run mtx-train wrote) and --output_dir")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  from mtx.evaluate.evaluator import EvalOptions, evaluate

  options = EvalOptions(
    workdir=_WORKDIR.value,
    output_dir=_OUTPUT_DIR.value,
    step=_STEP.value,
    split=_SPLIT.value,
    data_dir=_DATA_DIR.value,
    analyses=tuple(_ANALYSES.value) if _ANALYSES.value else None,
    num_samples=_NUM_SAMPLES.value,
    samples_dir=_SAMPLES_DIR.value,
    sample_length=_SAMPLE_LENGTH.value,
    sampling=_SAMPLING.value,
    trim_beats=_TRIM_BEATS.value,
    resolution=_RESOLUTION.value,
    max_songs=_MAX_SONGS.value,
    stride=_STRIDE.value,
    batch_size=_BATCH_SIZE.value,
    attention_sequences=_ATTENTION_SEQUENCES.value,
    seed=_SEED.value,
    num_audio=_NUM_AUDIO.value,
    soundfont=_SOUNDFONT.value,
  )
  report = evaluate(options, log=lambda line: print(line, file=sys.stderr, flush=True))
  out = os.path.abspath(_OUTPUT_DIR.value)
  print(
    f"report of {report['run']['workdir']} at step {report['run']['step']}: "
    f"{os.path.join(out, 'report.html')} (figures in {os.path.join(out, 'report.json')})"
  )


def run() -> None:
  run_app(main)


if __name__ == "__main__":
  run()
