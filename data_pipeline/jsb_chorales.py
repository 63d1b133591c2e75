"""The Bach chorales of music21's corpus: mtx's embedded default corpus.

Nothing to download: music21 (a dependency) ships the scores. `list_files`
writes each chorale as MIDI into a cache folder (`data_pipeline.music21_chorales`
does the conversion; a file already there is kept, so only the first prepare
pays for it) and lists them.

Split: fixed by the chorale id (`bwv1.6`): `corpus.split_by_hash(id, 0.1, 0.1)`,
so a chorale's split never depends on which others are present. With music21
10.5.1's 409 chorales this gives train 318, validation 51, test 40.
"""

from __future__ import annotations

from pathlib import Path

from data_pipeline.convert import process_pool
from data_pipeline.corpus import CorpusFile, split_by_hash
from data_pipeline.music21_chorales import chorale_paths, write_chorale

VALIDATION_RATIO = 0.1
TEST_RATIO = 0.1
METADATA_KEYS = ("chorale_id", "music21_path")
DESCRIPTION = (
    "The J.S. Bach chorales of music21's corpus (409 with music21 10.5.1), converted to "
    "MIDI: one track per voice, repeats not expanded. Split fixed by a hash of the "
    "chorale id (10% validation, 10% test: 318/51/40 with music21 10.5.1).")


def list_files(cache_dir: Path, limit: int = 0, num_workers: int = 1) -> list[CorpusFile]:
  """Every chorale (the first `limit` by id when limit > 0) as a MIDI file in
  `cache_dir`, converting the missing ones on `num_workers` processes."""
  cache_dir = Path(cache_dir)
  cache_dir.mkdir(parents=True, exist_ok=True)
  sources = list(chorale_paths().items())
  if limit > 0:
    sources = sources[:limit]
  missing = [(cache_dir / f"{chorale_id}.mid", source) for chorale_id, source in sources
             if not (cache_dir / f"{chorale_id}.mid").exists()]
  if num_workers > 1 and len(missing) > 1:
    pool = process_pool(num_workers)
    try:
      list(pool.map(write_chorale, missing, chunksize=4))
    finally:
      pool.shutdown(cancel_futures=True)
  else:
    for item in missing:
      write_chorale(item)
  return [
      CorpusFile(path=cache_dir / f"{chorale_id}.mid",
                 split=split_by_hash(chorale_id, VALIDATION_RATIO, TEST_RATIO), key=chorale_id,
                 metadata={"chorale_id": chorale_id, "music21_path": _music21_path(source)})
      for chorale_id, source in sources
  ]


def _music21_path(source: Path) -> str:
  """`bach/bwv1.6.mxl`: the score's path inside music21's corpus."""
  parts = Path(source).parts
  return "/".join(parts[parts.index("corpus") + 1:]) if "corpus" in parts else Path(source).name
