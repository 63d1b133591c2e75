"""Data augmentation on tokens: pitch transposition and tempo stretch.

Both work on the token ids directly, through each codec's vocabulary and field
table (never through hard-coded ids), so a window is augmented without
decoding it.

Transposition adds one shift to the pitch of every pitched note: mmt's pitch
field of note rows (code = pitch + 1) except the drums instrument;
performance's note-on and note-off values (the representation has no drums);
remi's Pitch tokens whose note's Program is not drums; mmm's note-on and
note-off inside tracks whose Instrument is not drums. Drums are never moved.
Notes that would leave 0..127: the shift is drawn only from the part of the
requested range that keeps every pitched note of the window inside 0..127
(`transpose_range`), so no note is dropped or clipped and the window always
decodes to the same notes, shifted. (The MMT reference clips pitches instead,
which can merge notes.)

Tempo stretch multiplies the music's duration by a factor s (s > 1: slower):
- performance: a token-level rewrite of the time-shifts. The events keep their
  order; the time of each group of simultaneous events becomes round(t * s),
  pushed to one step after the previous group where rounding would merge two
  groups, so no note gets shorter than a step and no two events change order;
  the gaps are written back as time-shifts, the longest first, as the encoder
  writes them.
- remi: every Tempo token moves by the same number of bins d (positions and
  notes are unchanged: a bar stays a bar). Bins are log-spaced by a ratio r
  (about 1.087), so d bins stretch time by r ** -d; d is drawn uniformly among
  the integers whose stretch lies in the requested range and that keep every
  tempo of the window inside the bins.
- mmt and mmm carry no tempo: unchanged.
"""

from __future__ import annotations

import numpy as np

from mtx.errors import ConfigError
from mtx.representation import mmm as mmm_codec
from mtx.representation import remi as remi_codec
from mtx.representation.codec import Codec
from mtx.representation.fields import DRUM_INSTRUMENT_CODE
from mtx.representation.mmt import INSTRUMENT_FIELD, NOTE, PITCH, TYPE

NUM_PITCHES = 128


# ---- pitch ----------------------------------------------------------------------


def pitched_tokens(codec: Codec, tokens: np.ndarray):
  """Where the pitches of pitched (non-drum) notes are: (rows, column, pitches).

  `tokens[rows, column]` are the ids to move; `pitches` their MIDI pitches. In
  every codec a pitch id is the pitch plus a constant, so moving a pitch by k
  moves its id by k."""
  if codec.name == "mmt":
    rows = np.flatnonzero(
      (tokens[:, TYPE] == NOTE)
      & (tokens[:, PITCH] > 0)
      & (tokens[:, INSTRUMENT_FIELD] != DRUM_INSTRUMENT_CODE)
    )
    return rows, PITCH, tokens[rows, PITCH].astype(np.int64) - 1
  vocab = codec.vocab
  kinds, values = vocab.split(tokens[:, 0])
  note_kinds = [
    vocab.names.index(k) for k in (("pitch",) if codec.name == "remi" else ("note-on", "note-off"))
  ]
  is_pitch = np.isin(kinds, note_kinds)
  if codec.name == "remi":
    is_pitch &= ~_owned_by(
      kinds,
      values,
      vocab.names.index("program"),
      vocab.names.index("start-of-song"),
      remi_codec.DRUM_PROGRAM_CODE,
    )
  elif codec.name == "mmm":
    is_pitch &= ~_owned_by(
      kinds,
      values,
      vocab.names.index("instrument"),
      vocab.names.index("track-start"),
      mmm_codec.DRUM_INSTRUMENT,
    )
  elif codec.name != "performance":
    raise ConfigError(f"no transposition rule for representation '{codec.name}'")
  rows = np.flatnonzero(is_pitch)
  return rows, 0, values[rows]


def _owned_by(kinds, values, owner_kind, reset_kind, drum_value) -> np.ndarray:
  """True where the latest `owner_kind` token (since the latest `reset_kind`
  token) has value `drum_value`: the note belongs to drums."""
  index = np.arange(kinds.size)
  last_owner = np.maximum.accumulate(np.where(kinds == owner_kind, index, -1))
  last_reset = np.maximum.accumulate(np.where(kinds == reset_kind, index, -1))
  owned = last_owner > last_reset
  return owned & (values[np.maximum(last_owner, 0)] == drum_value)


def transpose_range(codec: Codec, tokens: np.ndarray, low: int, high: int) -> tuple[int, int]:
  """The shifts in low..high (inclusive) that keep every pitched note of
  `tokens` in 0..127; always contains 0 when low <= 0 <= high."""
  _, _, pitches = pitched_tokens(codec, tokens)
  if not pitches.size:
    return low, high
  return max(low, -int(pitches.min())), min(high, NUM_PITCHES - 1 - int(pitches.max()))


def transpose(codec: Codec, tokens: np.ndarray, shift: int) -> np.ndarray:
  """`tokens` with every pitched note moved by `shift` semitones (drums kept)."""
  rows, column, pitches = pitched_tokens(codec, tokens)
  if pitches.size and not (0 <= pitches.min() + shift and pitches.max() + shift < NUM_PITCHES):
    raise ConfigError(
      f"transposing by {shift} moves pitches {int(pitches.min())}.."
      f"{int(pitches.max())} out of 0..127; draw the shift from "
      "transpose_range"
    )
  out = tokens.copy()
  out[rows, column] += shift
  return out


def random_transpose(
  codec: Codec, tokens: np.ndarray, rng: np.random.Generator, shift_range: tuple[int, int]
) -> np.ndarray:
  """Transposed by a shift drawn uniformly from `shift_range` (inclusive) as
  narrowed by `transpose_range`."""
  low, high = transpose_range(codec, tokens, *shift_range)
  shift = int(rng.integers(low, high + 1)) if low <= high else 0
  return transpose(codec, tokens, shift) if shift else tokens


# ---- tempo ----------------------------------------------------------------------


def stretch_performance(codec: Codec, tokens: np.ndarray, factor: float) -> np.ndarray:
  """Performance tokens with time stretched by `factor` (see the module docstring)."""
  vocab = codec.vocab
  shift_kind = vocab.names.index("time-shift")
  longest = vocab.count("time-shift")  # value v advances v + 1 steps
  events = np.append(tokens[:, 0].astype(np.int64), vocab.token("pad"))  # a sentinel last
  kinds, values = vocab.split(events)
  is_shift = kinds == shift_kind
  time = np.cumsum(np.where(is_shift, values + 1, 0))
  event_rows = np.flatnonzero(~is_shift)
  event_time = time[event_rows]
  opens_group = np.concatenate([[True], event_time[1:] != event_time[:-1]])
  group_time = event_time[opens_group]  # strictly increasing
  scaled = np.rint(group_time * float(factor)).astype(np.int64)
  scaled = np.maximum(scaled, group_time > 0)
  order = np.arange(group_time.size)
  scaled = np.maximum.accumulate(scaled - order) + order  # at least a step apart
  gap = np.diff(scaled, prepend=0)

  group = np.cumsum(opens_group) - 1
  shifts = np.where(opens_group, -(-gap[group] // longest), 0)  # time-shift tokens per event
  width = shifts + 1
  first = np.cumsum(width) - width  # output row of each event's first time-shift
  out = np.empty(int(width.sum()), np.int64)
  out[first + shifts] = events[event_rows]
  within = np.arange(int(shifts.sum())) - np.repeat(np.cumsum(shifts) - shifts, shifts)
  out[np.repeat(first, shifts) + within] = vocab.offset("time-shift") + longest - 1
  last = shifts > 0
  remainder = gap[group] - (shifts - 1) * longest  # 1..longest steps
  out[(first + shifts - 1)[last]] = vocab.offset("time-shift") + remainder[last] - 1
  return out[:-1, None].astype(tokens.dtype)  # without the sentinel


def tempo_bin_ratio() -> float:
  """The stretch of one remi tempo bin: bins are log-spaced between the codec's
  lowest and highest qpm."""
  return (remi_codec.MAX_QPM / remi_codec.MIN_QPM) ** (1.0 / (remi_codec.NUM_TEMPO_BINS - 1))


def tempo_shift_range(
  codec: Codec, tokens: np.ndarray, stretch_range: tuple[float, float]
) -> tuple[int, int]:
  """Remi tempo-bin shifts d whose stretch r ** -d lies in `stretch_range` and
  that keep every Tempo token of `tokens` inside the bins."""
  log_ratio = np.log(tempo_bin_ratio())
  low = int(np.ceil(-np.log(stretch_range[1]) / log_ratio - 1e-9))
  high = int(np.floor(-np.log(stretch_range[0]) / log_ratio + 1e-9))
  rows, bins = _tempo_tokens(codec, tokens)
  if bins.size:
    low = max(low, -int(bins.min()))
    high = min(high, codec.vocab.count("tempo") - 1 - int(bins.max()))
  return low, high


def _tempo_tokens(codec: Codec, tokens: np.ndarray):
  kinds, values = codec.vocab.split(tokens[:, 0])
  rows = np.flatnonzero(kinds == codec.vocab.names.index("tempo"))
  return rows, values[rows]


def shift_remi_tempo(codec: Codec, tokens: np.ndarray, bins: int) -> np.ndarray:
  """Remi tokens with every Tempo token moved by `bins` (positions unchanged)."""
  rows, values = _tempo_tokens(codec, tokens)
  if values.size and not (
    0 <= values.min() + bins and values.max() + bins < codec.vocab.count("tempo")
  ):
    raise ConfigError(
      f"shifting tempo bins {int(values.min())}..{int(values.max())} by "
      f"{bins} leaves the codec's tempo bins; draw it from tempo_shift_range"
    )
  out = tokens.copy()
  out[rows, 0] += bins
  return out


def random_tempo(
  codec: Codec, tokens: np.ndarray, rng: np.random.Generator, stretch_range: tuple[float, float]
) -> np.ndarray:
  """Tempo stretched by a factor drawn from `stretch_range`: uniformly for
  performance, uniformly over the reachable bin shifts for remi; unchanged for
  representations without tempo."""
  if codec.name == "performance":
    factor = float(rng.uniform(*stretch_range))
    return stretch_performance(codec, tokens, factor) if factor != 1.0 else tokens
  if codec.name == "remi":
    low, high = tempo_shift_range(codec, tokens, stretch_range)
    bins = int(rng.integers(low, high + 1)) if low <= high else 0
    return shift_remi_tempo(codec, tokens, bins) if bins else tokens
  return tokens


def has_tempo(codec: Codec) -> bool:
  """Whether tempo stretch changes this representation's tokens."""
  return codec.name in ("performance", "remi")
