"""Long generation: does a sample drift past the training window? Music metrics along it.

    python -m bench.long_samples --workdir=runs/jsb_tiny --num_samples=32 --windows=4

Draws `--num_samples` unconditioned samples as mtx-sample does (the run's sampling
defaults and data limits, the training window in view, views re-encoded past it) with
end-of-song forbidden until `--windows` training windows of rows are written, so every
sample is that long; then measures each 64-beat segment of them (beats 0-63, 64-127, ...)
with mtx-eval's music metrics, on MMT's 12-per-beat grid, beside the test songs' first 64
beats. A sample that drifts into silence shows as empty beats and falling notes per beat
in its later segments; one that collapses into a cluster, as polyphony and notes per beat
shooting up.
"""

from __future__ import annotations

import argparse
import statistics
import sys

import numpy as np

SEGMENT_BEATS = 64
METRICS = (
  "notes_per_beat",
  "empty_beat_rate",
  "polyphony",
  "pitch_class_entropy",
  "scale_consistency",
  "groove_consistency",
  "n_instruments",
  "pitch_range",
)


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--num_samples", type=int, default=32)
  parser.add_argument("--windows", type=int, default=4, help="sample length in windows")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--data_dir", default=None, help="where the run's dataset is, if moved")
  args = parser.parse_args(argv)

  import jax.numpy as jnp

  from mtx.evaluate import music_metrics
  from mtx.evaluate.evaluator import open_split
  from mtx.evaluate.samples import decode_piece, draw_samples
  from mtx.representation import mmt
  from mtx.sample.decode import options_for, sample_defaults
  from mtx.sample.grammar.mmt import MMTGrammar
  from mtx.sample.restore import load_run, sampling_limits

  run = load_run(args.workdir)
  if run.codec.name != "mmt":
    parser.error("this bench reads mmt runs")
  window = int(run.config.data.seq_len)
  length = args.windows * window
  limits = sampling_limits(run, max_length=length)
  options = options_for(
    run.codec.fields.sizes, **sample_defaults(run.config, run.codec.fields.names)
  )

  class NoEarlyEnd(MMTGrammar):
    """mmt's grammar, end-of-song allowed only in the last rows (every sample runs long)."""

    def _type_mask(self, state):
      mask = super()._type_mask(state)
      early = (state["notes"] < length - window // 2)[:, None]
      return mask & ~(early & (jnp.arange(mask.shape[1]) == mmt.END_OF_SONG)[None, :])

  grammar = NoEarlyEnd(
    run.codec,
    max_time_jump=limits.max_time_jump,
    max_first_time=limits.max_first_time,
    max_onset_notes=limits.max_onset_notes,
    max_silence=limits.max_silence,
  )
  samples = draw_samples(
    run,
    num_samples=args.num_samples,
    limits=limits,
    seed=args.seed,
    options=options,
    grammar=grammar,
  )
  tables = [music_metrics.at_resolution(decode_piece(run.codec, s, "s").table, 12) for s in samples]
  last_beat = min(int(t.onset.max()) // 12 for t in tables if t.num_notes)
  segments = max(1, (last_beat + 1) // SEGMENT_BEATS)
  rows = {}
  for k in range(segments):
    values = [
      music_metrics.file_metrics(music_metrics.segment(t, k * SEGMENT_BEATS, SEGMENT_BEATS))
      for t in tables
    ]
    rows[f"beats {k * SEGMENT_BEATS}-{(k + 1) * SEGMENT_BEATS - 1}"] = values
  split = open_split(run, "test", args.data_dir, 0)
  truth = [
    music_metrics.file_metrics(
      music_metrics.trim(
        music_metrics.at_resolution(decode_piece(run.codec, s, "t").table, 12), SEGMENT_BEATS
      )
    )
    for s in split.tokens
  ]
  rows["test songs, beats 0-63"] = truth

  lengths = [len(s) for s in samples]
  print(
    f"# {args.workdir}: {len(samples)} samples of {min(lengths)}-{max(lengths)} rows "
    f"({args.windows} windows of {window}), beats reached {last_beat}+; "
    f"window {limits.window}, time jumps <= {limits.max_time_jump} beats"
  )
  print()
  print("| segment | " + " | ".join(METRICS) + " |")
  print("|---|" + "---:|" * len(METRICS))
  for name, values in rows.items():
    cells = []
    for metric in METRICS:
      column = [v[metric] for v in values if np.isfinite(v[metric])]
      cells.append(
        f"{statistics.fmean(column):.3f} ± {statistics.pstdev(column):.2f}" if column else "n/a"
      )
    print(f"| {name} | " + " | ".join(cells) + " |")
  return 0


if __name__ == "__main__":
  sys.exit(main())
