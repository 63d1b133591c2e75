"""The samples an evaluation measures: drawn as mtx-sample draws them (the run's
`config.sample`, by default MMT's evaluation settings), or read from a folder of MIDI
files; and the ground truth they are set beside.

MMT's evaluation (`mmt/evaluate.py` of the reference code) draws each sample
unconditioned from start-of-song, 1024 rows long, with temperature 1 and the filter
`top_k` at threshold 0.9 on every field: x-transformers 1.0's `top_k` keeps the
`ceil((1 - 0.9) * V)` most likely of a field's V values (MMT's type field, V = 5, is
therefore sampled greedily; beat, V = 257, from its 26 likeliest). mtx applies the same
rule to its own field sizes (`mmt_evaluation_sampling`); its grammar takes the place of
MMT's monotonicity masks (type and beat never go back, no "none" in a note's fields),
and is stricter (positions within a beat never go back either; time jumps and notes at
one onset bounded by what the training data holds, as mtx-sample bounds them), and the
model sees views of at most the training window's rows (re-encoded past it) where MMT's
x-transformers `generate` keeps its whole max_seq_len in view. Both sides are then
trimmed to their first 64 beats (MMT's `music.trim(resolution * 64)`) unless the
evaluation is told otherwise.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mtx.errors import ConfigError, MtxError
from mtx.representation.codec import Codec, DecodeReport
from mtx.representation.notetable import NoteTable

MMT_SAMPLE_LENGTH = 1024
MMT_TOP_K_THRESHOLD = 0.9
MIDI_SUFFIXES = (".mid", ".midi", ".kar", ".rmi")


def mmt_top_k(size: int, threshold: float = MMT_TOP_K_THRESHOLD) -> int:
  """x-transformers 1.0's `top_k(logits, thres)`: k = ceil((1 - thres) * V), in floating
  point as it computes it."""
  return max(1, math.ceil((1 - threshold) * size))


def mmt_evaluation_sampling(codec: Codec):
  """`SamplingOptions` of MMT's evaluation for `codec`'s fields: temperature 1, top-k
  per field as `mmt_top_k`, no nucleus filter (also mtx-sample's default)."""
  from mtx.sample.decode import SamplingOptions

  return SamplingOptions.per_field(
    codec.n_fields,
    temperature=1.0,
    top_k=[mmt_top_k(size) for size in codec.fields.sizes],
    top_p=1.0,
  )


@dataclasses.dataclass
class Piece:
  """One piece to measure: its notes, where it came from, and what else is known."""

  name: str
  table: NoteTable
  tokens: np.ndarray | None = None  # the tokens it was decoded from, when known
  strict: bool | None = None  # whether those tokens decode with nothing dropped
  wav: str | None = None  # a rendering beside it
  midi: str | None = None


def decode_piece(codec: Codec, tokens: np.ndarray, name: str) -> Piece:
  """The notes of `tokens` (tolerant decoding, as mtx-sample writes them) and whether
  they decode strictly (no row dropped)."""
  tokens = codec.check_tokens(tokens)
  report = DecodeReport()
  table = codec.decode_table(tokens, report)
  return Piece(
    name=name,
    table=table,
    tokens=tokens.astype(np.int32),
    strict=report.dropped == 0 and not report.reasons,
  )


def draw_samples(
  run: Any,
  *,
  num_samples: int,
  limits,
  seed: int,
  options,
  batch_size: int = 0,
  grammar=None,
  progress: Callable[[int], None] | None = None,
) -> list[np.ndarray]:
  """`num_samples` unconditioned samples (token arrays, each up to its end-of-song or
  `limits.max_length` rows) from a restored run (`mtx.sample.restore.load_run`), as
  mtx-sample draws them: `limits.window` rows in view (the training seq_len; views
  re-encoded past it), time jumps and notes at once bounded by the training data
  (`mtx.sample.restore.sampling_limits`); batched and split over the local devices; the
  same seed gives the same samples. `grammar`: another grammar than the codec's with the
  limits (an experiment's)."""
  import jax

  from mtx.sample.decode import make_generate
  from mtx.sample.primer import start_rows
  from mtx.sample.run import draw_batches

  codec = run.codec
  primer = start_rows(codec)
  if grammar is None:
    grammar = limits.grammar(codec)
  generate = make_generate(
    run.setup.model, grammar, options, max_length=limits.max_length, window=limits.window
  )
  devices = jax.device_count()
  batch = batch_size or num_samples
  batch = max(devices, -(-batch // devices) * devices)  # a whole batch on every device
  samples = []
  for _, drawn in draw_batches(
    run, generate, primer, num_samples=num_samples, batch=batch, seed=seed
  ):
    samples.extend(np.asarray(tokens, np.int32) for tokens in drawn)
    if progress is not None:
      progress(len(samples))
  return samples


def midi_files(folder: str | os.PathLike) -> list[Path]:
  """The MIDI files under `folder`, sorted; ConfigError for a missing, non-folder or
  MIDI-less one."""
  root = Path(folder)
  if not root.exists():
    raise ConfigError(
      f"--samples_dir {folder} does not exist: pass a folder of MIDI "
      "files (e.g. mtx-sample's --output_dir)"
    )
  if not root.is_dir():
    raise ConfigError(f"--samples_dir {folder} is a file, not a folder of MIDI files")
  paths = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in MIDI_SUFFIXES)
  if not paths:
    raise ConfigError(
      f"--samples_dir {folder} holds no MIDI files "
      f"({', '.join(MIDI_SUFFIXES)}); sample some with mtx-sample first"
    )
  return paths


def read_samples_dir(
  folder: str | os.PathLike, codec: Codec | None = None
) -> tuple[list[Piece], list[tuple[str, str]]]:
  """Every MIDI file under `folder` as a Piece (with its tokens and strictness where a
  `.npy` of tokens from mtx-sample lies beside it, and its `.wav`), and the files that
  could not be read, with the reason. Raises ConfigError for a missing or empty folder."""
  from mtx.representation.midi_io import read_note_table

  root = Path(folder)
  pieces, bad = [], []
  for path in midi_files(folder):
    name = str(path.relative_to(root))
    try:
      table = read_note_table(path)
    except MtxError as e:
      bad.append((name, str(e)))
      continue
    piece = Piece(name=name, table=table, midi=str(path))
    tokens_file = path.with_suffix(".npy")
    if codec is not None and tokens_file.is_file():
      try:
        decoded = decode_piece(codec, np.load(tokens_file, allow_pickle=False), name)
        piece.tokens, piece.strict = decoded.tokens, decoded.strict
      except (MtxError, ValueError, OSError):
        piece.strict = False
    wav = path.with_suffix(".wav")
    if wav.is_file():
      piece.wav = str(wav)
    pieces.append(piece)
  return pieces, bad
