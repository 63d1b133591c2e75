"""The matmul floor of the MMT-size training step, in XLA and in PyTorch, on this CPU.

    bash scripts/bench_kernels.sh [--shapes 8x512,2x1024] [--rounds 3]

Why: issue 5 asks mtx's training step for 2x the PyTorch model's tokens/s. Both steps
are mostly matrix products, so timing those products alone, at the shapes and counts the
step uses, in each library, gives each side a floor: the seconds its step's matmuls take
even if everything else (LayerNorm, softmax, GELU, dropout, AdamW) were free. Tokens over
that floor bound the tokens/s any step built on that library can reach here; a measured
step's tokens/s over the bound is how much of the step is matmul (bench/model.py measures
the steps).

Products of one step (M = batch x seq tokens; MMT's size from configs/model_mmt.py):
- dense, every Linear (per layer q, k, v, out D x D, MLP up D x F and down F x D; the six
  output heads as one D x 502): the forward X W and the backward's dY W^T and X^T dY, as
  autograd computes them (PyTorch keeps W as (out, in), XLA as (in, out); each side in
  its own convention, transposes as views / dimension numbers, not copies).
- attention, per (batch, head), each side as it computes it:
  - PyTorch (x-transformers 1.0.3: einsum over the whole L x L): Q K^T and P V forward;
    dO V^T, P^T dO, dS K and dS^T Q backward. 6 products of L x L x Dh.
  - mtx (`flash_attention` at `attention_block_size` T): n (n + 1) / 2 tiles of
    T x T x Dh for n = L / T (tiles above the diagonal skipped), each with the same 6
    products plus Q K^T again in the backward (the custom VJP recomputes the logits): 7.
  By contraction: "qk" contracts Dh (Q K^T, dO V^T), "pv" contracts keys (P V, dS K),
  "ptdo" contracts queries (P^T dO, dS^T Q).

Each side runs in its own subprocess (XLA's and torch's thread pools never share the
cores; XLA's with mtx's CPU compiler options, `mtx.cpu_compiler`), the two alternate for
--rounds rounds, a product's time is the median of its repetitions in a round and then
the median over rounds. float32, random inputs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
from pathlib import Path

from bench.machine import cpu_model, package_version, run_json_child
from bench.model import parse_shapes

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SHAPES = ((8, 512), (2, 1024))
HEAD_VOCAB = 502  # the six MMT output heads as one matmul: 5 + 257 + 13 + 129 + 33 + 65
MIN_SECONDS = 0.25  # repeat a product until this much time, at least MIN_REPEATS times
MIN_REPEATS = 5


@dataclasses.dataclass(frozen=True)
class Product:
  """One kind of matrix product of the step and how many times one step runs it.

  dense kinds (`fwd`, `dx`, `dw`): m tokens, k inputs, n outputs of a Linear.
  attention kinds (`qk`, `pv`, `ptdo`): batch x heads independent products of t queries,
  s keys, d head dims. flops counts one run.
  """

  kind: str
  dims: tuple[int, ...]
  count: int

  @property
  def flops(self) -> float:
    if self.kind in ("fwd", "dx", "dw"):
      m, k, n = self.dims
      return 2.0 * m * k * n
    batch, heads, t, s, d = self.dims
    return 2.0 * batch * heads * t * s * d

  @property
  def key(self) -> str:
    return f"{self.kind}:{'x'.join(map(str, self.dims))}"


def model_dims() -> dict:
  """MMT's size as configs/model_mmt.py sets it."""
  from configs import model_mmt

  config = model_mmt.get_config()
  d = int(config.embed_dim)
  return {
    "layers": int(config.num_layers),
    "d": d,
    "heads": int(config.num_heads),
    "mlp": int(round(config.mlp_ratio * d)),
    "tile": int(config.attention_block_size),
  }


def step_products(batch: int, seq: int, side: str, dims: dict) -> list[Product]:
  """Every matmul of one training step of `side` ('xla' for mtx, 'torch'), merged by shape."""
  layers, d, heads, mlp = dims["layers"], dims["d"], dims["heads"], dims["mlp"]
  m, dh = batch * seq, d // heads
  counts: dict[tuple, int] = {}

  def add(kind, shape, count):
    counts[(kind, shape)] = counts.get((kind, shape), 0) + count

  for k, n, per_layer in ((d, d, 4), (d, mlp, 1), (mlp, d, 1)):
    for kind in ("fwd", "dx", "dw"):
      add(kind, (m, k, n), per_layer * layers)
  for kind in ("fwd", "dx", "dw"):
    add(kind, (m, d, HEAD_VOCAB), 1)
  if side == "torch":
    for kind in ("qk", "pv", "ptdo"):
      add(kind, (batch, heads, seq, seq, dh), 2 * layers)
  else:
    tile = dims["tile"] if dims["tile"] and seq % dims["tile"] == 0 else seq
    n = seq // tile
    tiles = n * (n + 1) // 2
    for kind, per_tile in (("qk", 3), ("pv", 2), ("ptdo", 2)):
      add(kind, (batch, heads, tile, tile, dh), per_tile * tiles * layers)
  return [Product(kind, shape, count) for (kind, shape), count in counts.items()]


def repeat_timed(run) -> float:
  """Median seconds of `run()` (which must block until done) after one untimed call."""
  run()
  times = []
  while len(times) < MIN_REPEATS or sum(times) < MIN_SECONDS:
    start = time.perf_counter()
    run()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def time_xla(products: list[Product]) -> dict[str, float]:
  """Each product as one jitted `lax.dot_general`, mtx's dimension order."""
  import jax
  import jax.numpy as jnp
  from jax import lax

  def dense(kind, m, k, n):
    shapes, contract = {
      "fwd": (((m, k), (k, n)), ((1,), (0,))),  # X W
      "dx": (((m, n), (k, n)), ((1,), (1,))),  # dY W^T
      "dw": (((m, k), (m, n)), ((0,), (0,))),
    }[kind]  # X^T dY
    return shapes, (contract, ((), ()))

  def attention(kind, b, h, t, s, dh):
    shapes, contract = {
      "qk": (((b, h, t, dh), (b, h, s, dh)), ((3,), (3,))),  # Q K^T
      "pv": (((b, h, t, s), (b, h, s, dh)), ((3,), (2,))),  # P V
      "ptdo": (((b, h, t, s), (b, h, t, dh)), ((2,), (2,))),
    }[kind]  # P^T dO
    return shapes, (contract, ((0, 1), (0, 1)))

  seconds = {}
  key = jax.random.key(0)
  for product in products:
    build = dense if product.kind in ("fwd", "dx", "dw") else attention
    (lhs, rhs), numbers = build(product.kind, *product.dims)
    a = jax.random.normal(jax.random.fold_in(key, 1), lhs, jnp.float32)
    b = jax.random.normal(jax.random.fold_in(key, 2), rhs, jnp.float32)
    fn = jax.jit(lambda x, y, numbers=numbers: lax.dot_general(x, y, numbers))
    seconds[product.key] = repeat_timed(lambda: fn(a, b).block_until_ready())
  return seconds


def time_torch(products: list[Product], threads: int) -> dict[str, float]:
  """Each product as autograd runs it for nn.Linear and x-transformers' einsum attention."""
  import torch

  torch.set_num_threads(threads)
  seconds = {}
  with torch.no_grad():
    for product in products:
      if product.kind in ("fwd", "dx", "dw"):
        m, k, n = product.dims
        x, w, dy = torch.randn(m, k), torch.randn(n, k), torch.randn(m, n)  # w: (out, in)
        run = {"fwd": lambda: x @ w.t(), "dx": lambda: dy @ w, "dw": lambda: dy.t() @ x}[
          product.kind
        ]
      else:
        b, h, t, s, dh = product.dims
        q, k_, p, do = (
          torch.randn(b, h, t, dh),
          torch.randn(b, h, s, dh),
          torch.randn(b, h, t, s),
          torch.randn(b, h, t, dh),
        )
        run = {
          "qk": lambda: q @ k_.transpose(-1, -2),
          "pv": lambda: p @ k_,
          "ptdo": lambda: p.transpose(-1, -2) @ do,
        }[product.kind]
      seconds[product.key] = repeat_timed(run)
  return seconds


def run_child(side: str, batch: int, seq: int, threads: int) -> dict[str, float]:
  command = [
    sys.executable,
    "-m",
    "bench.kernels",
    "--child",
    side,
    "--shapes",
    f"{batch}x{seq}",
    "--threads",
    str(threads),
  ]
  result = run_json_child(command, cwd=REPO, timeout=900)
  if "error" in result:
    raise SystemExit(f"bench.kernels: the {side} side at {batch}x{seq} failed: {result['error']}")
  return result


def shape_report(batch: int, seq: int, dims: dict, times: dict[str, dict[str, float]]) -> list[str]:
  """The products table and each side's floor for one batch x seq."""
  tokens = batch * seq
  lines = [
    f"## {batch} x {seq} ({tokens} tokens a step)",
    "",
    "| side | product | shape | per step | ms each | GFLOP/s | ms per step |",
    "|---|---|---|---:|---:|---:|---:|",
  ]
  floors = {}
  for side in ("xla", "torch"):
    total = 0.0
    for product in step_products(batch, seq, side, dims):
      each = times[side][product.key]
      total += each * product.count
      lines.append(
        f"| {side} | {product.kind} | {'x'.join(map(str, product.dims))} | "
        f"{product.count} | {each * 1e3:.2f} | {product.flops / each / 1e9:.0f} | "
        f"{each * product.count * 1e3:.0f} |"
      )
    floors[side] = total
  lines += [
    "",
    "| side | matmul floor s/step | bound tokens/s | of which attention s |",
    "|---|---:|---:|---:|",
  ]
  for side, floor in floors.items():
    attention = sum(
      times[side][p.key] * p.count
      for p in step_products(batch, seq, side, dims)
      if p.kind in ("qk", "pv", "ptdo")
    )
    lines.append(f"| {side} | {floor:.2f} | {tokens / floor:.0f} | {attention:.2f} |")
  lines += [
    "",
    f"For mtx's step to run at 2x PyTorch's tokens/s, PyTorch's whole step must "
    f"take at least 2 x {floors['xla']:.2f} = {2 * floors['xla']:.2f} s (mtx's "
    f"matmul floor doubled): {2 * floors['xla'] / floors['torch']:.2f}x PyTorch's own "
    f"matmul floor, i.e. at most {tokens / (2 * floors['xla']):.0f} tokens/s for the "
    "peer even if mtx's step did nothing but its matmuls.",
  ]
  return lines


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument(
    "--shapes",
    type=parse_shapes,
    default=list(DEFAULT_SHAPES),
    help="batch x seq list (default 8x512,2x1024: issue 5's goal shapes)",
  )
  parser.add_argument("--rounds", type=int, default=3, help="alternations of the two sides")
  parser.add_argument(
    "--threads",
    type=int,
    default=2,
    help="torch.set_num_threads, as bench/model.py's peer (default 2)",
  )
  parser.add_argument("--child", choices=("xla", "torch"), help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  dims = model_dims()

  if args.child:
    if args.child == "xla":
      from mtx.cpu_compiler import configure_cpu_compiler

      configure_cpu_compiler()  # XLA's CPU options as mtx-train runs with, before JAX starts
    ((batch, seq),) = args.shapes
    products = step_products(batch, seq, args.child, dims)
    timer = time_xla if args.child == "xla" else lambda p: time_torch(p, args.threads)
    print(json.dumps(timer(products)))
    return 0

  sides = ["xla", "torch"]
  if package_version("torch") == "not installed":
    raise SystemExit(
      "bench.kernels: torch is not installed; run scripts/bench_kernels.sh, "
      "which installs it in .venv-bench"
    )
  wall = time.perf_counter()
  load = os.getloadavg()[0]
  reports = []
  for batch, seq in args.shapes:
    rounds = {side: [] for side in sides}
    for _ in range(args.rounds):
      for side in sides:
        print(f"timing {side} {batch}x{seq}", file=sys.stderr, flush=True)
        rounds[side].append(run_child(side, batch, seq, args.threads))
    times = {
      side: {key: statistics.median(r[key] for r in rounds[side]) for key in rounds[side][0]}
      for side in sides
    }
    reports.append(shape_report(batch, seq, dims, times))
  print("# The training step's matmul floor: XLA (mtx) and PyTorch, float32, CPU")
  print()
  print(
    f"machine: {cpu_model()}, nproc {os.cpu_count()}, load average before the run {load:.2f}; "
    f"jax {package_version('jax')}, jaxlib {package_version('jaxlib')}, torch "
    f"{package_version('torch')}; torch.set_num_threads({args.threads}); MMT size: "
    f"{dims['layers']} layers, D {dims['d']}, {dims['heads']} heads, MLP {dims['mlp']}, "
    f"mtx attention tiles {dims['tile']}; median over {args.rounds} alternating rounds; "
    f"{(time.perf_counter() - wall) / 60:.1f} min"
  )
  for lines in reports:
    print()
    print("\n".join(lines))
  return 0


if __name__ == "__main__":
  sys.exit(main())
