"""The tiny decoder learns: a few hundred AdamW steps on real Bach chorale tokens drive
the loss well below the unigram entropy of the data."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from configs import model_tiny
from mtx.model.decoder import Decoder
from mtx.model.loss import multi_field_loss
from mtx.representation import get_codec

SEQ_LEN = 128  # target rows per example
NUM_SONGS = 8
STEPS = 150


def chorale_batch(codec, paths):
  """Windows of the first SEQ_LEN + 1 rows of each song, zero-padded; inputs are rows
  0..L-1, targets rows 1..L, mask set where the target row is real."""
  inputs, targets, mask = [], [], []
  for path in paths:
    tokens = codec.encode(path)[: SEQ_LEN + 1]
    window = np.zeros((SEQ_LEN + 1, codec.n_fields), np.int32)
    window[: len(tokens)] = tokens
    inputs.append(window[:-1])
    targets.append(window[1:])
    mask.append(np.arange(SEQ_LEN) < len(tokens) - 1)
  return {
    "inputs": jnp.asarray(np.stack(inputs)),
    "targets": jnp.asarray(np.stack(targets)),
    "mask": jnp.asarray(np.stack(mask)),
  }


def unigram_entropy(batch, codec) -> float:
  """Sum over fields of the entropy (nats) of the field's empirical value distribution over
  the positions where the loss counts it: the loss of the best model that ignores context."""
  targets = np.asarray(batch["targets"])
  counted = np.asarray(batch["mask"])[..., None] & codec.field_mask(
    targets.reshape(-1, codec.n_fields)
  ).reshape(targets.shape)
  total = 0.0
  for f in range(codec.n_fields):
    values = targets[..., f][counted[..., f]]
    p = np.bincount(values) / values.size
    p = p[p > 0]
    total += float(-(p * np.log(p)).sum())
  return total


def test_tiny_decoder_learns_bach_chorales(music21_chorales):
  codec = get_codec("mmt", overflow="truncate")
  batch = chorale_batch(codec, music21_chorales[:NUM_SONGS])
  assert int(batch["mask"].sum()) > NUM_SONGS * SEQ_LEN // 2
  entropy = unigram_entropy(batch, codec)
  table = codec.field_mask_table()

  with nnx.use_eager_sharding(False):
    model = Decoder(model_tiny.get_config(), codec.fields.sizes, rngs=nnx.Rngs(0))
  optimizer = nnx.Optimizer(model, optax.adamw(3e-3, weight_decay=0.01), wrt=nnx.Param)

  @nnx.jit
  def train_step(model, optimizer, batch):
    def loss_fn(model):
      logits, _ = model(batch["inputs"], deterministic=True)
      return multi_field_loss(logits, batch["targets"], batch["mask"], table)[0]

    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss

  losses = [float(train_step(model, optimizer, batch)) for _ in range(STEPS)]
  assert np.isfinite(losses).all()
  # At init the loss is near the uniform one, far above the unigram entropy ...
  assert losses[0] > entropy
  # ... and training takes it well below: the model uses the context.
  final = float(np.mean(losses[-10:]))
  assert final < 0.25 * entropy, (final, entropy, losses[::15])
