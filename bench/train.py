"""Training throughput: mtx's sharded train step beside the MMT reference training step.

    bash scripts/bench_train.sh                  # .venv-bench + torch, x-transformers
    bash scripts/bench_train.sh --rows mmt:2x1024:1,torch:2x1024

Each row runs in its own subprocess (its peak RSS its own):
- `mtx`: the step `mtx-train` runs (`mtx.train.step.make_train_step`: jitted with
  in/out shardings and donation, AdamW + clipping, dropout on), at the MMT-size
  config (configs/mmt_sod.py's model) or the tiny one (configs/jsb_tiny.py's), on
  1 device or on 8 fake CPU devices (`--xla_force_host_platform_device_count=8`, a
  data-parallel mesh: the same 2 cores, so this measures the sharded program's
  overhead, not a speed-up);
- `torch`: the MMT reference model and step (bench/model_torch.py: x-transformers
  1.0.3, forward + backward + clip + AdamW, 2 threads), at MMT's size.
Random in-range tokens; tokens/s counts every position (B x L), as the model
bench does. MFU = tokens/s x model FLOPs per token (mtx/train/flops.py) / the
CPU's peak (cores x clock x 32 float32 FLOPs per cycle with AVX2+FMA), a bound
no real step reaches: CPU MFU reads low.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

from bench.machine import run_json_child

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ROWS = (
  "torch:2x1024",
  "mmt:2x1024:1",
  "torch:8x512",
  "mmt:8x512:1",
  "mmt:8x512:8",
  "tiny:8x256:1",
  "tiny:8x256:8",
)


def model_config(name: str):
  from configs import jsb_tiny, mmt_sod

  config = (mmt_sod if name == "mmt" else jsb_tiny).get_config()
  return config


def run_mtx(name: str, batch: int, seq: int, steps: int, warmup: int) -> dict:
  import jax
  import numpy as np

  from bench.machine import cpu_seconds, peak_rss_bytes
  from mtx.model.params import parameter_count
  from mtx.representation import get_codec
  from mtx.train import sharding
  from mtx.train.config import validate
  from mtx.train.flops import flops_per_token, peak_flops_per_device
  from mtx.train.state import TrainSetup
  from mtx.train.step import make_train_step

  config = model_config(name)
  config.data.seq_len = seq
  config.model.max_seq_len = max(config.model.max_seq_len, seq)
  config.train.update(batch_size=batch, warmup_steps=1)
  shape = validate(config, device_count=jax.device_count())
  codec = get_codec("mmt", max_beat=256)
  setup = TrainSetup.create(config, codec, sharding.make_mesh(shape))
  state = setup.init()
  step = make_train_step(setup)
  rng = np.random.default_rng(0)
  tokens = np.stack([rng.integers(0, n, (batch, seq + 1)) for n in codec.fields.sizes], -1).astype(
    np.int32
  )
  batch_data = jax.device_put(
    {"inputs": tokens[:, :-1], "targets": tokens[:, 1:], "mask": np.ones((batch, seq), bool)},
    sharding.batch_sharding(setup.mesh),
  )
  start = time.perf_counter()
  compiled = step.lower(state, batch_data).compile()
  compile_seconds = time.perf_counter() - start
  times, losses = [], []
  for i in range(warmup + steps):
    if i == warmup:
      own, machine = cpu_seconds()
    start = time.perf_counter()
    state, metrics = compiled(state, batch_data)
    losses.append(float(metrics["loss"]))  # waits for the step
    if i >= warmup:
      times.append(time.perf_counter() - start)
  own_end, machine_end = cpu_seconds()
  per_token = flops_per_token(config.model, codec.fields.sizes, seq)
  peak = peak_flops_per_device(jax.devices()[0]) * jax.device_count()
  step_seconds = statistics.median(times)
  return {
    "pipeline": f"mtx-{name}",
    "batch": batch,
    "seq": seq,
    "devices": jax.device_count(),
    "mesh": list(shape),
    "parameters": parameter_count(config.model, codec.fields.sizes)["total"],
    "step_seconds": step_seconds,
    "step_times": times,
    "losses": losses,
    "compile_seconds": compile_seconds,
    "peak_rss_bytes": peak_rss_bytes(),
    "flops_per_token": per_token,
    "peak_flops": peak,
    "mfu": batch * seq / step_seconds * per_token / peak if peak else None,
    "cpu_per_wall": (own_end - own) / sum(times),
    "others_cpu_per_wall": (machine_end - machine - (own_end - own)) / sum(times),
  }


def parse_row(text: str) -> tuple[str, int, int, int]:
  parts = text.split(":")
  batch, seq = (int(x) for x in parts[1].split("x"))
  devices = int(parts[2]) if len(parts) > 2 else 1
  return parts[0], batch, seq, devices


def child(row: str, steps: int, warmup: int, timeout: float) -> dict:
  name, batch, seq, devices = parse_row(row)
  env = dict(
    os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu"
  )
  common = [
    "--batch",
    str(batch),
    "--seq",
    str(seq),
    "--steps",
    str(steps),
    "--warmup",
    str(warmup),
  ]
  if name == "torch":
    command = [sys.executable, "-m", "bench.model_torch", *common]
  else:
    command = [sys.executable, "-m", "bench.train", "--child", name, *common]
  print(f"running {row}", file=sys.stderr, flush=True)
  return {"row": row, **run_json_child(command, cwd=REPO, timeout=timeout, env=env)}


def table(results: list[dict]) -> list[str]:
  torch = {
    (r["batch"], r["seq"]): r for r in results if r.get("pipeline") == "torch" and "error" not in r
  }
  lines = [
    "| pipeline | devices | batch x seq | steps/s | tokens/s | vs PyTorch | MFU | "
    "peak RSS GiB | compile s |",
    "|---|---:|---|---:|---:|---:|---:|---:|---:|",
  ]
  for r in results:
    if "error" in r:
      lines.append(f"| {r['row']} | | | error: {r['error']} | | | | | |")
      continue
    tokens = r["batch"] * r["seq"] / r["step_seconds"]
    peer = torch.get((r["batch"], r["seq"]))
    ratio = (
      "-"
      if r["pipeline"] == "torch" or not peer
      else f"{tokens / (peer['batch'] * peer['seq'] / peer['step_seconds']):.2f}x"
    )
    mfu = f"{r['mfu']:.1%}" if r.get("mfu") else "-"
    compile_s = f"{r['compile_seconds']:.1f}" if r.get("compile_seconds") else "-"
    lines.append(
      f"| {r['pipeline']} | {r.get('devices', 1)} | {r['batch']} x {r['seq']} | "
      f"{1 / r['step_seconds']:.3f} | {tokens:,.0f} | {ratio} | {mfu} | "
      f"{r['peak_rss_bytes'] / 2**30:.2f} | {compile_s} |"
    )
  return lines


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument(
    "--rows",
    default=",".join(DEFAULT_ROWS),
    help="pipeline:BxL[:devices] items; pipeline is torch, mmt or tiny",
  )
  parser.add_argument("--steps", type=int, default=3, help="timed steps per row")
  parser.add_argument("--warmup", type=int, default=1)
  parser.add_argument("--timeout", type=float, default=600)
  parser.add_argument("--child", help=argparse.SUPPRESS)
  parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
  parser.add_argument("--seq", type=int, help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.child:
    from mtx.cpu_compiler import configure_cpu_compiler

    configure_cpu_compiler()  # as mtx-train does, before any JAX computation
    print(json.dumps(run_mtx(args.child, args.batch, args.seq, args.steps, args.warmup)))
    return 0
  from bench.machine import cpu_model, package_version

  print(
    f"CPU: {cpu_model()}, {os.cpu_count()} cores; load {os.getloadavg()[0]:.2f}; "
    f"jax {package_version('jax')}, flax {package_version('flax')}, "
    f"torch {package_version('torch')}, x-transformers {package_version('x-transformers')}"
  )
  results = [child(row, args.steps, args.warmup, args.timeout) for row in args.rows.split(",")]
  print("\n".join(table(results)))
  return 0


if __name__ == "__main__":
  sys.exit(main())
