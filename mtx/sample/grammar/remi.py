"""The REMI+ grammar (`mtx.representation.remi`).

Start-of-song, then a Bar before anything else; a Time-signature only right after a Bar;
Positions never backwards and inside the bar's length; each note as Program, Pitch,
Velocity, Duration with nothing in between; end-of-song between notes: what the codec's
decoder reads without dropping a token. Time limits count bar lines between two notes
(1: the next bar; more: empty bars skipped).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mtx.representation import bars
from mtx.representation.codec import Codec
from mtx.sample.grammar.base import TimeLimitedGrammar, register, time_ceiling, time_limit_options


@register("remi")
class RemiGrammar(TimeLimitedGrammar):
  """REMI+ (see the module docstring)."""

  time_unit = "bars"
  KINDS = (
    "pad",
    "start-of-song",
    "end-of-song",
    "bar",
    "time-signature",
    "position",
    "tempo",
    "program",
    "pitch",
    "velocity",
    "duration",
  )

  def __init__(self, codec: Codec, *, max_time_jump: int = 0, max_first_time: int | None = None):
    super().__init__(codec)
    self.max_time_jump, self.max_first_time = time_limit_options(max_time_jump, max_first_time)
    vocab = codec.vocab
    self.size = vocab.size
    self.offset = {k: vocab.offset(k) for k in self.KINDS}
    self.count = {k: vocab.count(k) for k in self.KINDS}
    self.bar_steps = jnp.asarray(
      [bars.bar_steps(i, codec.resolution) for i in range(len(bars.TIME_SIGNATURES))], jnp.int32
    )
    self.default_ts = bars.DEFAULT_TS_INDEX
    kind_of = np.zeros(self.size, np.int32)
    for index, kind in enumerate(self.KINDS):
      kind_of[self.offset[kind] : self.offset[kind] + self.count[kind]] = index
    self.kind_of = jnp.asarray(kind_of)

  @staticmethod
  def note_times(codec: Codec, tokens: np.ndarray) -> np.ndarray:
    """The bar lines before each Pitch (1 in the first bar)."""
    vocab = codec.vocab
    events = tokens[:, 0].astype(np.int64)
    bar = vocab.offset("bar")
    bars_so_far = np.cumsum((events >= bar) & (events < bar + vocab.count("bar")))
    pitch = vocab.offset("pitch")
    return bars_so_far[(events >= pitch) & (events < pitch + vocab.count("pitch"))]

  def _kind(self, name: str) -> int:
    return self.KINDS.index(name)

  def init(self, batch: int) -> Any:
    zeros = jnp.zeros((batch,), jnp.int32)
    return {
      "ended": jnp.zeros((batch,), bool),
      "started": jnp.zeros((batch,), bool),
      "in_bar": jnp.zeros((batch,), bool),
      "ts_open": jnp.zeros((batch,), bool),
      "ts": zeros + self.default_ts,
      "position": zeros,
      "note": zeros,
      "played": jnp.zeros((batch,), bool),  # a note (Pitch) yet
      "since": zeros,
    }  # bar lines since the last note (or the start)

  def at_boundary(self, state: Any) -> jax.Array:
    return state["note"] == 0

  def update(self, state: Any, row: jax.Array) -> Any:
    token = row[:, 0]
    kind = self.kind_of[token]
    value = token - jnp.asarray([self.offset[k] for k in self.KINDS])[kind]
    is_ = {name: kind == self._kind(name) for name in self.KINDS}
    note = jnp.where(
      is_["program"],
      1,
      jnp.where(
        is_["pitch"], 2, jnp.where(is_["velocity"], 3, jnp.where(is_["duration"], 0, state["note"]))
      ),
    )
    return {
      "ended": state["ended"] | is_["end-of-song"],
      "started": state["started"] | is_["start-of-song"],
      "in_bar": state["in_bar"] | is_["bar"],
      "ts_open": is_["bar"],  # only directly after a Bar
      "ts": jnp.where(is_["time-signature"], value, state["ts"]),
      "position": jnp.where(is_["position"], value, jnp.where(is_["bar"], 0, state["position"])),
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
    in_note = (
      (note == 1) & is_["pitch"] | (note == 2) & is_["velocity"] | (note == 3) & is_["duration"]
    )
    bar_length = self.bar_steps[state["ts"]]
    position_ok = (
      is_["position"] & (value >= column(state["position"])) & (value < column(bar_length))
    )
    bar = is_["bar"]
    if self.max_time_jump:
      left = time_ceiling(state, state["since"], self.max_time_jump, self.max_first_time)
      bar = bar & column(left >= 1)
    between = (
      bar
      | position_ok
      | is_["tempo"]
      | is_["program"]
      | is_["end-of-song"]
      | (is_["time-signature"] & column(state["ts_open"]))
    )
    body = jnp.where(note > 0, in_note, jnp.where(column(state["in_bar"]), between, is_["bar"]))
    return jnp.where(
      column(state["ended"]),
      is_["end-of-song"],
      jnp.where(column(state["started"]), body, is_["start-of-song"]),
    )
