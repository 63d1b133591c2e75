"""The TFDS builder every corpus shares: CorpusFiles -> token records in ArrayRecord.

A corpus is a layout module (`list_files`, `METADATA_KEYS`, `DESCRIPTION`; see
`data_pipeline.corpus`) plus a thin subclass in `builders.py`. This module does
the rest, the same for every corpus:

- one builder config per representation (`mmt`, `performance`, `remi`,
  `mmm`), with the codec options fixed per config (`CONFIG_OPTIONS`) and
  recorded in the dataset's description and `metadata.json`; and, on demand,
  one per way of preparing the songs (`config_name`): `mmt_shift` moves each
  song's first note into beat 0, `mmt_min50` leaves out songs of fewer than 50
  notes, `mmt_shift_min50` does both, as the MMT reference's data preparation
  does. The plain configs keep leading silence and every song with a note (what
  mtx always did, and what the shipped configs train on). Each variant is its own
  folder, `<data_dir>/<name>/<config>/<version>`, with the options in its
  `metadata.json` ("preparation"), so one prepared another way is never reused;
- examples `{tokens (n, n_fields) int32, path, md5, split, metadata{...},
  num_notes}`, converted by `data_pipeline.convert` on a process pool whose
  workers also serialize them, written by `data_pipeline.records` in the order
  and shards TFDS's writer would use (ArrayRecord; any other file format, and
  Apache Beam when a Beam runner is given, go through TFDS's writer);
- bad files skipped and listed in `bad_files.tsv` (path, reason) inside the
  dataset folder, with the counts in `metadata.json`. File names are kept as the
  bytes they are (the records' `path`), and written to the report readably and
  reversibly (`corpus.path_text`: a tab, newline or byte that is not UTF-8 is
  escaped; `read_bad_files` gives back the exact names).

Nothing half-written loads as complete: TFDS writes into an `incomplete.*`
folder and renames it to `<name>/<config>/<version>` only at the end, and
`bad_files.tsv` is written inside that folder before the rename. `prepare`
(what `mtx-prepare` runs) adds the checks a user needs before hours of work:
the layout, a writable `data_dir`, a dataset already there; a disk that fills up
is one `DiskFullError` naming it, with nothing of the dataset left behind.

    builder = builders.get_builder_class("midi_folder")(config="mmt", data_dir=d)
    summary = prepare(builder, manual_dir=folder)
    builder.as_data_source(split="train")[0]["tokens"]
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import functools
import hashlib
import importlib
import inspect
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

import tensorflow_datasets as tfds
from etils import epath

from data_pipeline.convert import (TOO_FEW_NOTES, BadFile, CodecSpec, ConversionPool, Converted,
                                   convert_file, default_num_workers)
from data_pipeline.corpus import SPLITS, CorpusFile, path_from_text, path_text
from data_pipeline.records import RecordFormat, SplitRecords
from mtx.errors import ConfigError, DiskFullError
from mtx.representation import CODEC_NAMES

BAD_FILES_REPORT = "bad_files.tsv"
# The codec options of each config. mmt truncates notes past max_beat, as the
# reference's data does, so a long piece is kept (its start) and counted.
CONFIG_OPTIONS: dict[str, tuple[tuple[str, Any], ...]] = {
    "mmt": (("overflow", "truncate"),),
    "performance": (),
    "remi": (),
    "mmm": (),
}
_BEAM_BAD_PREFIX = "bad_files-"


@dataclasses.dataclass(eq=False)
class RepresentationConfig(tfds.core.BuilderConfig):
  """A builder config: a representation (its codec options fixed by CONFIG_OPTIONS)
  and how songs are prepared for it; named by `config_name`."""

  representation: str = ""
  codec_options: tuple[tuple[str, Any], ...] = ()
  shift_to_first_note: bool = False
  min_notes: int = 0

  @property
  def spec(self) -> CodecSpec:
    return CodecSpec(self.representation or self.name, self.codec_options,
                     shift_to_first_note=self.shift_to_first_note, min_notes=self.min_notes)

  @property
  def preparation(self) -> dict[str, Any]:
    """What `metadata.json` records of how the songs were prepared."""
    return {"shift_to_first_note": self.shift_to_first_note, "min_notes": self.min_notes}

  @property
  def preparation_words(self) -> str:
    """How the songs were prepared, in words (the dataset's description)."""
    ways = (["each song's first note moved into beat 0"] if self.shift_to_first_note else []) \
        + ([f"songs of fewer than {self.min_notes} notes left out"] if self.min_notes else [])
    return ", ".join(ways) or "leading silence kept, every song with a note kept"


def config_name(representation: str, shift_to_first_note: bool = False,
                min_notes: int = 0) -> str:
  """The builder config of a representation prepared this way: the representation's
  name ("mmt") for mtx's defaults, else with `_shift` and/or `_min<N>` ("mmt_shift_min50":
  the MMT reference's preparation)."""
  if representation not in CODEC_NAMES:
    raise ConfigError(f"unknown representation '{representation}'; choose one of "
                      f"{', '.join(CODEC_NAMES)}")
  if min_notes < 0:
    raise ConfigError(f"--min_notes must be >= 0 (0: keep every song with a note); got "
                      f"{min_notes}")
  return (representation + ("_shift" if shift_to_first_note else "")
          + (f"_min{min_notes}" if min_notes else ""))


_CONFIG_NAME = re.compile(rf"^({'|'.join(map(re.escape, CODEC_NAMES))})(_shift)?(?:_min(\d+))?$")


def _representation_config(name: str) -> RepresentationConfig | None:
  """The config `name` stands for (`config_name`'s inverse), or None."""
  match = _CONFIG_NAME.match(name)
  if not match or name != config_name(match.group(1), bool(match.group(2)),
                                      int(match.group(3) or 0)):
    return None
  representation = match.group(1)
  shift, min_notes = bool(match.group(2)), int(match.group(3) or 0)
  options = CONFIG_OPTIONS[representation]
  config = RepresentationConfig(name=name, representation=representation, codec_options=options,
                                shift_to_first_note=shift, min_notes=min_notes)
  config.description = (f"{representation} tokens, codec options {dict(options) or 'default'}; "
                         f"{config.preparation_words}")
  return config


def is_config_name(name: str) -> bool:
  """Whether `name` names a builder config: a representation ("mmt"), or one prepared
  another way ("mmt_shift_min50"); what `data.representation` of a training config holds."""
  return isinstance(name, str) and _representation_config(name) is not None


@functools.cache
def _variant_config(name: str) -> RepresentationConfig | None:
  """One object per variant name: TFDS compares configs by identity."""
  return _representation_config(name)


def _representation_configs() -> list[RepresentationConfig]:
  assert set(CONFIG_OPTIONS) == set(CODEC_NAMES), "a config per representation"
  return [_representation_config(name) for name in CODEC_NAMES]


def codec_settings(spec: CodecSpec) -> dict[str, Any]:
  """Every scalar setting of the codec a config builds (its options with the
  codec's defaults filled in): what `metadata.json` records."""
  codec = spec.codec()
  return {k: v for k, v in sorted(vars(codec).items())
          if isinstance(v, (bool, int, float, str)) and not k.startswith("_")}


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
      self._bar = tqdm(total=total, desc=label, unit=" files", file=sys.stderr,
                       mininterval=0.5, smoothing=0.1, postfix="bad 0")

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
  # is left where it is, never reused.
  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {"1.0.0": "First release.",
                   "1.1.0": "mmt: half grid steps round to even (the MMT reference's rule); "
                            "mmm: notes of one track, pitch and onset step all kept; "
                            "performance, remi and mmm refuse songs past their length limit."}
  BUILDER_CONFIGS = _representation_configs()
  DEFAULT_CONFIG_NAME = "mmt"
  CORPUS_MODULE = ""

  @classmethod
  def get_builder_config(cls, name: str, version=None) -> RepresentationConfig | None:
    """The registered configs, and any other `config_name` (`mmt_shift_min50`)."""
    found = super().get_builder_config(name, version)
    if found is None and isinstance(name, str):
      found = _variant_config(name)
    return found

  def __init__(self, *, num_workers: int = 0, corpus_options: dict | None = None,
               limit: int = 0, progress: bool = True, **kwargs):
    if num_workers < 0 or limit < 0:
      raise ConfigError(f"num_workers ({num_workers}) and limit ({limit}) must be >= 0 "
                        "(0: every core / every file)")
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
    # TFDS re-creates a builder from this on unpickling.
    self._original_state.update(num_workers=num_workers, corpus_options=corpus_options,
                                limit=limit, progress=progress)

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
      raise ConfigError(f"{self.name} needs --manual_dir: the folder holding the corpus as "
                        f"released ({layout} describes the layout)")
    return Path(manual_dir).expanduser().absolute()

  def _list_files(self, source: Path) -> list[CorpusFile]:
    return self.corpus().list_files(source, **self._corpus_options)

  def corpus_files(self, manual_dir: str | os.PathLike | None = None) -> list[CorpusFile]:
    """The corpus' files with their split (the first `limit` by key), listed
    once per source folder. Raises the layout's LayoutError on a wrong folder."""
    source = self.source_dir(manual_dir)
    if str(source) not in self._files:
      files = sorted(self._list_files(source), key=lambda f: f.key)
      self._files[str(source)] = files[:self._limit] if self._limit else files
    return self._files[str(source)]

  def source_record(self, manual_dir: str | os.PathLike | None) -> dict[str, Any]:
    """What the examples were made from, as `metadata.json` records it, to tell
    a rerun on the same source from one on another."""
    return json.loads(json.dumps({"source_dir": str(self.source_dir(manual_dir)),
                                  "corpus_options": self._corpus_options, "limit": self._limit}))

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
    return RecordFormat(self.builder_config.spec.codec().n_fields,
                        tuple(self.corpus().METADATA_KEYS))

  def _info(self) -> tfds.core.DatasetInfo:
    corpus = self.corpus()
    spec = self.builder_config.spec
    settings = codec_settings(spec)
    features = self.record_format().features()
    description = (f"{corpus.DESCRIPTION}\n\nRepresentation {spec.representation}, codec "
                   f"settings {settings}; {self.builder_config.preparation_words}. Files that "
                   f"cannot be converted are skipped and listed in {BAD_FILES_REPORT}.")
    return tfds.core.DatasetInfo(
        builder=self, description=description, features=features,
        metadata=tfds.core.MetadataDict(representation=spec.representation,
                                        codec_options=dict(spec.options),
                                        codec_settings=settings,
                                        preparation=self.builder_config.preparation))

  def _download_and_prepare(self, dl_manager, download_config) -> None:
    # Runs inside TFDS's incomplete folder: `self.data_dir` is that folder.
    self._beam = bool(download_config.beam_runner or download_config.beam_options)
    self._manual_dir = download_config.manual_dir
    self._beam_truncated = 0
    files = self.corpus_files(self._manual_dir)
    # ArrayRecord on this machine: the workers serialize, `records` writes.
    local = (self.OWN_WRITER and not self._beam
             and self.info.file_format == tfds.core.FileFormat.ARRAY_RECORD)
    self._pool = ConversionPool(self.builder_config.spec, 1 if self._beam else self._num_workers,
                                record_format=self.record_format() if local else None)
    self._pool.start()  # before the progress bar's thread: workers can be forked
    self._tally = _Tally(len(files), f"{self.name}/{self.builder_config.name}",
                         show=self._progress and not self._beam)
    try:
      if local:
        self._write_splits(files, download_config)
      else:
        super()._download_and_prepare(dl_manager, download_config)
      # Done: wait for the workers and the pool's thread to end, so that the
      # next prepare of this process starts with one thread and can fork.
      self._pool.close(wait=True)
    finally:
      self._pool.close()
      self._tally.close()
    tally, self._tally, self._pool = self._tally, None, None
    bad = sorted(tally.bad + self._collect_beam_bad_files(), key=lambda b: b.path)
    write_bad_files(epath.Path(self.data_dir) / BAD_FILES_REPORT, bad)
    converted = sum(split.num_examples for split in self.info.splits.values())
    self.info.metadata["source"] = self.source_record(self._manual_dir)
    self.info.metadata["prepare"] = {
        "files": len(files), "converted": converted, "skipped": len(bad),
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
        infos.append(records[split].write(self._get_filename_template(split),
                                          download_config.get_shard_config(),
                                          self._example_writer()))
      elif any(f.split == split for f in files):
        self._tally.empty_splits.append(split)
    if not infos:
      raise self._nothing_converted(files)
    self.info.set_splits(tfds.core.SplitDict(infos))

  def _nothing_converted(self, files: list[CorpusFile]) -> ConfigError:
    example = self._tally.bad[0]
    return ConfigError(f"{self.name}: none of the {len(files)} files could be converted to "
                       f"{self.builder_config.spec.representation} (e.g. {example.path}: "
                       f"{example.reason})")

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
        return result, files[index + 1:]
    return None, []

  def _generate_examples(self, split: str, first: Converted, rest: list[CorpusFile]):
    if self._beam:
      return _beam_examples(split, first, rest, self.builder_config.spec,
                            report_prefix=os.fspath(epath.Path(self.data_dir) /
                                                    f"{_BEAM_BAD_PREFIX}{split}"))
    return self._local_examples(first, rest)

  def _local_examples(self, first: Converted, rest: list[CorpusFile]):
    yield first.key, first.example
    for result in self._pool.convert(rest):
      self._tally.add(result)
      if isinstance(result, Converted):
        yield result.key, result.example

  # ---- Beam ----

  def _process_pipeline_result(self, pipeline_result) -> None:
    beam = tfds.core.lazy_imports.apache_beam
    query = pipeline_result.metrics().query(
        beam.metrics.MetricsFilter().with_namespace("mtx").with_name("truncated"))
    self._beam_truncated = sum(c.committed or 0 for c in query["counters"])

  def _collect_beam_bad_files(self) -> list[BadFile]:
    """Merges the bad-file lines the Beam workers wrote, and removes their files."""
    bad = []
    for part in sorted(epath.Path(self.data_dir).glob(f"{_BEAM_BAD_PREFIX}*")):
      for line in part.read_text().splitlines():
        if line:
          bad.append(_bad_file_of_line(line))
      part.unlink()
    return bad


def _beam_examples(split: str, first: Converted, rest: list[CorpusFile], spec: CodecSpec,
                   report_prefix: str):
  """The split's examples as a Beam PTransform: the same `convert_file` on the
  runner's workers; bad files are written as tsv lines next to the records."""
  beam = tfds.core.lazy_imports.apache_beam

  @beam.ptransform_fn
  def convert(pipeline):
    results = (pipeline
               | f"{split}_files" >> beam.Create(rest)
               | f"{split}_spread" >> beam.Reshuffle()
               | f"{split}_convert" >> beam.FlatMap(_beam_convert, spec).with_outputs(
                   "bad", main="good"))
    _ = results.bad | f"{split}_report" >> beam.io.WriteToText(report_prefix,
                                                               file_name_suffix=".tsv")
    probed = pipeline | f"{split}_first" >> beam.Create([(first.key, first.example)])
    return (results.good, probed) | f"{split}_all" >> beam.Flatten()

  return convert()  # pylint: disable=no-value-for-parameter


def _beam_convert(file: CorpusFile, spec: CodecSpec):
  beam = tfds.core.lazy_imports.apache_beam
  result = convert_file(file, spec)
  if isinstance(result, BadFile):
    yield beam.pvalue.TaggedOutput("bad", _tsv_line(result))
    return
  if result.truncated:
    beam.metrics.Metrics.counter("mtx", "truncated").inc()
  yield result.key, result.example


def _tsv_line(bad: BadFile) -> str:
  """`path<TAB>reason`, each escaped by `corpus.path_text` (a tab or newline in a file
  name, a byte that is not UTF-8): one line, UTF-8, reversible."""
  return f"{path_text(bad.path)}\t{path_text(bad.reason)}"


def _bad_file_of_line(line: str) -> BadFile:
  path, reason = line.split("\t", 1)
  reason = path_from_text(reason)
  return BadFile(path_from_text(path), reason, dropped=reason.startswith(TOO_FEW_NOTES + ":"))


def write_bad_files(path: epath.Path, bad: list[BadFile]) -> None:
  """`bad_files.tsv` (UTF-8): a header, then one `path<TAB>reason` line per bad file,
  each field escaped as `corpus.path_text` says, so every listed path can be opened
  again (`read_bad_files`)."""
  path.write_text("path\treason\n" + "".join(_tsv_line(b) + "\n" for b in bad),
                  encoding="utf-8")


def read_bad_files(path: str | os.PathLike) -> list[BadFile]:
  """The rows of a `bad_files.tsv`, with the exact file names (`os.fsdecode` form)."""
  lines = Path(path).read_text(encoding="utf-8").split("\n")[1:]
  return [_bad_file_of_line(line) for line in lines if line]


# ---- prepare: what mtx-prepare runs ----


@dataclasses.dataclass(frozen=True)
class PrepareSummary:
  """What a prepare made: counts, the dataset folder and the bad-file report."""

  dataset_dir: str
  converted: int
  skipped: int  # too_few_notes included
  truncated: int
  too_few_notes: int
  split_sizes: dict[str, int]
  empty_splits: list[str]
  reused: bool  # the dataset was already there: nothing was done

  @property
  def bad_files_report(self) -> str:
    return os.path.join(self.dataset_dir, BAD_FILES_REPORT)

  def line(self) -> str:
    return (f"{self.converted:,} converted, {self.skipped:,} skipped: see "
            f"{self.bad_files_report}")


def prepare(builder: CorpusBuilder, *, manual_dir: str | os.PathLike | None = None,
            overwrite: bool = False, beam_runner: str | None = None,
            beam_options: list[str] | None = None) -> PrepareSummary:
  """Checks the inputs, then builds the dataset (or reuses the one there).

  Raises ConfigError (LayoutError for a wrong manual dir) before any work when
  the layout is wrong, `data_dir` is not writable, Beam is asked for and not
  installed, or a dataset of this name and config is already there built from
  another source (pass overwrite=True, or another data_dir).

  Worker processes are forked when no other thread runs in this process
  (`data_pipeline.convert.pool_start_method`): then a script may call this
  without an `if __name__ == "__main__":` guard, several times. Where other
  threads run (a JAX runtime, a data loader), workers come from a fork server,
  which imports the main script again in each worker: guard such a script.
  """
  check_writable(builder.data_dir_root)
  source = builder.source_record(manual_dir)  # the manual dir is needed and given
  download_config = tfds.download.DownloadConfig(
      manual_dir=None if manual_dir is None else os.fspath(builder.source_dir(manual_dir)),
      download_mode=(tfds.download.GenerateMode.REUSE_CACHE_IF_EXISTS if overwrite
                     else tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS))
  if beam_runner or beam_options:
    download_config.beam_runner = beam_runner
    download_config.beam_options = beam_pipeline_options(beam_runner, beam_options or [])
  if builder.data_path.exists() and builder.is_prepared() and not overwrite:
    metadata = dict(builder.info.metadata)
    recorded = metadata.get("source")
    # Prepared before the options existed: mtx's defaults, what the plain configs are.
    preparation = metadata.get("preparation", {"shift_to_first_note": False, "min_notes": 0})
    if preparation != builder.builder_config.preparation:
      raise ConfigError(
          f"{builder.data_dir} holds {builder.name}/{builder.builder_config.name} prepared "
          f"with {preparation}, not {builder.builder_config.preparation}; pass --overwrite "
          "to rebuild it, or another --data_dir")
    if recorded != source:
      raise ConfigError(
          f"{builder.data_dir} already holds {builder.name}/{builder.builder_config.name} "
          f"built from {recorded}, not {source}; pass --overwrite to rebuild it, or another "
          "--data_dir")
    return _summary(builder, reused=True)
  builder.corpus_files(manual_dir)  # the layout is checked before any folder is made
  with exclusive_prepare(builder):
    remove_interrupted(builder)
    try:
      builder.download_and_prepare(download_config=download_config)
    except Exception as e:  # pylint: disable=broad-except
      if not is_disk_full(e):
        raise
      remove_interrupted(builder)  # TFDS removed its incomplete folder; be sure
      raise disk_full_error(builder, e) from None
  return _summary(builder, reused=False)


# errno's text, as C++ writers (ArrayRecord's "write() failed: No space left on device")
# put it in a RuntimeError of their own.
_DISK_FULL = {errno.ENOSPC: "No space left on device", errno.EDQUOT: "Disk quota exceeded"}


def is_disk_full(error: BaseException) -> bool:
  """Whether `error` (or what it was raised from) says a disk or quota is full."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if isinstance(error, OSError) and error.errno in _DISK_FULL:
      return True
    if any(text in str(error) for text in _DISK_FULL.values()):
      return True
    error = error.__cause__ or error.__context__
  return False


def disk_full_error(builder: CorpusBuilder, error: BaseException) -> DiskFullError:
  """One line naming the full disk (its mount point and what is free now, after the
  incomplete dataset was removed) and what to do."""
  folder = Path(os.fspath(builder.data_dir_root)).expanduser().absolute()
  mount = folder
  while not os.path.ismount(mount) and mount.parent != mount:
    mount = mount.parent
  try:
    free = f", {shutil.disk_usage(mount).free / 2**20:,.1f} MiB free now"
  except OSError:
    free = ""
  what = next((text for text in _DISK_FULL.values() if text in str(error)), None) or \
      _DISK_FULL.get(getattr(error, "errno", None), "No space left on device")
  return DiskFullError(
      f"--data_dir {path_text(folder)}: the disk mounted at {path_text(mount)} is full "
      f"({what}{free}) while writing {builder.name}/{builder.builder_config.name}; nothing "
      "of it was kept: free some space there, or pass a --data_dir on another disk, and run "
      "the same command again")


@contextlib.contextmanager
def exclusive_prepare(builder: CorpusBuilder):
  """Holds a lock while preparing: a second prepare of the same config into
  the same data_dir on this machine then fails at once with a clear message,
  instead of removing the first one's incomplete folder as a leftover (the
  first then failed when finishing: "Failed to finalize writing of split
  train: open() failed"). The lock file lies in the temporary folder, named
  by a hash of the dataset's path, so nothing is added to the data_dir; the
  OS drops the lock when the process ends, however it ends (a kill too)."""
  final = os.fspath(builder.data_dir)
  if "://" in final:  # a bucket: no local lock to take
    yield
    return
  folder = Path(final).parent
  digest = hashlib.sha1(os.path.realpath(final).encode("utf-8")).hexdigest()[:16]
  lock = Path(tempfile.gettempdir()) / f"mtx-prepare-{digest}.lock"
  with open(lock, "a", encoding="utf-8") as handle:
    try:
      fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      raise ConfigError(
          f"another prepare of {builder.name}/{builder.builder_config.name} is writing into "
          f"{folder} now (it holds {lock}); wait for it to finish, or pass another "
          "--data_dir") from None
    yield


def _summary(builder: CorpusBuilder, reused: bool) -> PrepareSummary:
  counts = dict(builder.info.metadata).get("prepare", {})
  return PrepareSummary(
      dataset_dir=os.fspath(builder.data_dir), converted=int(counts.get("converted", 0)),
      skipped=int(counts.get("skipped", 0)), truncated=int(counts.get("truncated", 0)),
      too_few_notes=int(counts.get("too_few_notes", 0)),
      split_sizes={name: split.num_examples for name, split in builder.info.splits.items()},
      empty_splits=list(counts.get("empty_splits", [])), reused=reused)


def check_writable(data_dir: str | os.PathLike) -> None:
  """Raises ConfigError unless files can be created under `data_dir`."""
  if "://" in os.fspath(data_dir):  # a bucket: TFDS reports its own errors
    return
  folder = Path(data_dir).expanduser()
  try:
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=folder, prefix=".mtx-write-check"):
      pass
  except OSError as e:
    raise ConfigError(f"--data_dir {folder}: cannot write there ({e.strerror or e}); pass a "
                      "folder you can write to") from None


def remove_interrupted(builder: CorpusBuilder) -> list[str]:
  """Removes what interrupted prepares of this config and version left (TFDS's
  `incomplete.*` folders: never loadable, only taking space). Call it under
  `exclusive_prepare`, so no running prepare's folder is taken for a leftover."""
  final = epath.Path(builder.data_dir)
  removed = []
  if final.parent.exists():
    for leftover in final.parent.glob(f"incomplete.*_{final.name}"):
      leftover.rmtree()
      removed.append(os.fspath(leftover))
  return removed


def beam_pipeline_options(runner: str | None, options: list[str]):
  """Beam `PipelineOptions` from `key=value` items (`direct_num_workers=2`)."""
  try:
    from apache_beam.options.pipeline_options import PipelineOptions
  except ImportError:
    raise ConfigError("--beam_runner/--beam_options need Apache Beam: pip install -e '.[beam]'"
                      ) from None
  argv = [f"--{item.lstrip('-')}" for item in options if item]
  if runner:
    argv.append(f"--runner={runner}")
  return PipelineOptions(argv)
