"""Opens the dataset `mtx-prepare` wrote and builds this process's input iterators.

The codec (with its options) comes from the dataset's own metadata, so the
model's field sizes always match the records. The dataset is opened from its folder
(`mtx.datasets` says where it lies) with TFDS's read-only builder: reading needs
nothing of `data_pipeline`, which depends on mtx, never the other way. Each process
reads its own shard (`jax.process_index()` of `jax.process_count()`) and yields its
share of the global batch; the loop assembles the global array.
"""

from __future__ import annotations

import os
from typing import Any

import jax

from mtx.data import make_eval_iterator, make_train_iterator
from mtx.data.state import BatchIterator
from mtx.datasets import DATASET_NAMES, dataset_folder, is_config_name
from mtx.errors import ConfigError
from mtx.representation import CODEC_NAMES, get_codec
from mtx.representation.codec import Codec


class PreparedData:
  """A prepared dataset: its codec and split sources."""

  def __init__(self, data_config: Any):
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel

    self.config = data_config
    name, representation = data_config.dataset, data_config.representation
    check_dataset_names(name, representation)
    data_dir = data_config.data_dir or None
    folder = dataset_folder(data_dir, name, representation)
    where = data_dir or "TFDS's default data_dir"
    # TFDS renames its incomplete folder to this one only once the dataset is whole.
    try:
      complete = tfds.core.Path(folder, "dataset_info.json").exists()
    except ImportError as e:  # a bucket without its client (the gcs extra)
      from mtx.cli.paths import bucket_client_missing

      raise bucket_client_missing(f"data.data_dir {data_dir}", e) from None
    if not complete:
      raise ConfigError(
        f"no prepared {name}/{representation} dataset in {where}: run mtx-prepare "
        f"--dataset={name} --representation={representation}"
        f"{' --data_dir=' + data_dir if data_dir else ''} first, or point "
        "--config.data.data_dir at where it was prepared"
      )
    builder = tfds.builder_from_directory(folder)
    self.builder = builder
    metadata = dict(builder.info.metadata)
    self.codec: Codec = get_codec(metadata["representation"], **metadata["codec_options"])
    self.splits = {split: info.num_examples for split, info in builder.info.splits.items()}
    location = str(builder.data_dir)
    # Absolute, so a run's record finds its dataset from any working directory.
    self.location = location if "://" in location else os.path.abspath(location)

  def source(self, split: str):
    if not self.splits.get(split):
      raise ConfigError(
        f"{self.location} has no examples in split {split!r} (it has "
        f"{self.splits}); set data.train_split/data.eval_split"
      )
    return self.builder.as_data_source(split)

  def has(self, split: str) -> bool:
    return bool(self.splits.get(split))


def check_dataset_names(dataset: str, representation: str) -> None:
  """Raises ConfigError unless `dataset` is a dataset mtx-prepare makes and
  `representation` one of its configs (a representation, or one prepared another way:
  `mtx.datasets.config_name`)."""
  if dataset not in DATASET_NAMES:
    raise ConfigError(f"unknown dataset '{dataset}'; choose one of {', '.join(DATASET_NAMES)}")
  if not is_config_name(representation):
    raise ConfigError(
      f"data.representation must be one of {', '.join(CODEC_NAMES)}, or one "
      "prepared another way as mtx-prepare names it (mmt_shift, mmt_min50, "
      f"mmt_shift_min50, ...); got {representation!r}"
    )


def open_run_dataset(
  data_config: Any, data_dir: str | None = None, recorded: str | None = None
) -> PreparedData:
  """The dataset a trained run reads again (mtx-eval, mtx-sample's limits): at `data_dir`
  when given, else where the run's config says, else where the run's record says it was
  when the run trained (`recorded`: the builder's folder,
  <data_dir>/<dataset>/<representation>/<version>). ConfigError when none holds it."""
  from etils import epath  # a bucket's address (gs://...) stays one: pathlib would mangle it

  dataset, representation = data_config.dataset, data_config.representation
  candidates = [data_dir] if data_dir else [data_config.data_dir]
  if not data_dir and recorded:
    candidates.append(os.fspath(epath.Path(recorded).parent.parent.parent))
  for candidate in candidates:
    if candidate and not (epath.Path(candidate) / dataset / representation).is_dir():
      continue  # nothing there: ask TFDS only where a dataset folder exists
    config = data_config.copy_and_resolve_references()
    config.data_dir = candidate or ""
    try:
      return PreparedData(config)
    except ConfigError:
      continue
  where = " or ".join(c or "TFDS's default data_dir" for c in candidates)
  raise ConfigError(
    f"no prepared {dataset}/{representation} dataset in {where}: pass "
    "--data_dir=<the --data_dir mtx-prepare wrote it to> (the run trained "
    f"on {recorded or 'it'})"
  )


def train_iterator(data: PreparedData, config: Any) -> BatchIterator:
  """This process's training batches (its share of train.batch_size)."""
  d = config.data
  return make_train_iterator(
    data.source(d.train_split),
    data.codec,
    seq_len=int(d.seq_len),
    batch_size=int(config.train.batch_size) // jax.process_count(),
    seed=int(config.seed),
    transpose=_pair_or_none(d.transpose),
    tempo_stretch=_pair_or_none(d.tempo_stretch),
    max_beat=d.max_beat,
    pack=bool(d.pack),
    worker_count=int(d.worker_count),
    shard_index=jax.process_index(),
    shard_count=jax.process_count(),
  )


def eval_iterator(data: PreparedData, config: Any) -> BatchIterator:
  """One in-order pass over the eval split, the same number of batches on every process."""
  d = config.data
  batch_size = int(config.train.eval_batch_size or config.train.batch_size)
  return make_eval_iterator(
    data.source(d.eval_split),
    data.codec,
    seq_len=int(d.seq_len),
    batch_size=batch_size // jax.process_count(),
    max_beat=d.max_beat,
    shard_index=jax.process_index(),
    shard_count=jax.process_count(),
  )


def _pair_or_none(value):
  return None if value in (None, "", ()) else tuple(value)
