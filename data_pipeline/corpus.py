"""What a corpus layout hands the builders: its MIDI files, split and metadata.

Each corpus module (`maestro`, `lmd`, `sod`, `symphonynet`, `midi_folder`,
`jsb_chorales`) has a pure function `list_files(manual_dir, **options) ->
list[CorpusFile]` that reads the release's layout (csv/json metadata, folder
structure) and assigns every file its split. Builders and `mtx-prepare` only
see `CorpusFile`s, so a new corpus is one new layout function.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path

from mtx.errors import ConfigError

SPLITS = ("train", "validation", "test")


class LayoutError(ConfigError):
  """A `manual_dir` does not look like the corpus' release: the message names
  the missing file or folder of the layout and says what to pass instead."""


@dataclasses.dataclass(frozen=True)
class CorpusFile:
  """One MIDI file of a corpus.

  path: the file on disk.
  split: "train", "validation" or "test".
  key: a stable unique id inside the corpus (e.g. the path relative to the
    corpus root); the builder's example key.
  metadata: what the corpus says of the file (composer, title, year, ...): str
    values only, "" where unknown; every file of one corpus has the same keys.
  md5: the md5 of the file's bytes when the layout already read them (for the
    split); "" otherwise, and the converter hashes the file. Saves reading and
    hashing every file twice.
  """

  path: Path
  split: str
  key: str
  metadata: dict[str, str] = dataclasses.field(default_factory=dict)
  md5: str = ""


def md5_of_file(path: str | Path) -> str:
  """Hex md5 of a file's bytes (Lakh names its files by it)."""
  digest = hashlib.md5()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def split_by_hash(text: str, validation: float, test: float) -> str:
  """Deterministic split from a hash of `text`: the same file always lands in
  the same split, whatever else is in the corpus."""
  if not (0 <= validation and 0 <= test and validation + test < 1):
    raise ValueError(f"split ratios validation={validation}, test={test} must be >= 0 and "
                     "sum to less than 1")
  fraction = int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:15], 16) / 16**15
  if fraction < test:
    return "test"
  if fraction < test + validation:
    return "validation"
  return "train"


# .kar: karaoke files, Standard MIDI Files with lyrics; .rmi: MIDI in a RIFF wrapper.
MIDI_SUFFIXES = (".mid", ".midi", ".kar", ".rmi")


def midi_files_under(root: Path) -> list[Path]:
  """Every MIDI file (.mid/.midi/.kar/.rmi, any case) under `root`, recursively, sorted by
  the path relative to `root`. Hidden entries, `__MACOSX/` folders and `._*`
  files are skipped: zips made on a Mac carry them and they are not MIDI."""
  found = []
  for folder, subfolders, files in os.walk(root):
    subfolders[:] = [d for d in subfolders if not d.startswith(".") and d != "__MACOSX"]
    found.extend(Path(folder, name) for name in files
                 if not name.startswith(".") and name.lower().endswith(MIDI_SUFFIXES))
  return sorted(found, key=lambda p: p.relative_to(root).parts)


def require_manual_dir(manual_dir: str | os.PathLike, corpus: str, fix: str) -> Path:
  """`manual_dir` as a Path; a `LayoutError` saying `fix` (where to download the
  corpus and which folder to pass) if it is missing, a file or empty."""
  path = Path(manual_dir).expanduser()
  if not path.exists():
    problem = "no such folder"
  elif not path.is_dir():
    problem = "is a file, not a folder"
  elif not any(path.iterdir()):
    problem = "the folder is empty"
  else:
    return path
  raise LayoutError(f"--manual_dir {path}: {problem}; {corpus}: {fix}")
