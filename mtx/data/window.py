"""One example -> one training window: augment, crop, shift, pad.

Convention (as t5x and MaxText build decoder-only examples): a window is
`seq_len + 1` rows of the song; `inputs` are its first `seq_len` rows and
`targets` its last `seq_len`, so `targets[i]` is the row that follows
`inputs[i]`. `mask[i]` is True where `targets[i]` is a real row of the window
(False on padding). A window shorter than `seq_len + 1` is padded with the
representation's padding row (`pad_row`). `segment_ids` (1 on real rows, 0 on
padding) and `positions` (0.. within the window, 0 on padding) come with every
example, so packed and unpacked batches look the same to a model.

Randomness comes from a generator seeded by (seed, epoch, index of the example
in the source): the same example in the same epoch gets the same crop and
augmentation whatever the shuffle, the sharding or the number of workers.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from mtx.data import augment
from mtx.data.crop import crop
from mtx.errors import ConfigError
from mtx.representation.codec import Codec


@dataclasses.dataclass(frozen=True)
class WindowOptions:
  """How examples become windows (see `make_train_iterator` for each option)."""

  seq_len: int
  transpose: tuple[int, int] | None = None
  tempo_stretch: tuple[float, float] | None = None
  max_beat: int | None = None
  start_token: bool = False

  def __post_init__(self):
    if not isinstance(self.seq_len, (int, np.integer)) or self.seq_len < 1:
      raise ConfigError(f"seq_len must be a positive integer, got {self.seq_len!r}")
    if self.transpose is not None:
      low, high = self.transpose
      if int(low) != low or int(high) != high or low > high:
        raise ConfigError(
          f"transpose must be a pair of integers (low, high) with low <= "
          f"high, e.g. (-5, 6) as MMT; got {self.transpose!r}"
        )
    if self.tempo_stretch is not None:
      low, high = self.tempo_stretch
      if not 0.5 < low <= high < 2.0:
        raise ConfigError(
          f"tempo_stretch must be (low, high) with 0.5 < low <= high < 2, "
          f"e.g. (0.9, 1.1); got {self.tempo_stretch!r}"
        )
    if self.max_beat is not None and self.max_beat < 1:
      raise ConfigError(
        f"max_beat must be a positive number of beats or None, got {self.max_beat!r}"
      )


def pad_row(codec: Codec) -> np.ndarray:
  """The padding row of a representation: mmt's all-zero row (as the MMT
  reference pads), the pad event of single-field codecs."""
  if hasattr(codec, "vocab"):
    return np.array([codec.vocab.token("pad")], np.int32)
  return np.zeros(codec.n_fields, np.int32)


def token_rows(codec: Codec, example: Any) -> np.ndarray:
  """The int32 (n, n_fields) tokens of a source example (a dict with "tokens")."""
  try:
    tokens = example["tokens"]
  except (KeyError, TypeError, IndexError):
    raise ConfigError(
      f"a source example must be a dict with a 'tokens' array (as the "
      f"mtx-prepare datasets hold); got {type(example).__name__}"
    ) from None
  tokens = np.asarray(tokens)
  if tokens.ndim == 1 and codec.n_fields == 1:
    tokens = tokens[:, None]
  if tokens.ndim != 2 or tokens.shape[1] != codec.n_fields:
    raise ConfigError(
      f"a source example's tokens have shape {tokens.shape}, but "
      f"representation '{codec.name}' has {codec.n_fields} fields: was the "
      f"dataset prepared with --representation={codec.name}?"
    )
  return tokens.astype(np.int32, copy=False)


def make_window(
  codec: Codec, tokens: np.ndarray, options: WindowOptions, rng: np.random.Generator | None
) -> np.ndarray:
  """The window's rows (at most seq_len + 1): augmented and cropped with `rng`,
  or cropped from the start without augmentation when `rng` is None.

  Tempo stretch of performance changes the length, so it runs on the whole
  song before the crop; transposition and remi's tempo shift run on the window
  (the cheaper order), so their range is narrowed by the window's notes only."""
  stretch = rng is not None and options.tempo_stretch is not None
  if stretch and codec.name == "performance":
    tokens = augment.random_tempo(codec, tokens, rng, options.tempo_stretch)
  window = crop(
    codec,
    tokens,
    options.seq_len + 1,
    rng,
    max_beat=options.max_beat,
    start_token=options.start_token,
  )
  if stretch and codec.name != "performance":
    window = augment.random_tempo(codec, window, rng, options.tempo_stretch)
  if rng is not None and options.transpose is not None:
    window = augment.random_transpose(codec, window, rng, options.transpose)
  return window


def padded_example(window: np.ndarray, seq_len: int, pad: np.ndarray) -> dict[str, np.ndarray]:
  """inputs/targets (seq_len, F) int32, mask (seq_len,) bool, segment_ids and
  positions (seq_len,) int32 of a window of at most seq_len + 1 rows."""
  rows = np.empty((seq_len + 1, pad.size), np.int32)
  rows[:] = pad
  rows[: window.shape[0]] = window
  mask = np.arange(seq_len) < window.shape[0] - 1
  return {
    "inputs": rows[:-1],
    "targets": rows[1:],
    "mask": mask,
    "segment_ids": mask.astype(np.int32),
    "positions": np.where(mask, np.arange(seq_len, dtype=np.int32), 0).astype(np.int32),
  }


def unpadded_example(window: np.ndarray) -> dict[str, np.ndarray] | None:
  """inputs/targets/mask of a window at its own length, for packing; None
  (skipped) for a window of fewer than two rows, which has no target."""
  if window.shape[0] < 2:
    return None
  window = window.astype(np.int32, copy=False)
  return {"inputs": window[:-1], "targets": window[1:], "mask": np.ones(window.shape[0] - 1, bool)}


@dataclasses.dataclass(frozen=True)
class WindowTransform:
  """The grain transform (`map_with_index`) applied at the source.

  `index` is the index grain asks the source for: epoch * len(source) + the
  example's index (grain's shuffle, slice and repeat keep the epoch in it).
  With `seed` None there is no randomness: crops from the start, no
  augmentation (evaluation)."""

  codec: Codec
  options: WindowOptions
  source_size: int
  seed: int | None = None
  pack: bool = False

  def __call__(self, index: int, example: Any):
    tokens = token_rows(self.codec, example)
    rng = None
    if self.seed is not None:
      epoch, position = divmod(int(index), self.source_size)
      rng = np.random.default_rng([self.seed, epoch, position])
    window = make_window(self.codec, tokens, self.options, rng)
    if self.pack:
      return unpadded_example(window)
    return padded_example(window, self.options.seq_len, pad_row(self.codec))
