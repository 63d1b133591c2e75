"""`mtx-sample`: new MIDI from a trained run, unconditioned, continued or instrument-informed.

    mtx-sample --workdir=runs/jsb_tiny --output_dir=samples --num_samples=8
    mtx-sample --workdir=runs/mmt_sod --output_dir=out --primer=song.mid --primer_beats=8
    mtx-sample --workdir=runs/mmt_sod --output_dir=out --instruments=piano,violin,cello
    mtx-sample ... --temperature=0.9 --top_p=0.95 --seed=1 --render=wav
    mtx-sample ... --max_length=2048 --window=256 --max_time_jump=8

Restores the latest checkpoint (or --step=best / a step number) with the config
saved beside it. Writes sample_NNN.mid and sample_NNN.npy (its tokens) per
sample, and sample_NNN.wav with --render=wav (FluidSynth and a General MIDI
soundfont; skipped with a message when they are missing). Bad input exits with
status 2 and one line.

Defaults come from the run: temperature and top-k/top-p from its config's
`sample` section (else `mtx.sample.decode.DEFAULT_SAMPLING`: MMT's temperature 1
and top-k keeping a tenth of each field's values); a sample runs until its
end-of-song or as long as the longest training song (--max_length), the model
seeing the latest --window rows (the training seq_len) and the song's header
(`mtx.sample.decode`); time never jumps further between notes than the training
data's largest jump, nor (mmt) stacks more notes at once (--max_time_jump,
--max_onset_notes; `mtx.sample.restore.sampling_limits`).
"""

from __future__ import annotations

import math
import os
import sys
import time

import numpy as np
from absl import flags, logging

from mtx.cli.app import run as run_app
from mtx.cli.paths import check_output_dir
from mtx.errors import ConfigError
from mtx.sample.audio import DEFAULT_SOUNDFONT, render_wav

_WORKDIR = flags.DEFINE_string("workdir", None, "The run mtx-train wrote.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Where the samples go.")
_NUM_SAMPLES = flags.DEFINE_integer("num_samples", 4, "How many samples.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 0, "Samples decoded together (0: all).")
_STEP = flags.DEFINE_string("step", "latest", "Checkpoint: latest, best or a step number.")
_FALLBACK = flags.DEFINE_bool(
    "fallback_to_intact_checkpoint", False, "When the latest (or best) checkpoint is damaged, "
    "read the newest intact one instead of stopping (a warning names the damaged step).")
_PRIMER = flags.DEFINE_string("primer", None, "A MIDI file to continue.")
_PRIMER_BEATS = flags.DEFINE_integer("primer_beats", None, "mmt: keep the primer's first N "
                                     "beats.")
_PRIMER_NOTES = flags.DEFINE_integer("primer_notes", None, "Keep the primer's first N notes.")
_INSTRUMENTS = flags.DEFINE_list("instruments", None, "mmt: instrument names or GM programs "
                                 "(piano,violin,42): the header is fixed, notes generated.")
_TEMPERATURE = flags.DEFINE_list("temperature", None, "One value, or one per field; "
                                 "0 is greedy (default: the run config's sample section).")
_TOP_K = flags.DEFINE_list("top_k", None, "One value, or one per field; 0: off (default: "
                           "--top_k_fraction).")
_TOP_K_FRACTION = flags.DEFINE_float("top_k_fraction", None, "Top-k keeping this fraction of "
                                     "each field's values (MMT: 0.1); 0: off (default: the "
                                     "run's).")
_TOP_P = flags.DEFINE_list("top_p", None, "One value, or one per field; 1.0: off (default: "
                           "the run's).")
_MAX_LENGTH = flags.DEFINE_integer("max_length", 0, "Rows per sample, primer included "
                                   "(0: the longest training song's rows).")
_WINDOW = flags.DEFINE_integer("window", 0, "Rows the model sees at once; samples run past "
                               "it (0: the training seq_len).")
_MAX_TIME_JUMP = flags.DEFINE_integer("max_time_jump", -1, "Most time between consecutive "
                                      "notes (mmt: beats; performance: time steps; remi: "
                                      "bars); 0: no limit (default: the training data's "
                                      "largest).")
_MAX_ONSET_NOTES = flags.DEFINE_integer("max_onset_notes", -1, "mmt: most notes at one beat "
                                        "and position; 0: no limit (default: the training "
                                        "data's most).")
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


def _warn(line: str) -> None:
  print(f"warning: {line}", file=sys.stderr, flush=True)


def _sampling_flags(defaults: dict) -> dict:
  """The run's sampling defaults with the flags given on the command line over them;
  --top_k 0 turns top-k off, the fraction included."""
  chosen = dict(defaults)
  if _TEMPERATURE.value is not None:
    chosen["temperature"] = _numbers(_TEMPERATURE.value, float, "temperature")
  if _TOP_P.value is not None:
    chosen["top_p"] = _numbers(_TOP_P.value, float, "top_p")
  if _TOP_K_FRACTION.value is not None:
    chosen["top_k_fraction"] = _TOP_K_FRACTION.value
  if _TOP_K.value is not None:
    chosen["top_k"] = _numbers(_TOP_K.value, int, "top_k")
    if not any(chosen["top_k"] if isinstance(chosen["top_k"], list) else [chosen["top_k"]]):
      chosen["top_k_fraction"] = 0.0
  return chosen


# The sampling flags' valid values: (check, what the flag accepts). A value outside
# would not fail later: top_p 0 keeps no value (samples without notes), top_p 2 and a
# negative temperature silently change nothing or turn greedy, nan draws garbage.
_SAMPLING_RANGES = {
    "temperature": (lambda v: math.isfinite(v) and v >= 0, "a number >= 0 (0: greedy)"),
    "top_k": (lambda v: v >= 0, "an integer >= 0 (0: off)"),
    "top_p": (lambda v: math.isfinite(v) and 0 < v <= 1,
              "in (0, 1] (1: off; 0 would keep no value at all)"),
    "top_k_fraction": (lambda v: math.isfinite(v) and 0 <= v <= 1, "in [0, 1] (0: off)"),
}


def _check_value(name: str, value) -> None:
  ok, meaning = _SAMPLING_RANGES[name]
  for v in value if isinstance(value, list) else [value]:
    if not ok(v):
      raise ConfigError(f"--{name} {v}: must be {meaning}")


def _check_flags() -> None:
  """Every flag that can be checked without the run, before the model loads (seconds)."""
  if not _WORKDIR.value or not _OUTPUT_DIR.value:
    raise ConfigError("pass --workdir (a run mtx-train wrote) and --output_dir")
  if _NUM_SAMPLES.value < 1:
    raise ConfigError(f"--num_samples {_NUM_SAMPLES.value}: must be at least 1")
  if _BATCH_SIZE.value < 0:
    raise ConfigError(f"--batch_size {_BATCH_SIZE.value}: must be >= 0 (0: every sample "
                      "at once)")
  for flag, meaning in ((_MAX_LENGTH, "0: the longest training song's rows"),
                        (_WINDOW, "0: the training seq_len")):
    if flag.value < 0:
      raise ConfigError(f"--{flag.name} {flag.value}: must be >= 0 ({meaning})")
  for flag in (_MAX_TIME_JUMP, _MAX_ONSET_NOTES):
    if flag.value < -1:
      raise ConfigError(f"--{flag.name} {flag.value}: must be >= 0 (0: no limit; default: "
                        "the training data's)")
  for flag, cast in ((_TEMPERATURE, float), (_TOP_K, int), (_TOP_P, float)):
    if flag.value is not None:
      _check_value(flag.name, _numbers(flag.value, cast, flag.name))
  if _TOP_K_FRACTION.value is not None:
    _check_value("top_k_fraction", _TOP_K_FRACTION.value)
  if _PRIMER.value and _INSTRUMENTS.value:
    raise ConfigError("pass --primer (continuation) or --instruments (instrument-informed), "
                      "not both")
  if (_PRIMER_BEATS.value is not None or _PRIMER_NOTES.value is not None) and not _PRIMER.value:
    raise ConfigError("--primer_beats/--primer_notes need --primer")
  if _PRIMER.value and not os.path.isfile(_PRIMER.value):
    raise ConfigError(f"--primer {_PRIMER.value}: no such file; pass a MIDI file to continue")
  check_output_dir(_OUTPUT_DIR.value, "output_dir")


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise ConfigError(f"unexpected arguments {argv[1:]}; every input is a --flag")
  _check_flags()
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  import jax

  from mtx.sample.decode import make_generate, options_for, sample_defaults
  from mtx.sample.grammar import TIME_UNITS, grammar_for
  from mtx.sample.primer import instrument_codes, mmt_header, primer_rows, start_rows
  from mtx.sample.restore import load_run, sampling_limits
  from mtx.train.sharding import batch_sharding

  run = load_run(_WORKDIR.value, _STEP.value, fallback_to_intact=_FALLBACK.value, warn=_warn)
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
  limits = sampling_limits(run, window=_WINDOW.value, max_length=_MAX_LENGTH.value,
                           max_time_jump=_MAX_TIME_JUMP.value,
                           max_onset_notes=_MAX_ONSET_NOTES.value, warn=_warn)
  max_length, window = limits.max_length, limits.window
  if len(primer) >= max_length and not _PRIMER.value:
    start = "the instrument header" if _INSTRUMENTS.value else "the song's start"
    raise ConfigError(f"--max_length {max_length}: too short to sample anything: {start} "
                      f"alone takes {len(primer)} rows; pass a larger --max_length")
  if len(primer) >= max_length:
    raise ConfigError(f"the primer has {len(primer)} rows, not fewer than --max_length "
                      f"({max_length}): shorten it with --primer_beats/--primer_notes")
  if len(primer) > window:
    raise ConfigError(f"the primer has {len(primer)} rows, more than the --window of "
                      f"{window} rows the model sees at once: shorten it with "
                      "--primer_beats/--primer_notes, or pass a wider --window")
  defaults = sample_defaults(config, codec.fields.names)
  options = options_for(codec.fields.sizes, **_sampling_flags(defaults))
  grammar = grammar_for(codec, max_time_jump=limits.max_time_jump,
                        max_first_time=limits.max_first_time,
                        max_onset_notes=limits.max_onset_notes,
                        max_silence=limits.max_silence)
  jump = (f"time jumps of at most {limits.max_time_jump} {TIME_UNITS[codec.name]}"
          if limits.max_time_jump and codec.name in TIME_UNITS else "no limit on time jumps")
  if limits.max_onset_notes and codec.name == "mmt":
    jump += f", at most {limits.max_onset_notes} notes at once"
  if limits.max_silence is not None and codec.name == "mmt":
    jump += f", silences of at most {limits.max_silence / codec.resolution:g} beats"
  print(f"sampling up to {max_length} rows, {window} in view, {jump}", flush=True)
  from tqdm import tqdm

  bar = tqdm(total=max_length - len(primer), unit="row", desc="sampling", file=sys.stderr,
             disable=not sys.stderr.isatty())

  def progress(rows) -> None:
    bar.update(int(rows) - len(primer) - bar.n)

  generate = make_generate(run.setup.model, grammar, options, max_length=max_length,
                           window=window, use_cache=_USE_CACHE.value, progress=progress)
  batch = _BATCH_SIZE.value or _NUM_SAMPLES.value
  os.makedirs(_OUTPUT_DIR.value, exist_ok=True)
  key = jax.random.key(_SEED.value)
  written, rows, start = 0, 0, time.perf_counter()
  render, wavs = _RENDER.value == "wav", 0
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
        else:
          wavs += 1
    elapsed = time.perf_counter() - start
    print(f"{written}/{_NUM_SAMPLES.value} samples, {rows / elapsed:,.0f} rows/s", flush=True)
  bar.close()
  kinds = ".mid, .npy, .wav" if wavs == written else (
      f".mid, .npy; .wav for {wavs}" if wavs else ".mid, .npy")
  print(f"wrote {written} samples ({kinds}) from step {run.step} to {_OUTPUT_DIR.value}")


def run() -> None:
  run_app(main)


if __name__ == "__main__":
  run()
