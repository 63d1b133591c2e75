"""The grain pipelines: batches, determinism, resume, shards, padding and packing."""

from __future__ import annotations

import itertools

import grain
import numpy as np
import pytest

from mtx.data import make_eval_iterator, make_train_iterator, pad_row
from mtx.errors import ConfigError
from mtx.representation import CODEC_NAMES, get_codec


def _source(tokens_list):
  """Examples as a TFDS data source returns them: tokens plus bytes features."""
  return [{"tokens": t, "path": f"song{i}.mid".encode()} for i, t in enumerate(tokens_list)]


def _take(iterator, count):
  return [next(iterator) for _ in range(count)]


def _assert_same_batches(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    assert x.keys() == y.keys()
    for key in x:
      np.testing.assert_array_equal(x[key], y[key], err_msg=key)


def _windows(batches):
  """The real rows of each window of a batch (inputs then the last target)."""
  out = []
  for batch in batches:
    for inputs, targets, mask in zip(batch["inputs"], batch["targets"], batch["mask"]):
      n = int(mask.sum())
      if n:
        out.append(np.concatenate([inputs[:n], targets[n - 1 : n]]))
  return out


def _song_of(window, songs):
  found = [i for i, s in enumerate(songs) if np.array_equal(window, s)]
  assert len(found) == 1, "a window that is not a whole song"
  return found[0]


TRAIN = dict(seq_len=128, batch_size=4, seed=7, shard_index=0, shard_count=1)


@pytest.mark.parametrize("name", CODEC_NAMES)
def test_batches_have_the_model_shapes_and_targets_follow_inputs(name, chorale_tokens):
  codec = get_codec(name)
  batch = next(make_train_iterator(_source(chorale_tokens[name]), name, **TRAIN))
  b, length = TRAIN["batch_size"], TRAIN["seq_len"]
  assert batch["inputs"].shape == batch["targets"].shape == (b, length, codec.n_fields)
  assert batch["inputs"].dtype == batch["targets"].dtype == np.int32
  assert batch["mask"].shape == (b, length) and batch["mask"].dtype == bool
  assert batch["segment_ids"].dtype == batch["positions"].dtype == np.int32
  np.testing.assert_array_equal(batch["targets"][:, :-1], batch["inputs"][:, 1:])
  assert batch["mask"].any(axis=1).all()
  for window in _windows([batch]):
    codec.check_tokens(window)


@pytest.mark.parametrize("name", ["mmt", "performance"])
def test_the_same_seed_gives_the_same_batches(name, chorale_tokens):
  source = _source(chorale_tokens[name])
  first = _take(make_train_iterator(source, name, **TRAIN), 6)
  _assert_same_batches(first, _take(make_train_iterator(source, name, **TRAIN), 6))
  other = _take(make_train_iterator(source, name, **{**TRAIN, "seed": 8}), 6)
  assert not all(np.array_equal(x["inputs"], y["inputs"]) for x, y in zip(first, other))


@pytest.mark.parametrize("name,pack", [("mmt", False), ("remi", False), ("mmt", True)])
def test_restored_state_continues_exactly(name, pack, chorale_tokens):
  source = _source(chorale_tokens[name])
  options = {**TRAIN, "seq_len": 1024 if pack else 128, "pack": pack}
  iterator = make_train_iterator(source, name, **options)
  _take(iterator, 5)  # past an epoch of 12 songs
  state = iterator.get_state()
  assert isinstance(state, bytes)
  expected = _take(iterator, 4)
  resumed = make_train_iterator(source, name, **options)
  resumed.set_state(state)
  _assert_same_batches(_take(resumed, 4), expected)


def test_a_state_from_another_pipeline_is_refused(chorale_tokens):
  source = _source(chorale_tokens["mmt"])
  state = make_train_iterator(source, "mmt", **TRAIN).get_state()
  other = make_train_iterator(source, "mmt", **{**TRAIN, "seed": 8})
  with pytest.raises(ConfigError, match="seed: saved 7, now 8"):
    other.set_state(state)
  with pytest.raises(ConfigError, match="not JSON"):
    other.set_state(b"{not json")


def test_orbax_checkpoints_the_iterator_state_through_grain(chorale_tokens, tmp_path):
  ocp = pytest.importorskip("orbax.checkpoint")
  source = _source(chorale_tokens["mmt"])
  iterator = make_train_iterator(source, "mmt", **TRAIN)
  _take(iterator, 3)
  with ocp.CheckpointManager(tmp_path / "ckpt", item_names=("data",)) as manager:
    manager.save(3, args=ocp.args.Composite(data=grain.checkpoint.CheckpointSave(iterator)))
    manager.wait_until_finished()
  expected = _take(iterator, 3)
  resumed = make_train_iterator(source, "mmt", **TRAIN)
  with ocp.CheckpointManager(tmp_path / "ckpt", item_names=("data",)) as manager:
    manager.restore(3, args=ocp.args.Composite(data=grain.checkpoint.CheckpointRestore(resumed)))
  _assert_same_batches(_take(resumed, 3), expected)


def test_worker_processes_give_the_same_batches_and_resume(chorale_tokens):
  source = _source(chorale_tokens["mmt"])
  expected = _take(make_train_iterator(source, "mmt", **TRAIN), 5)
  options = {**TRAIN, "worker_count": 2}
  iterator = make_train_iterator(source, "mmt", **options)
  try:
    _assert_same_batches(_take(iterator, 3), expected[:3])
    state = iterator.get_state()
  finally:
    iterator.close()
  resumed = make_train_iterator(source, "mmt", **options)
  try:
    resumed.set_state(state)
    _assert_same_batches(_take(resumed, 2), expected[3:])
  finally:
    resumed.close()


@pytest.mark.parametrize("shuffle", [False, True])
def test_host_shards_are_disjoint_and_cover_an_epoch(shuffle, chorale_tokens):
  songs = chorale_tokens["mmt"]
  seen = []
  for shard in range(3):
    iterator = make_train_iterator(
      _source(songs),
      "mmt",
      seq_len=4096,
      batch_size=1,
      seed=3,
      shuffle=shuffle,
      num_epochs=1,
      transpose=None,
      shard_index=shard,
      shard_count=3,
    )
    seen.append([_song_of(w, songs) for w in _windows(iterator)])
  assert sorted(itertools.chain(*seen)) == list(range(len(songs)))
  assert all(len(s) == len(songs) // 3 for s in seen)


def test_an_example_gets_the_same_window_whatever_the_sharding(chorale_tokens):
  source = _source(chorale_tokens["mmt"])
  options = dict(seq_len=64, batch_size=1, seed=5, shuffle=False, num_epochs=2)
  whole = _windows(make_train_iterator(source, "mmt", shard_index=0, shard_count=1, **options))
  half = _windows(make_train_iterator(source, "mmt", shard_index=1, shard_count=2, **options))
  n = len(source)
  assert len(whole) == 2 * n and len(half) == n
  for epoch in range(2):
    for j in range(n // 2):
      np.testing.assert_array_equal(half[epoch * n // 2 + j], whole[epoch * n + 2 * j + 1])
  assert any(not np.array_equal(whole[i], whole[n + i]) for i in range(n))  # new crops each epoch


def test_epochs_are_reshuffled_and_each_covers_the_data(chorale_tokens):
  songs = chorale_tokens["mmt"]
  iterator = make_train_iterator(
    _source(songs),
    "mmt",
    seq_len=4096,
    batch_size=1,
    seed=1,
    num_epochs=2,
    transpose=None,
    shard_index=0,
    shard_count=1,
  )
  order = [_song_of(w, songs) for w in _windows(iterator)]
  first, second = order[: len(songs)], order[len(songs) :]
  assert sorted(first) == sorted(second) == list(range(len(songs)))
  assert first != second and first != sorted(first)


@pytest.mark.parametrize("name", CODEC_NAMES)
def test_eval_windows_start_the_songs_and_padding_is_masked(name, chorale_tokens):
  codec = get_codec(name)
  songs = chorale_tokens[name]
  seq_len = max(len(s) for s in songs[:5]) + 3
  batches = list(
    make_eval_iterator(
      _source(songs[:5]), name, seq_len=seq_len, batch_size=2, shard_index=0, shard_count=1
    )
  )
  assert len(batches) == 3
  pad = pad_row(codec)
  rows = [(b, i) for b in batches for i in range(2)]
  for k, (batch, i) in enumerate(rows):
    n = len(songs[k]) if k < 5 else 0
    mask = batch["mask"][i]
    np.testing.assert_array_equal(mask, np.arange(seq_len) < n - 1)
    np.testing.assert_array_equal(batch["segment_ids"][i], mask.astype(np.int32))
    np.testing.assert_array_equal(batch["positions"][i][: max(n - 1, 0)], np.arange(max(n - 1, 0)))
    if n:
      np.testing.assert_array_equal(batch["inputs"][i][: n - 1], songs[k][:-1])
      np.testing.assert_array_equal(batch["targets"][i][: n - 1], songs[k][1:])
    assert (batch["inputs"][i][n:] == pad).all()
    assert (batch["targets"][i][max(n - 1, 0) :] == pad).all()


def test_eval_shards_cover_the_data_in_equal_numbers_of_batches(chorale_tokens):
  songs = chorale_tokens["remi"][:10]
  per_shard = []
  for shard in range(3):
    batches = list(
      make_eval_iterator(
        _source(songs), "remi", seq_len=8192, batch_size=2, shard_index=shard, shard_count=3
      )
    )
    per_shard.append(batches)
  assert {len(b) for b in per_shard} == {2}  # ceil(ceil(10 / 3) / 2)
  seen = [_song_of(w, songs) for batches in per_shard for w in _windows(batches)]
  assert sorted(seen) == list(range(10))


def test_packed_rows_never_mix_segments_in_targets(chorale_tokens):
  songs = chorale_tokens["mmt"]
  iterator = make_train_iterator(
    _source(songs),
    "mmt",
    seq_len=1024,
    batch_size=2,
    seed=0,
    transpose=None,
    pack=True,
    shard_index=0,
    shard_count=1,
  )
  segments_per_row = []
  for batch in _take(iterator, 6):
    for r in range(2):
      seg, pos, mask = batch["segment_ids"][r], batch["positions"][r], batch["mask"][r]
      inputs, targets = batch["inputs"][r], batch["targets"][r]
      np.testing.assert_array_equal(mask, seg > 0)
      ids = [s for s in np.unique(seg) if s > 0]
      segments_per_row.append(len(ids))
      for s in ids:
        at = np.flatnonzero(seg == s)
        assert np.array_equal(at, np.arange(at[0], at[-1] + 1)), "a segment is not contiguous"
        np.testing.assert_array_equal(pos[at], np.arange(at.size))
        np.testing.assert_array_equal(targets[at[:-1]], inputs[at[1:]])
        _song_of(np.concatenate([inputs[at], targets[at[-1:]]]), songs)
  assert max(segments_per_row) >= 2


def test_default_shard_is_this_jax_process(chorale_tokens):
  import jax

  iterator = make_train_iterator(
    _source(chorale_tokens["mmt"]), "mmt", seq_len=64, batch_size=2, seed=0
  )
  assert (iterator.settings["shard_index"], iterator.settings["shard_count"]) == (
    jax.process_index(),
    jax.process_count(),
  )


@pytest.mark.parametrize(
  "options,message",
  [
    (dict(seq_len=0), "seq_len"),
    (dict(batch_size=0), "batch_size"),
    (dict(transpose=(3, -3)), "transpose"),
    (dict(transpose=5), "transpose"),
    (dict(tempo_stretch=(0.1, 1.0)), "tempo_stretch"),
    (dict(shard_index=2, shard_count=2), "shard_index"),
    (dict(shard_index=0, shard_count=50), "fewer than the 50 shards"),
    (dict(seed=-1), "seed"),
    (dict(worker_count=-1), "worker_count"),
  ],
)
def test_bad_options_are_config_errors(options, message, chorale_tokens):
  with pytest.raises(ConfigError, match=message):
    make_train_iterator(_source(chorale_tokens["mmt"]), "mmt", **{**TRAIN, **options})


def test_bad_sources_are_config_errors(chorale_tokens):
  with pytest.raises(ConfigError, match="no examples"):
    make_train_iterator([], "mmt", **TRAIN)
  with pytest.raises(ConfigError, match="unknown representation"):
    make_train_iterator(_source(chorale_tokens["mmt"]), "midi-like", **TRAIN)
  wrong = make_train_iterator(_source(chorale_tokens["remi"]), "mmt", **TRAIN)
  with pytest.raises(ConfigError, match="--representation=mmt"):
    next(wrong)
