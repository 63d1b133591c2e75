"""The TFDS builder every corpus shares: CorpusFiles -> token records in ArrayRecord.

A corpus is a layout module (`list_files`, `METADATA_KEYS`, `DESCRIPTION`; see
`data_pipeline.corpus`) plus a thin subclass in `builders.py`. This module does
the rest, the same for every corpus:

- one builder config per representation and way of preparing its songs
  (`data_pipeline.configs`), each its own folder `<data_dir>/<name>/<config>/<version>`
  with the codec options and the preparation in its `metadata.json`;
- examples `{tokens (n, n_fields) int32, path, md5, split, metadata{...},
  num_notes}`, converted by `data_pipeline.convert` on a process pool
  (`data_pipeline.pool`) whose workers also serialize them, written by
  `data_pipeline.records` in the order and shards TFDS's writer would use
  (ArrayRecord; any other file format goes through TFDS's writer, and Apache Beam,
  when a Beam runner is given, through `data_pipeline.beam`);
- bad files skipped and listed in `bad_files.tsv` inside the dataset folder
  (`data_pipeline.bad_files`), with the counts in `metadata.json`. File names are
  kept as the bytes they are (the records' `path`).

`data_pipeline.prepare.prepare` (what `mtx-prepare` runs) checks the inputs and runs
a builder; TFDS's private hooks used here go through `data_pipeline.tfds_compat`.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import tensorflow_datasets as tfds
from etils import epath

from data_pipeline import beam, tfds_compat
from data_pipeline.bad_files import BAD_FILES_REPORT, write_bad_files
from data_pipeline.configs import (
  RepresentationConfig,
  codec_settings,
  representation_configs,
  variant_config,
)
from data_pipeline.convert import BadFile, CodecSpec, Converted, convert_file
from data_pipeline.corpus import SPLITS, CorpusFile
from data_pipeline.pool import ConversionPool, default_num_workers
from data_pipeline.records import RecordFormat, SplitRecords
from mtx.errors import ConfigError


class _Tally:
  """The counts, bad files and progress bar of one prepare."""

  def __init__(self, total: int, label: str, show: bool):
    self.truncated = 0
    self.too_few_notes = 0
    self.bad: list[BadFile] = []
    self.empty_splits: list[str] = []
    self._bar = None
    if show:
      from tqdm import tqdm

      self._bar = tqdm(
        total=total,
        desc=label,
        unit=" files",
        file=sys.stderr,
        mininterval=0.5,
        smoothing=0.1,
        postfix="bad 0",
      )

  def add(self, result: Converted | BadFile) -> None:
    if isinstance(result, BadFile):
      self.bad.append(result)
      self.too_few_notes += result.dropped
      if self._bar is not None:
        self._bar.set_postfix_str(f"bad {len(self.bad):,}", refresh=False)
    else:
      self.truncated += result.truncated
    if self._bar is not None:
      self._bar.update(1)

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()


class CorpusBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Base of the corpus builders. A subclass sets `name` and `CORPUS_MODULE`
  (the layout module); one whose files need no manual dir overrides
  `source_dir` and `_list_files`.

  Options beyond TFDS's (`config`, `data_dir`, `version`, and `file_format`,
  "array_record" unless given):
    num_workers: conversion processes (0: every core; 1: in-process).
    corpus_options: keyword options of the layout's `list_files` (midi_folder:
      `validation`, `test` ratios).
    limit: only the first `limit` files by key (0: all), for smoke runs.
    progress: show a progress bar on stderr.
  The manual dir comes the TFDS way: `download_config.manual_dir`.
  """

  # ArrayRecord without Beam: the workers serialize and `records` writes (the
  # records TFDS's writer would write, faster). False: TFDS's writer (for tests).
  OWN_WRITER = True
  # 1.1.0: the codecs changed what they write (mmt rounds half steps to even as the MMT
  # reference does; mmm keeps notes of one track, pitch and onset step); a dataset of 1.0.0
  # is left where it is, never reused. Each subclass sets its own (mtx.datasets).
  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {
    "1.0.0": "First release.",
    "1.1.0": "mmt: half grid steps round to even (the MMT reference's rule); "
    "mmm: notes of one track, pitch and onset step all kept; "
    "performance, remi and mmm refuse songs past their length limit.",
  }
  BUILDER_CONFIGS = representation_configs()
  DEFAULT_CONFIG_NAME = "mmt"
  CORPUS_MODULE = ""

  @classmethod
  def get_builder_config(cls, name: str, version=None) -> RepresentationConfig | None:
    """The registered configs, and any other `config_name` (`mmt_shift_min50`)."""
    found = super().get_builder_config(name, version)
    if found is None and isinstance(name, str):
      found = variant_config(name)
    return found

  def __init__(
    self,
    *,
    num_workers: int = 0,
    corpus_options: dict | None = None,
    limit: int = 0,
    progress: bool = True,
    **kwargs,
  ):
    if num_workers < 0 or limit < 0:
      raise ConfigError(
        f"num_workers ({num_workers}) and limit ({limit}) must be >= 0 (0: every core / every file)"
      )
    self._num_workers = num_workers or default_num_workers()
    self._corpus_options = dict(corpus_options or {})
    self._limit = limit
    self._progress = progress
    self._files: dict[str, list[CorpusFile]] = {}
    self._tally: _Tally | None = None
    self._pool: ConversionPool | None = None
    self._beam = False
    self._manual_dir: Path | None = None
    self._beam_truncated = 0
    kwargs.setdefault("file_format", "array_record")
    super().__init__(**kwargs)
    tfds_compat.remember_options(
      self, num_workers=num_workers, corpus_options=corpus_options, limit=limit, progress=progress
    )

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:  # pylint: disable=invalid-overridden-method
    # TFDS 4.9.10's own lookup, for a builder inside a package, touches
    # `importlib_resources`, which it declares only for Python < 3.9 (import
    # error); its fallback is this.
    return epath.Path(inspect.getfile(cls))

  @classmethod
  def corpus(cls) -> ModuleType:
    """The layout module (imported on first use)."""
    return importlib.import_module(cls.CORPUS_MODULE)

  # ---- what is listed ----

  def source_dir(self, manual_dir: str | os.PathLike | None) -> Path:
    """The folder `list_files` reads; raises ConfigError when a manual dir is
    needed and missing."""
    if manual_dir is None:
      layout = self.CORPUS_MODULE.replace(".", "/") + ".py"
      raise ConfigError(
        f"{self.name} needs --manual_dir: the folder holding the corpus as "
        f"released ({layout} describes the layout)"
      )
    return Path(manual_dir).expanduser().absolute()

  def _list_files(self, source: Path) -> list[CorpusFile]:
    return self.corpus().list_files(source, **self._corpus_options)

  def corpus_files(self, manual_dir: str | os.PathLike | None = None) -> list[CorpusFile]:
    """The corpus' files with their split (the first `limit` by key), listed
    once per source folder. Raises the layout's LayoutError on a wrong folder."""
    source = self.source_dir(manual_dir)
    if str(source) not in self._files:
      files = sorted(self._list_files(source), key=lambda f: f.key)
      self._files[str(source)] = files[: self._limit] if self._limit else files
    return self._files[str(source)]

  def source_record(self, manual_dir: str | os.PathLike | None) -> dict[str, Any]:
    """What the examples were made from, as `metadata.json` records it, to tell
    a rerun on the same source from one on another."""
    return json.loads(
      json.dumps(
        {
          "source_dir": str(self.source_dir(manual_dir)),
          "corpus_options": self._corpus_options,
          "limit": self._limit,
        }
      )
    )

  # ---- TFDS ----

  def _log_download_bytes(self) -> None:
    """Prints nothing. TFDS prints "Downloading and preparing dataset Unknown
    size (download: Unknown size, ...)" here, sizes it cannot know for a corpus
    that downloads nothing; `prepare`'s caller prints what was made instead.
    Errors are raised, never printed here, so none is hidden."""

  def _log_download_done(self) -> None:
    """Prints nothing. TFDS's "Dataset NAME downloaded and prepared to DIR"
    says "downloaded" of a local corpus and repeats the summary line of
    `mtx-prepare` (`PrepareSummary.line`, which names the folder)."""

  def record_format(self) -> RecordFormat:
    """How an example of this builder is serialized (what the workers need)."""
    return RecordFormat(
      self.builder_config.spec.codec().n_fields, tuple(self.corpus().METADATA_KEYS)
    )

  def _info(self) -> tfds.core.DatasetInfo:
    corpus = self.corpus()
    spec = self.builder_config.spec
    settings = codec_settings(spec)
    features = self.record_format().features()
    description = (
      f"{corpus.DESCRIPTION}\n\nRepresentation {spec.representation}, codec "
      f"settings {settings}; {self.builder_config.preparation_words}. Files that "
      f"cannot be converted are skipped and listed in {BAD_FILES_REPORT}."
    )
    return tfds.core.DatasetInfo(
      builder=self,
      description=description,
      features=features,
      metadata=tfds.core.MetadataDict(
        representation=spec.representation,
        codec_options=dict(spec.options),
        codec_settings=settings,
        preparation=self.builder_config.preparation,
      ),
    )

  def _download_and_prepare(self, dl_manager, download_config) -> None:
    # Runs inside TFDS's incomplete folder: `self.data_dir` is that folder.
    self._beam = bool(download_config.beam_runner or download_config.beam_options)
    self._manual_dir = download_config.manual_dir
    self._beam_truncated = 0
    files = self.corpus_files(self._manual_dir)
    # ArrayRecord on this machine: the workers serialize, `records` writes.
    local = (
      self.OWN_WRITER
      and not self._beam
      and self.info.file_format == tfds.core.FileFormat.ARRAY_RECORD
    )
    self._pool = ConversionPool(
      self.builder_config.spec,
      1 if self._beam else self._num_workers,
      record_format=self.record_format() if local else None,
    )
    self._pool.start()  # before the progress bar's thread: workers can be forked
    self._tally = _Tally(
      len(files), f"{self.name}/{self.builder_config.name}", show=self._progress and not self._beam
    )
    try:
      if local:
        self._write_splits(files, download_config)
      else:
        tfds_compat.prepare_with_tfds(self, dl_manager, download_config)
      # Done: wait for the workers and the pool's thread to end, so that the
      # next prepare of this process starts with one thread and can fork.
      self._pool.close(wait=True)
    finally:
      self._pool.close()
      self._tally.close()
    tally, self._tally, self._pool = self._tally, None, None
    bad = sorted(tally.bad + beam.collect_bad_files(self.data_dir), key=lambda b: b.path)
    write_bad_files(epath.Path(self.data_dir) / BAD_FILES_REPORT, bad)
    converted = sum(split.num_examples for split in self.info.splits.values())
    self.info.metadata["source"] = self.source_record(self._manual_dir)
    self.info.metadata["prepare"] = {
      "files": len(files),
      "converted": converted,
      "skipped": len(bad),
      "truncated": tally.truncated + self._beam_truncated,
      "too_few_notes": sum(b.dropped for b in bad),
      "empty_splits": tally.empty_splits,
    }

  def _write_splits(self, files: list[CorpusFile], download_config) -> None:
    """Every file of every split through the pool in one stream (no pause
    between splits), then each split's records written in TFDS's order: the
    same records, in the same order, whatever the number of workers."""
    records = {split: SplitRecords(split) for split in SPLITS}
    spill_dir = self.data_path
    for result in self._pool.convert(files):
      self._tally.add(result)
      if isinstance(result, Converted):
        records[result.split].add(result.key, result.record, spill_dir=spill_dir)
    self._pool.stop()  # the workers exit while the shards are written
    infos = []
    for split in SPLITS:
      if len(records[split]):
        infos.append(
          records[split].write(
            tfds_compat.filename_template(self, split),
            download_config.get_shard_config(),
            tfds_compat.example_writer(self),
          )
        )
      elif any(f.split == split for f in files):
        self._tally.empty_splits.append(split)
    if not infos:
      raise self._nothing_converted(files)
    self.info.set_splits(tfds.core.SplitDict(infos))

  def _nothing_converted(self, files: list[CorpusFile]) -> ConfigError:
    example = self._tally.bad[0]
    return ConfigError(
      f"{self.name}: none of the {len(files)} files could be converted to "
      f"{self.builder_config.spec.representation} (e.g. {example.path}: "
      f"{example.reason})"
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    spec = self.builder_config.spec
    files = self.corpus_files(self._manual_dir)
    generators = {}
    for split in SPLITS:
      split_files = [f for f in files if f.split == split]
      if not split_files:
        continue
      # TFDS cannot write a split without examples: convert up to the first
      # good file here, so a split whose files are all bad is left out
      # instead of failing the whole prepare.
      first, rest = self._first_good(split_files, spec)
      if first is None:
        self._tally.empty_splits.append(split)
        continue
      generators[split] = self._generate_examples(split=split, first=first, rest=rest)
    if not generators:
      raise self._nothing_converted(files)
    return generators

  def _first_good(self, files: list[CorpusFile], spec: CodecSpec):
    for index, file in enumerate(files):
      result = convert_file(file, spec)
      self._tally.add(result)
      if isinstance(result, Converted):
        return result, files[index + 1 :]
    return None, []

  def _generate_examples(self, split: str, first: Converted, rest: list[CorpusFile]):
    if self._beam:
      return beam.beam_examples(
        split,
        first,
        rest,
        self.builder_config.spec,
        report_prefix=os.fspath(epath.Path(self.data_dir) / f"{beam.BAD_PREFIX}{split}"),
      )
    return self._local_examples(first, rest)

  def _local_examples(self, first: Converted, rest: list[CorpusFile]):
    yield first.key, first.example
    for result in self._pool.convert(rest):
      self._tally.add(result)
      if isinstance(result, Converted):
        yield result.key, result.example

  # ---- Beam ----

  def _process_pipeline_result(self, pipeline_result) -> None:
    self._beam_truncated = beam.truncated_count(pipeline_result)
