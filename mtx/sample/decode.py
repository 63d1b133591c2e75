"""Batched autoregressive sampling with the KV cache (or without it, as a reference).

    options = SamplingOptions.per_field(codec.n_fields, temperature=1.0, top_k=0, top_p=0.95)
    generate = make_generate(setup.model, grammar, options, max_length=4096, window=256)
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

Past the trained length (`window`: the training seq_len, so that a whole piece of
hundreds or thousands of rows comes out): the model reads views shaped like its
training windows. The cache holds `window` rows; when it is full, a new view is
re-encoded (one prefill) from the sample's header (`Grammar.header_rows`: mmt's
start-of-song, instrument rows and start-of-notes, at most window // 2 rows) and its
latest rows, window - window // STRIDE_FRACTION rows in all, and decoding goes on
from the cache until it is full again. So every prediction sees between 3/4 of a
window and a whole one of context, at relative distances below the window, header
first: what the model saw in training, where every window starts with the header.
The re-encoded views are also rebased as training windows are (`Grammar.to_model`:
mmt's beats moved back so the view's first note is on beat 0; the sampled logits
moved forward again, `Grammar.to_sample`): a model trained on windows of 60 beats
never saw beat 300, and a sample that reads its own absolute beats past the window
drifts (docs/benchmarks.md, "Sampling", has the measurement). The
grammar's state (beats so far, declared instruments) lives outside the views, on the
sample's own codes, and carries on through the whole sample. Cost: one prefill of
3/4 of a window every window/4 rows, about three prefilled rows per sampled row
beside the step; the cache's memory is O(window) whatever max_length. Positions in
a view are 0..window-1, so a model with learned positions samples past them too.
`use_cache=False` is the reference: each step runs the full forward over the same
view (O(window^2 * layers) per step), which the cached path equals token for token.
While the sample fits the window nothing is re-encoded: the windowed path is the
plain one. Dropping the header instead is what makes sliding-window attention fall
apart in StreamingLLM (Xiao et al. 2024); keeping every row in view, as Music
Transformer sampled twice its training length, spreads each softmax over more keys
and distances than any training window had.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from mtx.errors import ConfigError
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
        raise ConfigError(f"{name} has {len(values)} values for {n_fields} fields")
      return values

    return cls(
      tuple(float(t) for t in spread(temperature, "temperature")),
      tuple(int(k) for k in spread(top_k, "top_k")),
      tuple(float(p) for p in spread(top_p, "top_p")),
    )


def filter_logits(
  logits: jax.Array, allowed: jax.Array, *, temperature: float, top_k: int, top_p: float
) -> jax.Array:
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
    return jnp.argmax(jnp.where(allowed, logits, jnp.finfo(jnp.float32).min), axis=-1).astype(
      jnp.int32
    )
  filtered = filter_logits(logits, allowed, temperature=temperature, top_k=top_k, top_p=top_p)
  return jax.random.categorical(key, filtered, axis=-1).astype(jnp.int32)


def sample_row(key, logits, grammar: Grammar, state, options: SamplingOptions) -> jax.Array:
  """One row (B, F) from one (B, size_f) logit array per field."""
  batch = logits[0].shape[0]
  row = jnp.zeros((batch, len(logits)), jnp.int32)
  for f, field_logits in enumerate(logits):
    allowed = grammar.field_mask(state, f, row)
    token = sample_field(
      jax.random.fold_in(key, f),
      field_logits,
      allowed,
      temperature=options.temperature[f],
      top_k=options.top_k[f],
      top_p=options.top_p[f],
    )
    row = row.at[:, f].set(token)
  return row


def top_k_of_fraction(size: int, fraction: float) -> int:
  """k that keeps `fraction` of a field's `size` values, at least 1: ceil(fraction * size)
  (x-transformers' `top_k(logits, thres)` with thres = 1 - fraction, as MMT samples; the
  product rounded to 6 places first, so that 0.1 * 30 keeps 3, not 4)."""
  return max(1, math.ceil(round(fraction * size, 6)))


# What a run samples with when its config has no `sample` section (`sample_defaults`):
# MMT's generate.py and evaluate.py, temperature 1 and top-k at filter threshold 0.9 on
# every field, the setting its published samples and figures were drawn with, and the one
# mtx-eval measures with (`mtx.evaluate.samples.mmt_evaluation_sampling`), so that
# mtx-sample and mtx-eval draw alike. It keeps a field's few likeliest values: a tenth of
# the pitches, beats or events; its 5 row types greedily, so a song ends when end-of-song
# is the likeliest row, not at a stray draw. No nucleus on top: top-k already cuts the
# tail. What keeps a weak model from running away is the grammar's limits from the data
# (`mtx.sample.restore.sampling_limits`), which no filter setting replaces.
DEFAULT_SAMPLING = {"temperature": 1.0, "top_k": 0, "top_k_fraction": 0.1, "top_p": 1.0}


def sample_defaults(config: Any, field_names=None) -> dict:
  """The run config's `sample` section (temperature, top_k, top_k_fraction, top_p) over
  `DEFAULT_SAMPLING`, so that runs saved before the section existed sample the same way.
  `sample.field_temperature` ({field name: temperature}) sets some fields apart: with
  `field_names` (the codec's), temperature becomes one value per field; a name the codec
  lacks is a ConfigError."""
  section = getattr(config, "sample", None) or {}
  if hasattr(section, "to_dict"):
    section = section.to_dict()
  chosen = {name: section.get(name, value) for name, value in DEFAULT_SAMPLING.items()}
  per_field = dict(section.get("field_temperature") or {})
  if per_field and field_names is not None:
    names = list(field_names)
    unknown = sorted(set(per_field) - set(names))
    if unknown:
      raise ConfigError(
        f"sample.field_temperature names {', '.join(unknown)}, not fields of "
        f"this representation ({', '.join(names)})"
      )
    base = chosen["temperature"]
    base = list(base) if isinstance(base, (list, tuple)) else [base] * len(names)
    chosen["temperature"] = [float(per_field.get(n, t)) for n, t in zip(names, base)]
  return chosen


def _check(name: str, value, ok: Callable, meaning: str) -> None:
  for v in value if isinstance(value, (list, tuple)) else [value]:
    if not ok(v):
      raise ConfigError(f"sampling {name} must be {meaning}; got {v}")


def options_for(sizes, *, temperature, top_k, top_k_fraction, top_p) -> SamplingOptions:
  """SamplingOptions for fields of `sizes`: top_k as given (one value or one per field)
  unless every value is 0; then ceil(top_k_fraction * size) per field (0: no top-k)."""
  n_fields = len(sizes)
  values = top_k if isinstance(top_k, (list, tuple)) else [top_k or 0]
  _check("temperature", temperature, lambda v: v >= 0, ">= 0 (0: greedy)")
  _check("top_k", top_k, lambda v: v >= 0, ">= 0 (0: off)")
  _check("top_k_fraction", top_k_fraction, lambda v: 0 <= v <= 1, "in [0, 1] (0: off)")
  _check("top_p", top_p, lambda v: 0 < v <= 1, "in (0, 1] (1: off)")
  if not any(values):
    top_k = [top_k_of_fraction(size, top_k_fraction) if top_k_fraction else 0 for size in sizes]
  return SamplingOptions.per_field(n_fields, temperature=temperature, top_k=top_k, top_p=top_p)


PROGRESS_EVERY = 16  # steps between progress callbacks


# A re-encoded view leaves room for window // STRIDE_FRACTION new rows before the next.
STRIDE_FRACTION = 4


def make_generate(
  model_of: Callable,
  grammar: Grammar,
  options: SamplingOptions,
  *,
  max_length: int,
  window: int | None = None,
  use_cache: bool = True,
  progress: Callable[[int], None] | None = None,
):
  """A jitted (params, primer (B, P, F), key) -> (tokens (B, max_length, F), lengths (B,)).

  window: None, every row in view (the cache holds max_length rows); or the rows in view
  past the trained length (see the module docstring); max_length may then be anything.
  The primer must fit the window. progress: called on the host with the row count every
  PROGRESS_EVERY steps (a progress bar); it does not change what is sampled."""
  if window is not None and window < 4:
    raise ConfigError(f"the sampling window must hold at least 4 rows; got {window}")
  span = min(window or max_length, max_length)  # rows a view holds at most
  keep = window - window // STRIDE_FRACTION if window else span  # rows a re-encoded view holds

  def view_of(tokens, t, state):
    """The re-encoded view after row t - 1 (B, keep, F), in the model's codes, and its
    offsets: the header, then the latest keep - header rows."""
    header = jnp.minimum(grammar.header_rows(state), window // 2)
    j = jnp.arange(keep)[None, :]
    body = j >= header[:, None]
    index = jnp.where(body, t - keep + j, j)
    view = jnp.take_along_axis(tokens, index[..., None], axis=1)
    offsets = grammar.view_offsets(view, body)
    return grammar.to_model(view, offsets), offsets

  def run_view(model, view, filled):
    """Logits after the view's row filled - 1: the full forward (the reference path)."""
    logits, _ = model(view)
    return tuple(
      jax.lax.dynamic_index_in_dim(l, filled - 1, axis=1, keepdims=False) for l in logits
    )

  def generate(params, primer, key):
    model = model_of(params)
    batch, prime_len, n_fields = primer.shape
    if prime_len > span:
      raise ConfigError(
        f"the primer has {prime_len} rows, more than the sampling window "
        f"({span}): shorten it or widen the window"
      )
    tokens = jnp.zeros((batch, max_length, n_fields), jnp.int32)
    tokens = tokens.at[:, :prime_len].set(primer)
    state, _ = jax.lax.scan(
      lambda s, row: (grammar.update(s, row), None), grammar.init(batch), jnp.swapaxes(primer, 0, 1)
    )
    offsets = jnp.zeros((batch,), jnp.int32)  # the first view is the sample's own start
    # The model's context: its cache, or (the reference) the view's rows themselves.
    if use_cache:
      context = model.init_cache(batch, span)
      logits, context = model(primer, cache=context)
      last = tuple(l[:, -1] for l in logits)
    else:
      context = jnp.zeros((batch, span, n_fields), jnp.int32).at[:, :prime_len].set(primer)
      last = run_view(model, context, prime_len)
    filled = jnp.asarray(prime_len, jnp.int32)  # rows in the current view

    def cond(carry):
      t, _, state, *_ = carry
      return (t < max_length) & ~jnp.all(grammar.ended(state))

    def body(carry):
      t, tokens, state, last, context, filled, offsets, lengths = carry
      row = sample_row(
        jax.random.fold_in(key, t), grammar.to_sample(last, offsets), grammar, state, options
      )
      tokens = jax.lax.dynamic_update_slice(tokens, row[:, None, :], (0, t, 0))
      was_ended = grammar.ended(state)
      state = grammar.update(state, row)
      lengths = jnp.where(grammar.at_boundary(state) & ~was_ended, t + 1, lengths)
      if progress is not None:
        jax.lax.cond(
          (t + 1) % PROGRESS_EVERY == 0, lambda: jax.debug.callback(progress, t + 1), lambda: None
        )

      def extend(_):
        """The row joins the current view."""
        model_row = grammar.to_model(row[:, None, :], offsets)
        if use_cache:
          logits, cache = model(model_row, cache=context)
          return tuple(l[:, 0] for l in logits), cache, filled + 1, offsets
        view = jax.lax.dynamic_update_slice(context, model_row, (0, filled, 0))
        return run_view(model, view, filled + 1), view, filled + 1, offsets

      def reencode(_):
        """The view is full: a new one from the header and the latest rows, row t included."""
        view, new_offsets = view_of(tokens, t + 1, state)
        if use_cache:
          logits, cache = model(view, cache=model.init_cache(batch, span))
          return tuple(l[:, -1] for l in logits), cache, jnp.asarray(keep, jnp.int32), new_offsets
        padded = jnp.zeros_like(context).at[:, :keep].set(view)
        return run_view(model, padded, keep), padded, jnp.asarray(keep, jnp.int32), new_offsets

      if window is None or max_length <= window:
        last, context, filled, offsets = extend(None)
      else:
        last, context, filled, offsets = jax.lax.cond(filled >= span, reencode, extend, None)
      return t + 1, tokens, state, last, context, filled, offsets, lengths

    start = jnp.asarray(prime_len, jnp.int32)
    carry = (start, tokens, state, last, context, filled, offsets, jnp.full((batch,), start))
    _, tokens, *_, lengths = jax.lax.while_loop(cond, body, carry)
    return tokens, lengths

  return jax.jit(generate)
