"""The J.S. Bach chorales bundled with music21, as Standard MIDI Files.

mtx's embedded default corpus: it ships with `pip install music21`, so the demo
and the core tests need no download. One type-1 file per chorale, named by its
corpus id (`bwv1.6.mid`): a conductor track, then one track per part, each part
on its own channel (music21 may put them all on one, where same-pitch notes of
two voices would collide). Repeats are not expanded. `bwv846` (a prelude, not a
chorale) and the duplicate Humdrum encodings are left out.

    python -m data_pipeline.music21_chorales --out_dir=DIR [--limit=N]
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

NON_CHORALES = frozenset({"bwv846"})
_CHANNELS = [c for c in range(16) if c != 9]  # channel 10 (index 9) is drums


def chorale_paths() -> dict[str, Path]:
  """Corpus id -> the music21 corpus file of each chorale, sorted by id."""
  from music21 import corpus

  found: dict[str, Path] = {}
  for path in sorted(corpus.getComposer("bach", fileExtensions=("mxl", "xml")), key=str):
    chorale_id = Path(path).name.rsplit(".", 1)[0]
    if chorale_id not in NON_CHORALES and chorale_id not in found:
      found[chorale_id] = Path(path)
  return found


def chorale_midi_bytes(path: str | os.PathLike) -> bytes:
  """Parses one corpus file with music21 and returns it as MIDI bytes."""
  from music21 import corpus, midi

  score = corpus.parse(str(path))
  midi_file = midi.translate.streamToMidiFile(score)
  for index, track in enumerate(midi_file.tracks[1:]):
    channel = _CHANNELS[index % len(_CHANNELS)] + 1  # music21 channels are 1-based
    for event in track.events:
      if getattr(event, "channel", None) is not None:
        event.channel = channel
  return midi_file.writestr()


def write_chorales(out_dir: str | os.PathLike, limit: int = 0) -> list[Path]:
  """Writes the chorales (the first `limit` by id when limit > 0) to `out_dir`.

  Files already there are kept, so a second call is cheap. Each file is written
  to a temporary name and renamed, so an interrupted run leaves no partial file.
  """
  out_dir = Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  items = list(chorale_paths().items())
  if limit > 0:
    items = items[:limit]
  written = []
  for chorale_id, path in items:
    target = out_dir / f"{chorale_id}.mid"
    if not target.exists():
      write_chorale((target, path))
    written.append(target)
  return written


def write_chorale(item: tuple[Path, Path]) -> None:
  """Writes one chorale (target, corpus file) under a temporary name and renames
  it, so an interrupted conversion never leaves a partial file behind."""
  target, source = item
  partial = target.with_name(target.name + ".partial")
  partial.write_bytes(chorale_midi_bytes(source))
  partial.replace(target)


def main(argv: list[str]) -> None:
  from absl import flags

  out_dir = flags.DEFINE_string("out_dir", None, "Folder to write the .mid files to.",
                                required=True)
  limit = flags.DEFINE_integer("limit", 0, "Only the first N chorales (0: all).")
  flags.FLAGS(argv)
  paths = write_chorales(out_dir.value, limit.value)
  print(f"{len(paths)} Bach chorales from music21's corpus in {out_dir.value}")


if __name__ == "__main__":
  main(sys.argv)
