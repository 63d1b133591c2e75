"""Examples as the bytes TFDS stores, and a split's ArrayRecord shards written
the way TFDS's own writer writes them.

Why not TFDS's writer: it encodes and serializes every example in the main
process, after the workers hand it over, so on a small corpus the main process
is the bottleneck and a second worker adds little; and each split's writer
sets up a thousand on-disk shuffle buckets before the first example. Here the
workers serialize (`RecordFormat.serialize`, TFDS's own feature encoding and
serializer, so the records parse the same; the feature map is written in key order,
so the bytes do not depend on the process), and `SplitRecords` orders a split's
records as TFDS's writer does (by the md5 hash of the key, salted with the
split's name) and writes the shards with TFDS's example writer and shard
sizes: a dataset made here reads back exactly as one TFDS would have written.
Records wait in memory, as in TFDS's shuffler, up to its 1 GB buffer; past it
they go to that shuffler, which spills them to disk buckets.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Iterator
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from etils import epath
from tensorflow_datasets.proto import tf_example_pb2, tf_feature_pb2

from data_pipeline.tfds_compat import flat_example_specs, hashing, shard_utils, shuffle


def example_features(n_fields: int, metadata_keys: tuple[str, ...]) -> tfds.features.FeaturesDict:
  """The features of an example: tokens (n, n_fields) int32 and its provenance. `path`
  holds the file name's own bytes, exactly, even where they are not UTF-8: read it
  with `os.fsdecode(example["path"])`, not `.decode()`."""
  return tfds.features.FeaturesDict(
    {
      "tokens": tfds.features.Tensor(shape=(None, n_fields), dtype=np.int32),
      "path": tfds.features.Text(),
      "md5": tfds.features.Text(),
      "split": tfds.features.Text(),
      "metadata": tfds.features.FeaturesDict({key: tfds.features.Text() for key in metadata_keys}),
      "num_notes": np.int64,
    }
  )


@dataclasses.dataclass(frozen=True)
class RecordFormat:
  """What a worker needs to serialize an example (picklable, small)."""

  n_fields: int
  metadata_keys: tuple[str, ...]

  def features(self) -> tfds.features.FeaturesDict:
    return _features_and_specs(self)[0]

  def serialize(self, example: dict[str, Any]) -> bytes:
    """The record TFDS writes for `example`: a `tf.train.Example` with the same
    features, in the same order, as TFDS's `ExampleSerializer` makes (the bytes
    are the same: tested), built from whole arrays (`tolist`) where TFDS's
    goes through the tokens one numpy scalar at a time, 5x slower. One difference:
    the feature map is written in key order, where TFDS's order depends on the
    process; the parsed records are the same."""
    flat = dict(example, **{f"metadata/{k}": v for k, v in example["metadata"].items()})
    feature = {}
    for name, info in _features_and_specs(self)[1].items():
      value = flat[name]
      if info.np_dtype == np.object_:  # text
        # surrogateescape: text from a file name that is not UTF-8 keeps its own bytes.
        text = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else bytes(value)
        feature[name] = tf_feature_pb2.Feature(bytes_list=tf_feature_pb2.BytesList(value=[text]))
        continue
      array = np.asarray(value, dtype=info.np_dtype)
      if array.ndim != len(info.shape) or any(
        want is not None and want != got for want, got in zip(info.shape, array.shape)
      ):
        raise ValueError(f"feature {name}: shape {array.shape}, expected {info.shape}")
      feature[name] = tf_feature_pb2.Feature(
        int64_list=tf_feature_pb2.Int64List(value=array.ravel().tolist())
      )
    # deterministic: the feature map in key order. Otherwise protobuf orders a map by a
    # per-process hash, and workers started apart from this process (a fork server)
    # would write other bytes for the same example.
    return tf_example_pb2.Example(
      features=tf_feature_pb2.Features(feature=feature)
    ).SerializeToString(deterministic=True)


@functools.cache
def _features_and_specs(record_format: RecordFormat):
  """The features, and the flat {name: TensorInfo} TFDS's serializer walks."""
  features = example_features(record_format.n_fields, record_format.metadata_keys)
  specs = flat_example_specs(features)
  assert all(np.dtype(info.np_dtype).kind in "iO" for info in specs.values()), specs
  return features, specs


class SplitRecords:
  """The serialized records of one split, written at the end in TFDS's order."""

  def __init__(self, split: str, memory_limit: int = shuffle.MAX_MEM_BUFFER_SIZE):
    self.split = split
    self._hasher = hashing.Hasher(split)
    self._memory_limit = memory_limit
    self._in_memory: list[tuple[int, str, bytes]] = []
    self._spilled: shuffle.Shuffler | None = None
    self._hkeys: set[int] = set()
    self.num_bytes = 0

  def __len__(self) -> int:
    return len(self._hkeys)

  def add(self, key: str, record: bytes, spill_dir: epath.PathLike) -> None:
    """Adds a record; a key given twice is an error (it would be one record)."""
    hkey = self._hasher.hash_key(key)
    if hkey in self._hkeys:
      raise ValueError(f"{self.split}: two examples with the key {key!r}")
    self._hkeys.add(hkey)
    self.num_bytes += len(record)
    if self._spilled is None and self.num_bytes > self._memory_limit:
      # TFDS's shuffler: the same order (hashed key), on disk past its buffer.
      self._spilled = shuffle.Shuffler(spill_dir, hash_salt=self.split)
      for _, old_key, old_record in self._in_memory:
        self._spilled.add(old_key, old_record)
      self._in_memory = []
    if self._spilled is not None:
      self._spilled.add(key, record)
    else:
      self._in_memory.append((hkey, key, record))

  def _ordered(self) -> Iterator[tuple[int, bytes]]:
    if self._spilled is not None:
      return iter(self._spilled)
    return ((hkey, record) for hkey, _, record in sorted(self._in_memory, key=lambda r: r[0]))

  def write(
    self,
    template: tfds.core.ShardedFileTemplate,
    shard_config: shard_utils.ShardConfig,
    example_writer: tfds.core.ExampleWriter,
  ) -> tfds.core.SplitInfo:
    """Writes the shards (as many as TFDS would make) and returns the split's info."""
    count = len(self)
    num_shards = shard_config.get_number_shards(self.num_bytes, count)
    ordered = self._ordered()
    shard_lengths, start = [], 0
    for index, end in enumerate(shard_utils.get_shard_boundaries(count, num_shards)):
      path = template.sharded_filepath(shard_index=index, num_shards=num_shards)
      example_writer.write(path, itertools.islice(ordered, end - start))
      shard_lengths.append(end - start)
      start = end
    self._in_memory, self._spilled = [], None
    return tfds.core.SplitInfo(
      name=self.split,
      shard_lengths=shard_lengths,
      num_bytes=self.num_bytes,
      filename_template=template,
    )
