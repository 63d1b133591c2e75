"""The Symbolic Orchestral Database's layout: sub-corpora of numbered piece folders.

    SOD/<sub-corpus>/<piece>/<name>_orch.mid    the orchestral score
    SOD/<sub-corpus>/<piece>/<name>_orch.csv    its instrumentation
    SOD/<sub-corpus>/<piece>/<name>_solo.mid    a piano version, where there is one

Every MIDI file of a piece folder is listed, as the MMT reference code takes
every `.mid` of the tree. The csv beside a file (same name, `.csv`) maps its
track names to instruments: semicolon-separated, the first row the track
names, the second the instruments; its distinct instruments become the
`instruments` metadata ("" where there is no csv or it does not parse).

The split is a hash of the piece folder (`<sub-corpus>/<piece>`), so the
orchestral score and the piano version of a piece share a split. The MMT
reference names each example `<sub-corpus>-<piece>` and splits those names at
random 8:1:1: the same unit and ratios, drawn by hash instead of once and saved.
"""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path

from data_pipeline.corpus import (
  CorpusFile,
  LayoutError,
  midi_files_under,
  require_manual_dir,
  split_by_hash,
)

DESCRIPTION = """\
The Symbolic Orchestral Database, SOD (Crestel et al., 2017): several thousand orchestral
scores as MIDI files with their instrumentation, gathered from several archives
(Kunstderfuge, Musicalion, IMSLP, the Liszt classical archives, orchestrations by Bouliane,
hand-picked pieces, ...), one sub-corpus folder each. Download SOD.zip from
https://qsdfo.github.io/LOP/database.html and pass the unpacked SOD/ folder (or the folder holding
it) as --manual_dir. Licence: the archive states none; see that page, and the terms of each
piece's source archive. Split: deterministic by a hash of the piece folder
(<sub-corpus>/<piece>), 80/10/10 train/validation/test, so a piece's orchestral and piano files
share a split; the MMT reference code splits its <sub-corpus>-<piece> names at random 8:1:1 once
and saves the lists. Metadata: sub_corpus, piece (the piece folder's name) and instruments (from
the csv beside the file, comma-separated, "" where there is none)."""

METADATA_KEYS = ("sub_corpus", "piece", "instruments")

RELEASE_FOLDER = "SOD"
VALIDATION = 0.1
TEST = 0.1
FIX = (
  "download SOD.zip from https://qsdfo.github.io/LOP/database.html, unpack it and pass the "
  "SOD/ folder (it holds one folder per sub-corpus, e.g. Kunstderfuge/0/..._orch.mid)"
)

_log = logging.getLogger(__name__)


def find_root(manual_dir: str | Path) -> Path:
  """The SOD/ folder: `manual_dir` itself or its `SOD/` folder."""
  manual_dir = require_manual_dir(manual_dir, "SOD", FIX)
  release = manual_dir / RELEASE_FOLDER
  return release if release.is_dir() else manual_dir


def instruments_of(csv_path: Path) -> str:
  """The distinct instruments, in track order, of a SOD instrumentation csv."""
  try:
    rows = list(
      csv.reader(io.StringIO(csv_path.read_bytes().decode("utf-8", "replace")), delimiter=";")
    )
  except (OSError, csv.Error):
    return ""
  if len(rows) < 2:
    return ""
  names = [name.strip() for name in rows[1] if name.strip()]
  return ", ".join(dict.fromkeys(names))


def list_files(manual_dir: str | Path) -> list[CorpusFile]:
  """Every MIDI file in a `<sub-corpus>/<piece>/` folder, sorted by key.

  key: the path relative to SOD/, e.g. `Kunstderfuge/687/messiah_10_orch.mid`.
  """
  root = find_root(manual_dir)
  files, elsewhere = [], []
  for path in midi_files_under(root):
    parts = path.relative_to(root).parts
    if len(parts) != 3:
      elsewhere.append(path)
      continue
    sub_corpus, piece, _ = parts
    csv_path = path.with_suffix(".csv")
    files.append(
      CorpusFile(
        path=path,
        split=split_by_hash(f"{sub_corpus}/{piece}", VALIDATION, TEST),
        key="/".join(parts),
        metadata=dict(
          sub_corpus=sub_corpus,
          piece=piece,
          instruments=instruments_of(csv_path) if csv_path.is_file() else "",
        ),
      )
    )
  if not files:
    raise LayoutError(
      f"--manual_dir {manual_dir}: no MIDI file in a <sub-corpus>/<piece>/ "
      f"folder under {root}; SOD: {FIX}"
    )
  if elsewhere:
    _log.warning(
      "SOD: %d MIDI files under %s are not in a <sub-corpus>/<piece>/ folder and are "
      "ignored (the first: %s)",
      len(elsewhere),
      root,
      elsewhere[0],
    )
  return sorted(files, key=lambda f: f.key)
