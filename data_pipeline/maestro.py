"""MAESTRO's layout: the release's metadata table names every MIDI file and its split.

The table is `maestro-v3.0.0.csv` or `.json` beside the year folders
(`2004/`, ..., `2018/`). The csv and the json hold the same rows: the json is
column-oriented as pandas writes it (`{"canonical_composer": {"0": ...}}`);
v2.0.0's json is a list of rows. Both are read, so either download works.

A row whose MIDI file is absent stays in the list (its `path` does not exist),
so that the builder reports it in `bad_files.tsv` beside the corrupt files
instead of silently training on less; a warning counts them here. If none of
the named files is there, `manual_dir` is the wrong folder: `LayoutError`.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

from data_pipeline.corpus import SPLITS, CorpusFile, LayoutError, require_manual_dir

DESCRIPTION = """\
MAESTRO (Hawthorne et al., ICLR 2019): about 200 hours of virtuosic piano performances
captured on Yamaha Disklaviers at the International Piano-e-Competition, 2004-2018; v3.0.0 has
1,276 performances. Download maestro-v3.0.0-midi.zip from
https://magenta.tensorflow.org/datasets/maestro (the MIDI-only zip is enough) and pass the
unpacked maestro-v3.0.0/ folder (holding maestro-v3.0.0.csv or .json and the year folders) as
--manual_dir; v2.0.0 and v1.0.0 folders are read too. Licence: CC BY-NC-SA 4.0 (non-commercial).
Split: the release's own `split` column (train/validation/test), which keeps every performance of
a composition in one split. Metadata: composer, title, year and duration (seconds) from the
table."""

METADATA_KEYS = ("composer", "title", "year", "duration")

# Metadata files in the order they are looked for: the newest release first, csv before json.
RELEASE_FOLDERS = ("maestro-v3.0.0", "maestro-v2.0.0", "maestro-v1.0.0")
METADATA_FILES = tuple(f"{release}.{ext}" for release in RELEASE_FOLDERS for ext in ("csv", "json"))
COLUMNS = ("canonical_composer", "canonical_title", "split", "year", "midi_filename", "duration")
FIX = (
  "download maestro-v3.0.0-midi.zip from https://magenta.tensorflow.org/datasets/maestro, "
  "unpack it and pass the maestro-v3.0.0/ folder (it holds maestro-v3.0.0.csv and the year "
  "folders 2004/ ... 2018/)"
)

_log = logging.getLogger(__name__)


def find_metadata_file(manual_dir: str | Path) -> Path:
  """The release's metadata table in `manual_dir` or in its `maestro-v*/` folder."""
  manual_dir = require_manual_dir(manual_dir, "MAESTRO", FIX)
  for folder in (manual_dir, *(manual_dir / release for release in RELEASE_FOLDERS)):
    for name in METADATA_FILES:
      if (folder / name).is_file():
        return folder / name
  raise LayoutError(
    f"--manual_dir {manual_dir}: no {METADATA_FILES[0]} (nor "
    f"{', '.join(METADATA_FILES[1:])}) in it or in a maestro-v3.0.0/ folder "
    f"inside it; MAESTRO: {FIX}"
  )


def read_rows(metadata_file: Path) -> list[dict[str, str]]:
  """The table's rows in the file's order, each {column: text} over COLUMNS."""
  try:
    if metadata_file.suffix == ".csv":
      with open(metadata_file, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    else:
      rows = _json_rows(json.loads(metadata_file.read_text(encoding="utf-8")))
  except (UnicodeDecodeError, json.JSONDecodeError, csv.Error) as e:
    raise LayoutError(
      f"{metadata_file}: not a readable MAESTRO table ({e}); download it again: {FIX}"
    ) from None
  if rows is None:
    raise LayoutError(
      f"{metadata_file}: neither a list of rows nor a dict of columns, as "
      f"MAESTRO's json is; download it again: {FIX}"
    )
  if not rows:
    raise LayoutError(f"{metadata_file}: the table has no rows; download it again: {FIX}")
  missing = [c for c in COLUMNS if c not in rows[0]]
  if missing:
    raise LayoutError(
      f"{metadata_file}: no '{missing[0]}' column (MAESTRO's table has "
      f"{', '.join(COLUMNS)}); is this MAESTRO's metadata file? {FIX}"
    )
  return [{c: "" if row.get(c) is None else str(row[c]) for c in COLUMNS} for row in rows]


def _json_rows(table) -> list[dict] | None:
  """The rows of a column-oriented (v3.0.0) or row-oriented (v2.0.0) table."""
  if isinstance(table, list) and all(isinstance(row, dict) for row in table):
    return table
  if isinstance(table, dict) and all(isinstance(col, dict) for col in table.values()):
    index = sorted({i for col in table.values() for i in col}, key=_index_order)
    return [{name: col.get(i) for name, col in table.items()} for i in index]
  return None


def _index_order(index: str):
  return (0, int(index), "") if index.isdigit() else (1, 0, index)


def _number_text(value: str, kind: type) -> str:
  """`value` written the same way whether it came from the csv ('2018', '698.66')
  or the json (2018, 698.66); "" if it is empty or not a number."""
  try:
    return str(int(float(value))) if kind is int else repr(float(value))
  except (ValueError, OverflowError):
    return ""


def list_files(manual_dir: str | Path) -> list[CorpusFile]:
  """Every MIDI file the release's table names, with its split, sorted by key.

  key: the table's `midi_filename` (e.g. `2004/MIDI-Unprocessed_...midi`).
  """
  metadata_file = find_metadata_file(manual_dir)
  root = metadata_file.parent
  files: dict[str, CorpusFile] = {}
  for line, row in enumerate(read_rows(metadata_file), start=1):
    key = row["midi_filename"].strip().replace("\\", "/")
    if not key:
      raise LayoutError(
        f"{metadata_file}: row {line} has an empty midi_filename; download the table again: {FIX}"
      )
    if row["split"] not in SPLITS:
      raise LayoutError(
        f"{metadata_file}: row {line} ({key}) has split '{row['split']}', "
        f"not one of {', '.join(SPLITS)}; download the table again: {FIX}"
      )
    files.setdefault(
      key,
      CorpusFile(
        path=root / key,
        split=row["split"],
        key=key,
        metadata=dict(
          composer=row["canonical_composer"],
          title=row["canonical_title"],
          year=_number_text(row["year"], int),
          duration=_number_text(row["duration"], float),
        ),
      ),
    )
  absent = [f for f in files.values() if not f.path.is_file()]
  if len(absent) == len(files):
    raise LayoutError(
      f"--manual_dir {manual_dir}: none of the {len(files)} MIDI files that "
      f"{metadata_file.name} names is there (the first: {absent[0].path}); pass the folder "
      f"that holds {metadata_file.name} and the year folders ({absent[0].key.split('/')[0]}/ "
      f"...); MAESTRO: {FIX}"
    )
  if absent:
    _log.warning(
      "MAESTRO: %d of the %d MIDI files that %s names are missing (the first: %s); "
      "they will be reported as bad files",
      len(absent),
      len(files),
      metadata_file,
      absent[0].path,
    )
  return sorted(files.values(), key=lambda f: f.key)
