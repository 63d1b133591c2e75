"""The pipeline over a dataset that mtx-prepare's builders wrote (ArrayRecord via TFDS)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from data_pipeline.builder import prepare
from data_pipeline.builders import get_builder_class
from mtx.data import make_eval_iterator, make_train_iterator
from mtx.representation import get_codec


@pytest.fixture(scope="module")
def prepared(music21_chorales, tmp_path_factory):
  """midi_folder/mmt prepared from 10 chorales; returns the builder."""
  folder = tmp_path_factory.mktemp("chorale_folder")
  for path in music21_chorales[:10]:
    shutil.copy(path, folder / path.name)
  builder = get_builder_class("midi_folder")(
      config="mmt", data_dir=tmp_path_factory.mktemp("data"), num_workers=1, progress=False,
      corpus_options=dict(validation=0.2, test=0.2))
  prepare(builder, manual_dir=folder)
  return builder


def test_train_and_eval_batches_from_a_prepared_dataset(prepared):
  metadata = dict(prepared.info.metadata)
  codec = get_codec(metadata["representation"], **metadata["codec_options"])
  source = prepared.as_data_source("train")
  assert len(source) >= 3
  options = dict(seq_len=256, batch_size=2, seed=0, shard_index=0, shard_count=1)
  iterator = make_train_iterator(source, codec, **options)
  batches = _take(iterator, 3)
  assert batches[0]["inputs"].shape == (2, 256, codec.n_fields)
  state = iterator.get_state()
  expected = _take(iterator, 2)
  resumed = make_train_iterator(source, codec, **options)
  resumed.set_state(state)
  _assert_same(_take(resumed, 2), expected)
  in_workers = make_train_iterator(source, codec, **options, worker_count=2)
  try:  # the data source travels to worker processes and reads there
    _assert_same(_take(in_workers, 5), batches + expected)
  finally:
    in_workers.close()

  songs = [source[i]["tokens"] for i in range(len(source))]
  windows = []
  for batch in make_eval_iterator(source, codec, seq_len=2048, batch_size=2, shard_index=0,
                                  shard_count=1):
    for inputs, targets, mask in zip(batch["inputs"], batch["targets"], batch["mask"]):
      n = int(mask.sum())
      if n:
        windows.append(np.concatenate([inputs[:n], targets[n - 1:n]]))
  assert len(windows) == len(songs)
  for window, song in zip(windows, songs):
    np.testing.assert_array_equal(window, song)


def _take(iterator, count):
  return [next(iterator) for _ in range(count)]


def _assert_same(got, expected):
  assert len(got) == len(expected)
  for x, y in zip(got, expected):
    for key in x:
      np.testing.assert_array_equal(x[key], y[key], err_msg=key)
