"""Any folder of MIDI files: every `.mid`/`.midi` under it, recursively (hidden
files and a Mac zip's `__MACOSX/` left out; links to folders followed, each real
folder once: `corpus.midi_files_under`).

Split by content: `corpus.split_by_hash(md5 of the file's bytes, validation,
test)`, so a file keeps its split when files are added, renamed or moved, and
byte-identical copies land in the same split (no leak from train to test).
The ratios are options (`mtx-prepare --validation_ratio --test_ratio`).
"""

from __future__ import annotations

from pathlib import Path

from data_pipeline.corpus import CorpusFile, find_midi_files, md5_of_file, split_by_hash
from mtx.errors import ConfigError

METADATA_KEYS = ("folder",)
DESCRIPTION = (
  "A folder of MIDI files (.mid, .midi, .kar, .rmi; recursive). Split by a "
  "hash of each file's md5 with the ratios given at prepare time; metadata "
  "'folder' is the file's folder relative to the root."
)


def list_files(manual_dir: Path, validation: float = 0.1, test: float = 0.1) -> list[CorpusFile]:
  """The MIDI files under `manual_dir`, sorted by relative path, with their split."""
  if not (0 <= validation and 0 <= test and validation + test < 1):
    raise ConfigError(
      f"midi_folder split ratios validation={validation}, test={test}: each "
      "must be >= 0 and together less than 1 (--validation_ratio, --test_ratio)"
    )
  root = Path(manual_dir)
  paths = find_midi_files(root, "manual_dir")
  files = []
  for path in paths:
    relative = path.relative_to(root)
    try:
      md5 = md5_of_file(path)
    except OSError:  # unreadable: conversion reports it as a bad file
      md5 = ""
    files.append(
      CorpusFile(
        path=path,
        split=split_by_hash(md5 or relative.as_posix(), validation, test),
        key=relative.as_posix(),
        md5=md5,
        metadata={"folder": "" if relative.parent == Path(".") else relative.parent.as_posix()},
      )
    )
  return files
