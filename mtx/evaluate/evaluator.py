"""What `mtx-eval` runs: restore a run, run the analyses it asks for, write the report.

    report = evaluate(EvalOptions(workdir="runs/jsb_tiny", output_dir="eval"))

Each analysis is a function of the restored run, the split's songs and the options,
returning its section of the report (plain numbers and strings) and the figures it drew
(`mtx.evaluate.sections`); the analyses' math lives in their own modules (likelihood,
music_metrics, distances, attention_analysis, embeddings, curves). Everything that goes
into report.json is a
function of the checkpoint, the split, the seed and the options, computed in a fixed
order, so the same command writes the same bytes; timings go to the log only.

Nothing half-written looks complete: every input is checked before OUT is touched, then
a previous report.json and report.html are removed, and both are written last, atomically.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mtx.errors import ConfigError
from mtx.evaluate.sections import (
  CATEGORY_FIELDS,
  ORDERED_FIELDS,
  PIECES_SHOWN,
  attention_section,
  curves_section,
  embeddings_section,
  likelihood_section,
  metrics_section,
)

ANALYSES = ("nll", "metrics", "attention", "embeddings", "curves")
# The report section each analysis writes, where it is named otherwise.
SECTION_OF = {"nll": "likelihood", "metrics": "music_metrics"}
AUDIO_SECONDS = 15.0  # each clip embedded in report.html: its first 15 s, mono 22 kHz


# What the report's other figures mean (likelihood, music metrics and distances bring
# their own definitions from their modules).
DEFINITIONS = {
  "music_metrics.trim_beats": (
    "Samples and ground-truth songs are measured on their first N beats (MMT's "
    "evaluation trims both to 64: music.trim(resolution * 64)); null: measured whole."
  ),
  "music_metrics.resolution": (
    "Time steps per beat the metrics count in: both sides are put on this grid first "
    "(MMT decodes to 12), since MusPy's metrics count ticks."
  ),
  "music_metrics.ground_truth": (
    "The split's songs, decoded from their tokens as the samples are (the same grid, "
    "the same trim). mmt tokens carry no time signature, so for mmt both sides are in "
    "4/4 and groove_consistency_meter equals groove_consistency."
  ),
  "music_metrics.strict_decode_fraction": (
    "Of the samples whose tokens are known (drawn, or an .npy beside the MIDI file), the "
    "fraction that decode with no row dropped (codec.decode(strict=True) succeeds)."
  ),
  "music_metrics.sampling": (
    "How the samples were made: drawn unconditioned as mtx-sample draws them (up to "
    "1024 rows; the run's config.sample, by default MMT's evaluation settings: "
    "temperature 1, x-transformers' top_k at threshold 0.9, k = ceil(0.1 V) per field, so "
    "a 5-value type field is sampled greedily; time jumps and notes at one onset bounded "
    "by the training data; the training window in view), or read from --samples_dir."
  ),
  "attention.gamma": (
    "Mean relative attention (MMT paper): over causal pairs query s > key t of "
    "teacher-forced test windows, both rows with a value in the field, the share of the "
    "attention weight on pairs whose values differ by k (query minus key), per layer "
    "and head; _mean: averaged over layers and heads."
  ),
  "attention.baseline": "The share of those pairs (unweighted) whose values differ by k.",
  "attention.gain": (
    "gamma - baseline: > 0 where a head looks at that difference more often than the "
    "pairs' frequency explains. A head attending uniformly to its past already shows "
    "gain at small differences (near keys are counted by more queries); compare heads "
    "and checkpoints, not against 0 alone."
  ),
  "attention.ratio": "gamma / baseline (null where the baseline is 0).",
  "attention.codes": (
    "A categorical field's codes seen in the analysed windows; its matrices are query "
    "category (row) by key category (column), normalized per query category."
  ),
  "embeddings.input_octave": (
    "Cosine similarity of the learned pitch embeddings: octave_mean over pairs exactly "
    "12 semitones apart, other_mean over the other pairs, score = their difference "
    "(the octave bands of the MMT paper's pitch-embedding plot)."
  ),
  "embeddings.output_octave": "The same for the pitch head's rows (output embeddings).",
  "embeddings.input_played_octave": (
    "The octave score over the pitches the split's songs play (played_codes, lowest "
    "to highest), where the embeddings were trained."
  ),
  "embeddings.output_played_octave": "The same for the pitch head's rows.",
}


@dataclasses.dataclass(frozen=True)
class EvalOptions:
  """What to measure and how (the flags of mtx-eval; see mtx/cli/evaluate.py)."""

  workdir: str
  output_dir: str
  step: str = "latest"
  split: str = "test"
  data_dir: str | None = None
  analyses: tuple[str, ...] | None = None  # None: every analysis the representation has
  num_samples: int = 64
  samples_dir: str | None = None
  sample_length: int = 1024
  sampling: str = "run"  # "run": the run's config.sample; "mmt": MMT's evaluation settings
  trim_beats: int = 64
  resolution: int = 12
  max_songs: int = 0
  stride: int = 0
  batch_size: int = 0
  attention_sequences: int = 32
  seed: int = 0
  num_audio: int = 4
  soundfont: str = "/usr/share/sounds/sf2/FluidR3_GM.sf2"

  def check(self) -> None:
    positive = {
      "num_samples": self.num_samples,
      "sample_length": self.sample_length,
      "resolution": self.resolution,
    }
    for name, value in positive.items():
      if value < 1:
        raise ConfigError(f"--{name} must be positive; got {value}")
    at_least_zero = {
      "trim_beats": self.trim_beats,
      "max_songs": self.max_songs,
      "stride": self.stride,
      "batch_size": self.batch_size,
      "attention_sequences": self.attention_sequences,
      "num_audio": self.num_audio,
    }
    for name, value in at_least_zero.items():
      if value < 0:
        raise ConfigError(f"--{name} must be 0 or more; got {value}")
    if self.analyses is not None:
      unknown = [a for a in self.analyses if a not in ANALYSES]
      if unknown or not self.analyses:
        raise ConfigError(
          f"--analyses: unknown {', '.join(unknown) or '(none given)'}; "
          f"choose from {','.join(ANALYSES)}"
        )
    if self.sampling not in ("run", "mmt"):
      raise ConfigError(
        f"--sampling must be run (the run's config.sample) or mmt (MMT's "
        f"evaluation settings); got {self.sampling!r}"
      )
    if self.samples_dir:
      from mtx.evaluate.samples import midi_files

      midi_files(self.samples_dir)


def choose_analyses(requested: tuple[str, ...] | None, codec) -> tuple[str, ...]:
  """The analyses to run: those asked for, or every one that applies. The attention
  analysis measures distances in fields (beat, position, pitch) that only mmt has: asked
  for on another representation it is one clear error, left out by default."""
  names = codec.fields.names
  has_fields = any(f in names for f in ORDERED_FIELDS + CATEGORY_FIELDS)
  if requested is None:
    return tuple(a for a in ANALYSES if a != "attention" or has_fields)
  if "attention" in requested and not has_fields:
    raise ConfigError(
      f"--analyses=attention needs the fields {', '.join(ORDERED_FIELDS)} (mmt's); "
      f"representation '{codec.name}' has only {', '.join(names)}: leave attention out"
    )
  return tuple(a for a in ANALYSES if a in requested)


def prepare_output_dir(path: str) -> Path:
  """OUT, created, with any previous report removed (so an interrupted evaluation never
  leaves a report that looks complete)."""
  out = Path(path)
  if out.exists() and not out.is_dir():
    raise ConfigError(f"--output_dir {path} is a file; pass a folder for the report")
  try:
    out.mkdir(parents=True, exist_ok=True)
    for name in ("report.json", "report.html"):
      (out / name).unlink(missing_ok=True)
    for sub in ("figures", "audio", "drawn_samples"):
      (out / sub).mkdir(exist_ok=True)
  except OSError as e:
    raise ConfigError(f"--output_dir {path}: cannot write there ({e.strerror})") from None
  return out


# ---- the split ----------------------------------------------------------------------


@dataclasses.dataclass
class Split:
  name: str
  location: str
  tokens: list[np.ndarray]
  names: list[str]


def open_split(run, split: str, data_dir: str | None, max_songs: int) -> Split:
  """The split's songs from the run's dataset: at --data_dir, else where the run's config
  says, else where the dataset was when the run trained."""
  from mtx.train.data import open_run_dataset

  data = open_run_dataset(run.config.data, data_dir, run.dataset)
  if not data.has(split):
    available = ", ".join(f"{k} ({v})" for k, v in sorted(data.splits.items()) if v)
    raise ConfigError(
      f"--split {split}: the dataset at {data.location} has no such split "
      f"with examples; it has {available}"
    )
  source = data.source(split)
  count = len(source) if not max_songs else min(max_songs, len(source))
  tokens, names = [], []
  for index in range(count):
    example = source[index]
    tokens.append(np.asarray(example["tokens"], np.int32).reshape(-1, run.codec.n_fields))
    path = example.get("path", b"") if isinstance(example, dict) else b""
    path = path.decode() if isinstance(path, bytes) else str(path)
    names.append(os.path.basename(path) or f"{split}_{index:04d}")
  return Split(name=split, location=data.location, tokens=tokens, names=names)


# ---- the whole evaluation -----------------------------------------------------------


def evaluate(options: EvalOptions, log: Callable[[str], None] = print) -> dict:
  """Runs the evaluation `options` describes; returns the report it wrote."""
  from mtx.evaluate import plots
  from mtx.evaluate import report as report_io
  from mtx.sample.restore import load_run

  options.check()
  out = Path(options.output_dir)
  if out.exists() and not out.is_dir():
    raise ConfigError(f"--output_dir {options.output_dir} is a file; pass a folder for the report")
  run = load_run(options.workdir, options.step)
  analyses = choose_analyses(options.analyses, run.codec)
  split = None
  if {"nll", "metrics", "attention"} & set(analyses):
    split = open_split(run, options.split, options.data_dir, options.max_songs)
  elif "embeddings" in analyses:
    try:  # only for the pitches the songs play: the analysis runs without them
      split = open_split(run, options.split, options.data_dir, options.max_songs)
    except ConfigError:
      split = None
  given = None
  if "metrics" in analyses and options.samples_dir:
    from mtx.evaluate.samples import read_samples_dir

    given = read_samples_dir(options.samples_dir, run.codec)
  # Every input is checked: only now is anything in OUT touched.
  out = prepare_output_dir(options.output_dir)
  report: dict[str, Any] = {
    "run": {
      "workdir": options.workdir,
      "step": run.step,
      "representation": run.codec.name,
      "fields": list(run.codec.fields.names),
      "model": dict(run.config.model),
      "seq_len": int(run.config.data.seq_len),
    },
    "settings": {
      k: v for k, v in dataclasses.asdict(options).items() if k not in ("output_dir", "soundfont")
    },
    "analyses": list(analyses),
  }
  definitions: dict[str, str] = {}
  images: list = []
  sections = {SECTION_OF.get(a, a) for a in analyses}
  definitions.update({k: v for k, v in DEFINITIONS.items() if k.split(".")[0] in sections})
  if split is not None:
    report["run"]["dataset"] = split.location
    report["run"]["split"] = split.name
    report["run"]["split_songs"] = len(split.tokens)
  if "nll" in analyses:
    from mtx.evaluate import likelihood

    report["likelihood"] = likelihood_section(run, split, options, log)
    definitions.update(likelihood.DEFINITIONS)
  shown: dict[str, list] = {}
  if "metrics" in analyses:
    from mtx.evaluate import distances, music_metrics

    section, values, shown = metrics_section(run, split, options, out, log, given)
    report["music_metrics"] = section
    definitions.update(
      {f"music_metrics.{k}": v for k, v in music_metrics.METRIC_DEFINITIONS.items()}
    )
    definitions.update(getattr(distances, "DEFINITIONS", {}))
    path = out / "figures" / "metric_histograms.png"
    plots.plot_metric_histograms(
      values["samples"], values["ground_truth"], path, list(music_metrics.METRIC_DEFINITIONS)
    )
    images.append(("music_metrics", "Per-file metrics: samples against ground truth", path))
  if "attention" in analyses:
    report["attention"], figures = attention_section(run, split, options, out, log)
    images += figures
  if "embeddings" in analyses:
    report["embeddings"], figures = embeddings_section(run, out, split)
    images += figures
  if "curves" in analyses:
    report["curves"], figures = curves_section(options.workdir, out)
    images += figures
  audio, rolls = [], []
  for side, pairs in shown.items():
    label = side.replace("_", " ")
    for index, (piece, table) in enumerate(pairs[:PIECES_SHOWN]):
      path = out / "figures" / f"roll_{side}_{index}.png"
      plots.plot_piano_roll(table, path, title=f"{label}: {piece.name}")
      rolls.append((label, piece.name, path))
    audio += _audio(run.codec, side, pairs[: options.num_audio], out, options.soundfont, log)
  report["definitions"] = definitions
  report_io.write_json(report, out / "report.json")
  report_io.write_html(
    report, out, images=images, audio=audio, piano_rolls=rolls, max_audio_seconds=AUDIO_SECONDS
  )
  return report


def _audio(codec, side: str, pairs, out: Path, soundfont: str, log) -> list:
  """WAVs of the first pieces: the one beside a sample file, or a FluidSynth render."""
  from mtx.representation.midi_io import note_table_to_miditoolkit
  from mtx.sample.audio import render_wav

  rendered = []
  for index, (piece, table) in enumerate(pairs):
    if piece.wav:
      rendered.append((f"{side.replace('_', ' ')}: {piece.name}", piece.wav))
      continue
    stem = out / "audio" / f"{side}_{index}"
    note_table_to_miditoolkit(table).dump(f"{stem}.mid")
    why = render_wav(f"{stem}.mid", f"{stem}.wav", soundfont)
    if why:
      log(f"no audio in the report: {why}")
      return rendered
    rendered.append((f"{side.replace('_', ' ')}: {piece.name}", str(stem) + ".wav"))
  return rendered
