"""The pipeline over a dataset that mtx-prepare's builders wrote (ArrayRecord via TFDS)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from data_pipeline.builders import get_builder_class
from data_pipeline.prepare import prepare
from mtx.data import make_eval_iterator, make_train_iterator
from mtx.errors import ConfigError
from mtx.representation import get_codec
from mtx.train.data import PreparedData


@pytest.fixture(scope="module")
def prepared(music21_chorales, tmp_path_factory):
  """midi_folder/mmt prepared from 10 chorales; returns the builder."""
  folder = tmp_path_factory.mktemp("chorale_folder")
  for path in music21_chorales[:10]:
    shutil.copy(path, folder / path.name)
  builder = get_builder_class("midi_folder")(
    config="mmt",
    data_dir=tmp_path_factory.mktemp("data"),
    num_workers=1,
    progress=False,
    corpus_options=dict(validation=0.2, test=0.2),
  )
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
  for batch in make_eval_iterator(
    source, codec, seq_len=2048, batch_size=2, shard_index=0, shard_count=1
  ):
    for inputs, targets, mask in zip(batch["inputs"], batch["targets"], batch["mask"]):
      n = int(mask.sum())
      if n:
        windows.append(np.concatenate([inputs[:n], targets[n - 1 : n]]))
  assert len(windows) == len(songs)
  for window, song in zip(windows, songs):
    np.testing.assert_array_equal(window, song)


def test_mtx_opens_a_prepared_dataset_without_importing_data_pipeline(prepared):
  """data_pipeline depends on mtx, never the other way: training reads the dataset from
  its folder and metadata alone."""
  config = SimpleNamespace(
    dataset="midi_folder", representation="mmt", data_dir=str(prepared.data_dir_root)
  )
  data = PreparedData(config)
  assert data.location == str(prepared.data_dir)
  assert data.splits == {name: split.num_examples for name, split in prepared.info.splits.items()}
  assert data.codec.n_fields == get_codec("mmt").n_fields
  assert dict(data.builder.info.metadata) == dict(prepared.info.metadata)
  np.testing.assert_array_equal(
    data.source("train")[0]["tokens"], prepared.as_data_source("train")[0]["tokens"]
  )
  code = (
    "import sys; from types import SimpleNamespace as N; "
    "from mtx.train.data import PreparedData; "
    "d = PreparedData(N(dataset='midi_folder', representation='mmt', "
    f"data_dir={config.data_dir!r})); "
    "print(len(d.source('train')), "
    "[m for m in sys.modules if m.startswith('data_pipeline')])"
  )
  done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-2000:]
  assert done.stdout.split()[-2:] == [str(data.splits["train"]), "[]"]
  for dataset, representation, message in (
    ("nope", "mmt", "unknown dataset 'nope'"),
    ("midi_folder", "mmt_min0", "data.representation"),
    ("midi_folder", "remi", "no prepared midi_folder/remi"),
  ):
    with pytest.raises(ConfigError, match=message):
      PreparedData(
        SimpleNamespace(dataset=dataset, representation=representation, data_dir=config.data_dir)
      )


def _take(iterator, count):
  return [next(iterator) for _ in range(count)]


def _assert_same(got, expected):
  assert len(got) == len(expected)
  for x, y in zip(got, expected):
    for key in x:
      np.testing.assert_array_equal(x[key], y[key], err_msg=key)
