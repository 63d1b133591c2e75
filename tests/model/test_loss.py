"""The multi-field loss and the codecs' field masks."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtx.model.loss import field_means, field_sums, multi_field_loss
from mtx.representation import CODEC_NAMES, get_codec
from mtx.representation.mmt import (
  END_OF_SONG,
  INSTRUMENT,
  NOTE,
  ROW_TYPES,
  START_OF_NOTES,
  START_OF_SONG,
)

MMT_FIELDS = ("type", "beat", "position", "pitch", "duration", "instrument")
# What the MMT grammar says each row type carries (docstring of mtx/representation/mmt.py).
MEANINGFUL = {
  START_OF_SONG: {"type"},
  INSTRUMENT: {"type", "instrument"},
  START_OF_NOTES: {"type"},
  NOTE: set(MMT_FIELDS),
  END_OF_SONG: {"type"},
}


def test_mmt_field_mask_table_counts_the_fields_each_row_type_carries():
  codec = get_codec("mmt")
  table = codec.field_mask_table()
  assert table.shape == (len(ROW_TYPES), len(codec.fields)) and table.dtype == bool
  assert codec.fields.names == MMT_FIELDS
  for row_type, fields in MEANINGFUL.items():
    assert {codec.fields.names[f] for f in np.flatnonzero(table[row_type])} == fields


def test_mmt_field_mask_of_real_tokens_marks_nonzero_fields(music21_chorales):
  """On encoded chorales the mask is set exactly where a field holds a code other than 0
  ("none"), except field 0 (type), which always counts (start-of-song's type is 0)."""
  codec = get_codec("mmt")
  for path in music21_chorales[:3]:
    tokens = codec.encode(path)
    mask = codec.field_mask(tokens)
    assert mask.shape == tokens.shape
    np.testing.assert_array_equal(mask[:, 1:], tokens[:, 1:] != 0)
    assert mask[:, 0].all()
    assert {int(t) for t in tokens[:, 0]} == set(MEANINGFUL)


@pytest.mark.parametrize("name", [n for n in CODEC_NAMES if n != "mmt"])
def test_single_field_codecs_count_every_row(name, music21_chorales):
  codec = get_codec(name)
  assert codec.field_mask_table() is None
  tokens = codec.encode(music21_chorales[0])
  assert codec.field_mask(tokens).all() and codec.field_mask(tokens).shape == tokens.shape


def reference_loss(logits, targets, mask, counts_field):
  """Slow per-element loss: for each field, mean over counted rows of -log softmax."""
  total, per_field, accuracy, counts = 0.0, [], [], []
  batch, length, n_fields = targets.shape
  for f in range(n_fields):
    nll, correct = [], []
    for b in range(batch):
      for t in range(length):
        if mask[b, t] and counts_field(targets[b, t], f):
          row = np.asarray(logits[f][b, t], np.float64)
          log_z = np.log(np.exp(row - row.max()).sum()) + row.max()
          nll.append(log_z - row[targets[b, t, f]])
          correct.append(np.argmax(row) == targets[b, t, f])
    per_field.append(np.mean(nll) if nll else 0.0)
    accuracy.append(np.mean(correct) if correct else 0.0)
    counts.append(len(nll))
    total += per_field[-1]
  return total, per_field, accuracy, counts


def mmt_targets(rng, batch, length, sizes):
  """Random rows of every type; non-note fields zero where the type carries none."""
  targets = np.stack([rng.integers(0, s, (batch, length)) for s in sizes], -1)
  targets[..., 0] = rng.integers(0, len(ROW_TYPES), (batch, length))
  for row_type, fields in MEANINGFUL.items():
    rows = targets[..., 0] == row_type
    for f, name in enumerate(MMT_FIELDS):
      if name not in fields:
        targets[..., f][rows] = 0
  return targets


def test_loss_counts_exactly_the_fields_the_mmt_grammar_says():
  codec = get_codec("mmt", max_beat=8)
  sizes, table = codec.fields.sizes, codec.field_mask_table()
  rng = np.random.default_rng(0)
  targets = mmt_targets(rng, 3, 20, sizes)
  mask = rng.random((3, 20)) < 0.8
  logits = tuple(jnp.asarray(rng.normal(size=(3, 20, s)), jnp.float32) for s in sizes)
  total, metrics = multi_field_loss(
    logits, jnp.asarray(targets), jnp.asarray(mask), table, codec.fields.names
  )
  expected = reference_loss(
    logits, targets, mask, lambda row, f: MMT_FIELDS[f] in MEANINGFUL[int(row[0])]
  )
  np.testing.assert_allclose(float(total), expected[0], rtol=1e-5)
  for f, name in enumerate(MMT_FIELDS):
    np.testing.assert_allclose(float(metrics[f"loss/{name}"]), expected[1][f], rtol=1e-5)
    np.testing.assert_allclose(float(metrics[f"accuracy/{name}"]), expected[2][f], rtol=1e-6)
    assert int(metrics[f"count/{name}"]) == expected[3][f]
  assert float(metrics["loss"]) == float(total)

  # Logits at rows or fields that do not count have zero gradient.
  grads = jax.grad(
    lambda lg: multi_field_loss(lg, jnp.asarray(targets), jnp.asarray(mask), table)[0]
  )(logits)
  for f, name in enumerate(MMT_FIELDS):
    counted = mask & np.isin(targets[..., 0], [t for t, fs in MEANINGFUL.items() if name in fs])
    row_norm = np.abs(np.asarray(grads[f])).sum(-1)
    assert (row_norm[~counted] == 0).all() and (row_norm[counted] > 0).all()


def test_without_a_table_every_field_of_every_masked_row_counts():
  rng = np.random.default_rng(1)
  sizes = (7, 4)
  targets = np.stack([rng.integers(0, s, (2, 9)) for s in sizes], -1)
  mask = np.arange(9)[None, :] < np.array([[9], [4]])  # the second row padded after 4
  logits = tuple(jnp.asarray(rng.normal(size=(2, 9, s)), jnp.float32) for s in sizes)
  total, metrics = multi_field_loss(logits, jnp.asarray(targets), jnp.asarray(mask))
  expected = reference_loss(logits, targets, mask, lambda row, f: True)
  np.testing.assert_allclose(float(total), expected[0], rtol=1e-5)
  assert int(metrics["count/0"]) == int(metrics["count/1"]) == 13


def test_accuracy_on_constructed_logits():
  """Logits that put the maximum on the target for a known set of rows."""
  targets = np.array([[[3, 1], [0, 2], [4, 0], [1, 1], [2, 3]]])  # (1, 5, 2)
  right = np.array([[True, False, True, True, False]])
  logits = []
  for f, size in enumerate((5, 4)):
    guess = np.where(right, targets[..., f], (targets[..., f] + 1) % size)
    logits.append(jnp.asarray(np.eye(size)[guess] * 3.0, jnp.float32))
  mask = np.array([[True, True, True, True, False]])  # the last row padding
  _, metrics = multi_field_loss(tuple(logits), jnp.asarray(targets), jnp.asarray(mask))
  assert float(metrics["accuracy/0"]) == pytest.approx(3 / 4)
  assert float(metrics["accuracy/1"]) == pytest.approx(3 / 4)
  # Loss of a correct row: -log(e^3 / (e^3 + size - 1)); of a wrong one: -log(1 / (...)).
  for f, size in enumerate((5, 4)):
    z = np.log(np.exp(3.0) + size - 1)
    assert float(metrics[f"loss/{f}"]) == pytest.approx(((z - 3.0) * 3 + z) / 4, rel=1e-5)


def test_a_field_with_no_counted_row_adds_nothing():
  codec = get_codec("mmt", max_beat=4)
  targets = np.zeros((1, 3, 6), np.int64)
  targets[0, :, 0] = [START_OF_SONG, START_OF_NOTES, END_OF_SONG]
  logits = tuple(jnp.zeros((1, 3, s)) for s in codec.fields.sizes)
  total, metrics = multi_field_loss(
    logits,
    jnp.asarray(targets),
    jnp.ones((1, 3), bool),
    codec.field_mask_table(),
    codec.fields.names,
  )
  assert int(metrics["count/pitch"]) == 0 and float(metrics["loss/pitch"]) == 0.0
  assert float(total) == pytest.approx(np.log(len(ROW_TYPES)), rel=1e-6)


def test_field_sums_add_over_batches_and_field_means_divide_once():
  """Sums of two halves of a batch add up to the whole batch's sums; their means equal
  the whole batch's loss; dividing by given counts scales each field's loss."""
  codec = get_codec("mmt", max_beat=8)
  sizes, table, names = codec.fields.sizes, codec.field_mask_table(), codec.fields.names
  rng = np.random.default_rng(2)
  targets = jnp.asarray(mmt_targets(rng, 4, 16, sizes))
  mask = jnp.asarray(rng.random((4, 16)) < 0.9)
  logits = tuple(jnp.asarray(rng.normal(size=(4, 16, s)), jnp.float32) for s in sizes)
  whole = field_sums(logits, targets, mask, table, names)
  halves = [
    field_sums(tuple(lg[rows] for lg in logits), targets[rows], mask[rows], table, names)
    for rows in (slice(0, 2), slice(2, 4))
  ]
  added = jax.tree.map(lambda a, b: a + b, *halves)
  assert set(whole) == {f"{k}/{n}" for k in ("nll", "correct", "count") for n in names}
  for key in whole:
    np.testing.assert_allclose(float(added[key]), float(whole[key]), rtol=1e-5, err_msg=key)
  total, metrics = multi_field_loss(logits, targets, mask, table, names)
  np.testing.assert_allclose(float(field_means(added, names)["loss"]), float(total), rtol=1e-5)
  expected = reference_loss(
    logits,
    np.asarray(targets),
    np.asarray(mask),
    lambda row, f: MMT_FIELDS[f] in MEANINGFUL[int(row[0])],
  )
  for f, name in enumerate(names):
    np.testing.assert_allclose(
      float(whole[f"nll/{name}"]), expected[1][f] * expected[3][f], rtol=1e-5
    )
    np.testing.assert_allclose(
      float(whole[f"correct/{name}"]), expected[2][f] * expected[3][f], rtol=1e-6
    )
  doubled = jnp.asarray([2 * max(float(whole[f"count/{n}"]), 1.0) for n in names])
  halved = field_means(whole, names, counts=doubled)
  for name in names:
    np.testing.assert_allclose(
      float(halved[f"loss/{name}"]), float(metrics[f"loss/{name}"]) / 2, rtol=1e-6
    )
