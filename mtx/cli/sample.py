"""`mtx-sample`: new MIDI from a trained run, unconditioned, continued or instrument-informed.

    mtx-sample --workdir=runs/jsb_tiny --output_dir=samples --num_samples=8
    mtx-sample --workdir=runs/mmt_sod --output_dir=out --primer=song.mid --primer_beats=8
    mtx-sample --workdir=runs/mmt_sod --output_dir=out --instruments=piano,violin,cello
    mtx-sample ... --temperature=0.9 --top_p=0.95 --seed=1 --render=wav

Restores the latest checkpoint (or --step=best / a step number) with the config
saved beside it. Writes sample_NNN.mid and sample_NNN.npy (its tokens) per
sample, and sample_NNN.wav with --render=wav (FluidSynth and a General MIDI
soundfont; skipped with a message when they are missing). Bad input exits with
status 2 and one line.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np
from absl import flags, logging

from mtx.cli.app import run as run_app
from mtx.errors import ConfigError
from mtx.sample.audio import DEFAULT_SOUNDFONT, render_wav

_WORKDIR = flags.DEFINE_string("workdir", None, "The run mtx-train wrote.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Where the samples go.")
_NUM_SAMPLES = flags.DEFINE_integer("num_samples", 4, "How many samples.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 0, "Samples decoded together (0: all).")
_STEP = flags.DEFINE_string("step", "latest", "Checkpoint: latest, best or a step number.")
_PRIMER = flags.DEFINE_string("primer", None, "A MIDI file to continue.")
_PRIMER_BEATS = flags.DEFINE_integer("primer_beats", None, "mmt: keep the primer's first N "
                                     "beats.")
_PRIMER_NOTES = flags.DEFINE_integer("primer_notes", None, "Keep the primer's first N notes.")
_INSTRUMENTS = flags.DEFINE_list("instruments", None, "mmt: instrument names or GM programs "
                                 "(piano,violin,42): the header is fixed, notes generated.")
_TEMPERATURE = flags.DEFINE_list("temperature", ["1.0"], "One value, or one per field; "
                                 "0 is greedy.")
_TOP_K = flags.DEFINE_list("top_k", ["0"], "One value, or one per field; 0: off.")
_TOP_P = flags.DEFINE_list("top_p", ["1.0"], "One value, or one per field; 1.0: off.")
_MAX_LENGTH = flags.DEFINE_integer("max_length", 0, "Rows per sample, primer included "
                                   "(0: the training seq_len).")
_SEED = flags.DEFINE_integer("seed", 0, "Same seed, same samples.")
_USE_CACHE = flags.DEFINE_bool("use_cache", True, "Decode with the KV cache.")
_RENDER = flags.DEFINE_enum("render", "none", ["none", "wav"], "Also render audio.")
_SOUNDFONT = flags.DEFINE_string("soundfont", DEFAULT_SOUNDFONT,
                                 "General MIDI soundfont for --render=wav.")


def _numbers(values, cast, name):
  try:
    out = [cast(v) for v in values]
  except ValueError:
    raise ConfigError(f"--{name} takes numbers; got {','.join(values)}") from None
  return out[0] if len(out) == 1 else out


def _check_flags() -> None:
  if not _WORKDIR.value or not _OUTPUT_DIR.value:
    raise ConfigError("pass --workdir (a run mtx-train wrote) and --output_dir")
  if _NUM_SAMPLES.value < 1 or _BATCH_SIZE.value < 0:
    raise ConfigError("--num_samples must be positive and --batch_size >= 0")
  if _PRIMER.value and _INSTRUMENTS.value:
    raise ConfigError("pass --primer (continuation) or --instruments (instrument-informed), "
                      "not both")
  if (_PRIMER_BEATS.value is not None or _PRIMER_NOTES.value is not None) and not _PRIMER.value:
    raise ConfigError("--primer_beats/--primer_notes need --primer")


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise ConfigError(f"unexpected arguments {argv[1:]}; every input is a --flag")
  _check_flags()
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  import jax

  from mtx.sample.decode import SamplingOptions, make_generate
  from mtx.sample.grammar import grammar_for
  from mtx.sample.primer import instrument_codes, mmt_header, primer_rows, start_rows
  from mtx.sample.restore import load_run
  from mtx.train.sharding import batch_sharding

  run = load_run(_WORKDIR.value, _STEP.value)
  codec, config = run.codec, run.config
  if _INSTRUMENTS.value:
    if codec.name != "mmt":
      raise ConfigError(f"--instruments needs an mmt model; this one is {codec.name}")
    primer = mmt_header(codec, instrument_codes(_INSTRUMENTS.value))
  elif _PRIMER.value:
    primer = primer_rows(codec, _PRIMER.value, beats=_PRIMER_BEATS.value,
                         notes=_PRIMER_NOTES.value)
  else:
    primer = start_rows(codec)
  max_length = _MAX_LENGTH.value or int(config.data.seq_len)
  if config.model.position_embedding == "learned" and max_length > config.model.max_seq_len:
    raise ConfigError(f"--max_length {max_length} exceeds the model's learned positions "
                      f"({config.model.max_seq_len})")
  if len(primer) >= max_length:
    raise ConfigError(f"the primer has {len(primer)} rows, not fewer than --max_length "
                      f"({max_length}): shorten it with --primer_beats/--primer_notes")
  options = SamplingOptions.per_field(
      codec.n_fields, temperature=_numbers(_TEMPERATURE.value, float, "temperature"),
      top_k=_numbers(_TOP_K.value, int, "top_k"), top_p=_numbers(_TOP_P.value, float, "top_p"))
  grammar = grammar_for(codec)
  from tqdm import tqdm

  bar = tqdm(total=max_length - len(primer), unit="row", desc="sampling", file=sys.stderr,
             disable=not sys.stderr.isatty())

  def progress(rows) -> None:
    bar.update(int(rows) - len(primer) - bar.n)

  generate = make_generate(run.setup.model, grammar, options, max_length=max_length,
                           use_cache=_USE_CACHE.value, progress=progress)
  batch = _BATCH_SIZE.value or _NUM_SAMPLES.value
  os.makedirs(_OUTPUT_DIR.value, exist_ok=True)
  key = jax.random.key(_SEED.value)
  written, rows, start = 0, 0, time.perf_counter()
  render = _RENDER.value == "wav"
  for first in range(0, _NUM_SAMPLES.value, batch):
    count = min(batch, _NUM_SAMPLES.value - first)
    primers = np.broadcast_to(primer, (batch,) + primer.shape)
    if batch % jax.device_count() == 0:  # the samples split over the devices
      primers = jax.device_put(primers, batch_sharding(run.setup.mesh))
    bar.reset()
    tokens, lengths = jax.device_get(generate(run.params, primers,
                                              jax.random.fold_in(key, first)))
    for i in range(count):
      sample = tokens[i, :lengths[i]]
      rows += len(sample) - len(primer)
      path = os.path.join(_OUTPUT_DIR.value, f"sample_{first + i:03d}")
      np.save(f"{path}.npy", sample)
      codec.decode(sample).dump(f"{path}.mid")
      written += 1
      if render:
        why = render_wav(f"{path}.mid", f"{path}.wav", _SOUNDFONT.value)
        if why:
          print(f"not rendering audio: {why}", file=sys.stderr)
          render = False
    elapsed = time.perf_counter() - start
    print(f"{written}/{_NUM_SAMPLES.value} samples, {rows / elapsed:,.0f} rows/s", flush=True)
  bar.close()
  print(f"wrote {written} samples (.mid, .npy) from step {run.step} to {_OUTPUT_DIR.value}")


def run() -> None:
  run_app(main)


if __name__ == "__main__":
  run()
