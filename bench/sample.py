"""Sampling speed: mtx's cached and uncached decoding beside the MMT reference's generate.

    bash scripts/bench_sample.sh                        # .venv-bench + torch, x-transformers
    bash scripts/bench_sample.sh --lengths 512 --batches 1

mtx rows (`mtx.sample.decode.make_generate`, the decoder of `mtx-sample`) at the
MMT-size config (configs/model_mmt.py, random weights: speed does not depend on
them) from a start-of-song row to `length` rows, under the MMT grammar with
end-of-song masked so every sample runs the full length:
- cached: the whole generation, timed after a compile run;
- uncached: the reference path (the whole window recomputed every step). Its
  step costs the same at every position (it runs on the full buffer), so K
  steps from a primer of length - K rows are timed and scaled to the length.
The peer (bench/sample_torch.py) is MMT's generate: no cache, the prefix
recomputed each step, in PyTorch. Rows/s counts generated rows (6 fields each).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from bench.machine import run_json_child

REPO = Path(__file__).resolve().parents[1]
UNCACHED_STEPS = 8


def run_mtx(length: int, batch: int, use_cache: bool) -> dict:
  import jax
  import jax.numpy as jnp
  import numpy as np

  from bench.machine import peak_rss_bytes
  from configs import mmt_sod
  from mtx.representation import get_codec, mmt
  from mtx.sample.decode import SamplingOptions, make_generate
  from mtx.sample.grammar.mmt import MMTGrammar
  from mtx.train import sharding
  from mtx.train.state import TrainSetup

  class Endless(MMTGrammar):
    def _type_mask(self, state):
      return super()._type_mask(state) & (jnp.arange(5) != mmt.END_OF_SONG)[None, :]

  config = mmt_sod.get_config()
  config.model.max_seq_len = max(config.model.max_seq_len, length)
  codec = get_codec("mmt", max_beat=256)
  setup = TrainSetup.create(config, codec, sharding.make_mesh((1, 1, 1)))
  params = setup.init().params
  options = SamplingOptions.per_field(codec.n_fields, top_k=32)
  grammar = Endless(codec)
  generate = make_generate(setup.model, grammar, options, max_length=length, use_cache=use_cache)
  if use_cache:
    primer = np.zeros((batch, 1, codec.n_fields), np.int32)
    steps = length - 1
  else:  # a real song's rows as the prefix; only the last UNCACHED_STEPS are generated
    song = codec.encode(_chorale())
    rows = np.resize(song[song[:, 0] == mmt.NOTE], (length - UNCACHED_STEPS - 3, 6))
    primer = np.broadcast_to(
      np.concatenate([song[:3], rows]), (batch, length - UNCACHED_STEPS, codec.n_fields)
    )
    steps = UNCACHED_STEPS
  start = time.perf_counter()
  jax.block_until_ready(generate(params, primer, jax.random.key(0)))
  compile_and_run = time.perf_counter() - start
  start = time.perf_counter()
  tokens, _ = jax.block_until_ready(generate(params, primer, jax.random.key(1)))
  seconds = time.perf_counter() - start
  assert tokens.shape == (batch, length, codec.n_fields)
  per_step = seconds / steps
  return {
    "pipeline": "mtx-cached" if use_cache else "mtx-uncached",
    "batch": batch,
    "length": length,
    "seconds": per_step * (length - 1),
    "rows_per_second": batch / per_step,
    "estimated": not use_cache,
    "first_call_seconds": compile_and_run,
    "peak_rss_bytes": peak_rss_bytes(),
  }


def _chorale() -> Path:
  import tempfile

  from data_pipeline.music21_chorales import write_chorales

  return write_chorales(tempfile.mkdtemp(), limit=1)[0]


def child(kind: str, length: int, batch: int, timeout: float) -> dict:
  if kind == "torch":
    command = [
      sys.executable,
      "-m",
      "bench.sample_torch",
      "--batch",
      str(batch),
      "--length",
      str(length),
    ]
  else:
    command = [
      sys.executable,
      "-m",
      "bench.sample",
      "--child",
      kind,
      "--batch",
      str(batch),
      "--length",
      str(length),
    ]
  print(f"running {kind} {batch}x{length}", file=sys.stderr, flush=True)
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  result = run_json_child(command, cwd=REPO, timeout=timeout, env=env)
  if "error" in result:
    return {"pipeline": kind, "batch": batch, "length": length, **result}
  return result


def table(results: list[dict]) -> list[str]:
  by = {(r["pipeline"], r["batch"], r["length"]): r for r in results if "error" not in r}
  lines = [
    "| pipeline | batch | rows | rows/s | seconds for the rows | cached vs this | peak RSS GiB |",
    "|---|---:|---:|---:|---:|---:|---:|",
  ]
  for r in results:
    if "error" in r:
      lines.append(
        f"| {r['pipeline']} | {r['batch']} | {r['length']} | error: {r['error']} | | | |"
      )
      continue
    cached = by.get(("mtx-cached", r["batch"], r["length"]))
    ratio = (
      "-"
      if r["pipeline"] == "mtx-cached" or not cached
      else f"{cached['rows_per_second'] / r['rows_per_second']:.1f}x"
    )
    mark = " (est.)" if r.get("estimated") else ""
    lines.append(
      f"| {r['pipeline']} | {r['batch']} | {r['length']} | "
      f"{r['rows_per_second']:,.1f} | {r['seconds']:,.1f}{mark} | {ratio} | "
      f"{r['peak_rss_bytes'] / 2**30:.2f} |"
    )
  return lines


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--lengths", default="512,1024")
  parser.add_argument("--batches", default="1,16")
  parser.add_argument("--only", default="mtx-cached,mtx-uncached,torch")
  parser.add_argument("--timeout", type=float, default=900)
  parser.add_argument("--child", help=argparse.SUPPRESS)
  parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
  parser.add_argument("--length", type=int, help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.child:
    print(json.dumps(run_mtx(args.length, args.batch, args.child == "mtx-cached")))
    return 0
  from bench.machine import cpu_model, package_version

  print(
    f"CPU: {cpu_model()}, {os.cpu_count()} cores; load {os.getloadavg()[0]:.2f}; "
    f"jax {package_version('jax')}, torch {package_version('torch')}, "
    f"x-transformers {package_version('x-transformers')}"
  )
  results = []
  for length in (int(x) for x in args.lengths.split(",")):
    for batch in (int(x) for x in args.batches.split(",")):
      for kind in args.only.split(","):
        results.append(child(kind, length, batch, args.timeout))
  print("\n".join(table(results)))
  return 0


if __name__ == "__main__":
  sys.exit(main())
