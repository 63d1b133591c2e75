"""The MMT row grammar (`mtx.representation.mmt`).

Start-of-song, then instrument rows (each instrument once, ascending, as the encoder
writes them), start-of-notes once at least one instrument is declared, then notes whose
beat and position never go back, whose instrument is a declared one, with no empty
field, and end-of-song once a note was written; non-note rows carry zeros where their
type means nothing. Time limits count beats between consecutive note rows (the beat
field); `max_onset_notes` bounds the notes at one time (beat and position): once an
onset holds that many, the next note is later, and where time cannot go further (the
last beat and position) the sample ends. `max_silence` bounds the positions from the
end of every sounding note to the next note. The header (start-of-song, the instrument
rows, start-of-notes) is what a sliding window keeps in view, as every training window
starts with it.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mtx.errors import ConfigError
from mtx.representation.codec import Codec
from mtx.representation.fields import KNOWN_DURATIONS
from mtx.representation.mmt import (
  BEAT,
  DURATION,
  END_OF_SONG,
  INSTRUMENT,
  INSTRUMENT_FIELD,
  NOTE,
  POSITION,
  ROW_TYPES,
  START_OF_NOTES,
  START_OF_SONG,
  TYPE,
)
from mtx.sample.grammar.base import Grammar, register, time_limit_options


def _one_hot_allowed(values: jax.Array, size: int) -> jax.Array:
  """(B,) token ids -> (B, size) masks allowing only that id."""
  return jnp.arange(size)[None, :] == values[:, None]


@register("mmt")
class MMTGrammar(Grammar):
  """The MMT row grammar (see the module docstring)."""

  time_unit = "beats"
  limits_silence = True

  def __init__(
    self,
    codec: Codec,
    instruments: np.ndarray | None = None,
    *,
    max_time_jump: int = 0,
    max_first_time: int | None = None,
    max_onset_notes: int = 0,
    max_silence: int | None = None,
  ):
    super().__init__(codec)
    # The longest silence the next note may leave, in positions (1/resolution beat) after
    # every sounding note has ended; None: no limit.
    self.max_silence = None if max_silence is None else int(max_silence)
    if self.max_silence is not None and self.max_silence < 0:
      raise ConfigError(f"max_silence must be >= 0 positions (None: none); got {max_silence}")
    self.resolution = int(codec.resolution)
    self.durations = jnp.asarray(np.concatenate([[0], KNOWN_DURATIONS]), jnp.int32)

    self.max_time_jump, self.max_first_time = time_limit_options(max_time_jump, max_first_time)
    self.max_onset_notes = int(max_onset_notes or 0)
    if self.max_onset_notes < 0:
      raise ConfigError(f"max_onset_notes must be >= 0 (0: none); got {max_onset_notes}")
    self.last_beat_code = self.sizes[BEAT] - 1
    self.last_position_code = self.sizes[POSITION] - 1

    self.num_instruments = self.sizes[INSTRUMENT_FIELD]
    # Instrument codes a sample may declare (None: any); instrument-informed sampling fixes
    # the header in the primer instead.
    self.allowed_instruments = None if instruments is None else np.asarray(instruments)

  @classmethod
  def from_options(
    cls,
    codec: Codec,
    *,
    instruments=None,
    max_time_jump: int = 0,
    max_first_time: int | None = None,
    max_onset_notes: int = 0,
    max_silence: int | None = None,
  ) -> MMTGrammar:
    return cls(
      codec,
      instruments,
      max_time_jump=max_time_jump,
      max_first_time=max_first_time,
      max_onset_notes=max_onset_notes,
      max_silence=max_silence,
    )

  @staticmethod
  def note_times(codec: Codec, tokens: np.ndarray) -> np.ndarray:
    """Each note row's beat (from 0)."""
    del codec
    return tokens[tokens[:, TYPE] == NOTE, BEAT].astype(np.int64) - 1

  @staticmethod
  def onset_notes(codec: Codec, tokens: np.ndarray) -> int:
    del codec
    notes = tokens[tokens[:, TYPE] == NOTE][:, [BEAT, POSITION]]
    return int(np.unique(notes, axis=0, return_counts=True)[1].max()) if len(notes) else 0

  @staticmethod
  def longest_silence(codec: Codec, tokens: np.ndarray) -> int:
    return longest_silence(codec, tokens)

  def init(self, batch: int) -> Any:
    return {
      "ended": jnp.zeros((batch,), bool),
      "phase": jnp.zeros((batch,), jnp.int32),  # 0 start, 1 header, 2 notes, 3 ended
      "declared": jnp.zeros((batch, self.num_instruments), bool),
      "last_instrument": jnp.zeros((batch,), jnp.int32),
      "last_beat": jnp.zeros((batch,), jnp.int32),
      "last_position": jnp.zeros((batch,), jnp.int32),
      "notes": jnp.zeros((batch,), jnp.int32),
      "header": jnp.zeros((batch,), jnp.int32),  # rows before the first note
      "onset_notes": jnp.zeros((batch,), jnp.int32),  # notes at the last onset
      "sound_until": jnp.zeros((batch,), jnp.int32),
    }  # when the last note ends

  def update(self, state: Any, row: jax.Array) -> Any:
    kind = row[:, TYPE]
    instrument = row[:, INSTRUMENT_FIELD]
    is_instrument, is_note = kind == INSTRUMENT, kind == NOTE
    phase = state["phase"]
    phase = jnp.where(kind == START_OF_SONG, jnp.maximum(phase, 1), phase)
    phase = jnp.where(kind == START_OF_NOTES, 2, phase)
    phase = jnp.where(kind == END_OF_SONG, 3, phase)
    declared = state["declared"] | (
      is_instrument[:, None] & _one_hot_allowed(instrument, self.num_instruments)
    )
    same_onset = (row[:, BEAT] == state["last_beat"]) & (row[:, POSITION] == state["last_position"])
    return {
      "ended": phase == 3,
      "phase": phase,
      "declared": declared,
      "last_instrument": jnp.where(is_instrument, instrument, state["last_instrument"]),
      "last_beat": jnp.where(is_note, row[:, BEAT], state["last_beat"]),
      "last_position": jnp.where(is_note, row[:, POSITION], state["last_position"]),
      "notes": state["notes"] + is_note.astype(jnp.int32),
      "header": state["header"] + (state["phase"] < 2).astype(jnp.int32),
      "onset_notes": jnp.where(
        is_note, jnp.where(same_onset, state["onset_notes"] + 1, 1), state["onset_notes"]
      ),
      "sound_until": jnp.where(
        is_note, jnp.maximum(state["sound_until"], self._end(row)), state["sound_until"]
      ),
    }

  def _end(self, row: jax.Array) -> jax.Array:
    """(B,) where a note row's note ends, in positions from the song's start."""
    onset = (row[:, BEAT] - 1) * self.resolution + row[:, POSITION] - 1
    return onset + self.durations[jnp.clip(row[:, DURATION], 0, self.durations.size - 1)]

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
    ceiling = jnp.where(
      state["notes"] > 0, state["last_beat"] + self.max_time_jump, 1 + self.max_first_time
    )
    return jnp.minimum(jnp.minimum(ceiling, silence), self.last_beat_code)

  def header_rows(self, state: Any) -> jax.Array:
    return state["header"]

  # Training windows are rebased so their first note sits on beat 0
  # (`mtx.data.crop.crop_mmt`), and a model never saw beat codes far past a window's
  # length in beats: a view cut from a long sample is rebased the same way.
  def view_offsets(self, view: jax.Array, body: jax.Array) -> jax.Array:
    notes = body & (view[..., TYPE] == NOTE)
    first = jnp.min(jnp.where(notes, view[..., BEAT], self.last_beat_code + 1), axis=1)
    return jnp.where(notes.any(axis=1), first - 1, 0).astype(jnp.int32)

  def to_model(self, rows: jax.Array, offsets: jax.Array) -> jax.Array:
    notes = rows[..., TYPE] == NOTE
    beats = rows[..., BEAT] - jnp.where(notes, offsets[:, None], 0)
    return rows.at[..., BEAT].set(beats)

  def to_sample(self, logits: tuple, offsets: jax.Array) -> tuple:
    beat = logits[BEAT]  # (B, V) over the model's codes
    codes = jnp.arange(beat.shape[-1])[None, :]
    model_codes = codes - offsets[:, None]  # sample code c is model code c - offset
    valid = (codes == 0) | (model_codes >= 1)
    shifted = jnp.take_along_axis(beat, jnp.where(codes == 0, 0, jnp.clip(model_codes, 0)), axis=-1)
    beat = jnp.where(valid, shifted, jnp.finfo(beat.dtype).min)
    return logits[:BEAT] + (beat,) + logits[BEAT + 1 :]

  def _type_mask(self, state: Any) -> jax.Array:
    phase = state["phase"]
    codes = jnp.arange(len(ROW_TYPES))[None, :]
    any_declared = state["declared"][:, 1:].any(axis=1)
    more_instruments = state["last_instrument"] < self.num_instruments - 1
    if self.allowed_instruments is not None:
      allowed = jnp.zeros((self.num_instruments,), bool).at[self.allowed_instruments].set(True)
      later = jnp.arange(self.num_instruments)[None, :] > state["last_instrument"][:, None]
      more_instruments = (later & allowed[None, :]).any(axis=1)
    start = (phase == 0)[:, None] & (codes == START_OF_SONG)
    header = (phase == 1)[:, None] & (
      ((codes == INSTRUMENT) & more_instruments[:, None])
      | ((codes == START_OF_NOTES) & any_declared[:, None])
    )
    # A full onset needs a later one: a later position of its beat, or a later beat.
    later = (state["last_position"] < self.last_position_code) | (
      self._beat_ceiling(state) > state["last_beat"]
    )
    note_fits = ~self._onset_full(state) | later
    notes = (phase == 2)[:, None] & (
      ((codes == NOTE) & note_fits[:, None])
      | ((codes == END_OF_SONG) & (state["notes"] > 0)[:, None])
    )
    ended = (phase == 3)[:, None] & (codes == END_OF_SONG)
    return start | header | notes | ended

  def field_mask(self, state: Any, field: int, row: jax.Array) -> jax.Array:
    if field == TYPE:
      return self._type_mask(state)
    size = self.sizes[field]
    ids = jnp.arange(size)[None, :]
    kind = row[:, TYPE][:, None]
    none = ids == 0  # the filler of fields a row type does not use
    if field == INSTRUMENT_FIELD:
      later = ids > state["last_instrument"][:, None]
      header = later & (ids > 0)
      if self.allowed_instruments is not None:
        allowed = jnp.zeros((size,), bool).at[self.allowed_instruments].set(True)
        header = header & allowed[None, :]
      note = state["declared"]
      return jnp.where(kind == INSTRUMENT, header, jnp.where(kind == NOTE, note, none))
    full = self._onset_full(state)
    if field == BEAT:
      beat_full = full & (state["last_position"] >= self.last_position_code)
      floor = jnp.maximum(state["last_beat"] + beat_full.astype(jnp.int32), 1)
      note = (ids >= floor[:, None]) & (ids <= self._beat_ceiling(state)[:, None])
    elif field == POSITION:
      same_beat = row[:, BEAT] == state["last_beat"]
      floor = jnp.where(
        same_beat, jnp.maximum(state["last_position"] + full.astype(jnp.int32), 1), 1
      )
      # On the silence limit's own beat, no later than the limit's position.
      latest = self._silence_ceiling(state)
      on_last_beat = row[:, BEAT] == latest // self.resolution + 1
      ceiling = jnp.where(on_last_beat, latest % self.resolution + 1, self.last_position_code)
      note = (ids >= floor[:, None]) & (ids <= jnp.maximum(ceiling, floor)[:, None])
    else:  # pitch, duration
      note = ids > 0
    return jnp.where(kind == NOTE, note, none)


def longest_silence(codec: Codec, tokens: np.ndarray) -> int:
  """The longest time, in positions, from the end of every note so far to the next note
  of an mmt song (0 where notes always overlap or touch): onsets in row order, as the
  codec sorts them."""
  notes = tokens[tokens[:, TYPE] == NOTE].astype(np.int64)
  if len(notes) < 2:
    return 0
  onset = (notes[:, BEAT] - 1) * codec.resolution + notes[:, POSITION] - 1
  end = onset + KNOWN_DURATIONS[np.clip(notes[:, DURATION], 1, None) - 1]
  sounding_until = np.maximum.accumulate(end)[:-1]
  return int(max(0, (onset[1:] - sounding_until).max()))
