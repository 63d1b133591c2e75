"""The model's GPU check: mtx's training step beside the MMT PyTorch model on one GPU.

    bash scripts/gpu_check.sh          # on the GPU machine; see bench/README.md
    python -m bench.gpu [--rows mtx-mmt-bf16:8x1024,torch-bf16:8x1024] [--out FILE]

Prepared to run in one go inside a short GPU lease (a few minutes): every row in a
subprocess of its own (a JAX process takes most of the GPU's memory; one at a time),
the same step as bench/model.py (forward + backward + clip 1.0 + AdamW, random in-range
tokens), float32 or bfloat16. This parent never imports JAX or torch, so it holds no
GPU memory.

Rows (pipeline:batch x seq). mtx pipelines are "mtx-" and bench/model.py's model names
(`model_config`): mmt (configs/model_mmt.py as is: 256 x 256 attention tiles, attention
dropout), mmt-full (the whole L x L in XLA), mmt-fused (the whole L x L without attention
dropout: `jax.nn.dot_product_attention`, which may run as cuDNN's fused kernel; the row
says whether the compiled step holds it), 100m (D 768, 14 layers, 12 heads, 100M
parameters: issue 6's MFU goal), "-bf16" for bfloat16 compute. torch and torch-bf16: the
MMT reference (bench/model_torch.py) on CUDA, float32 or under autocast bfloat16.

Figures: tokens/s, the step's median time, the model's FLOPs per token (6 x matmul
parameters + attention, mtx/train/flops.py's count, the same for both sides at MMT's
size), MFU = achieved FLOP/s / the device's dense bfloat16 peak (mtx/train/flops.py's
table: 989 TFLOP/s for an H100/H200; float32 rows are measured against the same peak, so
they read low), and the peak device memory (JAX's allocator, torch's
`max_memory_allocated`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from bench.machine import package_version, run_json_child

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ROWS = (  # about 6 minutes on an H200, machine start not counted
  "torch:8x512",
  "mtx-mmt:8x512",
  "torch-bf16:8x1024",
  "mtx-mmt-bf16:8x1024",
  "mtx-mmt-full-bf16:8x1024",
  "mtx-mmt-fused-bf16:8x1024",
  "torch-bf16:32x1024",
  "mtx-mmt-fused-bf16:32x1024",
  "mtx-100m-fused-bf16:32x1024",
)
GIB = 2**30


def parse_row(text: str) -> tuple[str, int, int]:
  pipeline, _, shape = text.partition(":")
  batch, _, seq = shape.lower().partition("x")
  if not (pipeline.startswith(("mtx-", "torch")) and batch.isdigit() and seq.isdigit()):
    raise argparse.ArgumentTypeError(
      f"a row is pipeline:BATCHxSEQ, e.g. mtx-mmt-bf16:8x1024; got {text!r}"
    )
  return pipeline, int(batch), int(seq)


def child_command(pipeline: str, batch: int, seq: int, steps: int) -> list[str]:
  common = ["--batch", str(batch), "--seq", str(seq), "--steps", str(steps), "--warmup", "2"]
  if pipeline.startswith("torch"):
    return [
      sys.executable,
      "-m",
      "bench.model_torch",
      *common,
      "--device",
      "cuda",
      *(["--bf16"] if pipeline == "torch-bf16" else []),
    ]
  return [sys.executable, "-m", "bench.model", "--child", pipeline.removeprefix("mtx-"), *common]


def run_row(pipeline: str, batch: int, seq: int, steps: int, timeout: float) -> dict:
  command = child_command(pipeline, batch, seq, steps)
  print(f"running {pipeline} {batch}x{seq}", file=sys.stderr, flush=True)
  start = time.perf_counter()
  result = run_json_child(command, cwd=REPO, timeout=timeout)
  if "error" not in result:
    result["wall_seconds"] = time.perf_counter() - start
  return result


def model_flops_per_token(pipeline: str, seq: int) -> float:
  """mtx/train/flops.py's count for the row's model (the MMT reference is mtx mmt's size)."""
  from bench.model import MMT_FIELD_SIZES, model_config
  from mtx.train.flops import flops_per_token

  name = "mmt" if pipeline.startswith("torch") else pipeline.removeprefix("mtx-")
  return flops_per_token(model_config(name, seq), MMT_FIELD_SIZES, seq)


def table(rows: list[tuple[str, int, int, dict]]) -> list[str]:
  from mtx.train.flops import peak_flops_of_kind

  lines = [
    "| pipeline | batch x seq | step ms | tokens/s | model TFLOP/s | MFU (bf16 peak) | "
    "peak device GiB | cuDNN attention | compile s |",
    "|---|---|---:|---:|---:|---:|---:|---|---:|",
  ]
  for pipeline, batch, seq, result in rows:
    if "error" in result:
      lines.append(f"| {pipeline} | {batch} x {seq} | {result['error']} | | | | | | |")
      continue
    seconds = result["step_seconds"]
    tokens = batch * seq / seconds
    achieved = tokens * model_flops_per_token(pipeline, seq)
    peak = peak_flops_of_kind(result.get("device_kind", ""))
    mfu = f"{achieved / peak:.1%}" if peak else "-"
    memory = result.get("peak_device_bytes")
    memory = f"{memory / GIB:.2f}" if memory is not None else "-"
    cudnn = {True: "yes", False: "no"}.get(result.get("cudnn_attention"), "-")
    compile_s = result.get("compile_seconds")
    compile_s = f"{compile_s:.1f}" if compile_s else "-"
    lines.append(
      f"| {pipeline} | {batch} x {seq} | {seconds * 1e3:.1f} | {tokens:,.0f} | "
      f"{achieved / 1e12:.1f} | {mfu} | {memory} | {cudnn} | {compile_s} |"
    )
  return lines


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument(
    "--rows",
    type=lambda t: [parse_row(r) for r in t.split(",") if r],
    default=[parse_row(r) for r in DEFAULT_ROWS],
    help="pipeline:BATCHxSEQ list (default: %(default)s)",
  )
  parser.add_argument("--steps", type=int, default=8, help="timed steps per row, after 2 untimed")
  parser.add_argument("--timeout", type=float, default=150, help="seconds per row")
  parser.add_argument(
    "--allow_cpu",
    action="store_true",
    help="run the rows even where JAX sees no GPU (to try the script)",
  )
  parser.add_argument(
    "--out", type=Path, help="also write the report (markdown) and the raw results (FILE.json) here"
  )
  args = parser.parse_args(argv)

  wall = time.perf_counter()
  # A tiny row first: if the stack does not run on this machine (a library version, no
  # GPU seen), say so at once instead of spending the lease on rows that all fail.
  smoke = run_row("mtx-tiny", 1, 64, 1, args.timeout)
  if "error" in smoke or smoke.get("platform") != "gpu":
    print(
      f"bench.gpu: the smoke row (mtx-tiny 1x64) did not run on a GPU: "
      f"{smoke.get('error') or 'platform ' + str(smoke.get('platform'))}",
      file=sys.stderr,
    )
    if "error" in smoke or not args.allow_cpu:
      return 1
  results = []
  for pipeline, batch, seq in args.rows:
    if pipeline.startswith("torch") and package_version("x-transformers") == "not installed":
      results.append((pipeline, batch, seq, {"error": "x-transformers is not installed"}))
      continue
    results.append((pipeline, batch, seq, run_row(pipeline, batch, seq, args.steps, args.timeout)))
  kinds = sorted({r.get("device_kind", "") for *_, r in results} - {""})
  report = [
    "# The model's training step on a GPU: mtx beside the MMT PyTorch model",
    "",
    f"device: {', '.join(kinds) or 'none reported'}; versions: "
    + ", ".join(
      f"{p} {package_version(p)}"
      for p in ("jax", "jaxlib", "flax", "optax", "torch", "x-transformers")
    ),
    f"step = forward + backward + clip 1.0 + AdamW, random tokens; median of "
    f"{args.steps} steps after 2 untimed; one subprocess per row; "
    f"{(time.perf_counter() - wall) / 60:.1f} min",
    "",
    *table(results),
  ]
  print("\n".join(report))
  if args.out:
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(report) + "\n")
    args.out.with_suffix(".json").write_text(
      json.dumps([{"pipeline": p, "batch": b, "seq": s, **r} for p, b, s, r in results], indent=1)
    )
  return 0


if __name__ == "__main__":
  sys.exit(main())
