"""Batched autoregressive sampling with the KV cache (or without it, as a reference).

    options = SamplingOptions.per_field(codec.n_fields, temperature=1.0, top_k=0, top_p=0.95)
    generate = make_generate(setup.model, grammar, options, max_length=1024)
    tokens, lengths = generate(params, primer, jax.random.key(0))   # primer (B, P, F)

The primer is fed in one prefill; then each step samples one row from the
last position's logits and feeds it back, the cache holding every key and
value so far (O(L) per step). `use_cache=False` recomputes the whole prefix
each step (O(L^2)): the slow reference the cached path must equal token for
token, and what the benchmark compares. Within a row, fields are sampled in
order from their heads, each masked by the grammar given the fields already
drawn; then temperature, top-k and top-p (nucleus) filter per field;
temperature 0 is greedy. Step t's key is `fold_in(key, t)` and field f's
`fold_in(step key, f)`, so the same seed gives the same samples whatever the
path. The loop stops when every sample has ended or at max_length. A sample's
length runs to its end-of-song, or, cut by max_length, to the last row where
the grammar is at a boundary (no REMI note half-written).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp

from mtx.sample.grammar import Grammar


@dataclasses.dataclass(frozen=True)
class SamplingOptions:
  """Per-field temperature (0: greedy), top_k (0: off) and top_p (1.0: off)."""

  temperature: tuple[float, ...]
  top_k: tuple[int, ...]
  top_p: tuple[float, ...]

  @classmethod
  def per_field(cls, n_fields: int, *, temperature=1.0, top_k=0, top_p=1.0):
    def spread(value, name):
      values = tuple(value) if isinstance(value, (list, tuple)) else (value,) * n_fields
      if len(values) != n_fields:
        from mtx.errors import ConfigError
        raise ConfigError(f"{name} has {len(values)} values for {n_fields} fields")
      return values
    return cls(tuple(float(t) for t in spread(temperature, "temperature")),
               tuple(int(k) for k in spread(top_k, "top_k")),
               tuple(float(p) for p in spread(top_p, "top_p")))


def filter_logits(logits: jax.Array, allowed: jax.Array, *, temperature: float, top_k: int,
                  top_p: float) -> jax.Array:
  """(B, V) logits -> logits with -inf where not allowed or filtered away."""
  neg = jnp.finfo(jnp.float32).min
  logits = jnp.where(allowed, logits.astype(jnp.float32), neg)
  logits = logits / max(temperature, 1e-6)
  if top_k and top_k < logits.shape[-1]:
    kth = jax.lax.top_k(logits, top_k)[0][:, -1:]
    logits = jnp.where(logits >= kth, logits, neg)
  if top_p < 1.0:
    ordered = jnp.sort(logits, axis=-1)[:, ::-1]
    probs = jax.nn.softmax(ordered, axis=-1)
    before = jnp.cumsum(probs, axis=-1) - probs  # mass of the tokens ranked above
    keep = before < top_p  # the smallest set whose mass reaches top_p
    threshold = jnp.min(jnp.where(keep, ordered, jnp.inf), axis=-1, keepdims=True)
    logits = jnp.where(logits >= threshold, logits, neg)
  return jnp.where(allowed, logits, neg)


def sample_field(key, logits, allowed, *, temperature: float, top_k: int, top_p: float):
  """(B,) int32 tokens of one field."""
  if temperature == 0.0:
    return jnp.argmax(jnp.where(allowed, logits, jnp.finfo(jnp.float32).min),
                      axis=-1).astype(jnp.int32)
  filtered = filter_logits(logits, allowed, temperature=temperature, top_k=top_k, top_p=top_p)
  return jax.random.categorical(key, filtered, axis=-1).astype(jnp.int32)


def sample_row(key, logits, grammar: Grammar, state, options: SamplingOptions) -> jax.Array:
  """One row (B, F) from one (B, size_f) logit array per field."""
  batch = logits[0].shape[0]
  row = jnp.zeros((batch, len(logits)), jnp.int32)
  for f, field_logits in enumerate(logits):
    allowed = grammar.field_mask(state, f, row)
    token = sample_field(jax.random.fold_in(key, f), field_logits, allowed,
                         temperature=options.temperature[f], top_k=options.top_k[f],
                         top_p=options.top_p[f])
    row = row.at[:, f].set(token)
  return row


PROGRESS_EVERY = 16  # steps between progress callbacks


def make_generate(model_of: Callable, grammar: Grammar, options: SamplingOptions, *,
                  max_length: int, use_cache: bool = True,
                  progress: Callable[[int], None] | None = None):
  """A jitted (params, primer (B, P, F), key) -> (tokens (B, max_length, F), lengths (B,)).

  progress: called on the host with the row count every PROGRESS_EVERY steps (a progress
  bar); it does not change what is sampled."""

  def generate(params, primer, key):
    model = model_of(params)
    batch, prime_len, n_fields = primer.shape
    tokens = jnp.zeros((batch, max_length, n_fields), jnp.int32)
    tokens = tokens.at[:, :prime_len].set(primer)
    state, _ = jax.lax.scan(lambda s, row: (grammar.update(s, row), None),
                            grammar.init(batch), jnp.swapaxes(primer, 0, 1))
    if use_cache:
      cache = model.init_cache(batch, max_length)
      logits, cache = model(primer, cache=cache)
      last = tuple(l[:, -1] for l in logits)
    else:
      cache = None
      logits, _ = model(tokens)
      last = tuple(l[:, prime_len - 1] for l in logits)

    def cond(carry):
      t, _, state, _, _, _ = carry
      return (t < max_length) & ~jnp.all(grammar.ended(state))

    def body(carry):
      t, tokens, state, last, cache, lengths = carry
      row = sample_row(jax.random.fold_in(key, t), last, grammar, state, options)
      tokens = jax.lax.dynamic_update_slice(tokens, row[:, None, :], (0, t, 0))
      was_ended = grammar.ended(state)
      state = grammar.update(state, row)
      lengths = jnp.where(grammar.at_boundary(state) & ~was_ended, t + 1, lengths)
      if progress is not None:
        jax.lax.cond((t + 1) % PROGRESS_EVERY == 0,
                     lambda: jax.debug.callback(progress, t + 1), lambda: None)
      if use_cache:
        logits, cache = model(row[:, None, :], cache=cache)
        last = tuple(l[:, 0] for l in logits)
      else:
        logits, _ = model(tokens)
        last = tuple(jax.lax.dynamic_index_in_dim(l, t, axis=1, keepdims=False)
                     for l in logits)
      return t + 1, tokens, state, last, cache, lengths

    start = jnp.asarray(prime_len, jnp.int32)
    _, tokens, _, _, _, lengths = jax.lax.while_loop(
        cond, body, (start, tokens, state, last, cache, jnp.full((batch,), start)))
    return tokens, lengths

  return jax.jit(generate)
