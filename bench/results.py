"""Experiments on the chorales: train variants of a config over several seeds, measure each
with mtx-eval, and print one table of means and spreads (docs/results.md holds the runs).

    python -m bench.results --data_dir=data --out_dir=results/relative \\
        --variants=relative,absolute,both --seeds=0,1,2 --steps=600

A variant is a named set of --config overrides of configs/jsb_tiny.py:
- relative: the demo's model (relative attention, no absolute positions);
- absolute: no relative term, learned absolute positions (as MMT's reference);
- both: relative attention and learned absolute positions.
Each (variant, seed) trains in `out_dir/<variant>/seed<seed>` with `mtx-train` (a rerun
resumes, a finished run is reused) and is evaluated with `mtx-eval` into `.../eval`; the
table gives, per variant, the mean and the standard deviation over seeds of the test
likelihood (per field and per row), the music metrics of the samples (beside the ground
truth's), the attention gain at musical distances and the pitch embedding's octave score.
A difference between variants means something where it is larger than the spread over
seeds.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
from pathlib import Path

VARIANTS = {
  "relative": ["--config.model.relative=True", "--config.model.position_embedding=none"],
  "absolute": ["--config.model.relative=False", "--config.model.position_embedding=learned"],
  "both": ["--config.model.relative=True", "--config.model.position_embedding=learned"],
}
METRICS = (
  "pitch_class_entropy",
  "scale_consistency",
  "groove_consistency",
  "polyphony",
  "polyphony_rate",
  "notes_per_beat",
  "empty_beat_rate",
)
# Attention gain read at these differences: a beat and a bar back, two bars; an octave and a
# fifth (query minus key).
GAINS = (("beat", 1), ("beat", 4), ("beat", 8), ("pitch", 12), ("pitch", -12), ("pitch", 7))


def _run(command: list[str]) -> None:
  print("$ " + " ".join(command), flush=True)
  done = subprocess.run(command)
  if done.returncode:
    raise SystemExit(f"failed ({done.returncode}): {' '.join(command)}")


def train_and_evaluate(variant: str, seed: int, args) -> dict:
  workdir = Path(args.out_dir) / variant / f"seed{seed}"
  bin_dir = Path(sys.executable).parent
  _run(
    [
      str(bin_dir / "mtx-train"),
      f"--config={args.config}",
      f"--workdir={workdir}",
      f"--config.data.data_dir={args.data_dir}",
      f"--config.seed={seed}",
      f"--config.train.num_steps={args.steps}",
      *VARIANTS[variant],
      *args.override,
    ]
  )
  eval_dir = workdir / "eval"
  if not (eval_dir / "report.json").is_file():
    _run(
      [
        str(bin_dir / "mtx-eval"),
        f"--workdir={workdir}",
        f"--output_dir={eval_dir}",
        f"--num_samples={args.num_samples}",
        f"--seed={seed}",
        "--num_audio=0",
      ]
    )
  return json.loads((eval_dir / "report.json").read_text())


def figures(report: dict) -> dict[str, float]:
  """The figures of one report that the table compares."""
  out = {}
  likelihood = report.get("likelihood", {})
  out["test nats/row"] = likelihood.get("nats_per_row")
  for name, field in likelihood.get("fields", {}).items():
    out[f"test NLL {name}"] = field["nll"]
  metrics = report.get("music_metrics", {})
  for name in METRICS:
    out[f"samples {name}"] = metrics.get("samples", {}).get(name, {}).get("mean")
  out["samples strictly decodable"] = metrics.get("strict_decode_fraction")
  attention = report.get("attention", {})
  for field, k in GAINS:
    part = attention.get(field)
    if part and k in part["ks"]:
      out[f"gain {field} {k:+d}"] = part["gain_mean"][part["ks"].index(k)]
  octave = report.get("embeddings", {}).get("pitch", {}).get("input_octave", {})
  out["pitch octave score"] = octave.get("score")
  return out


def truth_figures(report: dict) -> dict[str, float]:
  truth = report.get("music_metrics", {}).get("ground_truth", {})
  return {f"samples {name}": truth.get(name, {}).get("mean") for name in METRICS}


def _cell(values: list) -> str:
  values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
  if not values:
    return "n/a"
  if len(values) == 1:
    return f"{values[0]:.4g}"
  return f"{statistics.fmean(values):.4g} ± {statistics.stdev(values):.2g}"


def table(results: dict[str, list[dict]], truth: dict[str, float]) -> list[str]:
  variants = list(results)
  names = list(dict.fromkeys(k for runs in results.values() for r in runs for k in r))
  lines = [
    "| figure | " + " | ".join(variants) + " | ground truth |",
    "|---|" + "---:|" * (len(variants) + 1),
  ]
  for name in names:
    cells = [_cell([r.get(name) for r in results[v]]) for v in variants]
    lines.append(f"| {name} | " + " | ".join(cells) + f" | {_cell([truth.get(name)])} |")
  return lines


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data_dir", required=True, help="where jsb_chorales was prepared")
  parser.add_argument("--out_dir", required=True, help="runs and reports go here")
  parser.add_argument("--config", default="configs/jsb_tiny.py")
  parser.add_argument("--variants", default="relative,absolute,both")
  parser.add_argument("--seeds", default="0,1,2")
  parser.add_argument("--steps", type=int, default=600)
  parser.add_argument("--num_samples", type=int, default=64)
  parser.add_argument(
    "--override", action="append", default=[], help="an extra --config.x.y=v for every run"
  )
  args = parser.parse_args(argv)
  variants = args.variants.split(",")
  unknown = [v for v in variants if v not in VARIANTS]
  if unknown:
    parser.error(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
  seeds = [int(s) for s in args.seeds.split(",")]
  results: dict[str, list[dict]] = {v: [] for v in variants}
  truth: dict[str, float] = {}
  for seed in seeds:
    for variant in variants:
      report = train_and_evaluate(variant, seed, args)
      results[variant].append(figures(report))
      truth = truth or truth_figures(report)
  print()
  print(f"# {args.config}, {args.steps} steps, seeds {args.seeds}: mean ± std over seeds")
  print()
  print("\n".join(table(results, truth)))
  return 0


if __name__ == "__main__":
  sys.exit(main())
