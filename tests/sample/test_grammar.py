"""The grammars accept every real encoding, and anything drawn under them decodes strictly."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtx.representation import get_codec
from mtx.sample.decode import SamplingOptions, filter_logits, sample_row
from mtx.sample.grammar import grammar_for

CODECS = ("mmt", "performance", "remi")


def _accepts(grammar, tokens: np.ndarray) -> None:
  """Feeds real rows one by one: each field of each row must be allowed."""
  state = grammar.init(1)
  for index, row in enumerate(tokens):
    row = jnp.asarray(row[None, :], jnp.int32)
    for f in range(row.shape[1]):
      allowed = np.asarray(grammar.field_mask(state, f, row))
      assert allowed[0, int(row[0, f])], (index, f, row)
    state = grammar.update(state, row)
  assert bool(grammar.ended(state)[0])


@pytest.mark.parametrize("name", CODECS)
def test_the_grammar_accepts_every_real_encoding(music21_chorales, name):
  codec = get_codec(name)
  grammar = grammar_for(codec)
  for path in music21_chorales[:6]:
    _accepts(grammar, codec.encode(path))


@pytest.mark.parametrize("name", CODECS)
def test_rows_drawn_from_random_logits_under_the_grammar_decode_strictly(name):
  codec = get_codec(name)
  grammar = grammar_for(codec)
  options = SamplingOptions.per_field(codec.n_fields)
  batch, length = 16, 120

  @jax.jit
  def draw(key):
    def step(carry, t):
      state, lengths = carry
      logits = tuple(jax.random.normal(jax.random.fold_in(key, t * 7 + f), (batch, size))
                     for f, size in enumerate(codec.fields.sizes))
      row = sample_row(jax.random.fold_in(key, -t - 1), logits, grammar, state, options)
      was_ended = grammar.ended(state)
      state = grammar.update(state, row)
      lengths = jnp.where(grammar.at_boundary(state) & ~was_ended, t + 1, lengths)
      return (state, lengths), row  # the sampler's cut: end-of-song or the last boundary
    (_, lengths), rows = jax.lax.scan(step, (grammar.init(batch), jnp.zeros(batch, jnp.int32)),
                                      jnp.arange(length))
    return jnp.swapaxes(rows, 0, 1), lengths

  for seed in range(3):
    tokens, lengths = (np.asarray(x) for x in draw(jax.random.key(seed)))
    for sample, stop in zip(tokens, lengths):
      codec.decode(sample[:stop], strict=True)  # raises DecodeError on an undecodable row


def test_instrument_informed_grammar_keeps_to_the_declared_set():
  codec = get_codec("mmt")
  from mtx.representation import mmt

  grammar = grammar_for(codec, instruments=np.array([1, 41]))
  state = grammar.init(1)
  for row in ([0, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 1]):
    state = grammar.update(state, jnp.asarray([row], jnp.int32))
  note = jnp.asarray([[mmt.NOTE, 0, 0, 0, 0, 0]], jnp.int32)
  allowed = np.flatnonzero(np.asarray(grammar.field_mask(state, mmt.INSTRUMENT_FIELD, note))[0])
  assert allowed.tolist() == [1]  # notes: only what was declared so far
  header = jnp.asarray([[mmt.INSTRUMENT, 0, 0, 0, 0, 0]], jnp.int32)
  allowed = np.flatnonzero(np.asarray(
      grammar.field_mask(state, mmt.INSTRUMENT_FIELD, header))[0])
  assert allowed.tolist() == [41]  # the header: the given set, ascending


def test_top_k_and_top_p_keep_what_they_promise():
  rng = np.random.default_rng(0)
  logits = jnp.asarray(rng.normal(size=(8, 50)), jnp.float32)
  allowed = jnp.asarray(rng.random((8, 50)) < 0.8)
  kept = np.asarray(filter_logits(logits, allowed, temperature=1.0, top_k=5, top_p=1.0)
                    > jnp.finfo(jnp.float32).min)
  for b in range(8):
    candidates = np.flatnonzero(np.asarray(allowed[b]))
    best = candidates[np.argsort(-np.asarray(logits[b])[candidates])[:5]]
    assert set(np.flatnonzero(kept[b])) == set(best)
  kept = np.asarray(filter_logits(logits, allowed, temperature=1.0, top_k=0, top_p=0.7)
                    > jnp.finfo(jnp.float32).min)
  for b in range(8):
    candidates = np.flatnonzero(np.asarray(allowed[b]))
    order = candidates[np.argsort(-np.asarray(logits[b])[candidates])]
    probs = np.exp(np.asarray(logits[b])[order])
    probs /= probs.sum()
    smallest = order[:int(np.searchsorted(np.cumsum(probs), 0.7) + 1)]
    assert set(np.flatnonzero(kept[b])) == set(smallest)
