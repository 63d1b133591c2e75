"""The records mtx writes itself are TFDS's: the same examples as TFDS's serializer
makes (in key order: the same bytes in every process), the same shards in the same
order as TFDS's writer, and a whole dataset the same as one built through TFDS's
writer."""

from __future__ import annotations

from pathlib import Path

import pytest
import tensorflow_datasets as tfds
from etils import epath
from tensorflow_datasets.core import example_serializer
from tensorflow_datasets.core import writer as writer_lib
from tensorflow_datasets.core.utils import shard_utils
from tensorflow_datasets.proto import tf_example_pb2

from data_pipeline import midi_folder
from data_pipeline.builders import BUILDERS, MidiFolder
from data_pipeline.convert import Converted, convert_file
from data_pipeline.prepare import prepare
from data_pipeline.records import SplitRecords
from mtx.representation import CODEC_NAMES
from tests.data_pipeline.conftest import LONG_SHARED_FILE


def _tfds_record(features, example) -> bytes:
  """What TFDS's own generator path stores for `example`, its feature map put in key
  order (TFDS leaves the map in an order that depends on the process)."""
  serializer = example_serializer.ExampleSerializer(features.get_serialized_info())
  return _in_key_order(serializer.serialize_example(features.encode_example(example)))


def _in_key_order(record: bytes) -> bytes:
  return tf_example_pb2.Example.FromString(record).SerializeToString(deterministic=True)


def _shard_records(folder: Path) -> dict[str, list[bytes]]:
  """Each ArrayRecord shard's records, in the file's order, in key order."""
  from array_record.python.array_record_module import ArrayRecordReader

  shards = {}
  for path in sorted(folder.glob("*.array_record*")):
    reader = ArrayRecordReader(str(path))
    shards[path.name] = [_in_key_order(r) for r in reader.read_all()]
    reader.close()
  return shards


@pytest.mark.parametrize("representation", CODEC_NAMES)
def test_a_record_is_the_bytes_tfds_serializer_makes(tmp_path, music21_chorales, representation):
  paths = list(music21_chorales[:6]) + ([LONG_SHARED_FILE] if LONG_SHARED_FILE.exists() else [])
  files = [f for f in midi_folder.list_files(_linked(tmp_path, paths))]
  for name in ("midi_folder", "lmd", "maestro"):  # one, three and four metadata keys
    builder = BUILDERS[name](config=representation, data_dir=tmp_path / "data", progress=False)
    record_format = builder.record_format()
    keys = record_format.metadata_keys
    for file in files:
      file = type(file)(file.path, file.split, file.key, {k: f"{k} é {file.key}" for k in keys})
      converted = convert_file(file, builder.builder_config.spec)
      assert isinstance(converted, Converted), converted
      assert record_format.serialize(converted.example) == _tfds_record(
        builder.info.features, converted.example
      )


class _AsIs(example_serializer.Serializer):
  """TFDS's writer fed records that are already bytes."""

  def serialize_example(self, example):
    return example


def _records(music21_chorales, tmp_path) -> list[tuple[str, bytes]]:
  builder = MidiFolder(config="mmt", data_dir=tmp_path / "data", progress=False)
  root = _linked(tmp_path, music21_chorales[:20])
  return [
    (f.key, builder.record_format().serialize(convert_file(f, builder.builder_config.spec).example))
    for f in midi_folder.list_files(root)
  ]


@pytest.mark.parametrize("num_shards", [None, 3])
def test_split_records_write_the_shards_tfds_writer_writes(tmp_path, music21_chorales, num_shards):
  records = _records(music21_chorales, tmp_path)
  shard_config = shard_utils.ShardConfig(num_shards=num_shards)
  example_writer = tfds.core.ExampleWriter(tfds.core.FileFormat.ARRAY_RECORD)
  written = {}
  for how in ("tfds", "memory", "spilled"):
    folder = epath.Path(tmp_path / how)
    folder.mkdir()
    template = tfds.core.ShardedFileTemplate(
      data_dir=folder, dataset_name="x", split="train", filetype_suffix="array_record"
    )
    if how == "tfds":
      writer = writer_lib.Writer(
        serializer=_AsIs(example_specs={}),
        filename_template=template,
        hash_salt="train",
        disable_shuffling=False,
        example_writer=example_writer,
        shard_config=shard_config,
      )
      for key, record in records:
        writer.write(key, record)
      shard_lengths, num_bytes = writer.finalize()
    else:
      split = SplitRecords("train", memory_limit=0 if how == "spilled" else 1 << 30)
      for key, record in records:
        split.add(key, record, spill_dir=folder)
      info = split.write(template, shard_config, example_writer)
      shard_lengths, num_bytes = info.shard_lengths, info.num_bytes
    files = {p.name: p.read_bytes() for p in sorted(Path(folder).iterdir())}
    written[how] = (shard_lengths, num_bytes, files)
  assert len(written["tfds"][2]) == (num_shards or 1)
  assert written["memory"] == written["tfds"] == written["spilled"]


def test_split_records_refuse_a_key_given_twice(tmp_path):
  split = SplitRecords("train")
  split.add("a", b"1", spill_dir=tmp_path)
  with pytest.raises(ValueError, match="two examples with the key 'a'"):
    split.add("a", b"2", spill_dir=tmp_path)


class _TfdsWriterMidiFolder(MidiFolder, skip_registration=True):
  """midi_folder through TFDS's own writer (the main process serializes)."""

  name = "midi_folder"
  OWN_WRITER = False


def test_a_dataset_is_the_one_tfds_writer_makes(tmp_path, corpus_folder):
  root, _, _ = corpus_folder
  datasets = []
  for cls in (MidiFolder, _TfdsWriterMidiFolder):
    builder = cls(config="mmt", data_dir=tmp_path / cls.__name__, num_workers=2, progress=False)
    summary = prepare(builder, manual_dir=root)
    folder = Path(builder.data_dir)
    shards = _shard_records(folder)
    splits = {
      name: (split.shard_lengths, split.num_bytes) for name, split in builder.info.splits.items()
    }
    report = (folder / "bad_files.tsv").read_text()
    datasets.append((shards, splits, report, summary.converted, summary.skipped, summary.truncated))
  assert datasets[0][0] and datasets[0] == datasets[1]


def _linked(tmp_path: Path, paths) -> Path:
  root = tmp_path / "linked"
  root.mkdir(exist_ok=True)
  for path in paths:
    if not (root / path.name).exists():
      (root / path.name).symlink_to(path)
  return root
