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

One module per representation, each registering its grammar under its codec's name
(`base.register`): mmt.py, performance.py, remi.py, mmm.py (their docstrings give the
rules); `grammar_for` looks the codec up, and a representation without a module gets
no constraint.

Time jumps (`max_time_jump`, `max_first_time`; 0: no limit): how far time may move
between two consecutive notes, and before the first, in the representation's own unit
(`TIME_UNITS`). The limits come from the training data (`limits.time_limits`): a weak
model's leap of hundreds of beats, after which the grammar never lets time go back and
every later note piles up at the last beat as a cluster, cannot happen, and no sample
leaps further or stacks more notes at once than the music it learned from.

`header_rows`: how many rows at a sample's start a sliding window keeps in view once the
sample outgrows it (`mtx.sample.decode`): mmt, its header; the others, start-of-song.
"""

from mtx.sample.grammar import mmm, mmt, performance, remi  # noqa: F401  (each registers)
from mtx.sample.grammar.base import GRAMMARS, Grammar, grammar_class, grammar_for
from mtx.sample.grammar.limits import SILENCE_SHARE, note_times, time_limits

# codec name -> what its time limits count, for messages ("time jumps of at most 4 beats").
TIME_UNITS = {name: cls.time_unit for name, cls in GRAMMARS.items() if cls.time_unit}

__all__ = [
  "GRAMMARS",
  "SILENCE_SHARE",
  "TIME_UNITS",
  "Grammar",
  "grammar_class",
  "grammar_for",
  "note_times",
  "time_limits",
]
