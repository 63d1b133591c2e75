"""Prepare throughput: `mtx-prepare` beside the MMT reference pipeline, and the input pipeline.

    bash scripts/bench_prepare.sh [--repeats N] [--workers 1,2]

Three parts, in one run:

1. mtx: `prepare()` (what `mtx-prepare` runs) of a `midi_folder` dataset,
   representation mmt, into a fresh temporary data_dir each pass, timed from
   the builder's construction to the dataset on disk: list the files (md5 of
   each, for the split), read, encode, serialize, write ArrayRecord,
   `bad_files.tsv`, `dataset_info.json`, the rename out of TFDS's
   `incomplete.*` folder. `num_workers` 1 (in-process) and 2 (a process pool,
   started and stopped within the pass: the workers read, encode and
   serialize; the main process lists and writes).
2. The MMT reference pipeline on the same files, as its code does it, both of
   its scripts (`mmt/convert_*.py`, then `mmt/extract.py`):
   convert: `muspy.read_midi` -> `adjust_resolution(12)` (its own function:
   MusPy's, then zero durations set to 1) -> `music.save(<name>.json)`;
   extract: `muspy.load(<name>.json)` -> notes
   (`bench.tokenize.mmt_reference_extract_notes`) -> start beat set to zero ->
   codes (`bench.tokenize.mmt_reference_encode_notes`) -> `np.savetxt` (csv)
   and `np.save` (npy); then the list of names. With 1 process: a loop, as
   the scripts do with `--jobs 1`; with 2: each script's files on a
   `multiprocessing.Pool(2)` (fork), standing in for the scripts'
   `joblib.Parallel(n_jobs=2)` (its loky workers start slower than a forked
   pool, so this favours the reference if anything). Pool start-up is counted,
   on both sides.
   Departures, each making the reference's pass shorter or no longer than its
   code's: its corpus filters are left out (convert drops songs shorter than 10
   bars or longer than 2,000; extract drops those under 50 notes), so every
   file goes through every stage, as in mtx; extract writes the encoded codes
   where the reference writes the notes (it encodes them again each time its
   `dataset.py` loads them), so encoding is counted once, as in mtx; and its
   `adjust_resolution` ends with MusPy's `remove_duplicate()`, quadratic in a
   track's notes, which is left out unless `--reference_remove_duplicate`
   (minutes per pass on the long piano pieces of ../shared/midi/other).
3. The input pipeline: `make_train_iterator` over the train split of the
   dataset that part 1 made from the first corpus (`builder.as_data_source("train")`),
   worker_count 0, seq_len 1024 and 256 at batch 8: batches/s, rows/s (every
   row of every batch, padding included: what a model step consumes), real
   target rows/s (rows whose mask is True). An mmt token is one row of six
   fields, so tokens/s is rows/s. Compared with what the tiny training config
   consumes: batch 8 x seq 256 at about 0.5 s a step on 2 cores
   (../shared/STACK_NOTES.md), 4,096 rows/s.

files/s = files / wall seconds of the whole pass. The passes are interleaved
(pass 1 of every pipeline, then pass 2, ...), so a change of machine load hits
all of them alike; each figure is the median of `--repeats` passes. One thread
per process (OMP/MKL/OpenBLAS at 1), as scripts/bench_prepare.sh sets. Each
pass also reads /proc/stat: the share of the machine's CPU that processes other
than this one and its workers took is reported, and the rows where it passed
5% are named (with two workers on two cores, any other work shows directly).
"""

from __future__ import annotations

import os

# One thread per process; set before numpy is imported (bench.tokenize does too).
for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
  os.environ.setdefault(_name, "1")

import argparse
import dataclasses
import multiprocessing
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench.machine import cpu_model, package_version
from bench.tokenize import (
  corpus,
  mmt_reference_encode_notes,
  mmt_reference_extract_notes,
  usable_cpus,
)
from mtx.errors import MtxError
from mtx.representation.fields import MMT_RESOLUTION

REPO = Path(__file__).resolve().parents[1]
SHARED_MIDI = REPO.parent / "shared" / "midi"
DEFAULT_INPUT_DIRS = (SHARED_MIDI / "bach_chorales", SHARED_MIDI)
REPRESENTATION = "mmt"

# Goals, checked on every run.
PREPARE_GOAL_RATIO = 10.0  # mtx-prepare vs the MMT reference pipeline, most workers each
LOADER_GOAL_RATIO = 10.0  # input pipeline rows/s vs what the tiny config consumes
# The tiny training config: batch 8 x seq 256 at about 0.5 s a step on 2 cores.
TINY_BATCH, TINY_SEQ_LEN, TINY_STEP_SECONDS = 8, 256, 0.5
TINY_ROWS_PER_SECOND = TINY_BATCH * TINY_SEQ_LEN / TINY_STEP_SECONDS
LOADER_SHAPES = ((1024, 8), (256, 8))  # (seq_len, batch_size)
LOADER_SECONDS = 1.0  # each timed window of the input pipeline runs at least this long
WARMUP_FILES = 8
BUSY_SHARE = 0.05  # a row whose passes had other processes take more of the CPU is noted
# ../shared/PEERS.md: the MMT reference path (read, resolution 12, notes, codes, in memory,
# nothing written) on the 409 Bach chorales, one process, measured on another day.
PEERS_REFERENCE_FILES_PER_SECOND = 128.5

REMOVE_DUPLICATE_NOTE = (
  "MMT reference: its convert step ends with MusPy's `music.remove_duplicate()`, left out "
  "here (--reference_remove_duplicate puts it back). MusPy 0.5.0's is quadratic in a "
  "track's notes (`if item not in new_value` over a list); profiled once in one process on "
  "this kind of machine (busy at the time): 180 s for "
  "../shared/midi/other/miditok/maestro/Maestro_6.mid alone (about 20,000 notes), 384 s of "
  "the 396 s the reference spent on the 49 files of ../shared/midi/other; on the Bach "
  "chorales its cost is within the noise. Without it the reference does less work, so the "
  "ratios above are the conservative ones; duplicates are dropped anyway when notes are "
  "extracted (a set), so the codes are the same"
)

VERSIONS = ("tensorflow-datasets", "array-record", "grain", "symusic", "muspy", "numpy")


# ---- the MMT reference pipeline (after mmt/convert_*.py and mmt/extract.py) ------------


def reference_convert(task: tuple[str, str, bool]) -> str | None:
  """convert_*.py's `convert` (without its length filter): MIDI -> MusPy JSON.
  Returns the JSON's path, or None for a file it fails on (its -e flag).
  `remove_duplicate`: run MusPy's `music.remove_duplicate()` as the reference's
  `adjust_resolution` ends; quadratic in a track's notes (see REMOVE_DUPLICATE_NOTE)."""
  import muspy  # pylint: disable=import-outside-toplevel

  midi_path, json_path, remove_duplicate = task
  try:
    music = muspy.read_midi(midi_path)
    music.adjust_resolution(MMT_RESOLUTION)
    for track in music:
      for note in track:
        if note.duration == 0:
          note.duration = 1
    if remove_duplicate:
      music.remove_duplicate()
    music.save(json_path)
  except Exception:  # pylint: disable=broad-except
    return None
  return json_path


def reference_extract(task: tuple[str, str]) -> str | None:
  """extract.py's `extract` (without its 50-note filter), writing the codes:
  MusPy JSON -> notes -> codes -> csv and npy. None for a file it fails on or
  one without a note it can encode."""
  import muspy  # pylint: disable=import-outside-toplevel

  json_path, out_stem = task
  try:
    music = muspy.load(json_path)
    notes = mmt_reference_extract_notes(music, MMT_RESOLUTION)
    if not len(notes):
      return None
    notes[:, 0] = notes[:, 0] - notes[0, 0]
    codes = mmt_reference_encode_notes(notes)
    np.savetxt(
      out_stem + ".csv",
      codes,
      fmt="%d",
      delimiter=",",
      header="type,beat,position,pitch,duration,instrument",
      comments="",
    )
    np.save(out_stem + ".npy", codes)
  except Exception:  # pylint: disable=broad-except
    return None
  return out_stem


def _map(function: Callable, tasks: list, workers: int) -> list:
  """One file per task, as joblib's batching starts: with Pool.map's default
  chunks (an eighth of the files each) one worker would get every long piece."""
  if workers <= 1:
    return [function(task) for task in tasks]
  with multiprocessing.get_context("fork").Pool(workers) as pool:
    return pool.map(function, tasks, chunksize=1)


def reference_pass(
  paths: list[Path], root: Path, workers: int, out_dir: Path, remove_duplicate: bool = False
) -> dict:
  """Both reference scripts over `paths`, into `out_dir`; the counts."""
  json_dir, notes_dir = out_dir / "json", out_dir / "notes"
  names = [p.relative_to(root).with_suffix("").as_posix() for p in paths]
  for name in names:  # the scripts make these as they go; here, before the clock
    (json_dir / name).parent.mkdir(parents=True, exist_ok=True)
    (notes_dir / name).parent.mkdir(parents=True, exist_ok=True)
  started = time.perf_counter()
  converted = _map(
    reference_convert,
    [(str(p), str(json_dir / f"{n}.json"), remove_duplicate) for p, n in zip(paths, names)],
    workers,
  )
  json_names = [n for n, c in zip(names, converted) if c]
  (out_dir / "json-names.txt").write_text("".join(n + "\n" for n in json_names))
  extracted = _map(
    reference_extract,
    [(str(json_dir / f"{n}.json"), str(notes_dir / n)) for n in json_names],
    workers,
  )
  extracted_names = [n for n, e in zip(json_names, extracted) if e]
  (out_dir / "names.txt").write_text("".join(n + "\n" for n in extracted_names))
  return {
    "seconds": time.perf_counter() - started,
    "converted": len(json_names),
    "extracted": len(extracted_names),
  }


# ---- mtx ----------------------------------------------------------------------------


def mtx_pass(root: Path, workers: int, data_dir: Path, limit: int = 0):
  """`prepare()` of a midi_folder dataset of `root` into `data_dir`, timed
  from the builder's construction: the builder and the counts."""
  from data_pipeline.builders import get_builder_class  # pylint: disable=import-outside-toplevel
  from data_pipeline.pool import pool_start_method  # pylint: disable=import-outside-toplevel
  from data_pipeline.prepare import prepare  # pylint: disable=import-outside-toplevel

  start_method = pool_start_method()
  started = time.perf_counter()
  builder = get_builder_class("midi_folder")(
    config=REPRESENTATION,
    data_dir=os.fspath(data_dir),
    file_format="array_record",
    num_workers=workers,
    corpus_options={"validation": 0.1, "test": 0.1},
    limit=limit,
    progress=False,
  )
  summary = prepare(builder, manual_dir=root)
  seconds = time.perf_counter() - started
  return builder, {
    "seconds": seconds,
    "converted": summary.converted,
    "skipped": summary.skipped,
    "truncated": summary.truncated,
    "start_method": start_method,
  }


# ---- timing ---------------------------------------------------------------------------


def _machine_cpu_seconds() -> float | None:
  """CPU seconds all of this machine's processes have used (busy and stolen
  time in /proc/stat), or None where there is no /proc/stat."""
  try:
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
  except (OSError, ValueError):
    return None
  user, nice, system, idle, iowait, irq, softirq, steal = values
  return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
  """CPU seconds of this process and of its children that have been waited for."""
  times = os.times()
  return times.user + times.system + times.children_user + times.children_system


class OtherWork:
  """The share of the machine's CPU that other processes took while it ran:
  what a busy machine costs a pass. Worker processes are waited for before
  the end is read, so their CPU time counts as this process's."""

  def __enter__(self) -> OtherWork:
    self.share = None
    self._machine, self._own = _machine_cpu_seconds(), _own_cpu_seconds()
    self._wall = time.perf_counter()
    return self

  def __exit__(self, *exc_info) -> None:
    deadline = time.monotonic() + 5.0
    while multiprocessing.active_children() and time.monotonic() < deadline:
      time.sleep(0.01)
    machine = _machine_cpu_seconds()
    if machine is None or self._machine is None:
      return
    others = (machine - self._machine) - (_own_cpu_seconds() - self._own)
    capacity = (time.perf_counter() - self._wall) * usable_cpus()
    self.share = max(0.0, others / capacity)


@dataclasses.dataclass
class Row:
  side: str  # "mtx" or "reference"
  corpus: int  # index into the input dirs
  workers: int
  seconds: list[float] = dataclasses.field(default_factory=list)
  others: list[float] = dataclasses.field(default_factory=list)  # OtherWork shares
  counts: dict = dataclasses.field(default_factory=dict)
  notes: set[str] = dataclasses.field(default_factory=set)
  error: str | None = None

  @property
  def median(self) -> float | None:
    return statistics.median(self.seconds) if self.seconds and not self.error else None


def run_prepare_passes(
  input_dirs: list[Path],
  corpora: list[list[Path]],
  workers: list[int],
  repeats: int,
  sides: list[str],
  scratch: Path,
  keep: Path,
  remove_duplicate: bool,
):
  """Interleaved passes of every (corpus, workers, side); returns the rows and
  the builder of mtx's last pass over the first corpus with the first worker
  count, whose dataset (written under `keep`) the input pipeline reads."""
  rows = [Row(side, c, w) for c in range(len(input_dirs)) for w in workers for side in sides]
  kept_builder = None
  for repeat in range(repeats):
    for row in rows:
      if row.error:
        continue
      root, paths = input_dirs[row.corpus], corpora[row.corpus]
      print(
        f"pass {repeat + 1}/{repeats}: {row.side}, {root.name}, {_workers(row.workers)}",
        file=sys.stderr,
        flush=True,
      )
      out_dir = Path(tempfile.mkdtemp(prefix=f"{row.side}-", dir=scratch))
      try:
        with OtherWork() as other_work:
          if row.side == "mtx":
            keep_this = row.corpus == 0 and row.workers == workers[0] and repeat == repeats - 1
            builder, counts = mtx_pass(root, row.workers, keep if keep_this else out_dir)
            if keep_this:
              kept_builder = builder
          else:
            counts = reference_pass(paths, root, row.workers, out_dir, remove_duplicate)
      except Exception as e:  # pylint: disable=broad-except
        row.error = f"{type(e).__name__}: {str(e).strip()[:200]}"
        continue
      finally:
        shutil.rmtree(out_dir, ignore_errors=True)
      start_method = counts.pop("start_method", None)
      if start_method and row.workers > 1:
        row.notes.add(f"workers started by {start_method}")
      row.seconds.append(counts.pop("seconds"))
      if other_work.share is not None:
        row.others.append(other_work.share)
      row.counts = counts
  return rows, kept_builder


def warm_up(input_dir: Path, paths: list[Path], sides: list[str], scratch: Path) -> None:
  """A few files through each side, untimed: lazy imports, first-call setup."""
  out_dir = Path(tempfile.mkdtemp(prefix="warmup-", dir=scratch))
  try:
    if "mtx" in sides:
      mtx_pass(input_dir, 1, out_dir / "mtx", limit=WARMUP_FILES)
    if "reference" in sides:
      reference_pass(paths[:WARMUP_FILES], input_dir, 1, out_dir / "reference")
  finally:
    shutil.rmtree(out_dir, ignore_errors=True)


# ---- the input pipeline ---------------------------------------------------------------


@dataclasses.dataclass
class LoaderResult:
  seq_len: int
  batch_size: int
  first_batch_seconds: float
  batches_per_second: float
  rows_per_second: float
  target_rows_per_second: float


def measure_loader(builder, repeats: int) -> list[LoaderResult]:
  """batches/s of make_train_iterator over the builder's train split, per shape:
  the median of `repeats` windows of at least LOADER_SECONDS each, after the
  first batch (start-up) and a few more."""
  from mtx.data import make_train_iterator  # pylint: disable=import-outside-toplevel

  source = builder.as_data_source("train")
  codec = builder.builder_config.spec.codec()
  results = []
  for seq_len, batch_size in LOADER_SHAPES:
    print(f"input pipeline: seq_len {seq_len}, batch {batch_size}", file=sys.stderr, flush=True)
    started = time.perf_counter()
    batches = make_train_iterator(
      source,
      codec,
      seq_len=seq_len,
      batch_size=batch_size,
      seed=0,
      worker_count=0,
      shard_index=0,
      shard_count=1,
    )
    next(batches)
    first = time.perf_counter() - started
    for _ in range(10):
      next(batches)
    speeds, real_rows = [], []
    for _ in range(repeats):
      count, real, started = 0, 0, time.perf_counter()
      while (elapsed := time.perf_counter() - started) < LOADER_SECONDS or count < 20:
        batch = next(batches)
        real += int(batch["mask"].sum())
        count += 1
      speeds.append(count / elapsed)
      real_rows.append(real / elapsed)
    batches.close()
    per_second = statistics.median(speeds)
    results.append(
      LoaderResult(
        seq_len,
        batch_size,
        first,
        per_second,
        per_second * batch_size * seq_len,
        statistics.median(real_rows),
      )
    )
  return results


# ---- report ---------------------------------------------------------------------------


def _label(row: Row) -> str:
  if row.side == "mtx":
    return f"mtx-prepare: `prepare()` of midi_folder/{REPRESENTATION}"
  return "MMT reference: read_midi -> resolution 12 -> json; load -> notes -> codes -> csv + npy"


def prepare_table(rows: list[Row], input_dirs: list[Path], corpora: list[list[Path]]):
  lines = [
    "| corpus | pipeline | workers | files/s | ratio vs the MMT reference path "
    "with the same workers | files done |",
    "|---|---|---:|---:|---:|---|",
  ]
  reference = {(r.corpus, r.workers): r.median for r in rows if r.side == "reference"}
  for row in rows:
    name = f"{input_dirs[row.corpus].name} ({len(corpora[row.corpus])})"
    if row.median is None:
      lines.append(f"| {name} | {_label(row)} | {row.workers} | failed: {row.error} | | |")
      continue
    theirs = reference.get((row.corpus, row.workers))
    ratio = f"{theirs / row.median:.1f}x" if theirs else "n/a"
    if row.side == "mtx":
      done = (
        f"{row.counts['converted']} converted, {row.counts['skipped']} skipped, "
        f"{row.counts['truncated']} truncated"
      )
    else:
      done = f"{row.counts['converted']} converted, {row.counts['extracted']} extracted"
    lines.append(
      f"| {name} | {_label(row)} | {row.workers} | "
      f"{len(corpora[row.corpus]) / row.median:,.1f} | {ratio} | {done} |"
    )
  return lines


def loader_table(results: list[LoaderResult]) -> list[str]:
  lines = [
    "| seq_len x batch | first batch | batches/s | rows/s (tokens/s) | "
    "real target rows/s | rows/s vs the tiny config's 4,096 |",
    "|---|---:|---:|---:|---:|---:|",
  ]
  for r in results:
    lines.append(
      f"| {r.seq_len} x {r.batch_size} | {r.first_batch_seconds:.2f} s | "
      f"{r.batches_per_second:,.1f} | {r.rows_per_second:,.0f} | "
      f"{r.target_rows_per_second:,.0f} | "
      f"{r.rows_per_second / TINY_ROWS_PER_SECOND:,.1f}x |"
    )
  return lines


def goals(
  rows: list[Row],
  workers: list[int],
  loader: list[LoaderResult],
  input_dirs: list[Path],
  corpora: list[list[Path]],
) -> list[str]:
  lines = []
  most = max(workers)
  for index in sorted({r.corpus for r in rows}):
    ours = next(
      (r.median for r in rows if r.side == "mtx" and r.corpus == index and r.workers == most), None
    )
    theirs = next(
      (r.median for r in rows if r.side == "reference" and r.corpus == index and r.workers == most),
      None,
    )
    what = (
      f"corpus {index + 1} ({input_dirs[index].name}): mtx-prepare at least {PREPARE_GOAL_RATIO:g}x the MMT "
      f"reference pipeline's files/s, {most} workers each"
    )
    if ours is None or theirs is None:
      lines.append(f"- {what}: not measured (a side is missing or failed)")
    else:
      ratio = theirs / ours
      lines.append(f"- {what}: {ratio:.1f}x -> {'PASS' if ratio >= PREPARE_GOAL_RATIO else 'FAIL'}")
  tiny = next((r for r in loader if (r.seq_len, r.batch_size) == (TINY_SEQ_LEN, TINY_BATCH)), None)
  what = (
    f"input pipeline at seq {TINY_SEQ_LEN} x batch {TINY_BATCH} at least "
    f"{LOADER_GOAL_RATIO:g}x the rows/s the tiny config consumes "
    f"({TINY_ROWS_PER_SECOND:,.0f})"
  )
  if tiny is None:
    lines.append(f"- {what}: not measured")
  else:
    ratio = tiny.rows_per_second / TINY_ROWS_PER_SECOND
    lines.append(
      f"- {what}: {ratio:,.1f}x (real target rows: "
      f"{tiny.target_rows_per_second / TINY_ROWS_PER_SECOND:,.1f}x) -> "
      f"{'PASS' if ratio >= LOADER_GOAL_RATIO else 'FAIL'}"
    )
  bach = next(
    (
      r
      for r in rows
      if r.side == "mtx"
      and r.workers == most
      and input_dirs[r.corpus] == DEFAULT_INPUT_DIRS[0].resolve()
      and r.median
    ),
    None,
  )
  if bach is not None:
    ratio = len(corpora[bach.corpus]) / bach.median / PEERS_REFERENCE_FILES_PER_SECOND
    lines.append(
      f"- (for comparison, not a goal of this run: mtx-prepare with {most} workers "
      f"on the Bach chorales over ../shared/PEERS.md's "
      f"{PEERS_REFERENCE_FILES_PER_SECOND} files/s for the reference path in one "
      f"process, in memory, on another day: {ratio:.1f}x)"
    )
  return lines


def busy_notes(rows: list[Row], input_dirs: list[Path]) -> list[str]:
  """Whether the passes shared the machine with other work, and which rows."""
  measured = [r for r in rows if r.others and r.median]
  if not measured:
    return ["other work on the machine during the passes: not measured (no /proc/stat)"]
  overall = statistics.mean(share for r in measured for share in r.others)
  line = (
    f"other processes took {overall:.0%} of the machine's CPU over the timed passes on "
    "average (/proc/stat, less this process and its workers)"
  )
  busy = [r for r in measured if max(r.others) > BUSY_SHARE]
  if not busy:
    return [line]
  rows_text = "; ".join(
    f"{r.side} {input_dirs[r.corpus].name} {_workers(r.workers)} up to {max(r.others):.0%}"
    for r in busy
  )
  return [
    f"{line}; above {BUSY_SHARE:.0%} during the passes of: {rows_text}. Those rows' "
    "files/s are low, most where the workers need every core: run again on a quiet "
    "machine"
  ]


def _workers(count: int) -> str:
  return f"{count} worker{'s' if count > 1 else ''}"


def _worker_list(text: str) -> list[int]:
  try:
    workers = sorted({int(item) for item in text.split(",") if item.strip()})
  except ValueError:
    raise argparse.ArgumentTypeError(f"--workers takes numbers like 1,2; got {text!r}") from None
  if not workers or workers[0] < 1:
    raise argparse.ArgumentTypeError(f"--workers: each must be at least 1; got {text!r}")
  return workers


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument(
    "--input_dir",
    type=Path,
    action="append",
    default=None,
    help="folder of MIDI files, read recursively; repeat for several "
    f"(default: {', '.join(str(d) for d in DEFAULT_INPUT_DIRS)}). The "
    "input pipeline reads the dataset made from the first",
  )
  parser.add_argument(
    "--workers",
    type=_worker_list,
    default=[1, 2],
    help="worker counts, comma-separated (default: 1,2)",
  )
  parser.add_argument(
    "--repeats", type=int, default=3, help="timed passes of each pipeline; the median is reported"
  )
  parser.add_argument(
    "--no_reference",
    action="store_true",
    help="mtx only (the reference needs muspy: scripts/bench_prepare.sh)",
  )
  parser.add_argument("--no_loader", action="store_true", help="skip the input pipeline")
  parser.add_argument(
    "--reference_remove_duplicate",
    action="store_true",
    help="run MusPy's remove_duplicate() in the reference's convert, as its "
    "code does; quadratic: minutes per pass on long piano pieces",
  )
  args = parser.parse_args(argv)
  if args.repeats < 1:
    parser.error(f"--repeats must be at least 1, got {args.repeats}")
  input_dirs = [d.expanduser().resolve() for d in (args.input_dir or DEFAULT_INPUT_DIRS)]

  notes: list[str] = []
  try:
    corpora = [corpus(d) for d in input_dirs]
  except MtxError as e:
    print(f"bench_prepare: {e}", file=sys.stderr)
    return 2
  for paths in corpora:  # the page cache: no pass pays for the first disk read
    for path in paths:
      path.read_bytes()
  sides = ["mtx"]
  if not args.no_reference:
    try:
      import muspy  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import

      sides.append("reference")
    except ImportError as e:
      notes.append(
        f"MMT reference: skipped, muspy is not installed ({e}); run "
        "scripts/bench_prepare.sh, which installs it in .venv-bench"
      )

  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  from absl import logging as absl_logging  # pylint: disable=import-outside-toplevel

  tfds.disable_progress_bar()
  absl_logging.set_verbosity(absl_logging.WARNING)

  load_before = os.getloadavg()
  wall = time.perf_counter()
  scratch = Path(tempfile.mkdtemp(prefix="bench_prepare-"))
  try:
    warm_up(input_dirs[0], corpora[0], sides, scratch)
    rows, builder = run_prepare_passes(
      input_dirs,
      corpora,
      args.workers,
      args.repeats,
      sides,
      scratch,
      scratch / "kept",
      args.reference_remove_duplicate,
    )
    loader, train_size = [], 0
    if not args.no_loader:
      if builder is None:
        notes.append("input pipeline: not measured, the mtx prepare it reads failed")
      else:
        train_size = len(builder.as_data_source("train"))
        loader = measure_loader(builder, args.repeats)
  finally:
    shutil.rmtree(scratch, ignore_errors=True)
  wall = time.perf_counter() - wall
  load_after = os.getloadavg()

  if "reference" in sides:
    notes.append(
      REMOVE_DUPLICATE_NOTE
      if not args.reference_remove_duplicate
      else "MMT reference: with MusPy's remove_duplicate() (--reference_remove_duplicate)"
    )
  notes.extend(busy_notes(rows, input_dirs))
  for row in rows:
    notes.extend(
      f"{_label(row)}, {_workers(row.workers)}, {input_dirs[row.corpus].name}: {n}"
      for n in sorted(row.notes)
    )
  threads = ", ".join(
    f"{n}={os.environ.get(n)}"
    for n in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
  )
  print(f"# Prepare throughput: mtx-prepare and the MMT reference pipeline ({threads})")
  print()
  for index, (root, paths) in enumerate(zip(input_dirs, corpora)):
    print(f"corpus {index + 1}: {root} ({len(paths)} files)")
  print(
    f"median of {args.repeats} interleaved pass{'es' if args.repeats > 1 else ''} per row; "
    f"every pass into a fresh temporary folder under {tempfile.gettempdir()}"
  )
  print(
    f"machine: {cpu_model()}, nproc {usable_cpus()}, {platform.system()} "
    f"{platform.machine()}; Python {platform.python_version()}; load average "
    f"{load_before[0]:.2f} before, {load_after[0]:.2f} after; bench {wall:.0f} s"
  )
  print("versions: " + ", ".join(f"{p} {package_version(p)}" for p in VERSIONS))
  print()
  print("\n".join(prepare_table(rows, input_dirs, corpora)))
  if loader:
    print()
    print(
      f"Input pipeline: make_train_iterator over the train split of "
      f"{input_dirs[0].name}'s midi_folder/{REPRESENTATION} dataset "
      f"({train_size} examples), worker_count 0; median of "
      f"{args.repeats} windows of at least {LOADER_SECONDS:g} s"
    )
    print()
    print("\n".join(loader_table(loader)))
  print()
  print("Goals:")
  print("\n".join(goals(rows, args.workers, loader, input_dirs, corpora)))
  if notes:
    print()
    print("Notes:")
    print("\n".join(f"- {note}" for note in notes))
  return 0


if __name__ == "__main__":
  sys.exit(main())
