"""Field tables and the vocabularies codecs share.

A codec's `fields` is the one table (name, size, meaning per token column) that
the model's embeddings and heads, the loss masks and the sampler read; nothing
else in mtx repeats a field list. Single-column codecs (performance, remi, mmm)
have one field whose values are laid out by an `EventVocabulary`: named kinds
of event, each a contiguous block of ids.

The constants below are the MMT reference code's (Dong et al. 2023,
`mmt/representation.py`): the 32 known durations in 1/12-beat steps and the
program -> instrument map over 64 instruments. mtx adds drums as a 65th
instrument; the reference has none: its `extract_notes` skips drum tracks, so
no drum hit reaches its data.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class Field:
  """One token column: values are integers in [0, size)."""

  name: str
  size: int
  meaning: str


class FieldTable(Sequence[Field]):
  """An ordered, immutable table of fields with lookup by name."""

  def __init__(self, fields: Sequence[Field]):
    self._fields = tuple(fields)
    names = [f.name for f in self._fields]
    if len(set(names)) != len(names):
      raise ValueError(f"duplicate field names in {names}")
    self._index = {name: i for i, name in enumerate(names)}

  def __getitem__(self, key):  # an int position or a field name
    if isinstance(key, str):
      return self._fields[self._index[key]]
    return self._fields[key]

  def __len__(self) -> int:
    return len(self._fields)

  def __iter__(self) -> Iterator[Field]:
    return iter(self._fields)

  def __repr__(self) -> str:
    body = ", ".join(f"{f.name}={f.size}" for f in self._fields)
    return f"FieldTable({body})"

  @property
  def names(self) -> tuple[str, ...]:
    return tuple(f.name for f in self._fields)

  @property
  def sizes(self) -> tuple[int, ...]:
    return tuple(f.size for f in self._fields)

  def index(self, name: str) -> int:  # type: ignore[override]
    return self._index[name]


@dataclasses.dataclass(frozen=True)
class EventKind:
  """A block of `count` consecutive ids meaning `name` with values 0..count-1."""

  name: str
  count: int
  meaning: str


class EventVocabulary:
  """Maps (kind, value) <-> token id for a single-column representation."""

  def __init__(self, kinds: Sequence[EventKind]):
    self.kinds = tuple(kinds)
    self.names = tuple(k.name for k in self.kinds)
    counts = np.array([k.count for k in self.kinds], np.int64)
    self.offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    self.size = int(counts.sum())
    self._offset = dict(zip(self.names, self.offsets.tolist()))
    self._count = dict(zip(self.names, counts.tolist()))

  def token(self, kind: str, value: int = 0) -> int:
    """The id of `value` of `kind`; raises ValueError when value is out of range."""
    if not 0 <= value < self._count[kind]:
      raise ValueError(f"{kind} value {value} outside 0..{self._count[kind] - 1}")
    return self._offset[kind] + int(value)

  def offset(self, kind: str) -> int:
    return self._offset[kind]

  def count(self, kind: str) -> int:
    return self._count[kind]

  def split(self, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vectorized inverse: (kind index, value) arrays for in-range tokens."""
    tokens = np.asarray(tokens, np.int64)
    kind = np.searchsorted(self.offsets, tokens, side="right") - 1
    return kind, tokens - self.offsets[kind]

  def describe(self, token: int) -> str:
    kind, value = self.split(np.array([token]))
    return f"{self.names[int(kind[0])]}:{int(value[0])}"


# ---- MMT reference constants ------------------------------------------------

MMT_RESOLUTION = 12  # positions per beat (quarter note)

# Durations in 1/12-beat steps that MMT can express; others snap to the nearest.
KNOWN_DURATIONS = np.array(
  [
    1,
    2,
    3,
    4,
    5,
    6,
    7,
    8,
    9,
    10,
    11,
    12,
    15,
    16,
    18,
    20,
    21,
    24,
    30,
    36,
    40,
    42,
    48,
    60,
    72,
    84,
    96,
    120,
    144,
    168,
    192,
    384,
  ],
  np.int64,
)

# General MIDI program -> MMT instrument name (None: the reference drops it).
PROGRAM_INSTRUMENT = (
  # pianos 0-7
  "piano",
  "piano",
  "piano",
  "piano",
  "electric-piano",
  "electric-piano",
  "harpsichord",
  "clavinet",
  # chromatic percussion 8-15
  "celesta",
  "glockenspiel",
  "music-box",
  "vibraphone",
  "marimba",
  "xylophone",
  "tubular-bells",
  "dulcimer",
  # organs 16-23
  "organ",
  "organ",
  "organ",
  "church-organ",
  "organ",
  "accordion",
  "harmonica",
  "bandoneon",
  # guitars 24-31
  "nylon-string-guitar",
  "steel-string-guitar",
  "electric-guitar",
  "electric-guitar",
  "electric-guitar",
  "electric-guitar",
  "electric-guitar",
  "electric-guitar",
  # basses 32-39
  "bass",
  "electric-bass",
  "electric-bass",
  "electric-bass",
  "slap-bass",
  "slap-bass",
  "synth-bass",
  "synth-bass",
  # strings 40-47
  "violin",
  "viola",
  "cello",
  "contrabass",
  "strings",
  "strings",
  "harp",
  "timpani",
  # ensemble 48-55
  "strings",
  "strings",
  "synth-strings",
  "synth-strings",
  "voices",
  "voices",
  "voices",
  "orchestra-hit",
  # brass 56-63
  "trumpet",
  "trombone",
  "tuba",
  "trumpet",
  "horn",
  "brasses",
  "synth-brasses",
  "synth-brasses",
  # reed 64-71
  "soprano-saxophone",
  "alto-saxophone",
  "tenor-saxophone",
  "baritone-saxophone",
  "oboe",
  "english-horn",
  "bassoon",
  "clarinet",
  # pipe 72-79
  "piccolo",
  "flute",
  "recorder",
  "pan-flute",
  None,
  None,
  None,
  "ocarina",
  # synth lead 80-87, synth pad 88-95
  *(["lead"] * 8),
  *(["pad"] * 8),
  # synth effects 96-103
  *([None] * 8),
  # ethnic 104-111
  "sitar",
  "banjo",
  "shamisen",
  "koto",
  "kalimba",
  "bag-pipe",
  "violin",
  "shehnai",
  # percussive 112-119
  None,
  None,
  None,
  None,
  None,
  "melodic-tom",
  "synth-drums",
  "synth-drums",
  # sound effects 120-127
  *([None] * 8),
)
assert len(PROGRAM_INSTRUMENT) == 128

DRUMS = "drums"

# Instrument -> the program it is written with; the order fixes instrument codes.
INSTRUMENT_PROGRAM = {
  "piano": 0,
  "electric-piano": 4,
  "harpsichord": 6,
  "clavinet": 7,
  "celesta": 8,
  "glockenspiel": 9,
  "music-box": 10,
  "vibraphone": 11,
  "marimba": 12,
  "xylophone": 13,
  "tubular-bells": 14,
  "dulcimer": 15,
  "organ": 16,
  "church-organ": 19,
  "accordion": 21,
  "harmonica": 22,
  "bandoneon": 23,
  "nylon-string-guitar": 24,
  "steel-string-guitar": 25,
  "electric-guitar": 26,
  "bass": 32,
  "electric-bass": 33,
  "slap-bass": 36,
  "synth-bass": 38,
  "violin": 40,
  "viola": 41,
  "cello": 42,
  "contrabass": 43,
  "harp": 46,
  "timpani": 47,
  "strings": 49,
  "synth-strings": 50,
  "voices": 52,
  "orchestra-hit": 55,
  "trumpet": 56,
  "trombone": 57,
  "tuba": 58,
  "horn": 60,
  "brasses": 61,
  "synth-brasses": 62,
  "soprano-saxophone": 64,
  "alto-saxophone": 65,
  "tenor-saxophone": 66,
  "baritone-saxophone": 67,
  "oboe": 68,
  "english-horn": 69,
  "bassoon": 70,
  "clarinet": 71,
  "piccolo": 72,
  "flute": 73,
  "recorder": 74,
  "pan-flute": 75,
  "ocarina": 79,
  "lead": 80,
  "pad": 88,
  "sitar": 104,
  "banjo": 105,
  "shamisen": 106,
  "koto": 107,
  "kalimba": 108,
  "bag-pipe": 109,
  "shehnai": 111,
  "melodic-tom": 117,
  "synth-drums": 118,
  DRUMS: 0,  # mtx's addition; written on channel 10 with is_drum set
}
INSTRUMENTS = tuple(INSTRUMENT_PROGRAM)  # code = index + 1; code 0 means none
assert len(INSTRUMENTS) == 65

# Program -> instrument code (0 where MMT knows no instrument); drums apart.
PROGRAM_TO_INSTRUMENT_CODE = np.array(
  [0 if name is None else INSTRUMENTS.index(name) + 1 for name in PROGRAM_INSTRUMENT], np.int64
)
DRUM_INSTRUMENT_CODE = INSTRUMENTS.index(DRUMS) + 1


# ---- velocity bins (PerformanceRNN / Music Transformer, also used by REMI) ----


def velocity_to_bin(velocity, num_bins: int = 32) -> np.ndarray:
  """Magenta's binning: bins of ceil(127 / num_bins) velocities, 0-based here."""
  size = -(-127 // num_bins)
  v = np.clip(np.asarray(velocity, np.int64), 1, 127)
  return np.minimum((v - 1) // size, num_bins - 1)


def bin_to_velocity(bin_index, num_bins: int = 32) -> np.ndarray:
  """The velocity a bin decodes to: its lowest velocity, as Magenta does."""
  size = -(-127 // num_bins)
  return 1 + np.asarray(bin_index, np.int64) * size
