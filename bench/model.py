"""Model training throughput and memory: the mtx decoder beside the MMT PyTorch model.

    bash scripts/bench_model.sh [--steps N] [--long] [--only mtx-mmt,torch] [--shapes 2x512,8x1024]

One train step = forward + backward + global-norm clip 1.0 + AdamW, float32 on the CPU,
random in-range tokens (the same shapes on both sides). Every (pipeline, batch x seq)
runs in a subprocess of its own, so its peak RSS (`ru_maxrss`) is its alone; the
subprocesses run one after the other, each shape's PyTorch run beside its mtx runs, so a
change of machine load hits both sides alike.

Pipelines:
- torch: the MMT reference model in PyTorch with x-transformers 1.0.3, as its code builds
  it (`bench/model_torch.py`; 19,941,878 parameters at max_seq_len 1024, asserted),
  `torch.set_num_threads(2)`.
- mtx mmt: `Decoder` with configs/model_mmt.py (the same size, field vocabularies
  [5, 257, 13, 129, 33, 65], learned positions, dropout 0.2 on the embeddings, the
  attention probabilities and the residual branches), the loss of `mtx.model.loss` with
  the mmt codec's per-type field mask; one `jax.jit` of the whole step with the state
  donated. Compile time is reported apart; the step time is the median of the timed
  steps after one untimed step.
  `attention_block_size` as configs/model_mmt.py sets it (FlashAttention-style causal
  tiles, no L x L attention built), dropout masks from mtx's coordinate hash, and the step
  compiled with mtx's XLA CPU options (`mtx.cpu_compiler.configure_cpu_compiler()`, called
  first thing in the child), as the library documents for CPU training.
- mtx mmt-full (only with `--only`): the same with attention_block_size 0 (the whole
  L x L attention at once), to measure what the blocks change.
- mtx mmt-relative (at 2x1024 and 8x512 unless `--relative_shapes`): the same, with
  relative attention (Music Transformer's skewed
  relative term, maximum distance max(1024, L)) and no absolute positions: the cost of
  the relative term at this size.
- mtx tiny: configs/model_tiny.py with the MMT field vocabularies.
- torch-bf16 and mtx-mmt-bf16 (only with `--only`): mixed precision on both sides, each
  row's ratio against the other in the same precision: PyTorch's forward and loss under
  `torch.autocast("cpu", dtype=torch.bfloat16)`, mtx with `dtype="bfloat16"` (bfloat16
  activations and matmuls, float32 parameters, softmax and LayerNorm statistics). The
  goals are float32 against float32.

Then the relative-attention memory: XLA's compiled temp bytes of
`relative_logits_skewed` against `relative_logits_naive` (Dh 64, H 8, B 1) as L doubles,
forward and forward + backward, and the bytes of the relative term each one stores.

FLOPs: a CPU has no peak FLOP figure to take an MFU against, so the bench prints the
model's FLOPs per token (6 x the matmul parameters + 12 x layers x L x D for the
attention, + 6 x layers x L x D for a relative term; full L x L, as both sides compute
it) and the FLOP/s each pipeline achieves; XLA's own count for the compiled step is
printed beside it.

Goals checked (issue 5): mtx mmt at least 2x the PyTorch model's tokens/s at 2x1024 and
8x512; at most half its peak RSS at 8x1024; the skewed relative term's storage growing
linearly in L (the naive one's grows quadratically).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

from bench.machine import cpu_model, cpu_seconds, package_version, peak_rss_bytes, run_json_child

REPO = Path(__file__).resolve().parents[1]
MMT_FIELD_SIZES = (5, 257, 13, 129, 33, 65)  # MMT's vocabularies, max_beat 256
MMT_MAX_SEQ_LEN = 1024
DEFAULT_SHAPES = ((2, 512), (2, 1024), (8, 512), (8, 1024))
LONG_SHAPE = (2, 2048)  # with --long: mtx mmt and PyTorch (position table of 2048)
# The relative variant at the goal shapes only, by default: the whole run stays near 8 min.
RELATIVE_SHAPES = ((2, 1024), (8, 512))
PIPELINES = (
  "torch",
  "mtx-mmt",
  "mtx-mmt-full",
  "mtx-mmt-relative",
  "mtx-tiny",
  "torch-bf16",
  "mtx-mmt-bf16",
)
DEFAULT_PIPELINES = ("torch", "mtx-mmt", "mtx-mmt-relative", "mtx-tiny")
RELATIVE_LENGTHS = (256, 512, 1024, 2048)
RELATIVE_HEADS, RELATIVE_HEAD_DIM = 8, 64

# Goals (issue 5).
SPEED_GOAL = 2.0  # x the PyTorch model's tokens/s
SPEED_SHAPES = ((2, 1024), (8, 512))
MEMORY_GOAL = 0.5  # x the PyTorch model's peak RSS
MEMORY_SHAPE = (8, 1024)

GIB = 1024**3
# Other processes' CPU seconds per wall second during a row's timed steps above which the
# row is flagged: on 2 cores, a busy neighbour distorts the figures.
BUSY_THRESHOLD = 0.25
VERSIONS = ("jax", "jaxlib", "flax", "optax", "numpy", "torch", "x-transformers", "entmax")


# ---- the mtx side (runs in a child process) ----------------------------------------------

MODIFIERS = ("relative", "full", "fused", "bf16")


def model_config(name: str, seq: int):
  """The config of pipeline `name` at model length `seq`.

  `name` is a size, tiny (configs/model_tiny.py), mmt (configs/model_mmt.py: MMT's) or
  100m (MMT's layout at D 768, 14 layers, 12 heads: 100M parameters, issue 6's GPU MFU
  goal), then any of these, each after a "-": relative (Music Transformer's skewed
  relative term, max distance max(1024, L), no absolute positions), full
  (attention_block_size 0: the whole L x L at once), fused (the whole L x L without
  attention dropout: `jax.nn.dot_product_attention`, which a GPU may run as one fused
  kernel), bf16 (bfloat16 compute). E.g. mmt-relative, 100m-fused-bf16.
  """
  from configs import model_mmt, model_tiny

  size, *modifiers = name.split("-")
  unknown = set(modifiers) - set(MODIFIERS)
  if size not in ("tiny", "mmt", "100m") or unknown:
    raise ValueError(
      f"unknown mtx model {name!r}: a size (tiny, mmt, 100m) and modifiers from {MODIFIERS}"
    )
  config = model_tiny.get_config() if size == "tiny" else model_mmt.get_config()
  longest = max(MMT_MAX_SEQ_LEN, seq)
  if size != "tiny":
    config.max_seq_len = longest
  if size == "100m":
    config.update(embed_dim=768, num_layers=14, num_heads=12)
  if "relative" in modifiers:
    config.update(relative=True, max_relative_distance=longest, position_embedding="none")
  if "full" in modifiers or "fused" in modifiers:
    config.attention_block_size = 0
  if "fused" in modifiers:
    config.attention_dropout_rate = 0.0
  if "bf16" in modifiers:
    config.dtype = "bfloat16"
  return config


def flops_per_token(config, seq: int, parameters: dict) -> float:
  """6 x matmul parameters + the attention's L x L work, forward and backward."""
  d, layers = int(config.embed_dim), int(config.num_layers)
  matmul = parameters["blocks"] - layers * (
    4 * d
    + (int(config.max_relative_distance) * d if config.relative else 0)
    + int(round(config.mlp_ratio * d))
    + d
  )  # block weights less norms, biases, rel table
  matmul += parameters["heads"] - sum(MMT_FIELD_SIZES)  # head kernels
  attention = 12 * layers * seq * d + (6 * layers * seq * d if config.relative else 0)
  return 6 * matmul + attention


def run_mtx(name: str, batch: int, seq: int, steps: int, warmup: int, seed: int) -> dict:
  import jax
  import jax.numpy as jnp
  import numpy as np
  import optax
  from flax import nnx

  from mtx.model.decoder import Decoder
  from mtx.model.loss import multi_field_loss
  from mtx.model.params import parameter_count
  from mtx.representation import get_codec

  config = model_config(name, seq)
  with nnx.use_eager_sharding(False):
    model = Decoder(config, MMT_FIELD_SIZES, rngs=nnx.Rngs(params=seed, dropout=seed + 1))
  tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(1e-4, weight_decay=0.01))
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  graphdef, state = nnx.split((model, optimizer))
  del model, optimizer
  # The mmt codec's per-type field mask (5 row types x 6 fields), whatever its vocabularies.
  table = np.asarray(get_codec("mmt").field_mask_table())

  def train_step(state, batch):
    model, optimizer = nnx.merge(graphdef, state)

    def loss_fn(model):
      logits, _ = model(
        batch["inputs"],
        positions=batch["positions"],
        segment_ids=batch["segment_ids"],
        deterministic=False,
      )
      return multi_field_loss(logits, batch["targets"], batch["mask"], table)[0]

    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return nnx.state((model, optimizer)), loss

  rng = np.random.default_rng(seed)
  tokens = np.stack([rng.integers(0, n, (batch, seq + 1)) for n in MMT_FIELD_SIZES], -1)
  data = {
    "inputs": jnp.asarray(tokens[:, :-1], jnp.int32),
    "targets": jnp.asarray(tokens[:, 1:], jnp.int32),
    "mask": jnp.ones((batch, seq), bool),
    "segment_ids": jnp.ones((batch, seq), jnp.int32),
    "positions": jnp.broadcast_to(jnp.arange(seq, dtype=jnp.int32), (batch, seq)),
  }

  start = time.perf_counter()
  compiled = jax.jit(train_step, donate_argnums=0).lower(state, data).compile()
  compile_seconds = time.perf_counter() - start
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, list) else cost
  memory = compiled.memory_analysis()

  times, losses = [], []
  for i in range(warmup + steps):
    if i == warmup:
      own, machine = cpu_seconds()
    start = time.perf_counter()
    state, loss = compiled(state, data)
    losses.append(float(jax.block_until_ready(loss)))
    if i >= warmup:
      times.append(time.perf_counter() - start)
  own_end, machine_end = cpu_seconds()
  parameters = parameter_count(config, MMT_FIELD_SIZES)
  device = jax.devices()[0]
  accelerator = {}
  if device.platform != "cpu":  # what a GPU run adds: its memory, and which attention ran
    stats = device.memory_stats() or {}
    accelerator = {
      "device_kind": device.device_kind,
      "peak_device_bytes": int(stats.get("peak_bytes_in_use", 0)),
      "cudnn_attention": "cudnn$fmha" in compiled.as_text(),
    }
  return {
    **accelerator,
    "platform": device.platform,
    "pipeline": f"mtx-{name}",
    "batch": batch,
    "seq": seq,
    "parameters": parameters["total"],
    "step_seconds": statistics.median(times),
    "step_times": times,
    "losses": losses,
    "peak_rss_bytes": peak_rss_bytes(),
    "compile_seconds": compile_seconds,
    "flops_per_token": flops_per_token(config, seq, parameters),
    "xla_flops_per_step": float(cost.get("flops", float("nan"))),
    "xla_temp_bytes": int(memory.temp_size_in_bytes),
    "xla_argument_bytes": int(memory.argument_size_in_bytes),
    "threads": os.cpu_count(),
    "cpu_per_wall": (own_end - own) / sum(times),
    "others_cpu_per_wall": (machine_end - machine - (own_end - own)) / sum(times),
  }


# ---- relative-attention memory (runs in this process) ------------------------------------


def relative_memory(lengths=RELATIVE_LENGTHS) -> list[dict]:
  """Compiled temp bytes of the skewed and the naive relative logits, B 1, H 8, Dh 64,
  max distance = L (nothing clipped), forward and forward + backward (grad of the logits'
  sum with respect to q and the table). Only compiled, never run: the naive one at 2048
  would need 8.6 GB."""
  import jax
  import jax.numpy as jnp

  from mtx.model.attention import relative_logits_naive, relative_logits_skewed

  rows = []
  h, dh = RELATIVE_HEADS, RELATIVE_HEAD_DIM
  for length in lengths:
    q = jax.ShapeDtypeStruct((1, h, length, dh), jnp.float32)
    rel = jax.ShapeDtypeStruct((h, length, dh), jnp.float32)
    row = {
      "L": length,
      "logits_bytes": h * length * length * 4,
      "skewed_term_bytes": h * length * dh * 4,  # E_r: (H, L, Dh)
      "naive_term_bytes": h * length * length * dh * 4,
    }  # (H, L, L, Dh)
    for impl, fn in (("skewed", relative_logits_skewed), ("naive", relative_logits_naive)):
      forward = jax.jit(fn).lower(q, rel).compile()
      backward = (
        jax.jit(jax.grad(lambda q, r, fn=fn: fn(q, r).sum(), argnums=(0, 1)))
        .lower(q, rel)
        .compile()
      )
      row[f"{impl}_forward_temp"] = int(forward.memory_analysis().temp_size_in_bytes)
      row[f"{impl}_backward_temp"] = int(backward.memory_analysis().temp_size_in_bytes)
    rows.append(row)
  return rows


def relative_table(rows: list[dict]) -> list[str]:
  def growth(key, i):
    return f"{rows[i][key] / rows[i - 1][key]:.2f}x" if i and rows[i - 1][key] else "-"

  def mib(n):
    return f"{n / 2**20:,.1f}"

  lines = [
    "| L | skewed fwd temp MiB | growth | naive fwd temp MiB | growth | skewed fwd+bwd "
    "temp MiB | growth | naive fwd+bwd temp MiB | growth | one (H, L, L) f32 logits "
    "MiB | skewed relative term (H, L, Dh) MiB | naive relative term (H, L, L, Dh) "
    "MiB |",
    "|" + "---:|" * 13,
  ]
  for i, r in enumerate(rows):
    lines.append(
      f"| {r['L']} | {mib(r['skewed_forward_temp'])} | {growth('skewed_forward_temp', i)} "
      f"| {mib(r['naive_forward_temp'])} | {growth('naive_forward_temp', i)} "
      f"| {mib(r['skewed_backward_temp'])} | {growth('skewed_backward_temp', i)} "
      f"| {mib(r['naive_backward_temp'])} | {growth('naive_backward_temp', i)} "
      f"| {mib(r['logits_bytes'])} | {mib(r['skewed_term_bytes'])} "
      f"| {mib(r['naive_term_bytes'])} |"
    )
  return lines


def relative_goal(rows: list[dict]) -> str:
  """Linear in the relative term: the skewed temp never exceeds a fixed number of (H, L, L)
  logits buffers (the logits themselves are O(L^2) whatever the method) plus the O(L Dh)
  term, while the naive one holds the O(L^2 Dh) table."""
  per_logits = [r["skewed_backward_temp"] / r["logits_bytes"] for r in rows]
  naive_per_logits = [r["naive_backward_temp"] / r["logits_bytes"] for r in rows]
  bounded = max(per_logits) <= 8 and max(per_logits) / min(per_logits) <= 1.5
  return (
    f"- skewed relative term O(L x Dh): its storage doubles with L "
    f"({rows[0]['skewed_term_bytes'] / 2**10:.0f} KiB at L={rows[0]['L']} -> "
    f"{rows[-1]['skewed_term_bytes'] / 2**10:.0f} KiB at L={rows[-1]['L']}); fwd+bwd temp "
    f"= {min(per_logits):.2f}-{max(per_logits):.2f} logits buffers at every L (naive: "
    f"{min(naive_per_logits):.1f}-{max(naive_per_logits):.1f}) -> "
    f"{'PASS' if bounded else 'FAIL'}"
  )


# ---- orchestration ------------------------------------------------------------------------


@dataclasses.dataclass
class Run:
  pipeline: str
  batch: int
  seq: int
  result: dict | None = None
  error: str | None = None

  @property
  def tokens_per_second(self) -> float | None:
    if not self.result:
      return None
    return self.batch * self.seq / self.result["step_seconds"]


def child_command(pipeline: str, batch: int, seq: int, steps: int, warmup: int) -> list[str]:
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
  if pipeline in ("torch", "torch-bf16"):
    return [
      sys.executable,
      "-m",
      "bench.model_torch",
      *common,
      *(["--bf16"] if pipeline == "torch-bf16" else []),
    ]
  return [sys.executable, "-m", "bench.model", "--child", pipeline.removeprefix("mtx-"), *common]


def run_child(run: Run, steps: int, warmup: int, timeout: float) -> None:
  command = child_command(run.pipeline, run.batch, run.seq, steps, warmup)
  print(
    f"running {run.pipeline} {run.batch}x{run.seq}: {' '.join(command[1:])}",
    file=sys.stderr,
    flush=True,
  )
  start = time.perf_counter()
  result = run_json_child(command, cwd=REPO, timeout=timeout)
  if "error" in result:
    run.error = result["error"]
    return
  run.result = result
  print(
    f"  {time.perf_counter() - start:.1f} s wall; step {run.result['step_seconds']:.3f} s",
    file=sys.stderr,
    flush=True,
  )


def steps_for(batch: int, seq: int, steps: int | None) -> int:
  """Few timed steps at large sizes: the PyTorch model takes about 30 s a step at 8x1024."""
  if steps is not None:
    return steps
  return 2 if batch * seq >= 8192 else 3


def label(pipeline: str) -> str:
  return {
    "torch": "MMT reference: PyTorch + x-transformers 1.0.3",
    "mtx-mmt": "mtx mmt (configs/model_mmt.py)",
    "mtx-mmt-full": "mtx mmt, attention_block_size 0",
    "mtx-mmt-relative": "mtx mmt + relative attention",
    "mtx-tiny": "mtx tiny (configs/model_tiny.py)",
    "torch-bf16": "PyTorch + x-transformers, autocast bfloat16",
    "mtx-mmt-bf16": "mtx mmt, dtype bfloat16",
  }[pipeline]


def throughput_table(runs: list[Run]) -> list[str]:
  # Each mtx row against PyTorch in the same precision: bfloat16 rows against autocast.
  torch_runs = {
    (r.pipeline, r.batch, r.seq): r for r in runs if r.pipeline.startswith("torch") and r.result
  }
  lines = [
    "| pipeline | batch x seq | parameters | step s | tokens/s | peak RSS GiB | ratio "
    "vs PyTorch tokens/s | RSS vs PyTorch | compile s | model GFLOP/token | "
    "GFLOP/s achieved |",
    "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
  ]
  for r in sorted(runs, key=lambda r: (PIPELINES.index(r.pipeline), r.batch * r.seq, r.batch)):
    shape = f"{r.batch} x {r.seq}"
    if not r.result:
      lines.append(f"| {label(r.pipeline)} | {shape} | failed: {r.error} | | | | | | | | |")
      continue
    peer_pipeline = "torch-bf16" if r.pipeline.endswith("-bf16") else "torch"
    res, peer = r.result, torch_runs.get((peer_pipeline, r.batch, r.seq))
    ratio = rss = "-"
    if peer and r.pipeline.startswith("mtx-mmt"):  # tiny is another size: no ratio
      ratio = f"{r.tokens_per_second / peer.tokens_per_second:.2f}x"
      rss = f"{res['peak_rss_bytes'] / peer.result['peak_rss_bytes']:.2f}x"
    flops = res.get("flops_per_token") or (
      peer_flops_per_token(r.seq) if r.pipeline.startswith("torch") else None
    )
    compile_s = f"{res['compile_seconds']:.1f}" if res.get("compile_seconds") else "-"
    lines.append(
      f"| {label(r.pipeline)} | {shape} | {res['parameters']:,} | {res['step_seconds']:.2f} | "
      f"{r.tokens_per_second:,.0f} | {res['peak_rss_bytes'] / GIB:.2f} | {ratio} | {rss} | "
      f"{compile_s} | {flops / 1e9:.3f} | {flops * r.tokens_per_second / 1e9:.1f} |"
    )
  return lines


def peer_flops_per_token(seq: int) -> float:
  """The PyTorch model does the same matmuls as mtx mmt."""
  from mtx.model.params import parameter_count

  config = model_config("mmt", seq)
  return flops_per_token(config, seq, parameter_count(config, MMT_FIELD_SIZES))


def xla_table(runs: list[Run]) -> list[str]:
  """What XLA says about each compiled mtx step: its FLOP count against the model formula,
  and its buffers."""
  lines = [
    "| pipeline | batch x seq | XLA GFLOP/step | formula GFLOP/step | XLA temp GiB | "
    "XLA arguments GiB |",
    "|---|---|---:|---:|---:|---:|",
  ]
  for r in runs:
    if not r.result or r.pipeline.startswith("torch"):
      continue
    res = r.result
    lines.append(
      f"| {label(r.pipeline)} | {r.batch} x {r.seq} | {res['xla_flops_per_step'] / 1e9:.1f} "
      f"| {res['flops_per_token'] * r.batch * r.seq / 1e9:.1f} "
      f"| {res['xla_temp_bytes'] / GIB:.2f} | {res['xla_argument_bytes'] / GIB:.2f} |"
    )
  return lines


def goals(runs: list[Run]) -> list[str]:
  by_key = {(r.pipeline, r.batch, r.seq): r for r in runs if r.result}
  lines = []
  for batch, seq in SPEED_SHAPES:
    ours, theirs = by_key.get(("mtx-mmt", batch, seq)), by_key.get(("torch", batch, seq))
    what = f"mtx mmt at least {SPEED_GOAL:g}x the PyTorch model's tokens/s at {batch}x{seq}"
    if not (ours and theirs):
      lines.append(f"- {what}: not measured (a side is missing or failed)")
      continue
    ratio = ours.tokens_per_second / theirs.tokens_per_second
    lines.append(
      f"- {what}: {ours.tokens_per_second:,.0f} vs {theirs.tokens_per_second:,.0f} "
      f"tokens/s = {ratio:.2f}x -> {'PASS' if ratio >= SPEED_GOAL else 'FAIL'}"
    )
  batch, seq = MEMORY_SHAPE
  ours, theirs = by_key.get(("mtx-mmt", batch, seq)), by_key.get(("torch", batch, seq))
  what = f"mtx mmt at most {MEMORY_GOAL:g}x the PyTorch model's peak RSS at {batch}x{seq}"
  if ours and theirs:
    ratio = ours.result["peak_rss_bytes"] / theirs.result["peak_rss_bytes"]
    lines.append(
      f"- {what}: {ours.result['peak_rss_bytes'] / GIB:.2f} vs "
      f"{theirs.result['peak_rss_bytes'] / GIB:.2f} GiB = {ratio:.2f}x -> "
      f"{'PASS' if ratio <= MEMORY_GOAL else 'FAIL'}"
    )
  else:
    lines.append(f"- {what}: not measured (a side is missing or failed)")
  return lines


def parse_shapes(text: str) -> list[tuple[int, int]]:
  shapes = []
  for item in text.split(","):
    batch, seq = item.lower().split("x")
    shapes.append((int(batch), int(seq)))
  return shapes


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument(
    "--shapes",
    type=parse_shapes,
    default=list(DEFAULT_SHAPES),
    help="batch x seq list, e.g. 2x512,8x1024 (default: %(default)s)",
  )
  parser.add_argument(
    "--only",
    default=",".join(DEFAULT_PIPELINES),
    help=f"pipelines to run, from {', '.join(PIPELINES)}",
  )
  parser.add_argument(
    "--relative_shapes",
    type=parse_shapes,
    default=list(RELATIVE_SHAPES),
    help="batch x seq list for mtx-mmt-relative (default: %(default)s)",
  )
  parser.add_argument(
    "--long",
    action="store_true",
    help=f"also mtx mmt and PyTorch at {LONG_SHAPE[0]}x{LONG_SHAPE[1]}",
  )
  parser.add_argument(
    "--steps",
    type=int,
    default=None,
    help="timed steps per configuration (default 3; 2 from 8192 tokens)",
  )
  parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
  parser.add_argument("--timeout", type=float, default=300, help="seconds per configuration")
  parser.add_argument("--no_relative_memory", action="store_true")
  # Internal: one configuration of the mtx side, in a child process.
  parser.add_argument("--child", help=argparse.SUPPRESS)
  parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
  parser.add_argument("--seq", type=int, help=argparse.SUPPRESS)
  parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
  args = parser.parse_args(argv)

  if args.child:
    from mtx.cpu_compiler import configure_cpu_compiler

    configure_cpu_compiler()  # before any JAX computation
    print(
      json.dumps(run_mtx(args.child, args.batch, args.seq, args.steps or 3, args.warmup, args.seed))
    )
    return 0

  pipelines = [p.strip() for p in args.only.split(",") if p.strip()]
  unknown = set(pipelines) - set(PIPELINES)
  if unknown:
    parser.error(f"--only: unknown pipelines {sorted(unknown)}; pick from {PIPELINES}")
  notes = []
  if package_version("x-transformers") == "not installed":
    for peer in [p for p in pipelines if p.startswith("torch")]:
      notes.append(
        f"{peer}: skipped, x-transformers is not installed; run "
        "scripts/bench_model.sh, which installs the peer in .venv-bench"
      )
      pipelines.remove(peer)

  wall = time.perf_counter()
  runs = []
  for batch, seq in args.shapes:
    for pipeline in pipelines:
      if pipeline != "mtx-mmt-relative" or (batch, seq) in args.relative_shapes:
        runs.append(Run(pipeline, batch, seq))
  if args.long:
    runs.extend(Run(p, *LONG_SHAPE) for p in ("torch", "mtx-mmt") if p in pipelines)
  for run in runs:
    run_child(run, steps_for(run.batch, run.seq, args.steps), args.warmup, args.timeout)
  rows = [] if args.no_relative_memory else relative_memory()
  for run in runs:
    others = (run.result or {}).get("others_cpu_per_wall", 0.0)
    timed = sum((run.result or {}).get("step_times", [0.0]))
    if others > BUSY_THRESHOLD and timed >= 1.0:  # shorter: /proc/stat's ticks too coarse
      notes.append(
        f"{label(run.pipeline)} {run.batch}x{run.seq}: other processes took "
        f"{others:.2f} CPU seconds per wall second during its timed steps (it "
        f"used {run.result['cpu_per_wall']:.2f}): the machine was busy, so this "
        "row's figures and ratios are not to be trusted; PyTorch's thread pool "
        "slows down far more than XLA's when a core is taken. Run it again on a "
        "quiet machine"
      )
  wall = time.perf_counter() - wall

  print("# Model training step: tokens/s and peak memory, CPU, float32")
  print()
  print(
    f"machine: {cpu_model()}, nproc {os.cpu_count()}, "
    f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / GIB:.0f} GiB RAM, "
    f"{platform.system()} {platform.machine()}; Python {platform.python_version()}; "
    f"load average before the run: {LOAD_BEFORE}"
  )
  print("versions: " + ", ".join(f"{p} {package_version(p)}" for p in VERSIONS))
  print(
    f"step = forward + backward + clip 1.0 + AdamW; random in-range tokens; one subprocess "
    f"per row; median of {args.steps or '3 (2 from 8192 tokens)'} timed steps after "
    f"{args.warmup} untimed; PyTorch with torch.set_num_threads(2), XLA with its default "
    f"CPU thread pool; whole run {wall / 60:.1f} min"
  )
  print()
  print("\n".join(throughput_table(runs)))
  print()
  print(
    "model FLOPs/token = 6 x matmul parameters (attention and MLP kernels, heads) + 12 x "
    "layers x L x D (QK^T and PV, full L x L) [+ 6 x layers x L x D relative]; the "
    "PyTorch model does the same matmuls as mtx mmt. MFU needs a peak FLOP/s, which a "
    "CPU does not publish: compare the achieved GFLOP/s."
  )
  print()
  print("XLA's cost and memory analysis of each compiled mtx step:")
  print()
  print("\n".join(xla_table(runs)))
  if rows:
    print()
    print(
      f"Relative attention logits, B 1, H {RELATIVE_HEADS}, Dh {RELATIVE_HEAD_DIM}, max "
      "distance L: XLA temp bytes of the compiled function (forward; forward + backward "
      "= grad of the logits' sum wrt q and the table), and the relative term each "
      "stores:"
    )
    print()
    print("\n".join(relative_table(rows)))
  print()
  print("Goals:")
  print("\n".join(goals(runs)))
  if rows:
    print(relative_goal(rows))
  if notes:
    print()
    print("Notes:")
    print("\n".join(f"- {note}" for note in notes))
  return 0


LOAD_BEFORE = (
  " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "unknown"
)

if __name__ == "__main__":
  sys.exit(main())
