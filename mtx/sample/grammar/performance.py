"""The performance event grammar (`mtx.representation.performance`).

Start-of-song first; never pad or a second start-of-song; a note-off only for a sounding
pitch; a note-on not twice for one pitch at one time. Time limits count the time steps
of the time-shifts between two note events (note-on or note-off; a run of time-shifts
is one jump).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mtx.representation.codec import Codec
from mtx.sample.grammar.base import TimeLimitedGrammar, register, time_ceiling, time_limit_options


@register("performance")
class PerformanceGrammar(TimeLimitedGrammar):
  """The performance event grammar (see the module docstring)."""

  time_unit = "time steps"

  def __init__(self, codec: Codec, *, max_time_jump: int = 0, max_first_time: int | None = None):
    super().__init__(codec)
    self.max_time_jump, self.max_first_time = time_limit_options(max_time_jump, max_first_time)
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

  @staticmethod
  def note_times(codec: Codec, tokens: np.ndarray) -> np.ndarray:
    """The time steps before each note-on or note-off (the sum of the time-shifts so far)."""
    vocab = codec.vocab
    events = tokens[:, 0].astype(np.int64)
    shift, count = vocab.offset("time-shift"), vocab.count("time-shift")
    is_shift = (events >= shift) & (events < shift + count)
    time = np.cumsum(np.where(is_shift, events - shift + 1, 0))
    note = np.zeros_like(is_shift)
    for kind in ("note-on", "note-off"):
      offset = vocab.offset(kind)
      note |= (events >= offset) & (events < offset + vocab.count(kind))
    return time[note]

  def init(self, batch: int) -> Any:
    return {
      "ended": jnp.zeros((batch,), bool),
      "started": jnp.zeros((batch,), bool),
      "sounding": jnp.zeros((batch, self.pitches), bool),
      "struck_now": jnp.zeros((batch, self.pitches), bool),
      "played": jnp.zeros((batch,), bool),  # a note event yet
      "since": jnp.zeros((batch,), jnp.int32),
    }  # time steps since the last one

  def update(self, state: Any, row: jax.Array) -> Any:
    token = row[:, 0]
    pitch = jnp.arange(self.pitches)[None, :]
    on = (token[:, None] - self.on) == pitch
    off = (token[:, None] - self.off) == pitch
    is_shift = (token >= self.shift) & (token < self.shift + self.shifts)
    is_event = on.any(axis=1) | off.any(axis=1)
    steps = jnp.where(is_shift, token - self.shift + 1, 0)
    return {
      "ended": state["ended"] | (token == self.end),
      "started": state["started"] | (token == self.start),
      "sounding": (state["sounding"] | on) & ~off,
      "struck_now": jnp.where(is_shift[:, None], False, state["struck_now"] | on),
      "played": state["played"] | is_event,
      "since": jnp.where(is_event, 0, state["since"] + steps),
    }

  def field_mask(self, state: Any, field: int, row: jax.Array) -> jax.Array:
    del field, row
    ids = jnp.arange(self.size)[None, :]
    started, ended = state["started"][:, None], state["ended"][:, None]
    pitch = ids - self.on
    note_on = (pitch >= 0) & (pitch < self.pitches)
    off_pitch = ids - self.off
    note_off = (off_pitch >= 0) & (off_pitch < self.pitches)
    struck = jnp.take_along_axis(
      state["struck_now"],
      jnp.clip(pitch, 0, self.pitches - 1).repeat(state["struck_now"].shape[0], 0),
      axis=1,
    )
    sounding = jnp.take_along_axis(
      state["sounding"],
      jnp.clip(off_pitch, 0, self.pitches - 1).repeat(state["sounding"].shape[0], 0),
      axis=1,
    )
    body = (ids != self.pad) & (ids != self.start) & ~(note_on & struck) & ~(note_off & ~sounding)
    if self.max_time_jump:  # time-shift value k advances k + 1 steps
      left = time_ceiling(state, state["since"], self.max_time_jump, self.max_first_time)
      shift = ids - self.shift
      too_far = (shift >= 0) & (shift < self.shifts) & (shift + 1 > left[:, None])
      body = body & ~too_far
    return jnp.where(ended, ids == self.end, jnp.where(started, body, ids == self.start))
