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

from absl import flags, logging

from mtx.cli.app import run as run_app
from mtx.cli.paths import check_output_dir
from mtx.errors import ConfigError
from mtx.sample.audio import DEFAULT_SOUNDFONT

_WORKDIR = flags.DEFINE_string("workdir", None, "The run mtx-train wrote.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Where the samples go.")
_NUM_SAMPLES = flags.DEFINE_integer("num_samples", 4, "How many samples.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 0, "Samples decoded together (0: all).")
_STEP = flags.DEFINE_string("step", "latest", "Checkpoint: latest, best or a step number.")
_FALLBACK = flags.DEFINE_bool(
  "fallback_to_intact_checkpoint",
  False,
  "When the latest (or best) checkpoint is damaged, "
  "read the newest intact one instead of stopping (a warning names the damaged step).",
)
_PRIMER = flags.DEFINE_string("primer", None, "A MIDI file to continue.")
_PRIMER_BEATS = flags.DEFINE_integer("primer_beats", None, "mmt: keep the primer's first N beats.")
_PRIMER_NOTES = flags.DEFINE_integer("primer_notes", None, "Keep the primer's first N notes.")
_INSTRUMENTS = flags.DEFINE_list(
  "instruments",
  None,
  "mmt: instrument names or GM programs (piano,violin,42): the header is fixed, notes generated.",
)
_TEMPERATURE = flags.DEFINE_list(
  "temperature",
  None,
  "One value, or one per field; 0 is greedy (default: the run config's sample section).",
)
_TOP_K = flags.DEFINE_list(
  "top_k", None, "One value, or one per field; 0: off (default: --top_k_fraction)."
)
_TOP_K_FRACTION = flags.DEFINE_float(
  "top_k_fraction",
  None,
  "Top-k keeping this fraction of each field's values (MMT: 0.1); 0: off (default: the run's).",
)
_TOP_P = flags.DEFINE_list(
  "top_p", None, "One value, or one per field; 1.0: off (default: the run's)."
)
_MAX_LENGTH = flags.DEFINE_integer(
  "max_length", 0, "Rows per sample, primer included (0: the longest training song's rows)."
)
_WINDOW = flags.DEFINE_integer(
  "window", 0, "Rows the model sees at once; samples run past it (0: the training seq_len)."
)
_MAX_TIME_JUMP = flags.DEFINE_integer(
  "max_time_jump",
  -1,
  "Most time between consecutive "
  "notes (mmt: beats; performance: time steps; remi: "
  "bars); 0: no limit (default: the training data's "
  "largest).",
)
_MAX_ONSET_NOTES = flags.DEFINE_integer(
  "max_onset_notes",
  -1,
  "mmt: most notes at one beat and position; 0: no limit (default: the training data's most).",
)
_SEED = flags.DEFINE_integer("seed", 0, "Same seed, same samples.")
_USE_CACHE = flags.DEFINE_bool("use_cache", True, "Decode with the KV cache.")
_RENDER = flags.DEFINE_enum("render", "none", ["none", "wav"], "Also render audio.")
_SOUNDFONT = flags.DEFINE_string(
  "soundfont", DEFAULT_SOUNDFONT, "General MIDI soundfont for --render=wav."
)


def _numbers(values, cast, name):
  try:
    out = [cast(v) for v in values]
  except ValueError:
    raise ConfigError(f"--{name} takes numbers; got {','.join(values)}") from None
  return out[0] if len(out) == 1 else out


def _sampling_given() -> dict:
  """The sampling values given on the command line (the run's defaults fill the rest)."""
  given = {}
  if _TEMPERATURE.value is not None:
    given["temperature"] = _numbers(_TEMPERATURE.value, float, "temperature")
  if _TOP_P.value is not None:
    given["top_p"] = _numbers(_TOP_P.value, float, "top_p")
  if _TOP_K_FRACTION.value is not None:
    given["top_k_fraction"] = _TOP_K_FRACTION.value
  if _TOP_K.value is not None:
    given["top_k"] = _numbers(_TOP_K.value, int, "top_k")
  return given


# The sampling flags' valid values: (check, what the flag accepts). A value outside
# would not fail later: top_p 0 keeps no value (samples without notes), top_p 2 and a
# negative temperature silently change nothing or turn greedy, nan draws garbage.
_SAMPLING_RANGES = {
  "temperature": (lambda v: math.isfinite(v) and v >= 0, "a number >= 0 (0: greedy)"),
  "top_k": (lambda v: v >= 0, "an integer >= 0 (0: off)"),
  "top_p": (
    lambda v: math.isfinite(v) and 0 < v <= 1,
    "in (0, 1] (1: off; 0 would keep no value at all)",
  ),
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
    raise ConfigError(f"--batch_size {_BATCH_SIZE.value}: must be >= 0 (0: every sample at once)")
  for flag, meaning in (
    (_MAX_LENGTH, "0: the longest training song's rows"),
    (_WINDOW, "0: the training seq_len"),
  ):
    if flag.value < 0:
      raise ConfigError(f"--{flag.name} {flag.value}: must be >= 0 ({meaning})")
  for flag in (_MAX_TIME_JUMP, _MAX_ONSET_NOTES):
    if flag.value < -1:
      raise ConfigError(
        f"--{flag.name} {flag.value}: must be >= 0 (0: no limit; default: the training data's)"
      )
  for flag, cast in ((_TEMPERATURE, float), (_TOP_K, int), (_TOP_P, float)):
    if flag.value is not None:
      _check_value(flag.name, _numbers(flag.value, cast, flag.name))
  if _TOP_K_FRACTION.value is not None:
    _check_value("top_k_fraction", _TOP_K_FRACTION.value)
  if _PRIMER.value and _INSTRUMENTS.value:
    raise ConfigError(
      "pass --primer (continuation) or --instruments (instrument-informed), not both"
    )
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
  from mtx.sample.run import Settings, sample_to_files

  settings = Settings(
    workdir=_WORKDIR.value,
    output_dir=_OUTPUT_DIR.value,
    num_samples=_NUM_SAMPLES.value,
    batch_size=_BATCH_SIZE.value,
    step=_STEP.value,
    fallback_to_intact=_FALLBACK.value,
    primer=_PRIMER.value,
    primer_beats=_PRIMER_BEATS.value,
    primer_notes=_PRIMER_NOTES.value,
    instruments=_INSTRUMENTS.value,
    sampling=_sampling_given(),
    max_length=_MAX_LENGTH.value,
    window=_WINDOW.value,
    max_time_jump=_MAX_TIME_JUMP.value,
    max_onset_notes=_MAX_ONSET_NOTES.value,
    seed=_SEED.value,
    use_cache=_USE_CACHE.value,
    render_wav=_RENDER.value == "wav",
    soundfont=_SOUNDFONT.value,
  )
  written = sample_to_files(settings)
  kinds = (
    ".mid, .npy, .wav"
    if written.wavs == written.samples
    else (f".mid, .npy; .wav for {written.wavs}" if written.wavs else ".mid, .npy")
  )
  print(
    f"wrote {written.samples} samples ({kinds}) from step {written.step} to {_OUTPUT_DIR.value}"
  )


def run() -> None:
  run_app(main)


if __name__ == "__main__":
  run()
