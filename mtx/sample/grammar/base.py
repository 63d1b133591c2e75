"""The grammar interface, the registry keyed by codec name, and `grammar_for`.

Each representation's module (mmt.py, performance.py, remi.py, mmm.py beside this one)
subclasses `Grammar` and registers it with `@register(codec_name)`; `grammar_for` looks
the codec's name up, so nothing outside a grammar's own module knows what its
representation's tokens mean.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mtx.errors import ConfigError
from mtx.representation.codec import Codec

# codec name -> its grammar class; filled by each representation's module on import.
GRAMMARS: dict[str, type[Grammar]] = {}


def register(codec_name: str) -> Callable[[type[Grammar]], type[Grammar]]:
  """Class decorator: the grammar of the codec named `codec_name`."""

  def add(cls: type[Grammar]) -> type[Grammar]:
    if codec_name in GRAMMARS:
      raise ValueError(
        f"a grammar for {codec_name!r} is registered already: {GRAMMARS[codec_name].__name__}"
      )
    GRAMMARS[codec_name] = cls
    return cls

  return add


class Grammar:
  """No constraint: any token; never ends by itself (the sampler stops at max_length).

  The class-level part says what the representation's time limits count, read by
  `mtx.sample.grammar.limits` from the training data; the instance part is the jittable
  mask (see the package docstring).
  """

  # What max_time_jump counts (`TIME_UNITS`); None: the grammar has no time limit.
  time_unit: str | None = None
  # Whether the grammar bounds silences (`max_silence`), so `time_limits` measures them.
  limits_silence = False

  def __init__(self, codec: Codec):
    self.sizes = tuple(int(s) for s in codec.fields.sizes)

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
  ) -> Grammar:
    """The grammar with the options of `grammar_for` that it takes; the others are
    ignored (a representation without that constraint)."""
    del instruments, max_time_jump, max_first_time, max_onset_notes, max_silence
    return cls(codec)

  # ---- what the training data says (numpy, per song) ----

  @staticmethod
  def note_times(codec: Codec, tokens: np.ndarray) -> np.ndarray | None:
    """(n_notes,) int64: each note's time in `time_unit`; None without a time limit."""
    del codec, tokens
    return None

  @staticmethod
  def onset_notes(codec: Codec, tokens: np.ndarray) -> int:
    """The most notes of the song at one time (0: the grammar does not bound it)."""
    del codec, tokens
    return 0

  @staticmethod
  def longest_silence(codec: Codec, tokens: np.ndarray) -> int:
    """The song's longest silence in the grammar's unit (read where `limits_silence`)."""
    del codec, tokens
    return 0

  # ---- the mask (jittable) ----

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


class TimeLimitedGrammar(Grammar):
  """A single-field grammar whose only options are the time limits (performance, remi)."""

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
  ) -> Grammar:
    del instruments, max_onset_notes, max_silence
    return cls(codec, max_time_jump=max_time_jump, max_first_time=max_first_time)


def grammar_class(codec: Codec) -> type[Grammar]:
  """The registered grammar of `codec`'s representation; `Grammar` (no constraint) for a
  representation without one."""
  return GRAMMARS.get(codec.name, Grammar)


def grammar_for(
  codec: Codec,
  *,
  instruments=None,
  max_time_jump: int = 0,
  max_first_time: int | None = None,
  max_onset_notes: int = 0,
  max_silence: int | None = None,
) -> Grammar:
  """The grammar of `codec`'s representation. `instruments`: mmt codes a header may use;
  `max_time_jump`: the most time between consecutive notes, in `TIME_UNITS` (0: no limit),
  `max_first_time` before the first note (default: max_time_jump); ignored for mmm.
  `max_onset_notes`: mmt, the most notes at one time (beat and position; 0: no limit).
  `max_silence`: mmt, the most positions between the end of every sounding note and the
  next note (None: no limit)."""
  return grammar_class(codec).from_options(
    codec,
    instruments=instruments,
    max_time_jump=max_time_jump,
    max_first_time=max_first_time,
    max_onset_notes=max_onset_notes,
    max_silence=max_silence,
  )


def time_limit_options(max_time_jump: int, max_first_time: int | None) -> tuple[int, int]:
  """(jump, first): the time limits as ints, first defaulting to jump; ConfigError below 0."""
  jump = int(max_time_jump or 0)
  first = jump if max_first_time is None else int(max_first_time)
  if jump < 0 or first < 0:
    raise ConfigError(
      f"time limits must be >= 0 (0: none); got max_time_jump={jump}, max_first_time={first}"
    )
  return jump, first


def time_ceiling(state: Any, since: jax.Array, jump: int, first: int) -> jax.Array:
  """(B,) how much more time may pass: `jump` after a note, `first` before any, minus
  what has passed since (`since`)."""
  return jnp.where(state["played"], jump, first) - since
