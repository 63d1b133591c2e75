"""Sampling past the trained length: the rolling cache is sliding-window attention with the
header kept, it equals re-encoding the window, it changes nothing while the window holds the
whole sample, and a long sample of a trained model decodes with time never going back."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs import model_tiny
from mtx.model.decoder import Decoder
from mtx.representation import mmt
from mtx.sample.decode import SamplingOptions, make_generate
from mtx.sample.grammar import MMTGrammar, grammar_for
from mtx.sample.primer import start_rows

FIELD_SIZES = (5, 11, 7, 13, 9, 6)


def _model(**overrides) -> Decoder:
  config = model_tiny.get_config()
  config.update(num_layers=2, embed_dim=32, num_heads=4, max_relative_distance=12,
                max_seq_len=64)
  config.update(**overrides)
  with nnx.use_eager_sharding(False):
    return Decoder(config, FIELD_SIZES, rngs=nnx.Rngs(params=0, dropout=1))


def _sliding_window_forward(model: Decoder, tokens, header, window: int):
  """The reference: every layer's attention over the whole sequence at once, query i seeing
  keys j <= i that are among its last window - header[b] rows or in the header
  (j < header[b]), a header key at distance min(i, window - 1) - j. Written from the layer's
  parameters with the O(L^2 Dh) relative table, nothing shared with the cached path."""
  batch, length, _ = tokens.shape
  i, j = np.arange(length)[:, None], np.arange(length)[None, :]
  pinned = j[None] < header[:, None, None]  # (B, 1, L)
  recent = (i - j)[None] < (window - header)[:, None, None]
  visible = (j <= i)[None] & (pinned | recent)  # (B, L, L)
  dist = np.where(pinned, np.minimum(i, window - 1)[None] - j[None], (i - j)[None])
  x = model.embeddings(tokens, jnp.broadcast_to(jnp.arange(length), (batch, length)))
  for block in model.blocks:
    att = block.attention
    h = block.attention_norm(x)
    q, k, v = (att._project(h, kernel) for kernel in (att.query, att.key, att.value))
    logits = jnp.einsum("bhid,bhjd->bhij", q, k)
    if att.relative:
      rel = att._rel_table()  # (H, R, Dh)
      table = rel[:, np.clip(dist, 0, rel.shape[1] - 1)]  # (H, B, L, L, Dh)
      logits = logits + jnp.einsum("bhid,hbijd->bhij", q, table)
    logits = jnp.where(visible[:, None], logits * att.head_dim ** -0.5, -1e30)
    out = jnp.einsum("bhij,bhjd->bhid", jax.nn.softmax(logits, axis=-1), v)
    x = x + att._output(out)
    x = x + block.mlp(block.mlp_norm(x))
  return model.heads(model.final_norm(x))


@pytest.mark.parametrize("variant", [
    dict(),  # distances up to window - 1 = 7, each its own embedding
    dict(position_embedding="sinusoidal", max_relative_distance=4),  # clipped distances
    dict(relative=False, position_embedding="sinusoidal")])
def test_the_rolling_cache_is_sliding_window_attention_with_the_header_kept(variant):
  model = _model(**variant)
  window, length, primer = 8, 30, 3
  rng = np.random.default_rng(0)
  tokens = jnp.asarray(np.stack([rng.integers(0, s, (2, length)) for s in FIELD_SIZES], -1),
                       jnp.int32)
  header = np.array([1, 3])  # rows kept in view, per sample
  expected = _sliding_window_forward(model, tokens, header, window)
  graphdef, state = nnx.split(model)

  @jax.jit
  def step(state, rows, cache):
    return nnx.merge(graphdef, state)(rows, cache=Decoder.pin_rows(cache, jnp.asarray(header)))

  cache = model.init_rolling_cache(2, window)
  logits, cache = step(state, tokens[:, :primer], cache)
  got = [logits]
  for t in range(primer, length):
    logits, cache = step(state, tokens[:, t:t + 1], cache)
    got.append(logits)
  got = [jnp.concatenate(parts, axis=1) for parts in zip(*got)]
  for a, b in zip(got, expected):
    np.testing.assert_allclose(a, b, atol=2e-5, rtol=2e-5)
  assert int(cache[0]["index"]) == length
  # The ring holds the header and the latest rows: sample 1's slots 0..2 keep positions 0..2.
  np.testing.assert_array_equal(np.sort(np.asarray(cache[0]["positions"][1])),
                                [0, 1, 2, 25, 26, 27, 28, 29])


class _Endless(MMTGrammar):
  """The mmt grammar without end-of-song: every sample runs to max_length."""

  def _type_mask(self, state):
    return super()._type_mask(state) & (jnp.arange(5) != mmt.END_OF_SONG)[None, :]


def _generate(run, grammar, *, batch, seed, max_length, window, use_cache=True, top_p=1.0):
  options = SamplingOptions.per_field(run.codec.n_fields, top_p=top_p)
  generate = make_generate(run.setup.model, grammar, options, max_length=max_length,
                           window=window, use_cache=use_cache)
  primer = start_rows(run.codec)
  primers = np.broadcast_to(primer, (batch,) + primer.shape)
  tokens, lengths = jax.device_get(generate(run.params, primers, jax.random.key(seed)))
  return [tokens[i, :lengths[i]] for i in range(batch)]


def test_the_windowed_path_equals_the_plain_one_while_the_window_holds_everything(
    trained_run):
  grammar = grammar_for(trained_run.codec)
  seq_len = int(trained_run.config.data.seq_len)
  plain = _generate(trained_run, grammar, batch=4, seed=11, max_length=48, window=None)
  for window in (48, seq_len):
    windowed = _generate(trained_run, grammar, batch=4, seed=11, max_length=48, window=window)
    for a, b in zip(plain, windowed):
      np.testing.assert_array_equal(a, b)


def test_the_rolling_cache_equals_re_encoding_the_window_token_for_token(trained_run):
  # One layer: the cached keys are the window's own, so the two are the same computation.
  assert int(trained_run.config.model.num_layers) == 1
  grammar = _Endless(trained_run.codec)
  window, max_length = 16, 16 + 40
  cached = _generate(trained_run, grammar, batch=3, seed=4, max_length=max_length,
                     window=window)
  encoded = _generate(trained_run, grammar, batch=3, seed=4, max_length=max_length,
                      window=window, use_cache=False)
  for a, b in zip(cached, encoded):
    assert len(a) == max_length
    np.testing.assert_array_equal(a, b)


def test_a_sample_four_windows_long_decodes_and_its_beats_never_go_back(trained_run):
  from mtx.sample.restore import sampling_limits

  limits = sampling_limits(trained_run)
  window = limits.window
  grammar = _Endless(trained_run.codec, max_time_jump=limits.max_time_jump,
                     max_first_time=limits.max_first_time)
  for sample in _generate(trained_run, grammar, batch=2, seed=6, max_length=4 * window,
                          window=window, top_p=0.95):
    assert len(sample) == 4 * window
    trained_run.codec.decode(sample, strict=True)
    beats = sample[sample[:, mmt.TYPE] == mmt.NOTE, mmt.BEAT]
    assert len(beats) > 3 * window
    assert (np.diff(beats) >= 0).all() and (np.diff(beats) <= limits.max_time_jump).all()
