"""Mean relative attention: synthetic attention with known answers, brute-force loops, and a
tiny decoder's real attention maps on a chorale."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs import model_tiny
from mtx.errors import ConfigError
from mtx.evaluate.attention_analysis import AttentionAnalysis, causal_pairs
from mtx.model.decoder import Decoder
from mtx.representation import get_codec
from mtx.representation.fields import Field, FieldTable

# A small multi-field table: beat is ordered, instrument categorical; 0 is "none" in both.
FIELDS = FieldTable([Field("type", 5, ""), Field("beat", 30, ""), Field("instrument", 4, "")])
TYPE, BEAT, INSTRUMENT = range(3)


def analysis(ordered=("beat",), categorical=("instrument",), **kw):
  return AttentionAnalysis(
    FIELDS, representation="test", ordered=ordered, categorical=categorical, **kw
  )


def random_tokens(rng, batch, length, zero_fraction=0.2):
  """(B, L, 3) codes: beats non-decreasing from 1 (steps 0..2), instruments 1..3, and a
  fraction of rows set to 0 ("none") in both fields."""
  beat = 1 + np.cumsum(rng.integers(0, 3, (batch, length)), axis=1)
  instrument = rng.integers(1, 4, (batch, length))
  none = rng.random((batch, length)) < zero_fraction
  tokens = np.stack([np.full((batch, length), 3), beat, instrument], -1)
  tokens[none, 1:] = 0
  return tokens


def random_causal_attention(rng, batch, heads, length):
  """(B, H, L, L) rows that sum to 1 over keys 0..s."""
  weights = np.tril(rng.random((batch, heads, length, length)) ** 4)
  return (weights / weights.sum(-1, keepdims=True)).astype(np.float32)


def brute_force_ordered(values, valid, probs, k_min, k_max):
  """Loops over every pair: (weight per head and k, total weight per head, count per k,
  total count), pairs s > t, both valid, both values nonzero, k = v[s] - v[t]."""
  heads = probs.shape[1]
  weight, total = np.zeros((heads, k_max - k_min + 1)), np.zeros(heads)
  count, count_total = np.zeros(k_max - k_min + 1, int), 0
  for b in range(values.shape[0]):
    for s in range(values.shape[1]):
      for t in range(s):
        if not (valid[b, s] and valid[b, t] and values[b, s] and values[b, t]):
          continue
        k = values[b, s] - values[b, t]
        total += probs[b, :, s, t]
        count_total += 1
        if k_min <= k <= k_max:
          weight[:, k - k_min] += probs[b, :, s, t]
          count[k - k_min] += 1
  return weight, total, count, count_total


# ----------------------------------------------------------------------------------------
# Definitions against known answers.


def test_causal_pairs_are_the_strict_lower_triangle():
  queries, keys = causal_pairs(5)
  assert sorted(zip(queries.tolist(), keys.tolist())) == [
    (s, t) for s in range(5) for t in range(s)
  ]


def test_a_head_looking_k_beats_back_peaks_at_k_with_the_weight_that_went_there():
  """Head 0: each query puts 0.75 on the latest earlier row exactly K beats before it,
  when there is one, and spreads the rest (or everything) uniformly over rows 0..s,
  itself and rows without a beat included. Head 1: uniform. gamma_K is the weight on
  K-back pairs over the weight on all counted pairs, summed by loops."""
  rng = np.random.default_rng(0)
  back, batch, length = 4, 3, 40
  tokens = random_tokens(rng, batch, length)
  valid = np.ones((batch, length), bool)
  valid[2, 30:] = False  # padding
  beat = tokens[..., BEAT]
  probs = np.zeros((batch, 2, length, length))
  for b in range(batch):
    for s in range(length):
      probs[b, :, s, : s + 1] = 1.0 / (s + 1)
      earlier = [
        t
        for t in range(s)
        if valid[b, t] and beat[b, t] and beat[b, s] and beat[b, s] - beat[b, t] == back
      ]
      if earlier and valid[b, s]:
        probs[b, 0, s] *= 0.25
        probs[b, 0, s, earlier[-1]] += 0.75
  probs = probs.astype(np.float32)
  result = analysis(ordered={"beat": (-5, 20)})
  result.add([probs[:2]], tokens[:2], valid[:2])  # two batches accumulate
  result.add([probs[2:]], tokens[2:], valid[2:])
  beat_result = result.result()["beat"]
  weight, total, _, _ = brute_force_ordered(beat, valid, probs, -5, 20)
  ks = beat_result["ks"]
  np.testing.assert_array_equal(ks, np.arange(-5, 21))
  gamma = beat_result["gamma"][0]  # (H, K): the one layer
  np.testing.assert_allclose(gamma, weight / total[:, None], rtol=1e-6)
  assert ks[np.argmax(gamma[0])] == back
  gain = beat_result["gain"][0][:, ks == back][:, 0]  # (H,)
  assert gain[0] > 0.3 and abs(gain[1]) < 0.05  # the looking head; the uniform one
  np.testing.assert_allclose(beat_result["weight_total"][0], total, rtol=1e-6)
  assert beat_result["sequences"] == 3


def test_the_baseline_is_a_double_loop_count_of_the_pairs():
  rng = np.random.default_rng(1)
  for _ in range(5):
    batch, length = 2, int(rng.integers(2, 15))
    tokens = random_tokens(rng, batch, length, zero_fraction=0.3)
    valid = rng.random((batch, length)) < 0.8
    probs = random_causal_attention(rng, batch, 2, length)
    result = analysis(ordered={"beat": (-2, 6)})
    result.add([probs, probs], tokens, valid)
    beat_result = result.result()["beat"]
    _, _, count, count_total = brute_force_ordered(tokens[..., BEAT], valid, probs, -2, 6)
    np.testing.assert_array_equal(beat_result["pair_counts"], count)
    assert beat_result["num_pairs"] == count_total
    if count_total:
      np.testing.assert_allclose(beat_result["baseline"], count / count_total, rtol=1e-12)
    # Categorical: counts by (query instrument, key instrument), codes 1..3.
    pairs = np.zeros((3, 3), int)
    inst = tokens[..., INSTRUMENT]
    for b in range(batch):
      for s in range(length):
        for t in range(s):
          if valid[b, s] and valid[b, t] and inst[b, s] and inst[b, t]:
            pairs[inst[b, s] - 1, inst[b, t] - 1] += 1
    categorical = result.result()["instrument"]
    np.testing.assert_array_equal(categorical["codes"], [1, 2, 3])
    np.testing.assert_array_equal(categorical["pair_counts"], pairs)


def test_uniform_causal_attention_weights_each_query_by_its_pairs_over_s_plus_one():
  """a[s, t] = 1 / (s + 1) for t <= s: every query spreads its weight over rows 0..s, so a
  counted pair (s, t) carries 1 / (s + 1), whatever t. Hence
      gamma_k = sum_s n_s(k) / (s + 1) / sum_s N_s / (s + 1),
  n_s(k) the counted earlier rows of query s at difference k, N_s all of them: the pair
  distribution with each query's pairs weighted by 1 / (s + 1), not the baseline (every
  pair once). With beats 1, 2, ..., L every row counts, n_s(k) = [1 <= k <= s], and early
  queries (short differences only) weigh more: gain > 0 at small k, < 0 at large k."""
  length = 12
  tokens = np.stack([np.full(length, 3), np.arange(1, length + 1), np.ones(length, int)], -1)[None]
  probs = np.tril(np.ones((length, length))) / np.arange(1, length + 1)[:, None]
  result = analysis(ordered={"beat": (0, length)})
  result.add([probs[None, None].astype(np.float32)], tokens)
  beat_result = result.result()["beat"]
  s = np.arange(length)
  want = np.array(
    [np.sum(1.0 / (s[s >= k] + 1)) if k >= 1 else 0.0 for k in range(length + 1)]
  ) / np.sum(s / (s + 1))
  np.testing.assert_allclose(beat_result["gamma"][0, 0], want, rtol=1e-6)
  baseline = np.array([length - k if k >= 1 else 0 for k in range(length + 1)])
  np.testing.assert_allclose(beat_result["baseline"], baseline / baseline.sum(), rtol=1e-12)
  gain = beat_result["gain"][0, 0]
  assert gain[1] > 0 and gain[length - 1] < 0
  # With rows of no beat and padding: the same formula over the counted pairs.
  rng = np.random.default_rng(2)
  tokens = random_tokens(rng, 2, 25, zero_fraction=0.3)
  valid = np.ones((2, 25), bool)
  valid[1, 20:] = False
  probs = np.broadcast_to(
    np.tril(np.ones((25, 25))) / np.arange(1, 26)[:, None], (2, 1, 25, 25)
  ).astype(np.float32)
  result = analysis(ordered={"beat": (0, 60)})
  result.add([probs], tokens, valid)
  want = np.zeros(61)
  for b in range(2):
    beat = tokens[b, :, BEAT]
    for q in range(25):
      keys = [t for t in range(q) if valid[b, t] and beat[t]]
      if valid[b, q] and beat[q]:
        for t in keys:
          want[beat[q] - beat[t]] += 1.0 / (q + 1)
  np.testing.assert_allclose(result.result()["beat"]["gamma"][0, 0], want / want.sum(), rtol=1e-6)


def test_equal_weight_on_every_earlier_row_gives_a_gain_of_exactly_zero():
  """a[s, t] = 1/16 for t < s, the rest on the diagonal (L = 16: rows sum to 1, and 1/16
  sums exactly): every counted pair carries the same weight, so gamma is the pair count
  distribution, the baseline, to the last bit; categorical too."""
  rng = np.random.default_rng(3)
  length = 16
  tokens = random_tokens(rng, 3, length, zero_fraction=0.25)
  valid = np.ones((3, length), bool)
  valid[2, 11:] = False
  probs = np.tril(np.full((length, length), 1.0 / length), -1)
  probs[np.diag_indices(length)] = 1.0 - np.arange(length) / length
  probs = np.broadcast_to(probs, (3, 2, length, length)).astype(np.float32)
  result = analysis(ordered={"beat": (-3, 40)})
  result.add([probs, probs], tokens, valid)
  out = result.result()
  beat_result, categorical = out["beat"], out["instrument"]
  assert np.all(beat_result["gain"] == 0.0)
  assert np.all(beat_result["gain_mean"] == 0.0)
  seen = beat_result["baseline"] > 0
  assert np.all(beat_result["ratio"][..., seen] == 1.0)
  assert np.all(np.isnan(beat_result["ratio"][..., ~seen]))
  rows = categorical["pair_counts"].sum(-1) > 0
  assert rows.all() and np.all(categorical["gain"] == 0.0)
  np.testing.assert_allclose(categorical["gamma"].sum(-1), 1.0, rtol=1e-12)


def test_a_packed_row_equals_its_segments_added_alone():
  """With segment_ids, pairs across segments are not pairs: a row holding two sequences
  gives what the two give as separate, padded rows."""
  rng = np.random.default_rng(4)
  first, second = random_tokens(rng, 1, 6)[0], random_tokens(rng, 1, 7)[0]
  attn_first = random_causal_attention(rng, 1, 2, 6)[0]
  attn_second = random_causal_attention(rng, 1, 2, 7)[0]
  packed_attn = np.zeros((1, 2, 13, 13), np.float32)
  packed_attn[0, :, :6, :6], packed_attn[0, :, 6:, 6:] = attn_first, attn_second
  packed = analysis()
  packed.add(
    [packed_attn], np.concatenate([first, second])[None], segment_ids=np.array([[1] * 6 + [2] * 7])
  )
  alone = analysis()
  tokens = np.zeros((2, 7, 3), int)
  tokens[0, :6], tokens[1] = first, second
  attn = np.zeros((2, 2, 7, 7), np.float32)
  attn[0, :, :6, :6], attn[1] = attn_first, attn_second
  alone.add([attn], tokens, np.array([[True] * 6 + [False], [True] * 7]))
  got, want = packed.result(), alone.result()
  for name in ("beat", "instrument"):
    for key in ("gamma", "baseline", "pair_counts"):
      np.testing.assert_allclose(got[name][key], want[name][key], rtol=1e-6)


# ----------------------------------------------------------------------------------------
# Bad input.


def test_a_field_the_representation_lacks_is_refused_naming_its_fields():
  fields = get_codec("performance").fields
  with pytest.raises(ConfigError) as error:
    AttentionAnalysis(fields, representation="performance", ordered=("beat",))
  message = str(error.value)
  assert "\n" not in message and "'performance'" in message and "beat" in message
  assert "event" in message
  with pytest.raises(ConfigError, match="instrument"):
    AttentionAnalysis(fields, representation="performance", categorical=("instrument",))


def test_bad_ranges_and_shapes_are_refused():
  with pytest.raises(ConfigError, match="empty"):
    analysis(ordered={"beat": (3, 1)})
  with pytest.raises(ConfigError, match="both"):
    analysis(ordered=("beat",), categorical=("beat",))
  result = analysis()
  tokens = np.ones((1, 5, 3), int)
  with pytest.raises(ValueError, match="expected"):
    result.add([np.zeros((1, 2, 4, 4))], tokens)
  with pytest.raises(ValueError, match="no attention"):
    result.result()


# ----------------------------------------------------------------------------------------
# Real attention maps.


def test_a_tiny_decoder_on_a_chorale_gives_fractions_of_its_attention(music21_chorales):
  codec = get_codec("mmt")
  tokens = codec.encode(music21_chorales[0])[:48][None]  # header rows (zeros) and notes
  config = model_tiny.get_config()
  config.update(num_layers=2, embed_dim=32, num_heads=2, max_relative_distance=16)
  with nnx.use_eager_sharding(False):  # built under jit: one compile, not one per shape
    model = nnx.jit(lambda: Decoder(config, codec.fields.sizes, rngs=nnx.Rngs(0)))()
  maps = nnx.jit(lambda m, t: m.attention_maps(t))(model, jnp.asarray(tokens, jnp.int32))
  names, sizes = codec.fields.names, codec.fields.sizes
  ordered = ("beat", "position", "pitch")
  default = AttentionAnalysis(
    codec.fields, representation="mmt", ordered=ordered, categorical=("instrument",)
  )
  full = AttentionAnalysis(
    codec.fields,
    representation="mmt",
    ordered={name: (-sizes[names.index(name)], sizes[names.index(name)]) for name in ordered},
  )
  for accumulator in (default, full):
    accumulator.add(maps, tokens)
  out, out_full = default.result(), full.result()
  for name, (k_min, k_max) in {"beat": (0, 64), "position": (-12, 12), "pitch": (-48, 48)}.items():
    field = out[name]
    count = k_max - k_min + 1
    assert field["gamma"].shape == (2, 2, count) and field["baseline"].shape == (count,)
    assert field["gamma_mean_heads"].shape == (2, count)
    assert field["gamma_mean"].shape == (count,)
    assert field["num_pairs"] > 0 and field["sequences"] == 1
    assert np.all(field["gamma"].sum(-1) <= 1 + 1e-9)
    np.testing.assert_allclose(out_full[name]["gamma"].sum(-1), 1.0, rtol=1e-9)
    np.testing.assert_allclose(out_full[name]["baseline"].sum(), 1.0, rtol=1e-12)
  instrument = out["instrument"]
  codes = instrument["codes"].size
  assert instrument["gamma"].shape == (2, 2, codes, codes)
  played = instrument["pair_counts"].sum(-1) > 0
  np.testing.assert_allclose(instrument["gamma"][..., played, :].sum(-1), 1.0, rtol=1e-9)
