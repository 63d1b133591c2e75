"""What a prepared dataset is called and where it lies: the contract between the
writer (`mtx-prepare`, `data_pipeline`) and the readers (`mtx.train.data`).

Both sides read the names from here, so mtx opens a dataset without importing the
builders that wrote it (data_pipeline depends on mtx, never the other way):

    <data_dir>/<dataset>/<config>/<version>/   dataset_info.json, metadata.json, records

`config` is a representation prepared one way (`config_name`); `version` is the
dataset's current version (`DATASET_VERSIONS`): a folder of an older version was
made by older codecs and is never read.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from mtx.errors import ConfigError
from mtx.representation import CODEC_NAMES

# The version each builder writes now (data_pipeline.builders takes its VERSION from here;
# the release notes saying what changed stay with the builders).
DATASET_VERSIONS = {
  "jsb_chorales": "1.2.0",
  "maestro": "1.1.0",
  "lmd": "1.1.0",
  "sod": "1.1.0",
  "symphonynet": "1.1.0",
  "midi_folder": "1.1.0",
}
DATASET_NAMES = tuple(DATASET_VERSIONS)


def config_name(representation: str, shift_to_first_note: bool = False, min_notes: int = 0) -> str:
  """The builder config of a representation prepared this way: the representation's
  name ("mmt") for mtx's defaults, else with `_shift` and/or `_min<N>` ("mmt_shift_min50":
  the MMT reference's preparation)."""
  if representation not in CODEC_NAMES:
    raise ConfigError(
      f"unknown representation '{representation}'; choose one of {', '.join(CODEC_NAMES)}"
    )
  if min_notes < 0:
    raise ConfigError(f"--min_notes must be >= 0 (0: keep every song with a note); got {min_notes}")
  return (
    representation
    + ("_shift" if shift_to_first_note else "")
    + (f"_min{min_notes}" if min_notes else "")
  )


_CONFIG_NAME = re.compile(rf"^({'|'.join(map(re.escape, CODEC_NAMES))})(_shift)?(?:_min(\d+))?$")


def parse_config_name(name: str) -> tuple[str, bool, int] | None:
  """`config_name`'s inverse: (representation, shift_to_first_note, min_notes), or None
  when `name` is no config's name (as "mmt_min0" or "mmt_min050" are not)."""
  match = _CONFIG_NAME.match(name) if isinstance(name, str) else None
  if not match:
    return None
  parts = match.group(1), bool(match.group(2)), int(match.group(3) or 0)
  return parts if name == config_name(*parts) else None


def is_config_name(name: str) -> bool:
  """Whether `name` names a builder config: a representation ("mmt"), or one prepared
  another way ("mmt_shift_min50"); what `data.representation` of a training config holds."""
  return parse_config_name(name) is not None


def default_data_dir() -> str:
  """TFDS's default data_dir (what a builder given no data_dir writes to)."""
  return os.environ.get(
    "TFDS_DATA_DIR", os.path.join(os.path.expanduser("~"), "tensorflow_datasets")
  )


def dataset_folder(data_dir: str | None, dataset: str, config: str) -> str:
  """Where the current version of `dataset`/`config` lies under `data_dir` (None:
  TFDS's default); a bucket's address is kept as it is."""
  root = data_dir or default_data_dir()
  version = DATASET_VERSIONS[dataset]
  if "://" in root:
    return f"{root.rstrip('/')}/{dataset}/{config}/{version}"
  return os.fspath(Path(root).expanduser() / dataset / config / version)
