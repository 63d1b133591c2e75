"""The SymphonyNet dataset's layout: a tree of MIDI files and nothing else.

As downloaded, `SymphonyNet_Dataset/` holds one folder per collection
(`classical/`, `contemporary/`) of MIDI files; any nesting is read, so a flat
folder works too. There is no metadata table: a file is known by its path
relative to the dataset folder, which is also what its split is hashed from.
"""

from __future__ import annotations

from pathlib import Path

from data_pipeline.corpus import (
  CorpusFile,
  LayoutError,
  midi_files_under,
  require_manual_dir,
  split_by_hash,
)

DESCRIPTION = """\
The SymphonyNet dataset (Liu et al., 2022): about 46,000 multi-track MIDI files of symphonic and
other orchestral music, in a classical/ and a contemporary/ folder; the MMT reference code trains
on it beside SOD and Lakh. Download it from the link on https://symphonynet.github.io/ (the MMT
reference code fetches Google Drive file 1j9Pvtzaq8k_QIPs8e2ikvCR-BusPluTb) and pass the unpacked
SymphonyNet_Dataset/ folder (or the folder holding it) as --manual_dir. Licence: the download states
none; the code is MIT and the files keep their sources' terms. Split: deterministic by a hash of
the path relative to SymphonyNet_Dataset/, 80/10/10 train/validation/test, the ratios of the MMT
reference code's random 8:1:1 split (drawn once and saved as name lists there). Metadata: name (that
relative path) and collection (its first folder, "" for a file at the top)."""

METADATA_KEYS = ("name", "collection")

RELEASE_FOLDER = "SymphonyNet_Dataset"
VALIDATION = 0.1
TEST = 0.1
FIX = (
  "download the dataset from the link on https://symphonynet.github.io/, unpack it and pass "
  "the SymphonyNet_Dataset/ folder (it holds classical/ and contemporary/ with the .mid "
  "files)"
)


def find_root(manual_dir: str | Path) -> Path:
  """The dataset folder: `manual_dir` itself or its `SymphonyNet_Dataset/` folder."""
  manual_dir = require_manual_dir(manual_dir, "SymphonyNet", FIX)
  release = manual_dir / RELEASE_FOLDER
  return release if release.is_dir() else manual_dir


def list_files(manual_dir: str | Path) -> list[CorpusFile]:
  """Every MIDI file under the dataset folder, sorted by key (the relative path)."""
  root = find_root(manual_dir)
  files = []
  for path in midi_files_under(root):
    parts = path.relative_to(root).parts
    key = "/".join(parts)
    files.append(
      CorpusFile(
        path=path,
        split=split_by_hash(key, VALIDATION, TEST),
        key=key,
        metadata=dict(name=key, collection=parts[0] if len(parts) > 1 else ""),
      )
    )
  if not files:
    raise LayoutError(
      f"--manual_dir {manual_dir}: no MIDI file (.mid, .midi, .kar, .rmi) "
      f"under {root}; SymphonyNet: {FIX}"
    )
  return sorted(files, key=lambda f: f.key)
