"""Tokenization throughput: the mtx codecs beside the peers, in one run, on one core.

    bash scripts/bench_tokenize.sh [--input_dir DIR] [--repeats N]

Every pipeline starts from the file's path and ends with its tokens (or, for the
plain readers, its parsed object), over the whole corpus (default: the 409 Bach
chorales in ../shared/midi/bach_chorales). Each figure is the median of
`--repeats` timed passes; notes/s counts the notes of mtx's note table
(`read_note_table`) for every pipeline, so the columns compare like for like.

Pipelines:
- mtx: `get_codec(name).encode(path)` for each codec whose module exists yet
  (mmt with overflow="truncate": it drops notes past max_beat as the reference does).
- MMT reference path: `muspy.read_midi` -> `adjust_resolution(12)` -> notes
  (beat, position, pitch, duration, program) per track, sorted and deduplicated ->
  rows (type, beat, position, pitch, duration, instrument), written below after
  the MMT reference code (`mmt/representation.py`: `extract_notes`,
  `encode_notes`), with mtx's copies of its constants. The ratio column is
  relative to this row.
- MidiTok 3.1.0 `REMI()` with its default config, `tokenizer.encode(path)`.
- Plain readers: `symusic.Score`, `miditoolkit.MidiFile`, `muspy.read_midi`, and
  mtx's `read_note_table` (symusic -> NoteTable, what every mtx codec starts with).

The peers need their own venv (.venv-bench, made by the script); a peer that is
not installed is skipped with a note, as is a codec whose module is not written.
"""

from __future__ import annotations

import os

# One core: no thread pool in numpy's BLAS or anything on OpenMP/MKL. Set before
# numpy is imported; scripts/bench_tokenize.sh sets them too.
for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
  os.environ.setdefault(_name, "1")

import argparse
import dataclasses
import importlib
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.machine import cpu_model, package_version
from mtx.errors import MtxError
from mtx.representation import CODEC_NAMES, get_codec
from mtx.representation.fields import KNOWN_DURATIONS, MMT_RESOLUTION, PROGRAM_TO_INSTRUMENT_CODE
from mtx.representation.midi_io import read_note_table

REPO = Path(__file__).resolve().parents[1]
DEFAULT_INPUT_DIR = REPO.parent / "shared" / "midi" / "bach_chorales"
MIDI_SUFFIXES = (".mid", ".midi")

# Goals, checked on every run.
MMT_GOAL_RATIO = 5.0  # mtx mmt codec vs the MMT reference path

# Codec options for the bench: mmt drops notes past max_beat, as the MMT
# reference path does, instead of raising (which only long pieces reach).
CODEC_OPTIONS = {"mmt": {"overflow": "truncate"}}

PEER_VERSIONS = ("miditok", "muspy", "symusic", "miditoolkit", "mido", "numpy")


# ---- the MMT reference path (after mmt/representation.py) --------------------

MMT_MAX_BEAT = 1024  # the reference's MAX_BEAT
MMT_MAX_DURATION = 384  # the reference's MAX_DURATION
# Duration in positions (0..max) -> code of the nearest known duration, 1-based.
_MMT_DURATION_CODE = {
  d: int(np.argmin(np.abs(KNOWN_DURATIONS - d))) + 1 for d in range(MMT_MAX_DURATION + 1)
}
_MMT_INSTRUMENT_CODE = dict(enumerate(PROGRAM_TO_INSTRUMENT_CODE.tolist()))  # 0: unknown
_MMT_KNOWN_PROGRAMS = {p for p, code in _MMT_INSTRUMENT_CODE.items() if code}
(_SOS, _INSTRUMENT, _SON, _NOTE, _EOS) = range(5)


def mmt_reference_extract_notes(music, resolution: int) -> np.ndarray:
  """(beat, position, pitch, duration, program) per note, sorted and deduplicated."""
  assert music.resolution == resolution
  notes = []
  for track in music.tracks:
    if track.is_drum or track.program not in _MMT_KNOWN_PROGRAMS:
      continue
    for note in track.notes:
      beat, position = divmod(note.time, resolution)
      notes.append((beat, position, note.pitch, note.duration, track.program))
  return np.array(sorted(set(notes)))


def mmt_reference_encode_notes(notes: np.ndarray) -> np.ndarray:
  """Rows (type, beat, position, pitch, duration, instrument), as MMT encodes them."""
  codes = [(_SOS, 0, 0, 0, 0, 0)]
  instruments = {_MMT_INSTRUMENT_CODE[note[-1]] for note in notes}
  codes.extend(sorted((_INSTRUMENT, 0, 0, 0, 0, code) for code in instruments if code))
  codes.append((_SON, 0, 0, 0, 0, 0))
  for beat, position, pitch, duration, program in notes:
    if beat > MMT_MAX_BEAT:
      continue
    instrument = _MMT_INSTRUMENT_CODE[program]
    if not instrument:
      continue
    codes.append(
      (
        _NOTE,
        beat + 1,
        position + 1,
        pitch + 1,
        _MMT_DURATION_CODE[min(duration, MMT_MAX_DURATION)],
        instrument,
      )
    )
  codes.append((_EOS, 0, 0, 0, 0, 0))
  return np.array(codes)


def mmt_reference_encode(path: Path, muspy) -> np.ndarray:
  music = muspy.read_midi(path)
  music.adjust_resolution(MMT_RESOLUTION)
  return mmt_reference_encode_notes(mmt_reference_extract_notes(music, MMT_RESOLUTION))


# ---- pipelines ---------------------------------------------------------------


@dataclasses.dataclass
class Pipeline:
  key: str  # what the goals look a row up by: "mmt", "reference", "miditok-remi", ...
  label: str  # the table's first column
  run: Callable[[Path], Any]  # one file's path -> its tokens (or parsed object)


def mtx_pipelines(notes: list[str]) -> list[Pipeline]:
  pipelines = []
  for name in CODEC_NAMES:
    try:
      codec = get_codec(name, **CODEC_OPTIONS.get(name, {}))
    except ModuleNotFoundError as e:
      notes.append(f"mtx {name}: skipped, its module is not there yet ({e})")
      continue
    except Exception as e:  # a codec being written may not import yet
      notes.append(f"mtx {name}: skipped, it does not load ({type(e).__name__}: {e})")
      continue
    options = "".join(f", {k}={v!r}" for k, v in CODEC_OPTIONS.get(name, {}).items())
    pipelines.append(
      Pipeline(
        name,
        f"mtx {name}: get_codec('{name}'{options}).encode(path)",
        lambda path, codec=codec: codec.encode(str(path)),
      )
    )
  return pipelines


def _import(module: str, notes: list[str]):
  try:
    return importlib.import_module(module)
  except ImportError as e:
    notes.append(
      f"{module}: skipped, not installed ({e}); run scripts/bench_tokenize.sh, "
      "which installs the peers in .venv-bench"
    )
    return None


def peer_pipelines(notes: list[str]) -> list[Pipeline]:
  pipelines = []
  muspy = _import("muspy", notes)
  if muspy is not None:
    pipelines.append(
      Pipeline(
        "reference",
        "MMT reference: muspy.read_midi -> resolution 12 -> notes -> rows",
        lambda path: mmt_reference_encode(path, muspy),
      )
    )
  miditok = _import("miditok", notes)
  if miditok is not None:
    remi = miditok.REMI()
    pipelines.append(
      Pipeline("miditok-remi", "MidiTok 3.1.0 REMI() default config, encode(path)", remi.encode)
    )
  symusic = _import("symusic", notes)
  if symusic is not None:
    pipelines.append(
      Pipeline("symusic", "symusic.Score(path) alone", lambda path: symusic.Score(str(path)))
    )
  miditoolkit = _import("miditoolkit", notes)
  if miditoolkit is not None:
    pipelines.append(
      Pipeline(
        "miditoolkit",
        "miditoolkit.MidiFile(path) alone",
        lambda path: miditoolkit.MidiFile(str(path)),
      )
    )
  if muspy is not None:
    pipelines.append(Pipeline("muspy", "muspy.read_midi(path) alone", muspy.read_midi))
  pipelines.append(
    Pipeline(
      "read_note_table",
      "mtx read_note_table(path) alone (symusic -> NoteTable)",
      lambda path: read_note_table(str(path)),
    )
  )
  return pipelines


# ---- timing --------------------------------------------------------------------


def time_pass(run: Callable[[Path], Any], paths: list[Path]) -> tuple[float, float]:
  """(wall seconds, CPU seconds of this process) for one pass over the corpus."""
  wall, cpu = time.perf_counter(), time.process_time()
  for path in paths:
    run(path)
  return time.perf_counter() - wall, time.process_time() - cpu


@dataclasses.dataclass
class Result:
  pipeline: Pipeline
  walls: list[float] = dataclasses.field(default_factory=list)
  cpus: list[float] = dataclasses.field(default_factory=list)
  error: str | None = None

  @property
  def seconds(self) -> float | None:  # the median pass
    return statistics.median(self.walls) if self.walls and not self.error else None

  @property
  def cpu_per_wall(self) -> float:  # above 1: more than one core was used
    return sum(self.cpus) / sum(self.walls)


def measure(pipelines: list[Pipeline], paths: list[Path], repeats: int) -> list[Result]:
  """Times every pipeline `repeats` times over the corpus, in turn (pass 1 of each,
  then pass 2 of each, ...), so that a change of machine load hits all of them
  alike. A pipeline that fails on a file is reported and dropped."""
  results = [Result(pipeline) for pipeline in pipelines]
  for result in results:
    try:
      result.pipeline.run(paths[0])  # warm-up: lazy imports, caches, first-call setup
    except Exception as e:
      result.error = f"{type(e).__name__}: {str(e).strip()[:200]}"
  for repeat in range(repeats):
    for result in results:
      if result.error:
        continue
      print(f"pass {repeat + 1}/{repeats}: {result.pipeline.label}", file=sys.stderr, flush=True)
      try:
        wall, cpu = time_pass(result.pipeline.run, paths)
      except Exception as e:
        result.error = f"{type(e).__name__}: {str(e).strip()[:200]}"
        continue
      result.walls.append(wall)
      result.cpus.append(cpu)
  return results


# ---- report ---------------------------------------------------------------------


def pin(cpu: int | None) -> str:
  """Pins this process to `cpu`, if given. Unpinned, the one busy thread still
  uses one core at a time (checked by CPU time / wall time), and the scheduler may
  move it off a core that another process is using."""
  if cpu is None:
    return "not pinned"
  os.sched_setaffinity(0, {cpu})
  return f"pinned to CPU {cpu}"


def usable_cpus() -> int:
  return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def table(results: list[Result], num_files: int, num_notes: int) -> list[str]:
  reference = next((r.seconds for r in results if r.pipeline.key == "reference"), None)
  lines = [
    "| pipeline | files/s | notes/s | ratio vs the MMT reference path |",
    "|---|---:|---:|---:|",
  ]
  for r in results:
    if r.seconds is None:
      lines.append(f"| {r.pipeline.label} | failed: {r.error} | | |")
      continue
    ratio = f"{reference / r.seconds:.2f}x" if reference else "n/a"
    lines.append(
      f"| {r.pipeline.label} | {num_files / r.seconds:,.1f} | "
      f"{num_notes / r.seconds:,.0f} | {ratio} |"
    )
  return lines


def goals(results: list[Result]) -> list[str]:
  seconds = {r.pipeline.key: r.seconds for r in results if r.seconds}

  def check(ours, theirs, met, what):
    if ours is None or theirs is None:
      return f"- {what}: not measured (a side is missing or failed)"
    ratio = theirs / ours  # how many times faster ours is
    return f"- {what}: {ratio:.2f}x -> {'PASS' if met(ratio) else 'FAIL'}"

  return [
    check(
      seconds.get("mmt"),
      seconds.get("reference"),
      lambda ratio: ratio >= MMT_GOAL_RATIO,
      f"mtx mmt codec at least {MMT_GOAL_RATIO:g}x the MMT reference path",
    ),
    check(
      seconds.get("remi"),
      seconds.get("miditok-remi"),
      lambda ratio: ratio > 1.0,
      "mtx remi codec faster than MidiTok REMI (more than 1x)",
    ),
  ]


def load_notes(results: list[Result]) -> list[str]:
  """Whether each pipeline had one core to itself: CPU seconds / wall seconds."""
  measured = [r for r in results if r.seconds]
  notes = [
    f"{r.pipeline.label}: used {r.cpu_per_wall:.2f} CPU seconds per wall second, more than one core"
    for r in measured
    if r.cpu_per_wall > 1.1
  ]
  busy = [r.cpu_per_wall for r in measured if r.cpu_per_wall < 0.9]
  if busy:
    notes.append(
      f"{len(busy)} of {len(measured)} pipelines got {min(busy):.2f}-{max(busy):.2f} CPU "
      "seconds per wall second: the machine was busy with other work, so the absolute "
      "figures are low; the passes are interleaved, so the ratios are less affected"
    )
  return notes


def corpus(input_dir: Path) -> list[Path]:
  if not input_dir.is_dir():
    raise MtxError(f"{input_dir}: not a directory; pass --input_dir with a folder of .mid files.")
  paths = sorted(
    p for p in input_dir.rglob("*") if p.suffix.lower() in MIDI_SUFFIXES and p.is_file()
  )
  if not paths:
    raise MtxError(
      f"{input_dir}: holds no .mid or .midi files; pass --input_dir with a folder of MIDI files."
    )
  return paths


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument(
    "--input_dir",
    type=Path,
    default=DEFAULT_INPUT_DIR,
    help="folder of MIDI files, read recursively (default: %(default)s)",
  )
  parser.add_argument(
    "--repeats", type=int, default=3, help="timed passes over the corpus; the median is reported"
  )
  parser.add_argument(
    "--cpu", type=int, default=None, help="pin the process to this CPU (default: not pinned)"
  )
  args = parser.parse_args(argv)
  if args.repeats < 1:
    parser.error(f"--repeats must be at least 1, got {args.repeats}")

  try:
    paths = corpus(args.input_dir)
    # Also warms the page cache, so that no pipeline pays for the first disk read.
    num_notes = sum(read_note_table(str(p)).num_notes for p in paths)
  except MtxError as e:
    print(f"bench_tokenize: {e}", file=sys.stderr)
    return 2

  nproc = usable_cpus()
  if args.cpu is not None and args.cpu not in os.sched_getaffinity(0):  # Linux
    parser.error(
      f"--cpu {args.cpu}: not one of this process's CPUs {sorted(os.sched_getaffinity(0))}"
    )
  pinned = pin(args.cpu)
  notes: list[str] = []
  pipelines = mtx_pipelines(notes) + peer_pipelines(notes)
  results = measure(pipelines, paths, args.repeats)
  notes.extend(load_notes(results))

  threads = ", ".join(
    f"{n}={os.environ.get(n)}"
    for n in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
  )
  print(f"# Tokenization throughput, one core ({pinned}; {threads}), one process")
  print()
  print(
    f"corpus: {args.input_dir} ({len(paths)} files, {num_notes:,} notes in mtx's note "
    f"tables); median of {args.repeats} "
    f"pass{'es' if args.repeats > 1 else ''}, each from the file paths"
  )
  print(
    f"machine: {cpu_model()}, nproc {nproc}, {platform.system()} "
    f"{platform.machine()}; Python {platform.python_version()}"
  )
  print("versions: " + ", ".join(f"{p} {package_version(p)}" for p in PEER_VERSIONS))
  print()
  print("\n".join(table(results, len(paths), num_notes)))
  print()
  print("Goals:")
  print("\n".join(goals(results)))
  if notes:
    print()
    print("Notes:")
    print("\n".join(f"- {note}" for note in notes))
  return 0


if __name__ == "__main__":
  sys.exit(main())
