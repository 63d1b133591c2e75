"""The codec interface every representation implements.

`encode` takes a path, a `miditoolkit.MidiFile` or a `NoteTable` and returns an
int32 array of shape (n, n_fields); `decode` takes such an array and returns a
`miditoolkit.MidiFile`. Subclasses implement the pure table <-> tokens parts,
`encode_table` and `decode_table`.

Decoding is tolerant: a model can emit any in-range integers, so rows that
cannot be decoded are dropped, counted by reason in a `DecodeReport`, and the
rest is kept. With `strict=True` the first such row raises `DecodeError`.
"""

from __future__ import annotations

import abc
import collections
import dataclasses
import logging

import numpy as np

from mtx.errors import ConfigError, DecodeError
from mtx.representation.fields import EventVocabulary, FieldTable
from mtx.representation.midi_io import MidiLike, load_note_table, note_table_to_miditoolkit
from mtx.representation.notetable import NoteTable

# What a codec does with music past its length limit (mmt's max_beat, remi's and
# mmm's max_beat, performance's max_seconds): refuse the file, or keep its start.
OVERFLOW_MODES = ("error", "truncate")


def check_overflow_mode(codec_name: str, overflow: str) -> None:
  if overflow not in OVERFLOW_MODES:
    raise ConfigError(f"{codec_name}: overflow must be 'error' or 'truncate', got {overflow!r}")


def check_grid(codec_name: str, resolution: int, ticks_per_beat: int, unit: str) -> None:
  """A bar-based codec's grid: `resolution` `unit`s per quarter note, a multiple of 4 so
  16th-note bars are whole, and `ticks_per_beat` a multiple of it so decoded MIDI lands on
  whole ticks."""
  if resolution <= 0 or resolution % 4:
    raise ConfigError(
      f"{codec_name} resolution must be a positive multiple of 4 ({unit} "
      f"per quarter note, so 16th-note bars are whole); got {resolution}"
    )
  if ticks_per_beat <= 0 or ticks_per_beat % resolution:
    raise ConfigError(
      f"{codec_name} ticks_per_beat must be a positive multiple of the "
      f"resolution {resolution}; got {ticks_per_beat}"
    )


def check_limit(codec_name: str, option: str, value, *, maximum=None) -> None:
  """A length limit must be a positive whole number (`maximum` caps it where a
  field's size depends on it)."""
  if (
    isinstance(value, bool)
    or not isinstance(value, (int, np.integer))
    or value < 1
    or (maximum is not None and value > maximum)
  ):
    bound = f" and at most {maximum:,}" if maximum is not None else ""
    raise ConfigError(f"{codec_name}: {option}={value!r} must be a whole number >= 1{bound}")


@dataclasses.dataclass
class DecodeReport:
  """What decoding kept and dropped. In strict mode `drop` raises instead."""

  strict: bool = False
  rows: int = 0
  dropped: int = 0
  reasons: collections.Counter = dataclasses.field(default_factory=collections.Counter)

  def drop(self, row: int, reason: str, count: int = 1) -> None:
    if self.strict:
      raise DecodeError(
        f"token row {row}: {reason} (decode with strict=False to drop such rows and keep the rest)"
      )
    self.dropped += count
    self.reasons[reason] += count


class Codec(abc.ABC):
  """MIDI <-> tokens for one representation."""

  name: str = ""
  fields: FieldTable

  @property
  def n_fields(self) -> int:
    return len(self.fields)

  def encode(self, midi: MidiLike | NoteTable) -> np.ndarray:
    """Tokens of a MIDI file: int32, shape (n, n_fields)."""
    table = load_note_table(midi)
    tokens = np.asarray(self.encode_table(table), np.int32)
    return tokens.reshape(-1, self.n_fields)

  def decode(self, tokens, *, strict: bool = False, return_report: bool = False):
    """A `miditoolkit.MidiFile` from tokens; with `return_report`, also the report."""
    tokens = self.check_tokens(tokens)
    report = DecodeReport(strict=strict, rows=int(tokens.shape[0]))
    table = self.decode_table(tokens, report)
    if report.dropped:
      logging.getLogger("mtx").info(
        "%s decode dropped %d of %d rows: %s",
        self.name,
        report.dropped,
        report.rows,
        dict(report.reasons),
      )
    midi = note_table_to_miditoolkit(table)
    return (midi, report) if return_report else midi

  def check_tokens(self, tokens) -> np.ndarray:
    """Shape (n, n_fields) (or (n,) for one field) and every value in range."""
    try:
      tokens = np.asarray(tokens)
    except (ValueError, TypeError) as e:  # numpy refuses ragged nested lists
      raise DecodeError(
        f"{self.name} tokens are not a rectangular array ({_first_line(e)}); "
        f"pass an integer array of shape (n, {self.n_fields}), every row "
        f"{self.n_fields} long"
      ) from None
    if tokens.ndim == 1 and self.n_fields == 1:
      tokens = tokens[:, None]
    if tokens.ndim != 2 or tokens.shape[1] != self.n_fields:
      raise DecodeError(
        f"{self.name} tokens must have shape (n, {self.n_fields}); got {tokens.shape}"
      )
    if not np.issubdtype(tokens.dtype, np.integer):
      raise DecodeError(f"{self.name} tokens must be integers; got {tokens.dtype}")
    # Compared in the tokens' own dtype: cast first, a uint64 of 2**64 - 1 would
    # read as -1 and the message would name a value nobody wrote.
    sizes = np.array(self.fields.sizes)
    bad = (
      tokens >= sizes.astype(tokens.dtype)
      if tokens.dtype.kind == "u"
      else (tokens < 0) | (tokens >= sizes)
    )
    if bad.any():
      row, col = map(int, np.argwhere(bad)[0])
      raise DecodeError(
        f"{self.name} token row {row}: field '{self.fields[col].name}' is "
        f"{tokens[row, col].item()}, outside 0..{sizes[col] - 1}; tokens must come from "
        "this codec's vocabulary"
      )
    return tokens.astype(np.int64)

  def field_mask(self, tokens) -> np.ndarray:
    """Which fields of each row mean something: bool (n, n_fields).

    The loss counts a field's prediction only where the row it predicts says
    the field carries a value. By default every field always counts.
    """
    tokens = np.asarray(tokens).reshape(-1, self.n_fields)
    table = self.field_mask_table()
    if table is None:
      return np.ones(tokens.shape, bool)
    return table[np.clip(tokens[:, 0], 0, table.shape[0] - 1)]

  def field_mask_table(self) -> np.ndarray | None:
    """`field_mask` as a lookup table for jax: bool (n_row_types, n_fields), row i
    the fields that count in a row whose field 0 (its type) is i; None where every
    field always counts (single-field codecs)."""
    return None

  @abc.abstractmethod
  def encode_table(self, table: NoteTable) -> np.ndarray:
    """Pure: a canonical note table -> tokens (n, n_fields)."""

  @abc.abstractmethod
  def decode_table(self, tokens: np.ndarray, report: DecodeReport) -> NoteTable:
    """Pure: checked tokens -> note table; drops rows through `report.drop`."""


def _first_line(error: Exception) -> str:
  text = str(error).strip()
  return text.splitlines()[0][:200] if text else type(error).__name__


def song_rows(vocab: EventVocabulary, events: np.ndarray, report: DecodeReport):
  """The rows of a single-field sequence that carry music, under the rules every
  single-field codec shares.

  Trailing pads are padding. Decoding stops at the first end-of-song; non-pad
  rows after it are dropped. A pad inside the sequence and a start-of-song after
  row 0 are dropped. Returns (rows, kinds, values): the original row indices of
  what is left and their kind index and value in `vocab`.
  """
  kinds, values = vocab.split(events)
  pad, start, end = (vocab.names.index(name) for name in ("pad", "start-of-song", "end-of-song"))
  content = np.flatnonzero(kinds != pad)
  length = int(content[-1]) + 1 if content.size else 0
  ends = np.flatnonzero(kinds[:length] == end)
  stop = int(ends[0]) if ends.size else length
  inner_pads = np.flatnonzero(kinds[:stop] == pad)
  if inner_pads.size:
    report.drop(int(inner_pads[0]), "pad inside the sequence", count=inner_pads.size)
  late_starts = np.flatnonzero(kinds[1:stop] == start) + 1
  if late_starts.size:
    report.drop(int(late_starts[0]), "start-of-song after the first row", count=late_starts.size)
  after = np.flatnonzero(kinds[stop + 1 : length] != pad) + stop + 1
  if after.size:
    report.drop(int(after[0]), "after end-of-song", count=after.size)
  rows = np.flatnonzero((kinds[:stop] != pad) & (kinds[:stop] != start))
  return rows, kinds[rows], values[rows]
