"""What `mtx-sample` does once its flags are checked: restore, draw in batches, write.

    settings = Settings(workdir="runs/jsb_tiny", output_dir="samples", num_samples=8)
    written = sample_to_files(settings)      # sample_NNN.mid, .npy (and .wav) per sample

The binary (`mtx.cli.sample`) parses and checks the flags; everything that needs the
run (its codec, config, sampling limits, model) happens here. `draw_batches` is the one
batched, device-split loop both mtx-sample and mtx-eval (`mtx.evaluate.samples`) draw
through, so the same seed gives the same samples from either.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from mtx.errors import ConfigError
from mtx.sample.audio import DEFAULT_SOUNDFONT, render_wav


@dataclasses.dataclass(frozen=True)
class Settings:
  """mtx-sample's inputs, checked already (`mtx.cli.sample`); the flags document them.

  `sampling`: the sampling values given on the command line (temperature, top_k,
  top_k_fraction, top_p), laid over the run's defaults (`sampling_values`). -1 for
  max_time_jump / max_onset_notes and 0 for max_length / window: the run's.
  """

  workdir: str
  output_dir: str
  num_samples: int = 4
  batch_size: int = 0
  step: str = "latest"
  fallback_to_intact: bool = False
  primer: str | None = None
  primer_beats: int | None = None
  primer_notes: int | None = None
  instruments: list[str] | None = None
  sampling: dict = dataclasses.field(default_factory=dict)
  max_length: int = 0
  window: int = 0
  max_time_jump: int = -1
  max_onset_notes: int = -1
  seed: int = 0
  use_cache: bool = True
  render_wav: bool = False
  soundfont: str = DEFAULT_SOUNDFONT


@dataclasses.dataclass(frozen=True)
class Written:
  """What `sample_to_files` left in the output folder."""

  samples: int
  wavs: int
  step: int


def warn(line: str) -> None:
  print(f"warning: {line}", file=sys.stderr, flush=True)


def sampling_values(defaults: dict, given: dict) -> dict:
  """The run's sampling defaults with the values given on the command line over them;
  a top_k of 0 turns top-k off, the fraction included."""
  chosen = dict(defaults)
  chosen.update(given)
  if "top_k" in given:
    top_k = given["top_k"]
    if not any(top_k if isinstance(top_k, list) else [top_k]):
      chosen["top_k_fraction"] = 0.0
  return chosen


def _primer_rows(codec, settings: Settings) -> np.ndarray:
  """(P, F) rows every sample starts from: the instrument header, the primer file's
  opening, or start-of-song."""
  from mtx.sample.primer import instrument_codes, mmt_header, primer_rows, start_rows

  if settings.instruments:
    if codec.name != "mmt":
      raise ConfigError(f"--instruments needs an mmt model; this one is {codec.name}")
    return mmt_header(codec, instrument_codes(settings.instruments))
  if settings.primer:
    return primer_rows(
      codec, settings.primer, beats=settings.primer_beats, notes=settings.primer_notes
    )
  return start_rows(codec)


def _check_primer(primer: np.ndarray, settings: Settings, max_length: int, window: int) -> None:
  """ConfigError where the primer leaves nothing to sample or does not fit in view."""
  if len(primer) >= max_length and not settings.primer:
    start = "the instrument header" if settings.instruments else "the song's start"
    raise ConfigError(
      f"--max_length {max_length}: too short to sample anything: {start} "
      f"alone takes {len(primer)} rows; pass a larger --max_length"
    )
  if len(primer) >= max_length:
    raise ConfigError(
      f"the primer has {len(primer)} rows, not fewer than --max_length "
      f"({max_length}): shorten it with --primer_beats/--primer_notes"
    )
  if len(primer) > window:
    raise ConfigError(
      f"the primer has {len(primer)} rows, more than the --window of "
      f"{window} rows the model sees at once: shorten it with "
      "--primer_beats/--primer_notes, or pass a wider --window"
    )


def describe_limits(codec, limits) -> str:
  """The sampling limits in a line: 'sampling up to N rows, W in view, time jumps ...'."""
  from mtx.sample.grammar import TIME_UNITS

  jump = (
    f"time jumps of at most {limits.max_time_jump} {TIME_UNITS[codec.name]}"
    if limits.max_time_jump and codec.name in TIME_UNITS
    else "no limit on time jumps"
  )
  if limits.max_onset_notes and codec.name == "mmt":
    jump += f", at most {limits.max_onset_notes} notes at once"
  if limits.max_silence is not None and codec.name == "mmt":
    jump += f", silences of at most {limits.max_silence / codec.resolution:g} beats"
  return f"sampling up to {limits.max_length} rows, {limits.window} in view, {jump}"


def draw_batches(
  run: Any,
  generate: Callable,
  primer: np.ndarray,
  *,
  num_samples: int,
  batch: int,
  seed: int,
  before_batch: Callable[[], None] | None = None,
) -> Iterator[tuple[int, list[np.ndarray]]]:
  """(index of the batch's first sample, its samples' tokens, each cut at its length)
  per batch of `batch` samples drawn from `primer` (P, F); the batch is split over the
  devices where it divides evenly. Batch b's key is fold_in(key(seed), its first index),
  so a sample does not depend on how many are drawn after it."""
  import jax

  from mtx.train.sharding import batch_sharding

  key = jax.random.key(seed)
  for first in range(0, num_samples, batch):
    primers = np.broadcast_to(primer, (batch,) + primer.shape)
    if batch % jax.device_count() == 0:  # the samples split over the devices
      primers = jax.device_put(primers, batch_sharding(run.setup.mesh))
    if before_batch is not None:
      before_batch()
    tokens, lengths = jax.device_get(generate(run.params, primers, jax.random.fold_in(key, first)))
    yield first, [tokens[i, : lengths[i]] for i in range(min(batch, num_samples - first))]


def sample_to_files(settings: Settings) -> Written:
  """Restores the run, draws `settings.num_samples` samples and writes each as
  sample_NNN.npy (its tokens), .mid and, with `render_wav`, .wav (skipped, with a
  message, where FluidSynth or the soundfont is missing). Prints the limits and the
  progress on stdout; ConfigError for input the run does not accept."""
  from tqdm import tqdm

  from mtx.sample.decode import make_generate, options_for, sample_defaults
  from mtx.sample.restore import load_run, sampling_limits

  run = load_run(
    settings.workdir, settings.step, fallback_to_intact=settings.fallback_to_intact, warn=warn
  )
  codec = run.codec
  primer = _primer_rows(codec, settings)
  limits = sampling_limits(
    run,
    window=settings.window,
    max_length=settings.max_length,
    max_time_jump=settings.max_time_jump,
    max_onset_notes=settings.max_onset_notes,
    warn=warn,
  )
  _check_primer(primer, settings, limits.max_length, limits.window)
  defaults = sample_defaults(run.config, codec.fields.names)
  options = options_for(codec.fields.sizes, **sampling_values(defaults, settings.sampling))
  grammar = limits.grammar(codec)
  print(describe_limits(codec, limits), flush=True)
  bar = tqdm(
    total=limits.max_length - len(primer),
    unit="row",
    desc="sampling",
    file=sys.stderr,
    disable=not sys.stderr.isatty(),
  )

  def progress(rows) -> None:
    bar.update(int(rows) - len(primer) - bar.n)

  generate = make_generate(
    run.setup.model,
    grammar,
    options,
    max_length=limits.max_length,
    window=limits.window,
    use_cache=settings.use_cache,
    progress=progress,
  )
  os.makedirs(settings.output_dir, exist_ok=True)
  written, rows, start = 0, 0, time.perf_counter()
  render, wavs = settings.render_wav, 0
  for first, samples in draw_batches(
    run,
    generate,
    primer,
    num_samples=settings.num_samples,
    batch=settings.batch_size or settings.num_samples,
    seed=settings.seed,
    before_batch=bar.reset,
  ):
    for i, sample in enumerate(samples):
      rows += len(sample) - len(primer)
      path = os.path.join(settings.output_dir, f"sample_{first + i:03d}")
      np.save(f"{path}.npy", sample)
      codec.decode(sample).dump(f"{path}.mid")
      written += 1
      if render:
        why = render_wav(f"{path}.mid", f"{path}.wav", settings.soundfont)
        if why:
          print(f"not rendering audio: {why}", file=sys.stderr)
          render = False
        else:
          wavs += 1
    elapsed = time.perf_counter() - start
    print(f"{written}/{settings.num_samples} samples, {rows / elapsed:,.0f} rows/s", flush=True)
  bar.close()
  return Written(samples=written, wavs=wavs, step=run.step)
