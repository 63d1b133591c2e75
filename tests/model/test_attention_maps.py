"""Attention probabilities on request: `MultiHeadAttention.probabilities` against a numpy
reference from the layer's parameters, and `Decoder.attention_maps` against the forward pass
they must reproduce."""

from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs import model_tiny
from mtx.model.attention import MultiHeadAttention
from mtx.model.decoder import Decoder

FIELD_SIZES = (5, 11, 7, 13, 9, 6)
SEGMENTS = np.array(
  [
    [1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 0],
    [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0],
  ]
)


def _normal(seed, shape):
  return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def make_layer(relative, max_rel=5):
  with nnx.use_eager_sharding(False):
    return MultiHeadAttention(
      embed_dim=32, num_heads=2, relative=relative, max_relative_distance=max_rel, rngs=nnx.Rngs(0)
    )


@nnx.jit
def layer_probabilities(layer, x, segment_ids=None):
  return layer.probabilities(x, segment_ids=segment_ids)


def reference_probabilities(layer, x, segment_ids=None):
  """softmax over visible keys of (q k^T + q . rel[min(i - j, R - 1)]) / sqrt(Dh), float64,
  with explicit loops over the relative distances."""
  x = np.asarray(x, np.float64)
  batch, length, _ = x.shape
  q = np.einsum("bld,dhk->bhlk", x, np.asarray(layer.query[...], np.float64))
  k = np.einsum("bld,dhk->bhlk", x, np.asarray(layer.key[...], np.float64))
  logits = np.einsum("bhik,bhjk->bhij", q, k)
  if layer.relative:
    rel = np.asarray(layer.rel_embedding[...], np.float64)  # (R, H, Dh)
    for i in range(length):
      for j in range(i + 1):
        logits[:, :, i, j] += np.einsum("bhk,hk->bh", q[:, :, i], rel[min(i - j, rel.shape[0] - 1)])
  logits /= np.sqrt(q.shape[-1])
  visible = np.tril(np.ones((length, length), bool))[None]
  if segment_ids is not None:
    visible = visible & (segment_ids[:, :, None] == segment_ids[:, None, :])
  logits = np.where(visible[:, None], logits, -np.inf)
  probs = np.exp(logits - logits.max(-1, keepdims=True))
  return probs / probs.sum(-1, keepdims=True)


@pytest.mark.parametrize("segment_ids", [None, SEGMENTS], ids=["whole", "packed"])
@pytest.mark.parametrize("relative", [True, False], ids=["relative", "plain"])
def test_probabilities_equal_a_numpy_reference_from_the_parameters(relative, segment_ids):
  layer = make_layer(relative)
  x = _normal(1, (2, 16, 32))
  probs = layer_probabilities(layer, x, segment_ids)
  assert probs.shape == (2, 2, 16, 16) and probs.dtype == jnp.float32
  probs = np.asarray(probs)
  np.testing.assert_allclose(
    probs, reference_probabilities(layer, x, segment_ids), atol=1e-6, rtol=1e-5
  )
  np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-6)
  above = np.triu(np.ones((16, 16), bool), 1)
  assert np.all(probs[..., above] == 0.0)
  if segment_ids is not None:
    other = segment_ids[:, :, None] != segment_ids[:, None, :]  # (B, L, L)
    assert np.all(probs[np.broadcast_to(other[:, None], probs.shape)] == 0.0)


def test_the_relative_term_is_in_the_probabilities():
  """A relative layer with its table zeroed gives the plain layer's probabilities; with the
  table it differs (so the reference comparison above sees the term)."""
  layer = make_layer(True)
  x = _normal(2, (1, 12, 32))
  with_table = np.asarray(layer_probabilities(layer, x))
  layer.rel_embedding[...] = jnp.zeros_like(layer.rel_embedding[...])
  without = np.asarray(layer_probabilities(layer, x))
  plain = make_layer(False)
  for name in ("query", "key"):
    getattr(plain, name)[...] = getattr(layer, name)[...]
  np.testing.assert_allclose(without, np.asarray(layer_probabilities(plain, x)), atol=1e-6)
  assert np.abs(with_table - without).max() > 1e-3


# ----------------------------------------------------------------------------------------
# The decoder's maps.


def build(**overrides):
  config = model_tiny.get_config()
  config.update(num_layers=2, embed_dim=32, num_heads=2, max_relative_distance=6, max_seq_len=32)
  config.update(**overrides)
  with nnx.use_eager_sharding(False):
    return Decoder(config, FIELD_SIZES, rngs=nnx.Rngs(params=0, dropout=1))


@nnx.jit
def maps_and_logits(model, tokens, positions=None, segment_ids=None):
  maps = model.attention_maps(tokens, positions=positions, segment_ids=segment_ids)
  logits, _ = model(tokens, positions=positions, segment_ids=segment_ids)
  return maps, logits


@nnx.jit
def logits_from_maps(model, tokens, maps, positions=None):
  """The decoder's forward with every attention output rebuilt from the given maps:
  out_i = sum_j P[i, j] v_j Wo, v = LN(x) Wv (einsums over the raw kernels, not the
  layer's own projection code); embeddings, norms, MLPs and heads are the model's."""
  x = model.embeddings(tokens, positions)
  for block, probs in zip(model.blocks, maps):
    attention = block.attention
    v = jnp.einsum("bld,dhk->bhlk", block.attention_norm(x), attention.value[...])
    x = x + jnp.einsum("bhij,bhjk,hkd->bid", probs, v, attention.out[...])
    x = x + block.mlp(block.mlp_norm(x))
  return model.heads(model.final_norm(x))


VARIANTS = {  # name -> config overrides, length: every attention path of the forward
  "relative-full": ({"attention_block_size": 0}, 16),
  "relative-blocks": ({"attention_block_size": 8}, 20),  # forward: checkpointed_attention
  "plain-learned-full": (
    {"relative": False, "position_embedding": "learned", "attention_block_size": 0},
    16,
  ),
  "plain-blocks": ({"relative": False, "attention_block_size": 8}, 20),  # flash tiles
}


@functools.cache
def variant_model(variant: str) -> Decoder:
  """One model per variant per process (the tests only read it)."""
  return build(**VARIANTS[variant][0])


@pytest.mark.parametrize("packed", [False, True], ids=["whole", "packed"])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_decoder_maps_reproduce_its_forward_pass(variant, packed):
  model, length = variant_model(variant), VARIANTS[variant][1]
  rng = np.random.default_rng(3)
  tokens = jnp.asarray(
    np.stack([rng.integers(0, s, (2, length)) for s in FIELD_SIZES], -1), jnp.int32
  )
  positions = segment_ids = None
  if packed:
    segment_ids = np.ones((2, length), np.int32)
    segment_ids[0, 7:] = 2
    segment_ids[1, length - 3 :] = 0
    positions = np.broadcast_to(np.arange(length), (2, length)).copy()
    positions[0, 7:] -= 7
    segment_ids, positions = jnp.asarray(segment_ids), jnp.asarray(positions)
  maps, logits = maps_and_logits(model, tokens, positions, segment_ids)
  assert len(maps) == 2
  for probs in maps:
    assert probs.shape == (2, 2, length, length) and probs.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(probs).sum(-1), 1.0, atol=1e-6)
    assert np.all(np.triu(np.asarray(probs), 1) == 0.0)
  rebuilt = logits_from_maps(model, tokens, maps, positions)
  for got, want in zip(rebuilt, logits):
    np.testing.assert_allclose(got, want, atol=2e-5, rtol=1e-5)
  # The check can see a wrong map: the first layer's attention in the last layer's place.
  wrong = logits_from_maps(model, tokens, (maps[0], maps[0]), positions)
  assert max(float(jnp.abs(a - b).max()) for a, b in zip(wrong, logits)) > 1e-3


def test_maps_do_not_depend_on_the_attention_block_size():
  """Same parameters, blocks of 8 or none: the first layer's maps are the same numbers; the
  next layers' differ only by the rounding of the blocked forward that feeds them."""
  whole, blocked = variant_model("relative-full"), variant_model("relative-blocks")
  tokens = jnp.asarray(np.random.default_rng(4).integers(0, 5, (1, 20, 6)), jnp.int32)
  maps_whole, maps_blocked = maps_and_logits(whole, tokens)[0], maps_and_logits(blocked, tokens)[0]
  np.testing.assert_array_equal(np.asarray(maps_whole[0]), np.asarray(maps_blocked[0]))
  np.testing.assert_allclose(np.asarray(maps_whole[1]), np.asarray(maps_blocked[1]), atol=1e-6)
