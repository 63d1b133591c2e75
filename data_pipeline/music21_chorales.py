"""The J.S. Bach chorales bundled with music21, as Standard MIDI Files.

mtx's embedded default corpus: it ships with `pip install music21`, so the demo
and the core tests need no download. One type-1 file per chorale, named by its
corpus id (`bwv1.6.mid`): a conductor track, then one track per part, each part
on its own channel (music21 may put them all on one, where same-pitch notes of
two voices would collide). Repeats are played out, as music21's MIDI export
does (`expandRepeats`): a chorale whose first lines repeat has them twice.
`bwv846` (a prelude, not a chorale) and the duplicate Humdrum encodings are
left out.

Each part keeps its voice as its General MIDI program, so that `mmt`'s
instrument field (and remi's and mmm's programs) tells the voices apart; music21
writes every part as program 0 (piano), where the four voices would be one
instrument. The voices are a saxophone quartet, the four instruments of MMT's
table named for the voices:

    Soprano -> 64 soprano sax, Alto -> 65 alto sax, Tenor -> 66 tenor sax,
    Bass -> 67 baritone sax

Why not the alternatives: a chorale is sung, but General MIDI's choir programs
(52-54) are one MMT instrument ("voices"), so the voices would merge again. A
string ensemble (violin, viola, cello, contrabass) is four MMT instruments, but
11 chorales have violin or viola parts of their own, which would merge with the
voices they double, and a violin would stand for a soprano by position only.
The saxophone quartet's four names are the voices', its ranges lie close to
the choir's (it was built as a family from soprano to bass), none of Bach's
instruments is a saxophone, and FluidSynth's General MIDI soundfont (the demo's
WAVs) plays four sustained reed timbres that are told apart by ear: a chorale
sounds as a saxophone quartet plays one, a common concert piece.

A part is recognised by its name (music21's `partName`, else its `id`; the 409
chorales of music21 10.5.1 name every voice): a name whose first word is
Soprano, Alto, Tenor or Bass is that voice ("Soprano 1" and "Soprano 2" are both
soprano; "Bass Continuo", the bass voice doubled by the continuo, is the bass).
The 42 chorales with instrumental parts (5 to 15 parts) keep them as the nearest
General MIDI instrument, by a word of the name (`INSTRUMENT_PROGRAMS`): horn
60, trumpet and cornett 56, timpani 47, oboe and oboe d'amore 68, oboe da
caccia 69 (english horn, its descendant), violin 40, viola 41, recorder 74,
flute 73, continuo and organ 19 (church organ, the chorales' continuo). A part
named by none of these: in a four-part chorale, the voice of its place from the
top (as chorales are printed: soprano, alto, tenor, bass); otherwise the church
organ (`FALLBACK_PROGRAM`).

Each file carries a text event naming the conversion (`CONVERSION_MARKER`), so a
file written by another conversion (an older mtx wrote every part as piano) is
never taken for a current one: `is_current` tells them apart, and
`write_chorales` and `jsb_chorales.list_files` convert such a file again.

    python -m data_pipeline.music21_chorales --out_dir=DIR [--limit=N] [--num_workers=N]
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

NON_CHORALES = frozenset({"bwv846"})
_CHANNELS = [c for c in range(16) if c != 9]  # channel 10 (index 9) is drums

# The version of what `chorale_midi_bytes` writes; raise it whenever the files
# change, so that cached files of the older conversion are converted again.
# 1 (no marker): every part program 0. 2: the voices and instruments below.
CONVERSION_VERSION = 2
CONVERSION_MARKER = (
  f"mtx data_pipeline.music21_chorales conversion {CONVERSION_VERSION}: "
  "SATB as soprano/alto/tenor/baritone sax"
).encode("ascii")

VOICES = ("soprano", "alto", "tenor", "bass")
# General MIDI program of each voice: MMT's soprano, alto, tenor and baritone saxophone.
VOICE_PROGRAMS = {"soprano": 64, "alto": 65, "tenor": 66, "bass": 67}
# (word in a part's name, General MIDI program) for the instrumental parts;
# the first word found wins, so the longer names come first.
INSTRUMENT_PROGRAMS = (
  ("oboe da caccia", 69),
  ("english horn", 69),
  ("oboe", 68),
  ("horn", 60),
  ("trumpet", 56),
  ("cornet", 56),
  ("trombone", 57),
  ("timpani", 47),
  ("violin", 40),
  ("viola", 41),
  ("cello", 42),
  ("bassoon", 70),
  ("recorder", 74),
  ("flute", 73),
  ("continuo", 19),
  ("organ", 19),
)
FALLBACK_PROGRAM = 19  # church organ: what plays along with a chorale


def chorale_paths() -> dict[str, Path]:
  """Corpus id -> the music21 corpus file of each chorale, sorted by id."""
  from music21 import corpus

  found: dict[str, Path] = {}
  for path in sorted(corpus.getComposer("bach", fileExtensions=("mxl", "xml")), key=str):
    chorale_id = Path(path).name.rsplit(".", 1)[0]
    if chorale_id not in NON_CHORALES and chorale_id not in found:
      found[chorale_id] = Path(path)
  return found


def part_voice(name: str | None) -> str | None:
  """The voice a part's name gives ("Soprano 1", "Bass\\rContinuo": its first
  word), or None for an instrumental or unnamed part."""
  words = (name or "").lower().split()
  return words[0] if words and words[0] in VOICES else None


def part_programs(names: Sequence[str | None]) -> list[int]:
  """The General MIDI program of each part of a chorale, from the parts' names
  in score order (the rules are in the module's docstring)."""
  programs = []
  for index, name in enumerate(names):
    voice = part_voice(name)
    lowered = " ".join((name or "").lower().split())
    instrument = next((p for word, p in INSTRUMENT_PROGRAMS if word in lowered), None)
    if voice is not None:
      programs.append(VOICE_PROGRAMS[voice])
    elif instrument is not None:
      programs.append(instrument)
    elif len(names) == len(VOICES):
      programs.append(VOICE_PROGRAMS[VOICES[index]])
    else:
      programs.append(FALLBACK_PROGRAM)
  return programs


def chorale_midi_bytes(path: str | os.PathLike) -> bytes:
  """Parses one corpus file with music21 and returns it as MIDI bytes: one
  track per part, each on its own channel with its part's program."""
  from music21 import corpus, midi

  score = corpus.parse(str(path))
  names = [part.partName or part.id for part in score.parts]
  midi_file = midi.translate.streamToMidiFile(score)
  part_tracks = midi_file.tracks[1:]
  if len(part_tracks) != len(names):  # music21 writes a conductor track, then the parts
    raise RuntimeError(
      f"{path}: music21 wrote {len(part_tracks)} part tracks for "
      f"{len(names)} parts; the program of each part is unknown"
    )
  for index, (track, program) in enumerate(zip(part_tracks, part_programs(names))):
    channel = _CHANNELS[index % len(_CHANNELS)] + 1  # music21 channels are 1-based
    for event in track.events:
      if getattr(event, "channel", None) is not None:
        event.channel = channel
    _set_program(track, program, channel)
  _add_marker(midi_file.tracks[0])
  return midi_file.writestr()


def _set_program(track, program: int, channel: int) -> None:
  """Every program change of `track` becomes `program`; a track without one
  gets one at its start."""
  from music21 import midi

  changes = [
    e for e in track.events if getattr(e, "type", None) == midi.ChannelVoiceMessages.PROGRAM_CHANGE
  ]
  for event in changes:
    event.data = program
  if not changes:
    change = midi.MidiEvent(track, type=midi.ChannelVoiceMessages.PROGRAM_CHANGE, channel=channel)
    change.data = program
    track.events[0:0] = [midi.DeltaTime(track, time=0, channel=channel), change]


def _add_marker(track) -> None:
  """A text event at the start of the conductor track naming this conversion."""
  from music21 import midi

  text = midi.MidiEvent(track, type=midi.MetaEvents.TEXT_EVENT)
  text.data = CONVERSION_MARKER
  track.events[0:0] = [midi.DeltaTime(track, time=0), text]


def is_current(path: str | os.PathLike) -> bool:
  """True when `path` is a file this conversion wrote (it carries the marker);
  False for a missing file or one written by another conversion."""
  try:
    return CONVERSION_MARKER in Path(path).read_bytes()
  except OSError:
    return False


def write_chorales(out_dir: str | os.PathLike, limit: int = 0, num_workers: int = 1) -> list[Path]:
  """Writes the chorales (the first `limit` by id when limit > 0) to `out_dir`,
  on `num_workers` processes.

  Files this conversion already wrote there are kept, so a second call is
  cheap; files of another conversion are written again.
  """
  out_dir = Path(out_dir)
  items = list(chorale_paths().items())
  if limit > 0:
    items = items[:limit]
  targets = [out_dir / f"{chorale_id}.mid" for chorale_id, _ in items]
  convert_missing(zip(targets, (source for _, source in items)), num_workers)
  return targets


def convert_missing(items: Iterable[tuple[Path, Path]], num_workers: int = 1) -> int:
  """Converts each (target, corpus file) whose target is not a current file,
  on `num_workers` processes, with a progress bar on stderr where it is a
  terminal (the conversion takes minutes on a busy machine). Returns how many
  were converted."""
  missing = [(Path(target), Path(source)) for target, source in items if not is_current(target)]
  if not missing:
    return 0
  missing[0][0].parent.mkdir(parents=True, exist_ok=True)
  pool = None
  if num_workers > 1 and len(missing) > 1:
    from data_pipeline.pool import process_pool

    pool = process_pool(min(num_workers, len(missing)))  # before the bar's thread
  from tqdm import tqdm

  bar = tqdm(
    total=len(missing),
    desc="music21 chorales -> MIDI",
    unit=" files",
    file=sys.stderr,
    mininterval=0.5,
    disable=not sys.stderr.isatty(),
  )
  try:
    done = pool.map(write_chorale, missing) if pool else map(write_chorale, missing)
    for _ in done:
      bar.update(1)
  finally:
    bar.close()
    if pool is not None:
      pool.shutdown(cancel_futures=True)
  return len(missing)


def write_chorale(item: tuple[Path, Path]) -> None:
  """Writes one chorale (target, corpus file) under a temporary name and renames
  it, so an interrupted conversion never leaves a partial file behind."""
  target, source = item
  partial = target.with_name(target.name + ".partial")
  partial.write_bytes(chorale_midi_bytes(source))
  partial.replace(target)


def main(argv: list[str]) -> None:
  from absl import flags

  out_dir = flags.DEFINE_string(
    "out_dir", None, "Folder to write the .mid files to.", required=True
  )
  limit = flags.DEFINE_integer("limit", 0, "Only the first N chorales (0: all).")
  num_workers = flags.DEFINE_integer("num_workers", 1, "Conversion processes.")
  flags.FLAGS(argv)
  paths = write_chorales(out_dir.value, limit.value, num_workers.value)
  print(f"{len(paths)} Bach chorales from music21's corpus in {out_dir.value}")


if __name__ == "__main__":
  main(sys.argv)
