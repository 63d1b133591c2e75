"""The corpus builder in-process: what it writes is what the codec gives for each
file, bad files are skipped and reported, and nothing incomplete is kept."""

from __future__ import annotations

import hashlib
import os
import signal
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds

from data_pipeline import midi_folder
from data_pipeline.bad_files import read_bad_files
from data_pipeline.builders import DATASET_NAMES, MidiFolder, get_builder_class
from data_pipeline.configs import CONFIG_OPTIONS
from data_pipeline.convert import BadFile, CodecSpec, Converted, convert_file
from data_pipeline.corpus import CorpusFile, md5_of_file, split_by_hash
from data_pipeline.pool import ConversionPool, guided_chunks
from data_pipeline.prepare import exclusive_prepare, prepare
from mtx.errors import ConfigError, RepresentationOverflowError
from mtx.representation import CODEC_NAMES, get_codec
from tests.data_pipeline.conftest import LONG_SHARED_FILE, write_bad_files

ALL_TRAIN = {"validation": 0, "test": 0}


def _examples(builder) -> list[dict]:
  return [
    example for split in builder.info.splits for example in builder.as_data_source(split=split)
  ]


def _prepare_folder(root, data_dir, representation="mmt", **options):
  builder = MidiFolder(config=representation, data_dir=data_dir, progress=False, **options)
  return builder, prepare(builder, manual_dir=root)


def test_every_good_file_becomes_its_codec_tokens_with_provenance(tmp_path, corpus_folder):
  root, good, bad = corpus_folder
  builder, summary = _prepare_folder(root, tmp_path / "data", num_workers=2)
  listed = {str(f.path): f for f in midi_folder.list_files(root)}
  codec = get_codec("mmt", **dict(CONFIG_OPTIONS["mmt"]))
  examples = _examples(builder)
  assert sorted(e["path"].decode() for e in examples) == sorted(map(str, good))
  for example in examples:
    path = example["path"].decode()
    assert np.array_equal(example["tokens"], codec.encode(path))
    assert example["tokens"].dtype == np.int32
    assert example["md5"].decode() == md5_of_file(path)
    assert example["split"].decode() == listed[path].split
    assert example["metadata"]["folder"].decode() == listed[path].metadata["folder"]
    assert example["num_notes"] > 0
  # Each split holds exactly the good files listed in it.
  for split, size in summary.split_sizes.items():
    in_split = [e for e in builder.as_data_source(split=split)]
    assert {e["split"].decode() for e in in_split} == {split}
    assert size == len(in_split) == sum(1 for p in map(str, good) if listed[p].split == split)
  rows = read_bad_files(Path(builder.data_dir) / "bad_files.tsv")
  assert {row.path: row.reason.split(":")[0] for row in rows} == bad
  assert (summary.converted, summary.skipped) == (len(good), len(bad))
  assert summary.line() == (
    f"{len(good):,} converted, {len(bad):,} skipped: see {builder.data_dir}/bad_files.tsv"
  )


def test_one_worker_and_two_write_the_same_records_in_the_same_order(tmp_path, music21_chorales):
  root = tmp_path / "corpus"
  root.mkdir()
  for path in music21_chorales[:40]:
    (root / path.name).symlink_to(path)
  records, shards = [], []
  for workers in (1, 2, 3):
    builder, _ = _prepare_folder(root, tmp_path / f"data{workers}", num_workers=workers)
    records.append([(e["path"], e["tokens"].tobytes(), e["md5"]) for e in _examples(builder)])
    shards.append(
      {p.name: p.read_bytes() for p in sorted(Path(builder.data_dir).glob("*.array_record*"))}
    )
  assert len(records[0]) == 40 and records[0] == records[1] == records[2]
  assert shards[0] and shards[0] == shards[1] == shards[2]  # byte for byte


@pytest.mark.skipif(
  not LONG_SHARED_FILE.exists(),
  reason=f"needs {LONG_SHARED_FILE} (../shared/midi; set MTX_SHARED_MIDI)",
)
def test_mmt_config_truncates_a_long_file_keeps_it_and_counts_it(tmp_path):
  root = tmp_path / "corpus"
  root.mkdir()
  (root / LONG_SHARED_FILE.name).symlink_to(LONG_SHARED_FILE)
  with pytest.raises(RepresentationOverflowError):
    get_codec("mmt").encode(LONG_SHARED_FILE)
  builder, summary = _prepare_folder(root, tmp_path / "data", corpus_options=ALL_TRAIN)
  (example,) = _examples(builder)
  assert np.array_equal(
    example["tokens"], get_codec("mmt", overflow="truncate").encode(LONG_SHARED_FILE)
  )
  assert (summary.converted, summary.truncated, summary.skipped) == (1, 1, 0)
  assert builder.info.metadata["prepare"]["truncated"] == 1


@pytest.mark.parametrize("representation", CODEC_NAMES)
def test_each_representation_config_records_its_codec_and_field_count(
  tmp_path, music21_chorales, representation
):
  root = tmp_path / "corpus"
  root.mkdir()
  for path in music21_chorales[:2]:
    (root / path.name).symlink_to(path)
  builder, _ = _prepare_folder(
    root, tmp_path / "data", representation=representation, corpus_options=ALL_TRAIN
  )
  codec = get_codec(representation, **dict(CONFIG_OPTIONS[representation]))
  assert builder.info.features["tokens"].shape == (None, codec.n_fields)
  assert builder.info.metadata["representation"] == representation
  assert builder.info.metadata["codec_options"] == dict(CONFIG_OPTIONS[representation])
  assert all(
    builder.info.metadata["codec_settings"][k] == v for k, v in CONFIG_OPTIONS[representation]
  )
  assert representation in builder.info.description
  for example in _examples(builder):
    assert np.array_equal(example["tokens"], codec.encode(example["path"].decode()))
  # Read back as a user would, from the folder alone.
  source = tfds.data_source(f"midi_folder/{representation}", data_dir=tmp_path / "data")
  assert len(source["train"]) == 2


def test_a_split_whose_files_are_all_bad_is_left_out(tmp_path, music21_chorales):
  ratios = {"validation": 0.3, "test": 0.3}
  root = tmp_path / "corpus"
  root.mkdir()
  good = [p for p in music21_chorales if split_by_hash(md5_of_file(p), **ratios) != "validation"][
    :4
  ]
  for path in good:
    (root / path.name).symlink_to(path)
  data = music21_chorales[0].read_bytes()
  cut = next(
    n
    for n in range(60, 400)
    if split_by_hash(hashlib.md5(data[:n]).hexdigest(), **ratios) == "validation"
  )
  (root / "cut.mid").write_bytes(data[:cut])
  builder, summary = _prepare_folder(root, tmp_path / "data", corpus_options=ratios)
  assert "validation" not in summary.split_sizes and summary.empty_splits == ["validation"]
  assert sum(summary.split_sizes.values()) == len(good)
  assert [row.path for row in read_bad_files(Path(builder.data_dir) / "bad_files.tsv")] == [
    str(root / "cut.mid")
  ]


def test_no_convertible_file_is_an_error_and_leaves_nothing(tmp_path, music21_chorales):
  root = tmp_path / "corpus"
  write_bad_files(root, music21_chorales[0])
  builder = MidiFolder(config="mmt", data_dir=tmp_path / "data", progress=False)
  with pytest.raises(ConfigError, match="none of the 5 files could be converted"):
    prepare(builder, manual_dir=root)
  assert not builder.is_prepared()
  assert not list((tmp_path / "data" / "midi_folder" / "mmt").iterdir())


def test_rerun_reuses_the_dataset_and_refuses_another_source(tmp_path, music21_chorales):
  first, second = tmp_path / "a", tmp_path / "b"
  for root, paths in ((first, music21_chorales[:3]), (second, music21_chorales[3:5])):
    root.mkdir()
    for path in paths:
      (root / path.name).symlink_to(path)
  _, summary = _prepare_folder(first, tmp_path / "data")
  _, again = _prepare_folder(first, tmp_path / "data")
  assert again.reused and again.converted == summary.converted == 3
  with pytest.raises(ConfigError, match="pass --overwrite"):
    _prepare_folder(second, tmp_path / "data")
  builder = MidiFolder(config="mmt", data_dir=tmp_path / "data", progress=False)
  rebuilt = prepare(builder, manual_dir=second, overwrite=True)
  assert not rebuilt.reused and rebuilt.converted == 2
  assert len(_examples(builder)) == 2


def test_a_second_prepare_of_a_config_being_prepared_is_refused(tmp_path, music21_chorales):
  root = tmp_path / "corpus"
  root.mkdir()
  (root / music21_chorales[0].name).symlink_to(music21_chorales[0])
  running = MidiFolder(config="mmt", data_dir=tmp_path / "data", progress=False)
  with exclusive_prepare(running):  # as a prepare in another process holds it
    leftover = Path(running.data_dir).parent / f"incomplete.ABC123_{MidiFolder.VERSION}"
    leftover.mkdir(parents=True)  # what that prepare is writing: not to be taken for a leftover
    second = MidiFolder(config="mmt", data_dir=tmp_path / "data", progress=False)
    with pytest.raises(ConfigError, match="another prepare of midi_folder/mmt is writing"):
      prepare(second, manual_dir=root)
    assert leftover.is_dir()
    other_config = MidiFolder(config="remi", data_dir=tmp_path / "data", progress=False)
    assert prepare(other_config, manual_dir=root).converted == 1  # other configs go on
  assert prepare(second, manual_dir=root).converted == 1  # and once it is done, this one
  assert not leftover.exists()


def test_unknown_dataset_and_missing_manual_dir_are_config_errors(tmp_path):
  with pytest.raises(ConfigError, match="unknown dataset 'nope'; choose one of jsb_chorales"):
    get_builder_class("nope")
  assert set(DATASET_NAMES) == {
    "jsb_chorales",
    "maestro",
    "lmd",
    "sod",
    "symphonynet",
    "midi_folder",
  }
  builder = MidiFolder(config="mmt", data_dir=tmp_path / "data", progress=False)
  with pytest.raises(ConfigError, match="midi_folder needs --manual_dir"):
    prepare(builder)
  with pytest.raises(ConfigError, match="no such folder"):
    prepare(builder, manual_dir=tmp_path / "nowhere")
  blocker = tmp_path / "a_file"
  blocker.write_text("")
  unwritable = MidiFolder(config="mmt", data_dir=blocker / "data", progress=False)
  with pytest.raises(ConfigError, match=f"{blocker} is a file, so no folder can be made under it"):
    prepare(unwritable, manual_dir=tmp_path)


# ---- the conversion worker and its pool ----


class _KillsItsWorker(Mapping):
  """Metadata that kills the process reading it, unless it is the test's own:
  a worker dying mid-file, as a parser segfault would make it."""

  def __init__(self):
    self.creator = os.getpid()

  def __getitem__(self, key):
    raise KeyError(key)

  def __iter__(self):
    if os.getpid() != self.creator:
      os.kill(os.getpid(), signal.SIGKILL)
    return iter(())

  def __len__(self):
    return 0


def test_a_worker_that_dies_names_its_file_and_the_others_are_kept(music21_chorales):
  files = [CorpusFile(p, "train", p.name) for p in music21_chorales[:12]]
  files.insert(5, CorpusFile(music21_chorales[0], "train", "killer", _KillsItsWorker()))
  with ConversionPool(CodecSpec("mmt"), num_workers=2) as pool:
    results = list(pool.convert(files))
  converted = sorted(r.key for r in results if isinstance(r, Converted))
  assert converted == sorted(f.key for f in files if f.key != "killer")
  (bad,) = [r for r in results if isinstance(r, BadFile)]
  assert bad.path == str(music21_chorales[0]) and "crashed" in bad.reason


def test_an_unexpected_exception_is_reported_with_its_type(music21_chorales):
  broken = CorpusFile(music21_chorales[0], "train", "k", metadata=42)  # not a mapping
  result = convert_file(broken, CodecSpec("mmt"))
  assert isinstance(result, BadFile) and result.reason.startswith("unexpected TypeError: ")
  with ConversionPool(CodecSpec("mmt"), num_workers=2) as pool:
    results = list(pool.convert([broken, CorpusFile(music21_chorales[1], "train", "ok")]))
  assert sorted(type(r).__name__ for r in results) == ["BadFile", "Converted"]


@pytest.mark.parametrize("count, workers", [(0, 2), (1, 2), (7, 2), (409, 2), (5000, 3)])
def test_guided_chunks_cover_the_files_in_order_shrinking_to_single_files(count, workers):
  files = list(range(count))
  chunks = guided_chunks(files, workers)
  assert [f for chunk in chunks for f in chunk] == files
  sizes = [len(chunk) for chunk in chunks]
  assert all(0 < b <= a <= 32 for a, b in zip(sizes, sizes[1:])) and all(sizes)
  assert sizes[-workers:] == [1] * min(workers, count)  # no long last chunk
