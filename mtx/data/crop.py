"""Cropping a song's tokens to a training window, one rule per representation.

A model trains on windows of `length` rows (`seq_len + 1`: inputs are the
first `seq_len` rows, targets the last). Each rule keeps what the model needs
to read the window as music from its first row on, and takes a song of at most
`length` rows whole (the pipeline pads it). `rng=None` is the deterministic
crop from the start that evaluation uses; otherwise the start is drawn from
`rng`, uniformly over the starts whose window is full (a start so late that the
window would end in padding is never drawn, except that the song's own start is
always a candidate).

- mmt: a random start beat, as the MMT reference's dataset does: the song's
  header rows (start-of-song, its instrument rows, start-of-notes) are kept,
  then the note rows from the start beat on with their beats rebased so the
  window starts at beat 0, then end-of-song if the song's end lies inside the
  window; truncated to `length` rows. `max_beat` also limits the window to that
  many beats (the reference's `max_beat`; the start is drawn among the beats
  that leave `max_beat` beats, 0 when the song is shorter).
- performance: a random window of events. With `start_token`, a window that
  does not start the song gets start-of-song in front. Notes cut by the window
  lose their note-on or note-off (the decoder drops the orphan note-off and ends
  an open note at the end); note-ons before the window's first velocity event
  get the decoder's default velocity.
- remi: a random start at a Bar token. The window opens with start-of-song,
  the Bar, the time signature in force and, at position 0, the tempo in force,
  so that it decodes to the song's music from that bar on, shifted to step 0.
- mmm: a random window of bars, the same bars of every track, as MMM trains on
  bar ranges of all tracks: start-of-song, then per track its header
  (Track-start, Instrument), the window's bars (a Time-signature token inserted
  after the first Bar-start where the song had none there) and Track-end, then
  end-of-song if the window reaches the song's last bar. The window holds the
  most bars that fit `length` rows (at least one, then truncated). A note
  crossing the window's start loses its note-on (the decoder drops the orphan
  note-off); a note crossing its end ends with its track. Tokens that do not
  have the encoder's layout (every track holding every bar) fall back to a
  plain window of tokens.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mtx.errors import ConfigError
from mtx.representation import bars
from mtx.representation.codec import Codec
from mtx.representation.mmt import BEAT, END_OF_SONG, NOTE, START_OF_NOTES, TYPE


def crop(
  codec: Codec,
  tokens: np.ndarray,
  length: int,
  rng: np.random.Generator | None = None,
  *,
  max_beat: int | None = None,
  start_token: bool = False,
) -> np.ndarray:
  """A window of at most `length` rows of `tokens` (n, n_fields), by the rule
  of `codec`'s representation (see the module docstring). `max_beat` applies
  to mmt, `start_token` to performance."""
  if length < 1:
    raise ConfigError(f"crop length must be at least 1, got {length}")
  if codec.name == "mmt":
    return crop_mmt(tokens, length, rng, max_beat=max_beat)
  if codec.name == "performance":
    return crop_performance(codec, tokens, length, rng, start_token=start_token)
  if codec.name == "remi":
    return crop_remi(codec, tokens, length, rng)
  if codec.name == "mmm":
    return crop_mmm(codec, tokens, length, rng)
  raise ConfigError(f"no crop rule for representation '{codec.name}'")


# ---- mmt ------------------------------------------------------------------------


def crop_mmt(
  tokens: np.ndarray,
  length: int,
  rng: np.random.Generator | None = None,
  *,
  max_beat: int | None = None,
) -> np.ndarray:
  """MMT's random start beat, keeping the header rows; see the module docstring."""
  header_rows, beats = _mmt_parts(tokens)
  start = 0
  if rng is not None and beats.size:
    # The latest start whose rows still fill the window (header + notes + end).
    needed = length - header_rows - 1
    latest = 0 if needed > beats.size else int(beats[beats.size - max(needed, 1)])
    if max_beat is not None:
      latest = min(latest, max(int(beats[-1]) + 1 - max_beat, 0))
    start = int(rng.integers(0, latest + 1))
  return mmt_window(tokens, start, max_beat)[:length]


def mmt_window(tokens: np.ndarray, start_beat: int, max_beat: int | None = None) -> np.ndarray:
  """The header rows, the note rows of beats start_beat.. (start_beat + max_beat
  excluded) rebased to start at beat 0, and end-of-song if no note comes later."""
  header_rows, beats = _mmt_parts(tokens)
  kind = tokens[:, TYPE]
  notes = tokens[header_rows:][kind[header_rows:] == NOTE]
  inside = beats >= start_beat
  later = np.zeros_like(inside)
  if max_beat is not None:
    later = beats >= start_beat + max_beat
    inside &= ~later
  window_notes = notes[inside]
  window_notes[:, BEAT] -= start_beat
  parts = [tokens[:header_rows], window_notes]
  ends = np.flatnonzero(kind == END_OF_SONG)
  if ends.size and not later.any():
    parts.append(tokens[ends[0] : ends[0] + 1])
  return np.concatenate(parts)


def _mmt_parts(tokens: np.ndarray) -> tuple[int, np.ndarray]:
  """(rows up to start-of-notes, beats of the note rows after it in order)."""
  kind = tokens[:, TYPE]
  opens = np.flatnonzero(kind == START_OF_NOTES)
  header_rows = int(opens[0]) + 1 if opens.size else 0
  notes = tokens[header_rows:][kind[header_rows:] == NOTE]
  return header_rows, notes[:, BEAT].astype(np.int64) - 1


# ---- performance ------------------------------------------------------------------


def crop_performance(
  codec: Codec,
  tokens: np.ndarray,
  length: int,
  rng: np.random.Generator | None = None,
  *,
  start_token: bool = False,
) -> np.ndarray:
  """A random window of events; see the module docstring."""
  n = tokens.shape[0]
  if rng is None or n <= length:
    return tokens[:length]
  room = length - 1 if start_token else length
  start = int(rng.integers(0, n - room + 1))
  if start_token and start > 0:
    head = np.full((1, 1), codec.vocab.token("start-of-song"), tokens.dtype)
    return np.concatenate([head, tokens[start : start + room]])
  return tokens[start : start + length]


# ---- remi -----------------------------------------------------------------------


def crop_remi(
  codec: Codec, tokens: np.ndarray, length: int, rng: np.random.Generator | None = None
) -> np.ndarray:
  """A random start at a Bar token, with the state in force; see the module docstring."""
  n = tokens.shape[0]
  if rng is None or n <= length:
    return tokens[:length]
  kinds, _ = codec.vocab.split(tokens[:, 0])
  bar_rows = np.flatnonzero(kinds == codec.vocab.names.index("bar"))
  if not bar_rows.size:
    return tokens[:length]
  # Starts whose window is full: the prefix adds rows, so n - row >= length suffices.
  candidates = np.union1d(bar_rows[:1], bar_rows[n - bar_rows >= length])
  row = int(candidates[rng.integers(0, candidates.size)])
  if row == bar_rows[0]:
    return tokens[:length]
  return remi_window(codec, tokens, row, length)


def remi_window(
  codec: Codec, tokens: np.ndarray, bar_row: int, length: int | None = None
) -> np.ndarray:
  """The song from the Bar token at `bar_row` on (at most `length` rows),
  opened by start-of-song, Bar, the time signature in force and, at position
  0, the tempo in force."""
  vocab = codec.vocab
  n = tokens.shape[0]
  kinds, values = vocab.split(tokens[:, 0])
  kind = {name: vocab.names.index(name) for name in ("time-signature", "position", "tempo")}
  ts_rows = np.flatnonzero(kinds[:bar_row] == kind["time-signature"])
  ts_token = (
    int(tokens[ts_rows[-1], 0])
    if ts_rows.size
    else vocab.token("time-signature", bars.DEFAULT_TS_INDEX)
  )
  tempo_rows = np.flatnonzero(kinds[:bar_row] == kind["tempo"])
  at = bar_row + 1
  if at < n and kinds[at] == kind["time-signature"]:  # the bar sets its own
    ts_token = int(tokens[at, 0])
    at += 1
  head = [vocab.token("start-of-song"), vocab.token("bar"), ts_token]
  if tempo_rows.size:
    tempo_token = int(tokens[tempo_rows[-1], 0])
    if at < n and kinds[at] == kind["position"] and values[at] == 0:
      head.append(int(tokens[at, 0]))
      at += 1
      if not (at < n and kinds[at] == kind["tempo"]):
        head.append(tempo_token)
    else:
      head += [vocab.token("position", 0), tempo_token]
  stop = n if length is None else at + max(length - len(head), 0)
  window = np.concatenate([np.array(head, tokens.dtype)[:, None], tokens[at:stop]])
  return window if length is None else window[:length]


# ---- mmm ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class MMMLayout:
  """Where the tracks and bars of MMM tokens are, as the encoder lays them out:
  every track holds every bar. Arrays of row indices."""

  track_starts: np.ndarray  # (tracks,)
  bar_starts: np.ndarray  # (tracks, bars)
  bar_ends: np.ndarray  # (tracks, bars)
  lacks_ts: np.ndarray  # (tracks, bars) bool: no Time-signature after the Bar-start

  @property
  def num_bars(self) -> int:
    return int(self.bar_starts.shape[1])

  def window_rows(self, first_bar, num_bars):
    """Rows of `mmm_window(first_bar, num_bars)` (vectorized)."""
    tracks = self.track_starts.size
    fixed = 1 + int(np.sum(self.bar_starts[:, 0] - self.track_starts)) + tracks
    inserted = np.concatenate([[0], self.lacks_ts[:, 1:].sum(axis=0)])
    bar_rows = np.concatenate([[0], np.cumsum((self.bar_ends - self.bar_starts + 1).sum(axis=0))])
    end = first_bar + num_bars
    song_end = end == self.num_bars
    return fixed + inserted[first_bar] + bar_rows[end] - bar_rows[first_bar] + song_end


def crop_mmm(
  codec: Codec, tokens: np.ndarray, length: int, rng: np.random.Generator | None = None
) -> np.ndarray:
  """A random window of bars across all tracks; see the module docstring."""
  n = tokens.shape[0]
  if n <= length:
    return tokens
  layout = mmm_layout(codec, tokens)
  if layout is None:
    start = 0 if rng is None else int(rng.integers(0, n - length + 1))
    return tokens[start : start + length]
  first = 0
  if rng is not None:
    k = np.arange(layout.num_bars)
    full = np.flatnonzero(layout.window_rows(k, layout.num_bars - k) >= length)
    first = int(full[rng.integers(0, full.size)]) if full.size else 0
  fits = layout.window_rows(first, np.arange(1, layout.num_bars - first + 1)) <= length
  return mmm_window(codec, tokens, layout, first, max(int(fits.sum()), 1))[:length]


def mmm_window(
  codec: Codec, tokens: np.ndarray, layout: MMMLayout, first_bar: int, num_bars: int
) -> np.ndarray:
  """Bars first_bar .. first_bar + num_bars - 1 of every track, each track with
  its header and Track-end, the time signature in force after the first
  Bar-start, end-of-song if the last bar is the song's."""
  vocab = codec.vocab
  kinds, _ = vocab.split(tokens[:, 0])
  ts_kind = vocab.names.index("time-signature")
  last = first_bar + num_bars - 1
  parts = [np.array([[vocab.token("start-of-song")]], tokens.dtype)]
  for t, track_start in enumerate(layout.track_starts):
    parts.append(tokens[track_start : layout.bar_starts[t, 0]])
    body_from = layout.bar_starts[t, first_bar]
    if first_bar > 0 and layout.lacks_ts[t, first_bar]:
      ts_rows = np.flatnonzero(kinds[track_start:body_from] == ts_kind) + track_start
      ts_token = (
        int(tokens[ts_rows[-1], 0])
        if ts_rows.size
        else vocab.token("time-signature", bars.DEFAULT_TS_INDEX)
      )
      parts.append(np.array([[vocab.token("bar-start")], [ts_token]], tokens.dtype))
      body_from += 1
    parts.append(tokens[body_from : layout.bar_ends[t, last] + 1])
    parts.append(np.array([[vocab.token("track-end")]], tokens.dtype))
  if last == layout.num_bars - 1:
    parts.append(np.array([[vocab.token("end-of-song")]], tokens.dtype))
  return np.concatenate(parts)


def mmm_layout(codec: Codec, tokens: np.ndarray) -> MMMLayout | None:
  """The layout of MMM tokens as the encoder writes them, or None for any other."""
  vocab = codec.vocab
  kinds, _ = vocab.split(tokens[:, 0])
  index = {
    name: vocab.names.index(name)
    for name in ("track-start", "track-end", "bar-start", "bar-end", "time-signature")
  }
  track_starts = np.flatnonzero(kinds == index["track-start"])
  track_ends = np.flatnonzero(kinds == index["track-end"])
  bar_starts = np.flatnonzero(kinds == index["bar-start"])
  bar_ends = np.flatnonzero(kinds == index["bar-end"])
  num_tracks = track_starts.size
  if (
    not num_tracks
    or track_ends.size != num_tracks
    or bar_ends.size != bar_starts.size
    or not bar_starts.size
    or bar_starts.size % num_tracks
  ):
    return None
  if np.any(track_starts >= track_ends) or np.any(track_ends[:-1] >= track_starts[1:]):
    return None
  bar_starts = bar_starts.reshape(num_tracks, -1)
  bar_ends = bar_ends.reshape(num_tracks, -1)
  ordered = (
    np.all(bar_starts < bar_ends)
    and np.all(bar_ends[:, :-1] < bar_starts[:, 1:])
    and np.all(bar_starts[:, 0] > track_starts)
    and np.all(bar_ends[:, -1] < track_ends)
  )
  if not ordered:
    return None
  lacks_ts = kinds[bar_starts + 1] != index["time-signature"]  # bar_starts < bar_ends
  return MMMLayout(track_starts, bar_starts, bar_ends, lacks_ts)
