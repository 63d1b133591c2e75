"""The MMM grammar (`mtx.representation.mmm`): no constraint yet.

Its decoder is tolerant, so every sample is still a valid file, but tokens may be
dropped while decoding; it has no time limit.
"""

from __future__ import annotations

from mtx.sample.grammar.base import Grammar, register


@register("mmm")
class MMMGrammar(Grammar):
  """Any token (see the module docstring)."""
