"""What may come next: per-representation masks that keep every sample decodable.

A grammar is pure and jittable. Its state is a small pytree of per-sample
arrays; `update` folds one sampled row into it; `field_mask` says, for field f
of the next row, which tokens are allowed given the state and the fields of the
row sampled so far (fields are sampled in order, so the row type decides what
the other fields may be, as MMT's sampler does); `ended` says a sample has
emitted end-of-song.

    grammar = grammar_for(codec)
    state = grammar.init(batch)
    state = grammar.update(state, row)            # row (B, F) int32
    allowed = grammar.field_mask(state, f, row)   # (B, size_f) bool

mmt: start-of-song, then instrument rows (each instrument once, ascending, as
the encoder writes them), start-of-notes once at least one instrument is
declared, then notes whose beat and position never go back, whose instrument is
a declared one, with no empty field, and end-of-song once a note was written;
non-note rows carry zeros where their type means nothing. performance:
start-of-song first; never pad or a second start-of-song; a note-off only for a
sounding pitch; a note-on not twice for one pitch at one time. remi: see
`RemiGrammar`. mmm: no constraint yet (its decoder is tolerant, so every sample
is still a valid file, but tokens may be dropped while decoding).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mtx.representation.codec import Codec


class Grammar:
  """No constraint: any token; never ends by itself (the sampler stops at max_length)."""

  def __init__(self, codec: Codec):
    self.sizes = tuple(int(s) for s in codec.fields.sizes)

  def init(self, batch: int) -> Any:
    return {"ended": jnp.zeros((batch,), bool)}

  def update(self, state: Any, row: jax.Array) -> Any:
    del row
    return state

  def field_mask(self, state: Any, field: int, row: jax.Array) -> jax.Array:
    del row
    return jnp.ones((state["ended"].shape[0], self.sizes[field]), bool)

  def ended(self, state: Any) -> jax.Array:
    return state["ended"]

  def at_boundary(self, state: Any) -> jax.Array:
    """(B,) bool: the rows so far end where a sample may be cut (no note half-written)."""
    return jnp.ones_like(state["ended"])


def _one_hot_allowed(values: jax.Array, size: int) -> jax.Array:
  """(B,) token ids -> (B, size) masks allowing only that id."""
  return jnp.arange(size)[None, :] == values[:, None]


class MMTGrammar(Grammar):
  """The MMT row grammar (see the module docstring)."""

  def __init__(self, codec: Codec, instruments: np.ndarray | None = None):
    super().__init__(codec)
    from mtx.representation import mmt

    self.m = mmt
    self.num_instruments = self.sizes[mmt.INSTRUMENT_FIELD]
    # Instrument codes a sample may declare (None: any); instrument-informed sampling fixes
    # the header in the primer instead.
    self.allowed_instruments = None if instruments is None else np.asarray(instruments)

  def init(self, batch: int) -> Any:
    return {"ended": jnp.zeros((batch,), bool),
            "phase": jnp.zeros((batch,), jnp.int32),  # 0 start, 1 header, 2 notes, 3 ended
            "declared": jnp.zeros((batch, self.num_instruments), bool),
            "last_instrument": jnp.zeros((batch,), jnp.int32),
            "last_beat": jnp.zeros((batch,), jnp.int32),
            "last_position": jnp.zeros((batch,), jnp.int32),
            "notes": jnp.zeros((batch,), jnp.int32)}

  def update(self, state: Any, row: jax.Array) -> Any:
    m = self.m
    kind = row[:, m.TYPE]
    instrument = row[:, m.INSTRUMENT_FIELD]
    is_instrument, is_note = kind == m.INSTRUMENT, kind == m.NOTE
    phase = state["phase"]
    phase = jnp.where(kind == m.START_OF_SONG, jnp.maximum(phase, 1), phase)
    phase = jnp.where(kind == m.START_OF_NOTES, 2, phase)
    phase = jnp.where(kind == m.END_OF_SONG, 3, phase)
    declared = state["declared"] | (is_instrument[:, None] & _one_hot_allowed(
        instrument, self.num_instruments))
    return {
        "ended": phase == 3,
        "phase": phase,
        "declared": declared,
        "last_instrument": jnp.where(is_instrument, instrument, state["last_instrument"]),
        "last_beat": jnp.where(is_note, row[:, m.BEAT], state["last_beat"]),
        "last_position": jnp.where(is_note, row[:, m.POSITION], state["last_position"]),
        "notes": state["notes"] + is_note.astype(jnp.int32),
    }

  def _type_mask(self, state: Any) -> jax.Array:
    m = self.m
    phase = state["phase"]
    codes = jnp.arange(len(m.ROW_TYPES))[None, :]
    any_declared = state["declared"][:, 1:].any(axis=1)
    more_instruments = state["last_instrument"] < self.num_instruments - 1
    if self.allowed_instruments is not None:
      allowed = jnp.zeros((self.num_instruments,), bool).at[self.allowed_instruments].set(True)
      later = jnp.arange(self.num_instruments)[None, :] > state["last_instrument"][:, None]
      more_instruments = (later & allowed[None, :]).any(axis=1)
    start = (phase == 0)[:, None] & (codes == m.START_OF_SONG)
    header = (phase == 1)[:, None] & (
        ((codes == m.INSTRUMENT) & more_instruments[:, None])
        | ((codes == m.START_OF_NOTES) & any_declared[:, None]))
    notes = (phase == 2)[:, None] & (
        (codes == m.NOTE) | ((codes == m.END_OF_SONG) & (state["notes"] > 0)[:, None]))
    ended = (phase == 3)[:, None] & (codes == m.END_OF_SONG)
    return start | header | notes | ended

  def end_row(self, tokens: jax.Array) -> jax.Array:
    """(B, L, F) -> (B, L) bool: rows that are end-of-song."""
    return tokens[..., self.m.TYPE] == self.m.END_OF_SONG

  def field_mask(self, state: Any, field: int, row: jax.Array) -> jax.Array:
    m = self.m
    if field == m.TYPE:
      return self._type_mask(state)
    size = self.sizes[field]
    ids = jnp.arange(size)[None, :]
    kind = row[:, m.TYPE][:, None]
    none = ids == 0  # the filler of fields a row type does not use
    if field == m.INSTRUMENT_FIELD:
      later = ids > state["last_instrument"][:, None]
      header = later & (ids > 0)
      if self.allowed_instruments is not None:
        allowed = jnp.zeros((size,), bool).at[self.allowed_instruments].set(True)
        header = header & allowed[None, :]
      note = state["declared"]
      return jnp.where(kind == m.INSTRUMENT, header, jnp.where(kind == m.NOTE, note, none))
    if field == m.BEAT:
      note = ids >= jnp.maximum(state["last_beat"], 1)[:, None]
    elif field == m.POSITION:
      same_beat = row[:, m.BEAT] == state["last_beat"]
      floor = jnp.where(same_beat, jnp.maximum(state["last_position"], 1), 1)
      note = ids >= floor[:, None]
    else:  # pitch, duration
      note = ids > 0
    return jnp.where(kind == m.NOTE, note, none)


class PerformanceGrammar(Grammar):
  """The performance event grammar (see the module docstring)."""

  def __init__(self, codec: Codec):
    super().__init__(codec)
    vocab = codec.vocab
    self.size = vocab.size
    self.start = vocab.token("start-of-song")
    self.end = vocab.token("end-of-song")
    self.pad = vocab.token("pad")
    self.on = vocab.offset("note-on")
    self.off = vocab.offset("note-off")
    self.pitches = vocab.count("note-on")
    self.shift = vocab.offset("time-shift")
    self.shifts = vocab.count("time-shift")

  def end_row(self, tokens: jax.Array) -> jax.Array:
    return tokens[..., 0] == self.end

  def init(self, batch: int) -> Any:
    return {"ended": jnp.zeros((batch,), bool), "started": jnp.zeros((batch,), bool),
            "sounding": jnp.zeros((batch, self.pitches), bool),
            "struck_now": jnp.zeros((batch, self.pitches), bool)}

  def update(self, state: Any, row: jax.Array) -> Any:
    token = row[:, 0]
    pitch = jnp.arange(self.pitches)[None, :]
    on = (token[:, None] - self.on) == pitch
    off = (token[:, None] - self.off) == pitch
    is_shift = (token >= self.shift) & (token < self.shift + self.shifts)
    return {"ended": state["ended"] | (token == self.end),
            "started": state["started"] | (token == self.start),
            "sounding": (state["sounding"] | on) & ~off,
            "struck_now": jnp.where(is_shift[:, None], False, state["struck_now"] | on)}

  def field_mask(self, state: Any, field: int, row: jax.Array) -> jax.Array:
    del field, row
    ids = jnp.arange(self.size)[None, :]
    started, ended = state["started"][:, None], state["ended"][:, None]
    pitch = ids - self.on
    note_on = (pitch >= 0) & (pitch < self.pitches)
    off_pitch = ids - self.off
    note_off = (off_pitch >= 0) & (off_pitch < self.pitches)
    struck = jnp.take_along_axis(state["struck_now"], jnp.clip(pitch, 0, self.pitches - 1)
                                 .repeat(state["struck_now"].shape[0], 0), axis=1)
    sounding = jnp.take_along_axis(state["sounding"], jnp.clip(off_pitch, 0, self.pitches - 1)
                                   .repeat(state["sounding"].shape[0], 0), axis=1)
    body = (ids != self.pad) & (ids != self.start) & ~(note_on & struck) & \
        ~(note_off & ~sounding)
    return jnp.where(ended, ids == self.end,
                     jnp.where(started, body, ids == self.start))


class RemiGrammar(Grammar):
  """REMI+: start-of-song, then a Bar before anything else; a Time-signature only right
  after a Bar; Positions never backwards and inside the bar's length; each note as
  Program, Pitch, Velocity, Duration with nothing in between; end-of-song between
  notes. What `remi.py`'s decoder reads without dropping a token."""

  KINDS = ("pad", "start-of-song", "end-of-song", "bar", "time-signature", "position",
           "tempo", "program", "pitch", "velocity", "duration")

  def __init__(self, codec: Codec):
    super().__init__(codec)
    from mtx.representation import bars

    vocab = codec.vocab
    self.size = vocab.size
    self.offset = {k: vocab.offset(k) for k in self.KINDS}
    self.count = {k: vocab.count(k) for k in self.KINDS}
    self.bar_steps = jnp.asarray([bars.bar_steps(i, codec.resolution)
                                  for i in range(len(bars.TIME_SIGNATURES))], jnp.int32)
    self.default_ts = bars.DEFAULT_TS_INDEX
    kind_of = np.zeros(self.size, np.int32)
    for index, kind in enumerate(self.KINDS):
      kind_of[self.offset[kind]:self.offset[kind] + self.count[kind]] = index
    self.kind_of = jnp.asarray(kind_of)

  def _kind(self, name: str) -> int:
    return self.KINDS.index(name)

  def init(self, batch: int) -> Any:
    zeros = jnp.zeros((batch,), jnp.int32)
    return {"ended": jnp.zeros((batch,), bool), "started": jnp.zeros((batch,), bool),
            "in_bar": jnp.zeros((batch,), bool), "ts_open": jnp.zeros((batch,), bool),
            "ts": zeros + self.default_ts, "position": zeros, "note": zeros}

  def end_row(self, tokens: jax.Array) -> jax.Array:
    return tokens[..., 0] == self.offset["end-of-song"]

  def at_boundary(self, state: Any) -> jax.Array:
    return state["note"] == 0

  def update(self, state: Any, row: jax.Array) -> Any:
    token = row[:, 0]
    kind = self.kind_of[token]
    value = token - jnp.asarray([self.offset[k] for k in self.KINDS])[kind]
    is_ = {name: kind == self._kind(name) for name in self.KINDS}
    note = jnp.where(is_["program"], 1, jnp.where(is_["pitch"], 2, jnp.where(
        is_["velocity"], 3, jnp.where(is_["duration"], 0, state["note"]))))
    return {
        "ended": state["ended"] | is_["end-of-song"],
        "started": state["started"] | is_["start-of-song"],
        "in_bar": state["in_bar"] | is_["bar"],
        "ts_open": is_["bar"],  # only directly after a Bar
        "ts": jnp.where(is_["time-signature"], value, state["ts"]),
        "position": jnp.where(is_["position"], value,
                              jnp.where(is_["bar"], 0, state["position"])),
        "note": note,
    }

  def field_mask(self, state: Any, field: int, row: jax.Array) -> jax.Array:
    del field, row
    ids = jnp.arange(self.size)[None, :]
    kind = self.kind_of[ids]
    value = ids - jnp.asarray([self.offset[k] for k in self.KINDS])[kind]
    is_ = {name: kind == self._kind(name) for name in self.KINDS}
    column = lambda x: x[:, None]  # noqa: E731  (B,) -> (B, 1)
    note = column(state["note"])
    in_note = (note == 1) & is_["pitch"] | (note == 2) & is_["velocity"] | \
        (note == 3) & is_["duration"]
    bar_length = self.bar_steps[state["ts"]]
    position_ok = is_["position"] & (value >= column(state["position"])) & \
        (value < column(bar_length))
    between = is_["bar"] | position_ok | is_["tempo"] | is_["program"] | \
        is_["end-of-song"] | (is_["time-signature"] & column(state["ts_open"]))
    body = jnp.where(note > 0, in_note,
                     jnp.where(column(state["in_bar"]), between, is_["bar"]))
    return jnp.where(column(state["ended"]), is_["end-of-song"],
                     jnp.where(column(state["started"]), body, is_["start-of-song"]))


def grammar_for(codec: Codec, *, instruments=None) -> Grammar:
  """The grammar of `codec`'s representation (`instruments`: mmt codes a header may use)."""
  if codec.name == "mmt":
    return MMTGrammar(codec, instruments)
  if codec.name == "performance":
    return PerformanceGrammar(codec)
  if codec.name == "remi":
    return RemiGrammar(codec)
  return Grammar(codec)
