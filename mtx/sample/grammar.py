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

    grammar = grammar_for(codec, max_time_jump=4)  # time never leaps more than 4 beats

mmt: start-of-song, then instrument rows (each instrument once, ascending, as
the encoder writes them), start-of-notes once at least one instrument is
declared, then notes whose beat and position never go back, whose instrument is
a declared one, with no empty field, and end-of-song once a note was written;
non-note rows carry zeros where their type means nothing. performance:
start-of-song first; never pad or a second start-of-song; a note-off only for a
sounding pitch; a note-on not twice for one pitch at one time. remi: see
`RemiGrammar`. mmm: no constraint yet (its decoder is tolerant, so every sample
is still a valid file, but tokens may be dropped while decoding).

Time jumps (`max_time_jump`, `max_first_time`; 0: no limit): how far time may move
between two consecutive notes, and before the first, in the representation's own unit
(`TIME_UNITS`): mmt, beats between consecutive note rows (the beat field); performance,
time steps of the time-shifts between two note events (note-on or note-off; a run of
time-shifts is one jump); remi, bar lines between two notes (1: the next bar; more:
empty bars skipped). mmt also takes `max_onset_notes`, the most notes at one time (beat
and position): once an onset holds that many, the next note is later, and where time
cannot go further (the representation's last beat and position) the sample ends.
The limits come from the training data (`time_limits`): a weak model's leap of hundreds
of beats, after which the grammar never lets time go back and every later note piles up
at the last beat as a cluster, cannot happen, and no sample leaps further or stacks more
notes at once than the music it learned from. mmm has no limit (no grammar).

`header_rows`: how many rows at a sample's start a sliding window keeps in view once the
sample outgrows it (`mtx.sample.decode`): mmt, its header (start-of-song, the instrument
rows, start-of-notes), as every training window starts with it; the others, start-of-song.
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

  def header_rows(self, state: Any) -> jax.Array:
    """(B,) int32: rows at the start a sliding window keeps in view (start-of-song)."""
    return jnp.ones(state["ended"].shape, jnp.int32)

  # What the model reads of a window cut from the middle of a sample (the sampler's
  # re-encoded views past the trained length): by default the rows as they are.
  def view_offsets(self, view: jax.Array, body: jax.Array) -> jax.Array:
    """(B,) int32: how far the time codes of a view (B, K, F) are moved back for the model;
    `body` (B, K) marks the rows after the kept header."""
    del body
    return jnp.zeros(view.shape[:1], jnp.int32)

  def to_model(self, rows: jax.Array, offsets: jax.Array) -> jax.Array:
    """rows (B, L, F) as the model reads them in a view moved back by `offsets`."""
    del offsets
    return rows

  def to_sample(self, logits: tuple, offsets: jax.Array) -> tuple:
    """The model's logits over its moved-back codes, as logits over the sample's codes."""
    del offsets
    return logits


def _time_ceiling(state: Any, since: jax.Array, jump: int, first: int) -> jax.Array:
  """(B,) how much more time may pass: `jump` after a note, `first` before any, minus
  what has passed since (`since`)."""
  return jnp.where(state["played"], jump, first) - since


def _one_hot_allowed(values: jax.Array, size: int) -> jax.Array:
  """(B,) token ids -> (B, size) masks allowing only that id."""
  return jnp.arange(size)[None, :] == values[:, None]


class MMTGrammar(Grammar):
  """The MMT row grammar (see the module docstring)."""

  def __init__(self, codec: Codec, instruments: np.ndarray | None = None, *,
               max_time_jump: int = 0, max_first_time: int | None = None,
               max_onset_notes: int = 0, max_silence: int | None = None):
    super().__init__(codec)
    from mtx.representation import mmt
    from mtx.representation.fields import KNOWN_DURATIONS

    # The longest silence the next note may leave, in positions (1/resolution beat) after
    # every sounding note has ended; None: no limit.
    self.max_silence = None if max_silence is None else int(max_silence)
    if self.max_silence is not None and self.max_silence < 0:
      from mtx.errors import ConfigError
      raise ConfigError(f"max_silence must be >= 0 positions (None: none); got {max_silence}")
    self.resolution = int(codec.resolution)
    self.durations = jnp.asarray(np.concatenate([[0], KNOWN_DURATIONS]), jnp.int32)

    self.max_time_jump, self.max_first_time = _limits(max_time_jump, max_first_time)
    self.max_onset_notes = int(max_onset_notes or 0)
    if self.max_onset_notes < 0:
      from mtx.errors import ConfigError
      raise ConfigError(f"max_onset_notes must be >= 0 (0: none); got {max_onset_notes}")
    self.last_beat_code = self.sizes[mmt.BEAT] - 1
    self.last_position_code = self.sizes[mmt.POSITION] - 1

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
            "notes": jnp.zeros((batch,), jnp.int32),
            "header": jnp.zeros((batch,), jnp.int32),  # rows before the first note
            "onset_notes": jnp.zeros((batch,), jnp.int32),  # notes at the last onset
            "sound_until": jnp.zeros((batch,), jnp.int32)}  # when the last note ends

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
    same_onset = (row[:, m.BEAT] == state["last_beat"]) & \
        (row[:, m.POSITION] == state["last_position"])
    return {
        "ended": phase == 3,
        "phase": phase,
        "declared": declared,
        "last_instrument": jnp.where(is_instrument, instrument, state["last_instrument"]),
        "last_beat": jnp.where(is_note, row[:, m.BEAT], state["last_beat"]),
        "last_position": jnp.where(is_note, row[:, m.POSITION], state["last_position"]),
        "notes": state["notes"] + is_note.astype(jnp.int32),
        "header": state["header"] + (state["phase"] < 2).astype(jnp.int32),
        "onset_notes": jnp.where(is_note, jnp.where(same_onset, state["onset_notes"] + 1, 1),
                                 state["onset_notes"]),
        "sound_until": jnp.where(is_note, jnp.maximum(state["sound_until"], self._end(row)),
                                 state["sound_until"]),
    }

  def _end(self, row: jax.Array) -> jax.Array:
    """(B,) where a note row's note ends, in positions from the song's start."""
    m = self.m
    onset = (row[:, m.BEAT] - 1) * self.resolution + row[:, m.POSITION] - 1
    return onset + self.durations[jnp.clip(row[:, m.DURATION], 0, self.durations.size - 1)]

  def _silence_ceiling(self, state: Any) -> jax.Array:
    """(B,) the latest onset (in positions) the next note may take: at most max_silence
    after every note so far has ended (no limit before the first note or without one)."""
    never = jnp.full_like(state["sound_until"], jnp.iinfo(jnp.int32).max // 2)
    if self.max_silence is None:
      return never
    return jnp.where(state["notes"] > 0, state["sound_until"] + self.max_silence, never)

  def _onset_full(self, state: Any) -> jax.Array:
    """(B,) bool: the last onset holds max_onset_notes notes: the next note must be later."""
    if not self.max_onset_notes:
      return jnp.zeros_like(state["ended"])
    return state["onset_notes"] >= self.max_onset_notes

  def _beat_ceiling(self, state: Any) -> jax.Array:
    """(B,) the last beat code the next note may take."""
    silence = self._silence_ceiling(state) // self.resolution + 1  # beat codes are beat + 1
    if not self.max_time_jump:
      return jnp.minimum(silence, self.last_beat_code)
    ceiling = jnp.where(state["notes"] > 0, state["last_beat"] + self.max_time_jump,
                        1 + self.max_first_time)
    return jnp.minimum(jnp.minimum(ceiling, silence), self.last_beat_code)

  def header_rows(self, state: Any) -> jax.Array:
    return state["header"]

  # Training windows are rebased so their first note sits on beat 0
  # (`mtx.data.crop.crop_mmt`), and a model never saw beat codes far past a window's
  # length in beats: a view cut from a long sample is rebased the same way.
  def view_offsets(self, view: jax.Array, body: jax.Array) -> jax.Array:
    m = self.m
    notes = body & (view[..., m.TYPE] == m.NOTE)
    first = jnp.min(jnp.where(notes, view[..., m.BEAT], self.last_beat_code + 1), axis=1)
    return jnp.where(notes.any(axis=1), first - 1, 0).astype(jnp.int32)

  def to_model(self, rows: jax.Array, offsets: jax.Array) -> jax.Array:
    m = self.m
    notes = rows[..., m.TYPE] == m.NOTE
    beats = rows[..., m.BEAT] - jnp.where(notes, offsets[:, None], 0)
    return rows.at[..., m.BEAT].set(beats)

  def to_sample(self, logits: tuple, offsets: jax.Array) -> tuple:
    m = self.m
    beat = logits[m.BEAT]  # (B, V) over the model's codes
    codes = jnp.arange(beat.shape[-1])[None, :]
    model_codes = codes - offsets[:, None]  # sample code c is model code c - offset
    valid = (codes == 0) | (model_codes >= 1)
    shifted = jnp.take_along_axis(beat, jnp.where(codes == 0, 0, jnp.clip(model_codes, 0)),
                                  axis=-1)
    beat = jnp.where(valid, shifted, jnp.finfo(beat.dtype).min)
    return logits[:m.BEAT] + (beat,) + logits[m.BEAT + 1:]

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
    # A full onset needs a later one: a later position of its beat, or a later beat.
    later = (state["last_position"] < self.last_position_code) | \
        (self._beat_ceiling(state) > state["last_beat"])
    note_fits = ~self._onset_full(state) | later
    notes = (phase == 2)[:, None] & (
        ((codes == m.NOTE) & note_fits[:, None])
        | ((codes == m.END_OF_SONG) & (state["notes"] > 0)[:, None]))
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
    full = self._onset_full(state)
    if field == m.BEAT:
      beat_full = full & (state["last_position"] >= self.last_position_code)
      floor = jnp.maximum(state["last_beat"] + beat_full.astype(jnp.int32), 1)
      note = (ids >= floor[:, None]) & (ids <= self._beat_ceiling(state)[:, None])
    elif field == m.POSITION:
      same_beat = row[:, m.BEAT] == state["last_beat"]
      floor = jnp.where(same_beat, jnp.maximum(state["last_position"] + full.astype(jnp.int32),
                                               1), 1)
      # On the silence limit's own beat, no later than the limit's position.
      latest = self._silence_ceiling(state)
      on_last_beat = row[:, m.BEAT] == latest // self.resolution + 1
      ceiling = jnp.where(on_last_beat, latest % self.resolution + 1, self.last_position_code)
      note = (ids >= floor[:, None]) & (ids <= jnp.maximum(ceiling, floor)[:, None])
    else:  # pitch, duration
      note = ids > 0
    return jnp.where(kind == m.NOTE, note, none)


class PerformanceGrammar(Grammar):
  """The performance event grammar (see the module docstring)."""

  def __init__(self, codec: Codec, *, max_time_jump: int = 0,
               max_first_time: int | None = None):
    super().__init__(codec)
    self.max_time_jump, self.max_first_time = _limits(max_time_jump, max_first_time)
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
            "struck_now": jnp.zeros((batch, self.pitches), bool),
            "played": jnp.zeros((batch,), bool),  # a note event yet
            "since": jnp.zeros((batch,), jnp.int32)}  # time steps since the last one

  def update(self, state: Any, row: jax.Array) -> Any:
    token = row[:, 0]
    pitch = jnp.arange(self.pitches)[None, :]
    on = (token[:, None] - self.on) == pitch
    off = (token[:, None] - self.off) == pitch
    is_shift = (token >= self.shift) & (token < self.shift + self.shifts)
    is_event = on.any(axis=1) | off.any(axis=1)
    steps = jnp.where(is_shift, token - self.shift + 1, 0)
    return {"ended": state["ended"] | (token == self.end),
            "started": state["started"] | (token == self.start),
            "sounding": (state["sounding"] | on) & ~off,
            "struck_now": jnp.where(is_shift[:, None], False, state["struck_now"] | on),
            "played": state["played"] | is_event,
            "since": jnp.where(is_event, 0, state["since"] + steps)}

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
    if self.max_time_jump:  # time-shift value k advances k + 1 steps
      left = _time_ceiling(state, state["since"], self.max_time_jump, self.max_first_time)
      shift = ids - self.shift
      too_far = (shift >= 0) & (shift < self.shifts) & (shift + 1 > left[:, None])
      body = body & ~too_far
    return jnp.where(ended, ids == self.end,
                     jnp.where(started, body, ids == self.start))


class RemiGrammar(Grammar):
  """REMI+: start-of-song, then a Bar before anything else; a Time-signature only right
  after a Bar; Positions never backwards and inside the bar's length; each note as
  Program, Pitch, Velocity, Duration with nothing in between; end-of-song between
  notes. What `remi.py`'s decoder reads without dropping a token."""

  KINDS = ("pad", "start-of-song", "end-of-song", "bar", "time-signature", "position",
           "tempo", "program", "pitch", "velocity", "duration")

  def __init__(self, codec: Codec, *, max_time_jump: int = 0,
               max_first_time: int | None = None):
    super().__init__(codec)
    from mtx.representation import bars

    self.max_time_jump, self.max_first_time = _limits(max_time_jump, max_first_time)
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
            "ts": zeros + self.default_ts, "position": zeros, "note": zeros,
            "played": jnp.zeros((batch,), bool),  # a note (Pitch) yet
            "since": zeros}  # bar lines since the last note (or the start)

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
        "played": state["played"] | is_["pitch"],
        "since": jnp.where(is_["pitch"], 0, state["since"] + is_["bar"].astype(jnp.int32)),
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
    bar = is_["bar"]
    if self.max_time_jump:
      left = _time_ceiling(state, state["since"], self.max_time_jump, self.max_first_time)
      bar = bar & column(left >= 1)
    between = bar | position_ok | is_["tempo"] | is_["program"] | \
        is_["end-of-song"] | (is_["time-signature"] & column(state["ts_open"]))
    body = jnp.where(note > 0, in_note,
                     jnp.where(column(state["in_bar"]), between, is_["bar"]))
    return jnp.where(column(state["ended"]), is_["end-of-song"],
                     jnp.where(column(state["started"]), body, is_["start-of-song"]))


def _limits(max_time_jump: int, max_first_time: int | None) -> tuple[int, int]:
  jump = int(max_time_jump or 0)
  first = jump if max_first_time is None else int(max_first_time)
  if jump < 0 or first < 0:
    from mtx.errors import ConfigError
    raise ConfigError(f"time limits must be >= 0 (0: none); got max_time_jump={jump}, "
                      f"max_first_time={first}")
  return jump, first


def grammar_for(codec: Codec, *, instruments=None, max_time_jump: int = 0,
                max_first_time: int | None = None, max_onset_notes: int = 0,
                max_silence: int | None = None) -> Grammar:
  """The grammar of `codec`'s representation. `instruments`: mmt codes a header may use;
  `max_time_jump`: the most time between consecutive notes, in `TIME_UNITS` (0: no limit),
  `max_first_time` before the first note (default: max_time_jump); ignored for mmm.
  `max_onset_notes`: mmt, the most notes at one time (beat and position; 0: no limit).
  `max_silence`: mmt, the most positions between the end of every sounding note and the
  next note (None: no limit)."""
  limits = dict(max_time_jump=max_time_jump, max_first_time=max_first_time)
  if codec.name == "mmt":
    return MMTGrammar(codec, instruments, max_onset_notes=max_onset_notes,
                      max_silence=max_silence, **limits)
  if codec.name == "performance":
    return PerformanceGrammar(codec, **limits)
  if codec.name == "remi":
    return RemiGrammar(codec, **limits)
  return Grammar(codec)


TIME_UNITS = {"mmt": "beats", "performance": "time steps", "remi": "bars"}


def note_times(codec: Codec, tokens: np.ndarray) -> np.ndarray | None:
  """The time of each note of a song, in `TIME_UNITS`: (n_notes,) int64, or None where
  the grammar has no time limit (mmm). mmt: each note row's beat; performance: the time
  steps before each note-on or note-off (the sum of the time-shifts so far); remi: the
  bar lines before each Pitch (1 in the first bar)."""
  tokens = np.asarray(tokens).reshape(-1, codec.n_fields)
  if codec.name == "mmt":
    from mtx.representation import mmt

    return tokens[tokens[:, mmt.TYPE] == mmt.NOTE, mmt.BEAT].astype(np.int64) - 1
  vocab = getattr(codec, "vocab", None)
  events = tokens[:, 0].astype(np.int64)
  if codec.name == "performance":
    shift, count = vocab.offset("time-shift"), vocab.count("time-shift")
    is_shift = (events >= shift) & (events < shift + count)
    time = np.cumsum(np.where(is_shift, events - shift + 1, 0))
    note = np.zeros_like(is_shift)
    for kind in ("note-on", "note-off"):
      offset = vocab.offset(kind)
      note |= (events >= offset) & (events < offset + vocab.count(kind))
    return time[note]
  if codec.name == "remi":
    bar = vocab.offset("bar")
    bars_so_far = np.cumsum((events >= bar) & (events < bar + vocab.count("bar")))
    pitch = vocab.offset("pitch")
    return bars_so_far[(events >= pitch) & (events < pitch + vocab.count("pitch"))]
  return None


# The silence limit is the longest silence at least this share of the training songs reach.
SILENCE_SHARE = 0.01


def time_limits(codec: Codec, songs) -> dict:
  """What a run's data says about time and length, for the sampler's defaults.

  songs: token arrays (n, n_fields) of the training split. Returns
  {"max_time_jump": the largest time between two consecutive notes of a song,
   "max_first_time": the largest time before a song's first note (both in `TIME_UNITS`;
   0 where the representation has none), "max_onset_notes": mmt, the most note rows at
   one beat and position (0 for the others), "max_silence": mmt, the longest silence,
   in positions, between the end of every note so far and the next note, that at least
   SILENCE_SHARE of the songs reach (the 99th percentile of the songs' longest silences:
   one song's four-beat rest does not license every sample to pause four beats; absent
   for the others), "longest_song": the most rows of a song, "songs": how many}. A pure
   function of the tokens: `mtx.train.loop.run_record` saves it with the run,
   `mtx.sample.restore.sampling_limits` reads it back.
  """
  jump = first = longest = count = onset = 0
  silences = []
  for tokens in songs:
    tokens = np.asarray(tokens).reshape(-1, codec.n_fields)
    count += 1
    longest = max(longest, len(tokens))
    if codec.name == "mmt":
      from mtx.representation import mmt

      silences.append(mmt_longest_silence(codec, tokens))
      notes = tokens[tokens[:, mmt.TYPE] == mmt.NOTE][:, [mmt.BEAT, mmt.POSITION]]
      if len(notes):
        onset = max(onset, int(np.unique(notes, axis=0, return_counts=True)[1].max()))
    times = note_times(codec, tokens)
    if times is None or not len(times):
      continue
    first = max(first, int(times[0]))
    if len(times) > 1:
      jump = max(jump, int(np.diff(times).max()))
  limits = {"max_time_jump": jump, "max_first_time": first, "max_onset_notes": onset,
            "longest_song": longest, "songs": count}
  if codec.name == "mmt":
    limits["max_silence"] = int(np.percentile(silences, 100 * (1 - SILENCE_SHARE),
                                              method="higher")) if silences else 0
  return limits


def mmt_longest_silence(codec: Codec, tokens: np.ndarray) -> int:
  """The longest time, in positions, from the end of every note so far to the next note
  of an mmt song (0 where notes always overlap or touch): onsets in row order, as the
  codec sorts them."""
  from mtx.representation import mmt
  from mtx.representation.fields import KNOWN_DURATIONS

  notes = tokens[tokens[:, mmt.TYPE] == mmt.NOTE].astype(np.int64)
  if len(notes) < 2:
    return 0
  onset = (notes[:, mmt.BEAT] - 1) * codec.resolution + notes[:, mmt.POSITION] - 1
  end = onset + KNOWN_DURATIONS[np.clip(notes[:, mmt.DURATION], 1, None) - 1]
  sounding_until = np.maximum.accumulate(end)[:-1]
  return int(max(0, (onset[1:] - sounding_until).max()))
