"""Evaluation throughput: mtx's music metrics beside MusPy's own, in one run, on one core.

    bash scripts/bench_evaluate.sh [--input_dir DIR ...] [--repeats N] [--resolution 12|native]

For each corpus (default: the 409 Bach chorales of ../shared/midi/bach_chorales, then all
458 files of ../shared/midi), four rows over the same files:

- mtx from the path: `read_note_table` -> `at_resolution(12)` -> `file_metrics` (all 18
  metrics, MusPy's 13 and mtx's 5).
- mtx metrics alone: `file_metrics` on tables read and put on the grid beforehand.
- MusPy from the path: `muspy.read_midi` -> `adjust_resolution(12)` -> its 13 metric
  functions, called as `file_metrics` matches them (`music_metrics.muspy_metrics`).
- MusPy metrics alone: the 13 functions on Music objects read and adjusted beforehand.

The grid is the evaluator's (MMT's 12 ticks per beat, where MusPy's metrics count ticks);
`--resolution native` measures at each file's own resolution instead, where MusPy's
tick-looping metrics (polyphony, the empty-beat and groove loops) take seconds per
chorale at its 10080 ticks per beat (minutes per pass).

files/s and notes/s: the corpus over the median of `--repeats` timed passes; notes are
those of mtx's tables, the same count on every row. The passes are interleaved (pass 1 of
every row, then pass 2, ...), so a change of machine load hits all rows alike; each row
runs once untimed first. One process, one busy thread (OMP/MKL/OpenBLAS at 1).

Agreement: the largest |mtx - MusPy| per metric over the corpus, (a) on the same notes
(MusPy's functions on `to_muspy_music` of mtx's table: the metric definitions alone,
expected 0) and (b) each side from its own reader: symusic and mido pair overlapping
same-pitch notes differently in a few files, and MusPy's reader keeps other MIDI events as
track annotations, whose times count in its metrics' length. A metric NaN on one side
only is counted apart.
"""

from __future__ import annotations

import os

# One core: no thread pool in numpy's BLAS or anything on OpenMP/MKL. Set before numpy
# is imported; scripts/bench_evaluate.sh sets them too.
for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
  os.environ.setdefault(_name, "1")

import argparse
import math
import platform
import sys
from pathlib import Path

from bench.machine import cpu_model, package_version
from bench.tokenize import Pipeline, Result, corpus, load_notes, measure, pin, usable_cpus
from mtx.errors import MtxError
from mtx.evaluate.music_metrics import (
  MMT_RESOLUTION,
  MUSPY_METRICS,
  at_resolution,
  file_metrics,
  muspy_metrics,
  to_muspy_music,
)
from mtx.representation.midi_io import read_note_table

REPO = Path(__file__).resolve().parents[1]
SHARED_MIDI = REPO.parent / "shared" / "midi"
DEFAULT_INPUT_DIRS = (SHARED_MIDI / "bach_chorales", SHARED_MIDI)

GOAL_RATIO = 10.0  # mtx's files/s over MusPy's, from the path and for the metrics alone

PEER_VERSIONS = ("muspy", "symusic", "mido", "numpy", "scipy")


def _resolution(text: str) -> int | None:
  if text == "native":
    return None
  try:
    value = int(text)
  except ValueError:
    value = 0
  if value < 1:
    raise argparse.ArgumentTypeError(
      f"{text!r}: pass a positive number of ticks per beat or 'native'"
    )
  return value


def _on_grid_table(path: Path, resolution: int | None):
  table = read_note_table(path)
  return table if resolution is None else at_resolution(table, resolution)


def _on_grid_music(path: Path, resolution: int | None, muspy):
  music = muspy.read_midi(path)
  return music if resolution is None else music.adjust_resolution(resolution)


def pipelines(paths: list[Path], resolution: int | None, muspy) -> list[Pipeline]:
  """The four rows; the "alone" rows read their inputs here, untimed."""
  grid = "native" if resolution is None else f"at_resolution({resolution})"
  tables = {path: _on_grid_table(path, resolution) for path in paths}
  rows = [
    Pipeline(
      "mtx-path",
      f"mtx: read_note_table -> {grid} -> file_metrics",
      lambda path: file_metrics(_on_grid_table(path, resolution)),
    ),
    Pipeline(
      "mtx-alone",
      "mtx: file_metrics alone (tables read beforehand)",
      lambda path: file_metrics(tables[path]),
    ),
  ]
  if muspy is not None:
    adjust = "native" if resolution is None else f"adjust_resolution({resolution})"
    music = {path: _on_grid_music(path, resolution, muspy) for path in paths}
    rows += [
      Pipeline(
        "muspy-path",
        f"MusPy: read_midi -> {adjust} -> its {len(MUSPY_METRICS)} metrics",
        lambda path: muspy_metrics(_on_grid_music(path, resolution, muspy)),
      ),
      Pipeline(
        "muspy-alone",
        f"MusPy: its {len(MUSPY_METRICS)} metrics alone (Music read beforehand)",
        lambda path: muspy_metrics(music[path]),
      ),
    ]
  return rows


def agreement(paths: list[Path], resolution: int | None, muspy) -> list[str]:
  """The per-metric table of the largest |mtx - MusPy| (see the module docstring)."""
  same_notes = {name: [] for name in MUSPY_METRICS}
  own_readers = {name: [] for name in MUSPY_METRICS}
  for path in paths:
    table = _on_grid_table(path, resolution)
    ours = file_metrics(table)
    music = to_muspy_music(read_note_table(path))
    if resolution is not None:
      music.adjust_resolution(resolution)
    for collected, theirs in (
      (same_notes, muspy_metrics(music)),
      (own_readers, muspy_metrics(_on_grid_music(path, resolution, muspy))),
    ):
      for name in MUSPY_METRICS:
        collected[name].append((ours[name], theirs[name]))

  def summary(pairs) -> str:
    nan_one_side = sum(math.isnan(a) != math.isnan(b) for a, b in pairs)
    both = [abs(a - b) for a, b in pairs if not (math.isnan(a) or math.isnan(b))]
    largest = f"{max(both):.3g}" if both else "n/a"
    return f"{largest}" + (f" ({nan_one_side} NaN on one side)" if nan_one_side else "")

  lines = [
    "| metric | max abs diff, same notes | max abs diff, own readers | files with a value |",
    "|---|---:|---:|---:|",
  ]
  for name in MUSPY_METRICS:
    defined = sum(not math.isnan(a) for a, _ in same_notes[name])
    lines.append(
      f"| {name} | {summary(same_notes[name])} | {summary(own_readers[name])} | {defined} |"
    )
  return lines


def throughput_table(results: list[Result], num_files: int, num_notes: int) -> list[str]:
  seconds = {r.pipeline.key: r.seconds for r in results}
  lines = ["| row | files/s | notes/s | mtx / MusPy |", "|---|---:|---:|---:|"]
  for r in results:
    if r.seconds is None:
      lines.append(f"| {r.pipeline.label} | failed: {r.error} | | |")
      continue
    side, kind = r.pipeline.key.split("-")
    peer = seconds.get(f"muspy-{kind}")
    ratio = f"{peer / r.seconds:.1f}x" if side == "mtx" and peer else ""
    lines.append(
      f"| {r.pipeline.label} | {num_files / r.seconds:,.1f} | "
      f"{num_notes / r.seconds:,.0f} | {ratio} |"
    )
  return lines


def goals(results: list[Result]) -> list[str]:
  seconds = {r.pipeline.key: r.seconds for r in results if r.seconds}
  lines = []
  for kind, what in (("path", "from the path"), ("alone", "metrics alone")):
    ours, theirs = seconds.get(f"mtx-{kind}"), seconds.get(f"muspy-{kind}")
    label = f"mtx at least {GOAL_RATIO:g}x MusPy's files/s, {what}"
    if ours is None or theirs is None:
      lines.append(f"- {label}: not measured (a side is missing or failed)")
    else:
      ratio = theirs / ours
      lines.append(f"- {label}: {ratio:.1f}x -> {'PASS' if ratio >= GOAL_RATIO else 'FAIL'}")
  return lines


def likelihood_section(args: argparse.Namespace, paths: list[Path]) -> list[str]:
  """mtx-eval's likelihood pass beside the training step's forward, on the same windows.

  The model: configs/base.py's model (`--likelihood_model tiny`) or configs/model_mmt.py
  (`mmt`), randomly initialised, over the mmt tokens of `paths` cut into windows of
  `--likelihood_seq_len` rows advancing by half of it (mtx-eval's default stride), 8
  windows a call. Rows: (a) `split_likelihood`, everything mtx-eval does for its NLL
  figures (windows built on the host, the jitted scorer, per-token NLL back to the host,
  the float64 sums); (b) `make_eval_step`, the jitted forward + loss mtx-train evaluates
  with, on the same batches already on the device. tokens/s counts the positions the
  model reads (windows x seq_len), the same on both rows; the likelihood row also gives
  the split's rows scored per second (each once)."""
  import time

  import jax

  from configs import base, model_mmt
  from mtx.evaluate.likelihood import split_likelihood, window_batches
  from mtx.representation import get_codec
  from mtx.train.sharding import make_mesh
  from mtx.train.state import TrainSetup
  from mtx.train.step import make_eval_step

  codec = get_codec("mmt", overflow="truncate")
  config = base.get_config()
  if args.likelihood_model == "mmt":
    config.model = model_mmt.get_config()
  seq_len = args.likelihood_seq_len
  config.data.seq_len = seq_len
  config.model.max_seq_len = max(int(config.model.max_seq_len), seq_len)
  songs = []
  for path in paths:
    try:
      songs.append(codec.encode(path))
    except MtxError:
      continue
  setup = TrainSetup.create(config, codec, make_mesh((1, 1, 1)))
  params = setup.init().params
  stride, batch_size = max(1, seq_len // 2), 8
  batches = list(
    window_batches(codec, songs, seq_len=seq_len, stride=stride, batch_size=batch_size)
  )
  positions = len(batches) * batch_size * seq_len

  def likelihood():
    return split_likelihood(
      setup.model, params, codec, songs, seq_len=seq_len, stride=stride, batch_size=batch_size
    )

  eval_step = make_eval_step(setup)
  device_batches = [
    jax.device_put(
      {
        "inputs": b.inputs,
        "targets": b.targets,
        "mask": b.scored,
        "positions": b.positions,
        "segment_ids": b.segment_ids,
      }
    )
    for b in batches
  ]

  def forward():
    sums = [eval_step(params, batch) for batch in device_batches]
    jax.block_until_ready(sums)

  rows = likelihood()["rows"]  # also compiles
  forward()
  timings = {"likelihood": [], "forward": []}
  for _ in range(args.repeats):
    for name, call in (("likelihood", likelihood), ("forward", forward)):
      start = time.perf_counter()
      call()
      timings[name].append(time.perf_counter() - start)
  seconds = {name: sorted(t)[len(t) // 2] for name, t in timings.items()}
  return [
    f"## Likelihood pass: {len(songs)} songs, {rows:,} rows, {len(batches)} batches of "
    f"{batch_size} windows x {seq_len} rows (stride {stride}), model "
    f"{args.likelihood_model}, {jax.default_backend()}",
    "",
    "| row | tokens/s | rows scored/s | vs the training step's forward |",
    "|---|---|---|---|",
    f"| mtx-eval likelihood (`split_likelihood`) | {positions / seconds['likelihood']:,.0f} "
    f"| {rows / seconds['likelihood']:,.0f} | "
    f"{seconds['forward'] / seconds['likelihood']:.2f}x |",
    f"| mtx-train's eval step (forward + loss) | {positions / seconds['forward']:,.0f} | | 1.00x |",
  ]


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument(
    "--input_dir",
    type=Path,
    action="append",
    default=None,
    help="folder of MIDI files, read recursively; repeat for several "
    f"(default: {', '.join(str(d) for d in DEFAULT_INPUT_DIRS)})",
  )
  parser.add_argument(
    "--repeats", type=int, default=3, help="timed passes over each corpus; the median is reported"
  )
  parser.add_argument(
    "--resolution",
    type=_resolution,
    default=MMT_RESOLUTION,
    help="ticks per beat the metrics are measured at, or 'native' "
    "(default: %(default)s, the evaluator's grid)",
  )
  parser.add_argument(
    "--likelihood_model",
    choices=("tiny", "mmt", "none"),
    default="tiny",
    help="the model of the likelihood rows, on the first corpus "
    "(default: %(default)s; none skips them)",
  )
  parser.add_argument(
    "--likelihood_seq_len",
    type=int,
    default=256,
    help="window length of the likelihood rows (default: %(default)s)",
  )
  parser.add_argument(
    "--cpu", type=int, default=None, help="pin the process to this CPU (default: not pinned)"
  )
  args = parser.parse_args(argv)
  if args.repeats < 1:
    parser.error(f"--repeats must be at least 1, got {args.repeats}")
  if args.cpu is not None and args.cpu not in os.sched_getaffinity(0):  # Linux
    parser.error(
      f"--cpu {args.cpu}: not one of this process's CPUs {sorted(os.sched_getaffinity(0))}"
    )
  input_dirs = [d.expanduser().resolve() for d in (args.input_dir or DEFAULT_INPUT_DIRS)]
  try:
    corpora = [corpus(d) for d in input_dirs]
  except MtxError as e:
    print(f"bench_evaluate: {e}", file=sys.stderr)
    return 2

  notes: list[str] = []
  try:
    import muspy  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    muspy = None
    notes.append(
      f"MusPy: skipped, not installed ({e}); run scripts/bench_evaluate.sh, "
      "which installs it in .venv-bench"
    )
  pinned = pin(args.cpu)
  threads = ", ".join(
    f"{n}={os.environ.get(n)}"
    for n in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
  )
  grid = (
    "each file's own resolution"
    if args.resolution is None
    else (f"{args.resolution} ticks per beat")
  )
  print(f"# Music-metric throughput, one core ({pinned}; {threads}), one process")
  print()
  print(
    f"metrics measured at {grid}; median of {args.repeats} pass{'es' if args.repeats > 1 else ''}"
  )
  print(
    f"machine: {cpu_model()}, nproc {usable_cpus()}, {platform.system()} "
    f"{platform.machine()}; Python {platform.python_version()}"
  )
  print("versions: " + ", ".join(f"{p} {package_version(p)}" for p in PEER_VERSIONS))
  for input_dir, paths in zip(input_dirs, corpora):
    # Also warms the page cache, so that no row pays for the first disk read.
    num_notes = sum(read_note_table(p).num_notes for p in paths)
    results = measure(pipelines(paths, args.resolution, muspy), paths, args.repeats)
    print()
    print(f"## {input_dir} ({len(paths)} files, {num_notes:,} notes in mtx's note tables)")
    print()
    print("\n".join(throughput_table(results, len(paths), num_notes)))
    print()
    print("Goals:")
    print("\n".join(goals(results)))
    if muspy is not None:
      print()
      print("Agreement with MusPy, per metric:")
      print()
      print("\n".join(agreement(paths, args.resolution, muspy)))
    notes.extend(f"{input_dir.name}: {note}" for note in load_notes(results))
  likelihood = likelihood_section(args, corpora[0]) if args.likelihood_model != "none" else []
  if likelihood:
    print()
    print("\n".join(likelihood))
  if notes:
    print()
    print("Notes:")
    print("\n".join(f"- {note}" for note in notes))
  return 0


if __name__ == "__main__":
  sys.exit(main())
