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
from pathlib import Path

SPLITS = ("train", "validation", "test")


@dataclasses.dataclass(frozen=True)
class CorpusFile:
  """One MIDI file of a corpus.

  path: the file on disk.
  split: "train", "validation" or "test".
  key: a stable unique id inside the corpus (e.g. the path relative to the
    corpus root); the builder's example key.
  metadata: what the corpus says of the file (composer, title, year, ...): str
    values only, "" where unknown; every file of one corpus has the same keys.
  """

  path: Path
  split: str
  key: str
  metadata: dict[str, str] = dataclasses.field(default_factory=dict)


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
