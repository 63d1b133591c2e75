"""The likelihood pass scores every row of a split once, and its NLL is the model's."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mtx.evaluate.likelihood import (
  LikelihoodTotals,
  make_scorer,
  plan_windows,
  split_likelihood,
  window_batches,
  window_rows,
)
from mtx.representation import get_codec
from mtx.representation.mmt import BEAT, NOTE, TYPE


@pytest.mark.parametrize("prefix", [0, 3, 6])
@pytest.mark.parametrize("seq_len,stride", [(8, 1), (8, 3), (8, 8), (8, 20), (16, 5)])
def test_windows_score_every_row_once_with_at_least_seq_len_minus_stride_context(
  prefix, seq_len, stride
):
  for num_rows in range(0, 60):
    plans = plan_windows(num_rows, seq_len, stride, prefix)
    scored = [r for p in plans for r in range(p.first_scored, p.last_scored + 1)]
    assert scored == list(range(1, num_rows)), (num_rows, plans)
    for plan in plans[1:]:
      body = seq_len + 1 - prefix  # song rows a later window holds
      assert plan.start + body - 1 == plan.last_scored  # it ends on its last scored row
      assert plan.start > prefix  # never inside the header it repeats
      step = min(stride, body - 1)
      # the first scored row sees the prefix and every body row before it
      assert prefix + plan.first_scored - plan.start >= seq_len - step
    if num_rows <= seq_len + 1:
      assert len(plans) == (1 if num_rows > 1 else 0)


def _song(music21_chorales, index=0):
  return get_codec("mmt").encode(music21_chorales[index])


def test_mmt_windows_repeat_the_header_and_rebase_beats(music21_chorales):
  codec = get_codec("mmt")
  tokens = _song(music21_chorales)
  header = int(np.flatnonzero(tokens[:, TYPE] == 2)[0]) + 1
  plans = plan_windows(len(tokens), 64, 32, header)
  assert len(plans) > 2
  for plan in plans[1:]:
    rows = window_rows(codec, tokens, plan)
    assert len(rows) == 65
    np.testing.assert_array_equal(rows[:header], tokens[:header])
    notes = rows[header:][rows[header:, TYPE] == NOTE]
    assert notes[0, BEAT] == 1  # the window's first note on beat 0
    body = tokens[plan.start : plan.last_scored + 1]
    body_notes = body[body[:, TYPE] == NOTE]
    # beats shift by one amount; every other field is the song's
    np.testing.assert_array_equal(np.diff(notes[:, BEAT]), np.diff(body_notes[:, BEAT]))
    np.testing.assert_array_equal(notes[:, BEAT + 1 :], body_notes[:, BEAT + 1 :])


def _log_softmax(x):
  x = x - x.max(axis=-1, keepdims=True)
  return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def test_nll_equals_log_softmax_gathered_by_hand(trained_run, music21_chorales):
  """Songs that fit the window: one forward pass of the whole song, log-softmax and
  gather in numpy, the codec's own field mask: the same sums as the evaluator's."""
  import jax.numpy as jnp

  codec = trained_run.codec
  seq_len = 64
  songs = [_song(music21_chorales, i)[: seq_len + 1 - i] for i in range(3)]
  result = split_likelihood(
    trained_run.setup.model,
    trained_run.params,
    codec,
    songs,
    seq_len=seq_len,
    stride=16,
    batch_size=2,
  )
  model = trained_run.setup.model(trained_run.params)
  sums = np.zeros(codec.n_fields)
  counts = np.zeros(codec.n_fields)
  rows = 0
  for song in songs:
    logits, _ = model(jnp.asarray(song[None, :-1]))
    targets = song[1:]
    mask = codec.field_mask(targets)
    for f, field_logits in enumerate(logits):
      log_probs = _log_softmax(np.asarray(field_logits[0], np.float64))
      nll = -log_probs[np.arange(len(targets)), targets[:, f]]
      sums[f] += nll[mask[:, f]].sum()
      counts[f] += mask[:, f].sum()
    rows += len(targets)
  assert result["rows"] == rows
  for f, name in enumerate(codec.fields.names):
    assert result["fields"][name]["count"] == counts[f]
    assert result["fields"][name]["nll"] == pytest.approx(sums[f] / counts[f], rel=1e-5)
  assert result["nats_per_row"] == pytest.approx(sums.sum() / rows, rel=1e-5)
  assert result["bits_per_row"] == pytest.approx(sums.sum() / rows / math.log(2), rel=1e-5)
  assert result["truncated_context_rows"] == 0


def test_stride_and_batching_do_not_change_a_song_that_fits(trained_run, music21_chorales):
  codec = trained_run.codec
  songs = [_song(music21_chorales, i)[:50] for i in range(3)]
  kwargs = dict(seq_len=64)
  base = split_likelihood(
    trained_run.setup.model, trained_run.params, codec, songs, stride=64, batch_size=4, **kwargs
  )
  for stride, batch_size in [(1, 1), (7, 3), (200, 2)]:
    other = split_likelihood(
      trained_run.setup.model,
      trained_run.params,
      codec,
      songs,
      stride=stride,
      batch_size=batch_size,
      **kwargs,
    )
    for name in codec.fields.names:
      assert other["fields"][name]["nll"] == pytest.approx(base["fields"][name]["nll"], rel=1e-6)
      assert other["fields"][name]["count"] == base["fields"][name]["count"]


def test_padding_never_counts(trained_run, music21_chorales):
  """Whatever the padding rows hold, the figures do not move: padded targets are never
  scored and causal attention keeps padding after the song out of its predictions."""
  codec = trained_run.codec
  song = _song(music21_chorales, 1)[:40]
  totals = {}
  for filler in (0, 3):
    batches = list(window_batches(codec, [song], seq_len=64, stride=32, batch_size=2))
    assert len(batches) == 1
    batch = batches[0]
    real = batch.segment_ids.astype(bool)
    batch.inputs[~real] = filler  # pad rows, and the whole filler window
    batch.targets[~batch.scored] = filler
    score = make_scorer(trained_run.setup.model)
    nll, correct = score(trained_run.params, dict(batch.model_inputs(), targets=batch.targets))
    acc = LikelihoodTotals(codec, 64)
    acc.add(batch, np.asarray(nll), np.asarray(correct))
    totals[filler] = acc.result()
  assert totals[0]["rows"] == len(song) - 1
  for name in codec.fields.names:
    assert totals[3]["fields"][name] == pytest.approx(totals[0]["fields"][name], rel=1e-6)


def test_a_trained_model_scores_lower_than_its_initialization(trained_run, music21_chorales):
  codec = trained_run.codec
  songs = [_song(music21_chorales, i) for i in range(20, 24)]
  kwargs = dict(seq_len=64, stride=32, batch_size=4)
  trained = split_likelihood(trained_run.setup.model, trained_run.params, codec, songs, **kwargs)
  initial = split_likelihood(
    trained_run.setup.model, trained_run.setup.init().params, codec, songs, **kwargs
  )
  assert trained["rows"] == initial["rows"] == sum(len(s) - 1 for s in songs)
  assert trained["truncated_context_rows"] > 0
  assert trained["nats_per_row"] < initial["nats_per_row"] - 1.0
  assert trained["mmt_reference_loss"] < initial["mmt_reference_loss"]
