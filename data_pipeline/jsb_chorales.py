"""The Bach chorales of music21's corpus: mtx's embedded default corpus.

Nothing to download: music21 (a dependency) ships the scores. `list_files`
writes each chorale as MIDI into a cache folder (`data_pipeline.music21_chorales`
does the conversion, with each voice as its own instrument: soprano, alto,
tenor and bass as soprano, alto, tenor and baritone saxophone) and lists them.
A file already there is kept when this conversion wrote it, so only the first
prepare pays for it; a file of an older conversion (every part a piano) is
converted again.

Split: fixed by the chorale id (`bwv1.6`): `corpus.split_by_hash(id, 0.1, 0.1)`,
so a chorale's split never depends on which others are present. With music21
10.5.1's 409 chorales this gives train 318, validation 51, test 40. The
standard JSB Chorales split (Boulanger-Lewandowski et al., 2012: 229/76/77) is
of another encoding of the chorales (quantized piano rolls) and names no
music21 corpus id, so it cannot be followed here (docs/data.md).
"""

from __future__ import annotations

from pathlib import Path

from data_pipeline.corpus import CorpusFile, split_by_hash
from data_pipeline.music21_chorales import chorale_paths, convert_missing

VALIDATION_RATIO = 0.1
TEST_RATIO = 0.1
METADATA_KEYS = ("chorale_id", "music21_path")
DESCRIPTION = (
  "The J.S. Bach chorales of music21's corpus (409 with music21 10.5.1), converted to "
  "MIDI: one track per part, the voices as General MIDI programs 64-67 (soprano, alto, "
  "tenor, baritone saxophone; instrumental parts as their instruments), repeats played "
  "out. Split fixed by a hash of the chorale id (10% validation, 10% test: 318/51/40 with "
  "music21 10.5.1)."
)


def list_files(cache_dir: Path, limit: int = 0, num_workers: int = 1) -> list[CorpusFile]:
  """Every chorale (the first `limit` by id when limit > 0) as a MIDI file in
  `cache_dir`, converting on `num_workers` processes the ones missing there or
  written by another conversion."""
  cache_dir = Path(cache_dir)
  cache_dir.mkdir(parents=True, exist_ok=True)
  sources = list(chorale_paths().items())
  if limit > 0:
    sources = sources[:limit]
  convert_missing(
    [(cache_dir / f"{chorale_id}.mid", source) for chorale_id, source in sources], num_workers
  )
  return [
    CorpusFile(
      path=cache_dir / f"{chorale_id}.mid",
      split=split_by_hash(chorale_id, VALIDATION_RATIO, TEST_RATIO),
      key=chorale_id,
      metadata={"chorale_id": chorale_id, "music21_path": _music21_path(source)},
    )
    for chorale_id, source in sources
  ]


def _music21_path(source: Path) -> str:
  """`bach/bwv1.6.mxl`: the score's path inside music21's corpus."""
  parts = Path(source).parts
  return "/".join(parts[parts.index("corpus") + 1 :]) if "corpus" in parts else Path(source).name
