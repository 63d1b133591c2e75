"""Sampling past the trained length: views re-encoded from the header and the latest rows,
rebased as training windows are; the cached path equals re-running the full forward over
the same views, nothing changes while the window holds the whole sample, and a long sample
of a trained model decodes with time never going back."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs import model_tiny
from mtx.model.decoder import Decoder
from mtx.representation import get_codec, mmt
from mtx.sample.decode import SamplingOptions, make_generate
from mtx.sample.grammar import grammar_for
from mtx.sample.grammar.mmt import MMTGrammar
from mtx.sample.primer import start_rows


def _model(codec, **overrides) -> Decoder:
  config = model_tiny.get_config()
  config.update(num_layers=2, embed_dim=32, num_heads=4, max_relative_distance=12, max_seq_len=16)
  config.update(**overrides)
  with nnx.use_eager_sharding(False):
    return Decoder(config, codec.fields.sizes, rngs=nnx.Rngs(params=0, dropout=1))


def test_views_are_rebased_as_training_windows_and_the_logits_moved_back():
  codec = get_codec("mmt")
  grammar = MMTGrammar(codec)
  rows = np.zeros((2, 6, 6), np.int32)
  rows[:, 0, mmt.TYPE] = mmt.START_OF_SONG
  rows[:, 1] = [mmt.INSTRUMENT, 0, 0, 0, 0, 5]
  rows[:, 2, mmt.TYPE] = mmt.START_OF_NOTES
  rows[:, 3:, mmt.TYPE] = mmt.NOTE
  rows[:, 3:, 1:5] = 1
  rows[0, 3:, mmt.BEAT] = [41, 41, 43]
  rows[1, 3:, mmt.BEAT] = [7, 9, 9]
  body = np.arange(6)[None, :] >= 3
  offsets = grammar.view_offsets(jnp.asarray(rows), jnp.asarray(body))
  np.testing.assert_array_equal(offsets, [40, 6])
  model_rows = np.asarray(grammar.to_model(jnp.asarray(rows), offsets))
  np.testing.assert_array_equal(model_rows[:, 3:, mmt.BEAT], [[1, 1, 3], [1, 3, 3]])
  np.testing.assert_array_equal(model_rows[:, :3], rows[:, :3])  # the header as it is
  sizes = codec.fields.sizes
  logits = tuple(
    jnp.asarray(np.random.default_rng(f).normal(size=(2, n)), jnp.float32)
    for f, n in enumerate(sizes)
  )
  moved = grammar.to_sample(logits, offsets)
  beat, model_beat = np.asarray(moved[mmt.BEAT]), np.asarray(logits[mmt.BEAT])
  for b, offset in enumerate([40, 6]):
    assert beat[b, 0] == model_beat[b, 0]  # "none" stays
    np.testing.assert_array_equal(
      beat[b, offset + 1 :], model_beat[b, 1 : sizes[mmt.BEAT] - offset]
    )
    assert (beat[b, 1 : offset + 1] < -1e30).all()  # before the view: never
  for f in range(6):
    if f != mmt.BEAT:
      np.testing.assert_array_equal(moved[f], logits[f])


@pytest.mark.parametrize(
  "variant",
  [
    dict(),  # relative, no absolute positions
    dict(position_embedding="sinusoidal", max_relative_distance=4),  # clipped distances
    dict(relative=False, position_embedding="learned"),
  ],
)  # positions end at the window
def test_the_cached_views_equal_the_full_forward_over_the_same_views(variant):
  codec = get_codec("mmt")
  model = _model(codec, **variant)
  graphdef, state = nnx.split(model)
  grammar = _Endless(codec, max_time_jump=2)
  options = SamplingOptions.per_field(codec.n_fields)
  primer = np.broadcast_to(start_rows(codec), (3, 1, codec.n_fields))
  results = []
  for use_cache in (True, False):
    generate = make_generate(
      lambda params: nnx.merge(graphdef, params),
      grammar,
      options,
      max_length=70,
      window=16,
      use_cache=use_cache,
    )
    tokens, lengths = jax.device_get(generate(state, primer, jax.random.key(3)))
    assert (lengths == 70).all()
    results.append(tokens)
  np.testing.assert_array_equal(*results)


class _Endless(MMTGrammar):
  """The mmt grammar without end-of-song: every sample runs to max_length."""

  def _type_mask(self, state):
    return super()._type_mask(state) & (jnp.arange(5) != mmt.END_OF_SONG)[None, :]


def _generate(run, grammar, *, batch, seed, max_length, window, use_cache=True, top_p=1.0):
  options = SamplingOptions.per_field(run.codec.n_fields, top_p=top_p)
  generate = make_generate(
    run.setup.model, grammar, options, max_length=max_length, window=window, use_cache=use_cache
  )
  primer = start_rows(run.codec)
  primers = np.broadcast_to(primer, (batch,) + primer.shape)
  tokens, lengths = jax.device_get(generate(run.params, primers, jax.random.key(seed)))
  return [tokens[i, : lengths[i]] for i in range(batch)]


def test_the_windowed_path_equals_the_plain_one_while_the_window_holds_everything(trained_run):
  grammar = grammar_for(trained_run.codec)
  seq_len = int(trained_run.config.data.seq_len)
  plain = _generate(trained_run, grammar, batch=4, seed=11, max_length=48, window=None)
  for window in (48, seq_len):
    windowed = _generate(trained_run, grammar, batch=4, seed=11, max_length=48, window=window)
    for a, b in zip(plain, windowed):
      np.testing.assert_array_equal(a, b)


def test_past_the_window_the_cache_equals_re_encoding_token_for_token(trained_run):
  grammar = _Endless(trained_run.codec)
  window, max_length = 16, 16 + 40
  cached = _generate(trained_run, grammar, batch=3, seed=4, max_length=max_length, window=window)
  encoded = _generate(
    trained_run, grammar, batch=3, seed=4, max_length=max_length, window=window, use_cache=False
  )
  for a, b in zip(cached, encoded):
    assert len(a) == max_length
    np.testing.assert_array_equal(a, b)


def test_a_sample_four_windows_long_decodes_and_its_beats_never_go_back(trained_run):
  from mtx.sample.restore import sampling_limits

  limits = sampling_limits(trained_run)
  window = limits.window
  grammar = _Endless(
    trained_run.codec, max_time_jump=limits.max_time_jump, max_first_time=limits.max_first_time
  )
  for sample in _generate(
    trained_run, grammar, batch=2, seed=6, max_length=4 * window, window=window, top_p=0.95
  ):
    assert len(sample) == 4 * window
    trained_run.codec.decode(sample, strict=True)
    beats = sample[sample[:, mmt.TYPE] == mmt.NOTE, mmt.BEAT]
    assert len(beats) > 3 * window
    assert (np.diff(beats) >= 0).all() and (np.diff(beats) <= limits.max_time_jump).all()
