"""The MMT reference's generation in PyTorch (x-transformers 1.0.3), timed for bench/sample.py.

    python -m bench.sample_torch --batch 1 --length 1024   # prints one JSON line

MMT's `MusicAutoregressiveWrapper.generate` keeps no cache: each new row re-runs
the model over every row so far (its window is max_seq_len) and samples the six
fields from the last position (top-k filtering, temperature 1; its type-order
masks cost nothing beside the forward). The model is bench/model_torch.py's, at
MMT's size, in eval mode under `torch.inference_mode`.

A full 1024-row generation takes minutes at this speed, so by default the time
of one step is measured at `--probes` prefix lengths spread over 1..length and
the whole generation's time is their mean times the row count (each step's cost
depends only on its prefix length; `--full` generates every row instead).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch

from bench.machine import peak_rss_bytes
from bench.model_torch import MMT_FIELD_SIZES, build


def sample_rows(logits, top_k: int = 32) -> torch.Tensor:
  rows = []
  for field in logits:
    last = field[:, -1]
    values, _ = torch.topk(last, min(top_k, last.shape[-1]))
    last = last.masked_fill(last < values[:, -1:], float("-inf"))
    rows.append(torch.multinomial(torch.softmax(last, -1), 1))
  return torch.cat(rows, -1)[:, None, :]


def step_seconds(model, batch: int, prefix: int, repeats: int = 2) -> float:
  rng = np.random.default_rng(prefix)
  seq = torch.from_numpy(
    np.stack([rng.integers(0, n, (batch, prefix)) for n in MMT_FIELD_SIZES], -1)
  )
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    sample_rows(model(seq))
    times.append(time.perf_counter() - start)
  return min(times)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch", type=int, default=1)
  parser.add_argument("--length", type=int, default=1024)
  parser.add_argument("--probes", type=int, default=6)
  parser.add_argument("--full", action="store_true")
  parser.add_argument("--threads", type=int, default=2)
  args = parser.parse_args(argv)
  torch.set_num_threads(args.threads)
  torch.manual_seed(0)
  model = build(max(1024, args.length)).eval()
  with torch.inference_mode():
    step_seconds(model, args.batch, 8, repeats=1)  # warm up
    if args.full:
      seq = torch.zeros((args.batch, 1, len(MMT_FIELD_SIZES)), dtype=torch.long)
      start = time.perf_counter()
      while seq.shape[1] < args.length:
        seq = torch.cat([seq, sample_rows(model(seq))], 1)
      total = time.perf_counter() - start
    else:
      prefixes = np.linspace(1, args.length - 1, args.probes).round().astype(int)
      total = float(
        np.mean([step_seconds(model, args.batch, int(p)) for p in prefixes]) * (args.length - 1)
      )
  print(
    json.dumps(
      {
        "pipeline": "torch-generate",
        "batch": args.batch,
        "length": args.length,
        "seconds": total,
        "rows_per_second": args.batch * (args.length - 1) / total,
        "estimated": not args.full,
        "peak_rss_bytes": peak_rss_bytes(),
      }
    )
  )
  return 0


if __name__ == "__main__":
  sys.exit(main())
