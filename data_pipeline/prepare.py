"""`prepare`, what `mtx-prepare` runs: the checks a user needs before hours of
work, then the builder, under a lock.

Before any work: the layout, a writable `data_dir`, Beam when asked for, a dataset
already there (reused only when built from the same source, the same way). Nothing
half-written loads as complete: TFDS writes into an `incomplete.*` folder and renames
it to `<name>/<config>/<version>` only at the end (`bad_files.tsv` is written inside
it before); a disk that fills up is one `DiskFullError` naming it, with nothing of the
dataset left behind.

    builder = builders.get_builder_class("midi_folder")(config="mmt", data_dir=d)
    summary = prepare(builder, manual_dir=folder)
    builder.as_data_source(split="train")[0]["tokens"]
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import tensorflow_datasets as tfds
from etils import epath

from data_pipeline.bad_files import BAD_FILES_REPORT
from data_pipeline.beam_options import prepare_beam_options
from data_pipeline.corpus import path_text
from mtx.cli.paths import check_output_dir
from mtx.errors import ConfigError, DiskFullError
from mtx.train.storage import disk_full

if TYPE_CHECKING:
  from data_pipeline.builder import CorpusBuilder


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
    return f"{self.converted:,} converted, {self.skipped:,} skipped: see {self.bad_files_report}"


def prepare(
  builder: CorpusBuilder,
  *,
  manual_dir: str | os.PathLike | None = None,
  overwrite: bool = False,
  beam_runner: str | None = None,
  beam_options: list[str] | None = None,
) -> PrepareSummary:
  """Checks the inputs, then builds the dataset (or reuses the one there).

  Raises ConfigError (LayoutError for a wrong manual dir) before any work when
  the layout is wrong, `data_dir` is not writable, Beam is asked for and not
  installed or its options cannot run (`data_pipeline.beam_options`), or a
  dataset of this name and config is already there built from another source
  (pass overwrite=True, or another data_dir).

  Worker processes are forked when no other thread runs in this process
  (`data_pipeline.convert.pool_start_method`): then a script may call this
  without an `if __name__ == "__main__":` guard, several times. Where other
  threads run (a JAX runtime, a data loader), workers come from a fork server,
  which imports the main script again in each worker: guard such a script.
  """
  pipeline_options = None
  if beam_runner or beam_options:  # checked before anything is made, data_dir included
    pipeline_options = prepare_beam_options(
      beam_runner, beam_options or [], data_dir=builder.data_dir_root
    )
  check_output_dir(builder.data_dir_root, "data_dir", bucket_ok=True)
  source = builder.source_record(manual_dir)  # the manual dir is needed and given
  download_config = tfds.download.DownloadConfig(
    manual_dir=None if manual_dir is None else os.fspath(builder.source_dir(manual_dir)),
    download_mode=(
      tfds.download.GenerateMode.REUSE_CACHE_IF_EXISTS
      if overwrite
      else tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS
    ),
  )
  if pipeline_options is not None:
    download_config.beam_runner = beam_runner
    download_config.beam_options = pipeline_options
  if builder.data_path.exists() and builder.is_prepared() and not overwrite:
    metadata = dict(builder.info.metadata)
    recorded = metadata.get("source")
    # Prepared before the options existed: mtx's defaults, what the plain configs are.
    preparation = metadata.get("preparation", {"shift_to_first_note": False, "min_notes": 0})
    if preparation != builder.builder_config.preparation:
      raise ConfigError(
        f"{builder.data_dir} holds {builder.name}/{builder.builder_config.name} prepared "
        f"with {preparation}, not {builder.builder_config.preparation}; pass --overwrite "
        "to rebuild it, or another --data_dir"
      )
    if recorded != source:
      raise ConfigError(
        f"{builder.data_dir} already holds {builder.name}/{builder.builder_config.name} "
        f"built from {recorded}, not {source}; pass --overwrite to rebuild it, or another "
        "--data_dir"
      )
    return summary_of(builder, reused=True)
  builder.corpus_files(manual_dir)  # the layout is checked before any folder is made
  with exclusive_prepare(builder):
    remove_interrupted(builder)
    try:
      builder.download_and_prepare(download_config=download_config)
    except Exception as e:  # pylint: disable=broad-except
      if not disk_full(e):
        raise
      remove_interrupted(builder)  # TFDS removed its incomplete folder; be sure
      raise disk_full_error(builder, e) from None
    _write_sampling_limits(builder)
  return summary_of(builder, reused=False)


def _write_sampling_limits(builder: CorpusBuilder) -> None:
  """The sampler's limits of every split, read once here where the records are local
  (mtx.data.split_limits: a run on a bucket would read each song over the network)."""
  from mtx.data.split_limits import write_limits
  from mtx.representation import get_codec

  metadata = dict(builder.info.metadata)
  codec = get_codec(metadata["representation"], **metadata["codec_options"])
  sources = {
    name: builder.as_data_source(name)
    for name, split in builder.info.splits.items()
    if split.num_examples
  }
  write_limits(builder.data_dir, codec, sources)


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
  what = (
    "Disk quota exceeded"
    if "quota" in str(error).lower() or getattr(error, "errno", None) == errno.EDQUOT
    else "No space left on device"
  )
  return DiskFullError(
    f"--data_dir {path_text(folder)}: the disk mounted at {path_text(mount)} is full "
    f"({what}{free}) while writing {builder.name}/{builder.builder_config.name}; nothing "
    "of it was kept: free some space there, or pass a --data_dir on another disk, and run "
    "the same command again"
  )


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
        "--data_dir"
      ) from None
    yield


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


def summary_of(builder: CorpusBuilder, reused: bool) -> PrepareSummary:
  """What `metadata.json` of the prepared dataset records of its prepare."""
  counts = dict(builder.info.metadata).get("prepare", {})
  return PrepareSummary(
    dataset_dir=os.fspath(builder.data_dir),
    converted=int(counts.get("converted", 0)),
    skipped=int(counts.get("skipped", 0)),
    truncated=int(counts.get("truncated", 0)),
    too_few_notes=int(counts.get("too_few_notes", 0)),
    split_sizes={name: split.num_examples for name, split in builder.info.splits.items()},
    empty_splits=list(counts.get("empty_splits", [])),
    reused=reused,
  )
