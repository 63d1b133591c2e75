r"""`mtx-prepare`: a MIDI corpus -> token records (TFDS, ArrayRecord), one command.

    mtx-prepare --dataset=jsb_chorales --representation=mmt --data_dir=data
    mtx-prepare --dataset=maestro --manual_dir=~/maestro-v3.0.0 --data_dir=data
    mtx-prepare --dataset=midi_folder --manual_dir=my_midi --validation_ratio=0.05
    mtx-prepare --dataset=lmd --manual_dir=lmd --lmd_ids_file=cleansed_ids.txt
    mtx-prepare --dataset=lmd --manual_dir=lmd_full --beam_runner=DirectRunner \
        --beam_options=direct_num_workers=8,direct_running_mode=multi_processing
    mtx-prepare --dataset=sod --manual_dir=~/sod --shift_to_first_note --min_notes=50

The dataset lands in `<data_dir>/<dataset>/<config>/<version>/`; read it with
`tfds.data_source("<dataset>/<config>", data_dir=...)`. The config is the
representation ("mmt"), for mtx's preparation: each song as the file has it,
leading silence kept, every song with a note. `--shift_to_first_note` (move
each song earlier by whole beats, its first note into beat 0) and
`--min_notes=N` (leave out songs of fewer than N notes) prepare the songs as the
MMT reference does (`--shift_to_first_note --min_notes=50`); they change the
data, so they name another config ("mmt_shift_min50"), in a folder of its own,
never mixed up with the plain one. The shipped configs (configs/mmt_sod.py,
mmt_lmd.py, jsb_tiny.py) train on the plain one.

Files that cannot be converted are skipped and listed in `bad_files.tsv` there
(tab-separated; a tab, newline, backslash or byte that is not UTF-8 in a file
name is escaped, `\t`, `\n`, `\\`, `\xNN`: `data_pipeline.bad_files.read_bad_files`
gives the names back), and a summary is printed. Links to folders under
--manual_dir are followed. An interrupted run (Ctrl-C, kill) or a full disk
leaves nothing that loads; run the same command again to finish. Bad input
(a full disk too) exits with status 2 and one line; an interrupt with 130.
"""

from __future__ import annotations

import os
import signal
import sys

from absl import flags
from absl import logging as absl_logging

from data_pipeline import bucket
from data_pipeline.builders import get_builder_class
from data_pipeline.prepare import prepare
from mtx.cli.app import run as run_app
from mtx.datasets import DATASET_NAMES, config_name
from mtx.errors import ConfigError
from mtx.representation import CODEC_NAMES, get_codec

_DATASET = flags.DEFINE_string("dataset", None, f"One of {', '.join(DATASET_NAMES)}.")
_MANUAL_DIR = flags.DEFINE_string(
  "manual_dir",
  None,
  "The corpus as released (every dataset but jsb_chorales needs it; for "
  "jsb_chorales, where to cache its MIDI files).",
)
_DATA_DIR = flags.DEFINE_string(
  "data_dir",
  None,
  "Where datasets are written. Default: TFDS's, $TFDS_DATA_DIR or "
  "~/tensorflow_datasets, where tfds.data_source finds them without a data_dir.",
)
_REPRESENTATION = flags.DEFINE_string("representation", "mmt", f"One of {', '.join(CODEC_NAMES)}.")
_NUM_WORKERS = flags.DEFINE_integer(
  "num_workers", 0, "Conversion processes; 0: every core, 1: in-process."
)
_VALIDATION_RATIO = flags.DEFINE_float(
  "validation_ratio", None, "midi_folder only: share of files in validation (0.1)."
)
_TEST_RATIO = flags.DEFINE_float(
  "test_ratio", None, "midi_folder only: share of files in test (0.1)."
)
_LMD_VARIANT = flags.DEFINE_enum(
  "lmd_variant",
  None,
  ["full", "matched"],
  "lmd only: lmd_full or lmd_matched (default: full when both "
  "are in --manual_dir, else the one that is).",
)
_LMD_IDS_FILE = flags.DEFINE_string(
  "lmd_ids_file",
  None,
  "lmd only: keep only the files whose md5 this text file lists, one "
  "per line (MMT trains on the cleansed subset named by LPD's cleansed_ids.txt).",
)
_LIMIT = flags.DEFINE_integer(
  "limit",
  0,
  "Only the first N files by key (0: all); for smoke runs. Recorded in the dataset's metadata.",
)
_BEAM_RUNNER = flags.DEFINE_string(
  "beam_runner",
  None,
  "Run on Apache Beam with this runner (DirectRunner, DataflowRunner, ...); needs .[beam].",
)
_BEAM_OPTIONS = flags.DEFINE_list(
  "beam_options", [], "Beam pipeline options as key=value items (direct_num_workers=4,project=...)."
)
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Rebuild a dataset that is already there.")
_SHIFT = flags.DEFINE_bool(
  "shift_to_first_note",
  False,
  "Move each song earlier by whole beats so its first note "
  "lies in beat 0, as the MMT reference prepares its data (default: leading silence kept). "
  "Names another config: <representation>_shift.",
)
_MIN_NOTES = flags.DEFINE_integer(
  "min_notes",
  0,
  "Leave out songs with fewer notes than this, as the representation keeps "
  "them, listed in bad_files.tsv (the MMT reference: 50; default 0: every song with a "
  "note). Names another config: <representation>_min<N>.",
)

INTERRUPTED_EXIT_CODE = 130


def _corpus_options(dataset: str) -> dict:
  """The layout's options from the flags that apply to `dataset` only."""
  ratios = {"validation": _VALIDATION_RATIO.value, "test": _TEST_RATIO.value}
  given = {k: v for k, v in ratios.items() if v is not None}
  if given and dataset != "midi_folder":
    raise ConfigError(
      f"--validation_ratio/--test_ratio apply to midi_folder only; {dataset} has its own split"
    )
  lmd_options = {"variant": _LMD_VARIANT.value, "ids_file": _LMD_IDS_FILE.value}
  for name, value in lmd_options.items():
    if value and dataset != "lmd":
      raise ConfigError(f"--lmd_{name} applies to lmd only, not {dataset}")
  if dataset == "midi_folder":
    return {"validation": 0.1, "test": 0.1, **given}
  if dataset == "lmd":
    if lmd_options["ids_file"]:  # recorded in the dataset's metadata: where it was
      lmd_options["ids_file"] = os.path.abspath(os.path.expanduser(lmd_options["ids_file"]))
    return {k: v for k, v in lmd_options.items() if v}
  return {}


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise ConfigError(f"unexpected arguments {argv[1:]}; every input is a --flag")
  if not _DATASET.value:
    raise ConfigError(f"pass --dataset, one of {', '.join(DATASET_NAMES)}")
  builder_cls = get_builder_class(_DATASET.value)
  get_codec(_REPRESENTATION.value)  # an unknown representation fails here, by name
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel

  tfds.disable_progress_bar()  # ours counts files and bad files
  if not flags.FLAGS["verbosity"].present:  # TFDS's INFO lines would bury the summary
    absl_logging.set_verbosity(absl_logging.WARNING)
  config = config_name(_REPRESENTATION.value, _SHIFT.value, _MIN_NOTES.value)
  if bucket.is_bucket(_DATA_DIR.value):
    if _BEAM_RUNNER.value:
      raise ConfigError(
        f"--data_dir={_DATA_DIR.value} with --beam_runner: Beam's workers write ArrayRecord "
        "files, whose writer opens local files only; prepare into a bucket without "
        "--beam_runner (on one machine, --num_workers), or onto a file system the workers share"
      )
    with bucket.staging_dir() as staging:
      _prepare_into_bucket(builder_cls, config, staging)
    return
  _prepare(builder_cls, config, _DATA_DIR.value)


def _prepare_into_bucket(builder_cls, config: str, staging: str) -> None:
  """The prepare into a local staging folder, then the dataset folder uploaded."""
  builder = _builder(builder_cls, config, staging)
  version = str(builder.version)
  from mtx.cli.paths import check_output_dir

  check_output_dir(_DATA_DIR.value, "data_dir", bucket_ok=True)  # reachable, writable
  bucket.check_bucket_target(_DATA_DIR.value, builder.name, config, version, _OVERWRITE.value)
  summary = _run_prepare(builder)
  remote = bucket.upload(summary.dataset_dir, _DATA_DIR.value, f"{builder.name}/{config}/{version}")
  _report(builder, bucket.relocated(summary, remote))


def _builder(builder_cls, config: str, data_dir: str | None):
  return builder_cls(
    config=config,
    data_dir=data_dir,
    file_format="array_record",
    num_workers=_NUM_WORKERS.value,
    corpus_options=_corpus_options(_DATASET.value),
    limit=_LIMIT.value,
  )


def _prepare(builder_cls, config: str, data_dir: str | None) -> None:
  builder = _builder(builder_cls, config, data_dir)
  _report(builder, _run_prepare(builder))


def _run_prepare(builder):
  # SIGTERM (a cluster's preemption) stops the run the way Ctrl-C does.
  signal.signal(signal.SIGTERM, signal.default_int_handler)
  try:
    summary = prepare(
      builder,
      manual_dir=_MANUAL_DIR.value,
      overwrite=_OVERWRITE.value,
      beam_runner=_BEAM_RUNNER.value,
      beam_options=_BEAM_OPTIONS.value,
    )
  except KeyboardInterrupt:
    print(
      f"interrupted: nothing of {builder.name}/{builder.builder_config.name} was kept; "
      "run the same command again to prepare it",
      file=sys.stderr,
    )
    sys.exit(INTERRUPTED_EXIT_CODE)
  return summary


def _report(builder, summary) -> None:
  if summary.reused:
    print(f"already prepared in {summary.dataset_dir}; pass --overwrite to rebuild it")
  print(summary.line())
  sizes = ", ".join(f"{name} {count:,}" for name, count in summary.split_sizes.items())
  print(f"{sizes} examples of {builder.builder_config.name} tokens in {summary.dataset_dir}")
  if summary.too_few_notes:
    print(
      f"{summary.too_few_notes:,} of the skipped files have fewer than --min_notes "
      f"{_MIN_NOTES.value} notes"
    )
  if summary.truncated:
    print(
      f"{summary.truncated:,} of them truncated: notes past the representation's limit "
      f"dropped ({builder.info.metadata['codec_options']})"
    )
  for split in summary.empty_splits:
    print(f"no {split} split: every file of it was skipped")


def run() -> None:
  run_app(main)


if __name__ == "__main__":
  run()
