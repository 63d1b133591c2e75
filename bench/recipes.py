"""A short run of each GPU recipe on small real data: do the shipped recipes train?

    python -m bench.recipes --out_dir=results/recipes --steps=30

The recipes (configs/mmt_sod.py, mmt_lmd.py, music_transformer_maestro.py) are meant for a
GPU and corpora that a CI machine does not have. This runs each with its own model, window,
batch, optimizer and schedule shape, on a small folder of real MIDI files from
../shared/midi prepared with the recipe's representation, for a few steps with the warmup
(and MMT's linear decay) shortened in proportion, so that the loss has room to fall:
- mmt_sod and mmt_lmd: `other/` (49 files: Mahler, Beethoven, Mozart, pop, Lakh), mmt;
- music_transformer_maestro: `other/miditok/maestro/` (10 MAESTRO performances), performance.
It prints, per recipe, the parameter count, the training loss over the first and the last
log interval, the validation loss at the end and the seconds per step; docs/results.md
holds the runs. `--batch_size` overrides every recipe's batch (the Music Transformer's 16
windows of 2,048 events take minutes a step on two cores).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

SHARED_MIDI = Path(__file__).resolve().parents[2] / "shared" / "midi"
# recipe -> (representation, folder of ../shared/midi, validation share)
RECIPES = {
  "mmt_sod": ("mmt", "other", 0.1),
  "mmt_lmd": ("mmt", "other", 0.1),
  "music_transformer_maestro": ("performance", "other/miditok/maestro", 0.2),
}


def _run(command: list[str]) -> None:
  print("$ " + " ".join(command), flush=True)
  done = subprocess.run(command)
  if done.returncode:
    raise SystemExit(f"failed ({done.returncode}): {' '.join(command)}")


def prepare(representation: str, folder: str, validation: float, data_dir: Path) -> None:
  """mtx-prepare reuses a dataset that is already there (of this version and options)."""
  bin_dir = Path(sys.executable).parent
  _run(
    [
      str(bin_dir / "mtx-prepare"),
      "--dataset=midi_folder",
      f"--representation={representation}",
      f"--manual_dir={SHARED_MIDI / folder}",
      f"--data_dir={data_dir}",
      f"--validation_ratio={validation}",
      "--test_ratio=0",
    ]
  )


def scalars(workdir: Path) -> dict[str, list[tuple[int, float]]]:
  """The TensorBoard scalars of a run, by tag, as (step, value) in step order."""
  from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

  events = EventAccumulator(str(workdir / "tensorboard"))
  events.Reload()
  return {
    tag: sorted((e.step, e.value) for e in events.Scalars(tag)) for tag in events.Tags()["scalars"]
  }


def train(recipe: str, data_dir: Path, workdir: Path, args) -> dict:
  steps = args.steps
  warmup = max(1, steps // 3)
  overrides = [
    "--config.data.dataset=midi_folder",
    f"--config.data.data_dir={data_dir}",
    f"--config.train.num_steps={steps}",
    f"--config.train.warmup_steps={warmup}",
    f"--config.train.log_every={args.log_every}",
    f"--config.train.eval_every={steps}",
    "--config.train.eval_batches=2",
    f"--config.train.checkpoint_every={steps}",
  ]
  if recipe.startswith("mmt"):
    overrides.append(f"--config.train.decay_steps={steps}")
  if args.batch_size:
    overrides.append(f"--config.train.batch_size={args.batch_size}")
  bin_dir = Path(sys.executable).parent
  start = time.perf_counter()
  _run(
    [
      str(bin_dir / "mtx-train"),
      f"--config=configs/{recipe}.py",
      f"--workdir={workdir}",
      *overrides,
    ]
  )
  seconds = time.perf_counter() - start
  tags = scalars(workdir)
  loss = tags["train/loss"]
  eval_loss = tags.get("eval/loss", [])
  return {
    "recipe": recipe,
    "first loss": loss[0][1],
    "last loss": loss[-1][1],
    "eval loss": eval_loss[-1][1] if eval_loss else float("nan"),
    "s/step (incl. start)": seconds / steps,
    "tokens/s": tags.get("train/tokens_per_second", [(0, float("nan"))])[-1][1],
  }


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--out_dir", default="results/recipes")
  parser.add_argument("--recipes", default=",".join(RECIPES))
  parser.add_argument("--steps", type=int, default=30)
  parser.add_argument("--log_every", type=int, default=5)
  parser.add_argument("--batch_size", type=int, default=0, help="0: each recipe's own")
  args = parser.parse_args(argv)
  if not SHARED_MIDI.is_dir():
    raise SystemExit(f"no real MIDI files at {SHARED_MIDI}: this needs ../shared/midi")
  out = Path(args.out_dir).resolve()
  rows = []
  for recipe in args.recipes.split(","):
    representation, folder, validation = RECIPES[recipe]
    prepare(representation, folder, validation, out / "data")
    rows.append(train(recipe, out / "data", out / recipe, args))
  keys = list(rows[0])
  print("| " + " | ".join(keys) + " |")
  print("|" + "---|" * len(keys))
  for row in rows:
    print(
      "| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row.values()) + " |"
    )


if __name__ == "__main__":
  main()
