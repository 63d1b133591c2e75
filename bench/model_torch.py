"""The MMT reference model in PyTorch (x-transformers 1.0.3), timed for `bench/model.py`.

    python -m bench.model_torch --batch 2 --seq 1024 --steps 3 --warmup 1   # prints one JSON line

Written for the benchmark with x-transformers' public API, after the MMT reference code
(`mmt/x_transformers.py`: `MusicTransformerWrapper`, `MusicAutoregressiveWrapper`;
`mmt/train.py`), at its default configuration:
- `Decoder(dim=512, depth=6, heads=8, attn_dropout=0.2, ff_dropout=0.2)` (pre-LayerNorm,
  causal, head size 64, attention without biases, GELU feed-forward 512-2048-512);
- six field embeddings (`TokenEmbedding`, Kaiming-normal init) summed, plus the learned
  `AbsolutePositionalEmbedding` over `max_seq_len` (1024, or the bench length when longer),
  `emb_dropout` 0.2; a final LayerNorm; six output heads `nn.Linear(512, n)`;
- field vocabularies [5, 257, 13, 129, 33, 65] (max_beat 256): 19,941,878 parameters at
  max_seq_len 1024, asserted below;
- the autoregressive wrapper's loss: the sequence has L + 1 rows, the model reads rows
  0..L-1 (so it runs at length L) and the loss is the sum over fields of
  `F.cross_entropy` against rows 1..L; the padding mask MMT's loader always passes is
  passed too (all True here: random tokens, no padding).
Train step: zero_grad -> loss -> backward -> `clip_grad_norm_(1.0)` -> AdamW step, as
`mmt/train.py` does it (with AdamW for Adam), `torch.set_num_threads(2)`.

Run in a subprocess per configuration by `bench/model.py`, so that the peak RSS
(`ru_maxrss`) is this configuration's alone.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from x_transformers.x_transformers import AbsolutePositionalEmbedding, Decoder, TokenEmbedding

from bench.machine import cpu_seconds, peak_rss_bytes

MMT_FIELD_SIZES = (5, 257, 13, 129, 33, 65)
MMT_MAX_SEQ_LEN = 1024
MMT_PARAMETERS = 19_941_878  # at max_seq_len 1024 (../shared/PEERS.md)
DIM, DEPTH, HEADS, DROPOUT = 512, 6, 8, 0.2


class MusicTransformerWrapper(nn.Module):
  """Summed field embeddings + absolute positions -> x-transformers layers -> one head per
  field (the MMT reference's wrapper, without its memory-token and tied-embedding options,
  which its default config leaves off)."""

  def __init__(self, field_sizes, max_seq_len: int):
    super().__init__()
    self.token_emb = nn.ModuleList([TokenEmbedding(DIM, n) for n in field_sizes])
    self.pos_emb = AbsolutePositionalEmbedding(DIM, max_seq_len)
    self.emb_dropout = nn.Dropout(DROPOUT)
    self.attn_layers = Decoder(
      dim=DIM, depth=DEPTH, heads=HEADS, attn_dropout=DROPOUT, ff_dropout=DROPOUT
    )
    self.norm = nn.LayerNorm(DIM)
    for emb in self.token_emb:
      nn.init.kaiming_normal_(emb.emb.weight)
    self.to_logits = nn.ModuleList([nn.Linear(DIM, n) for n in field_sizes])

  def forward(self, x, mask=None):
    x = sum(emb(x[..., i]) for i, emb in enumerate(self.token_emb)) + self.pos_emb(x)
    x = self.emb_dropout(x)
    x = self.attn_layers(x, mask=mask)
    x = self.norm(x)
    return [to_logit(x) for to_logit in self.to_logits]


def autoregressive_loss(net: MusicTransformerWrapper, seq, mask):
  """MMT's `MusicAutoregressiveWrapper.forward`: inputs rows :-1, targets rows 1:, the mask
  trimmed to the inputs, the sum of the per-field cross-entropies."""
  xi, xo = seq[:, :-1], seq[:, 1:]
  output = net(xi, mask=mask[:, :-1])
  return sum(F.cross_entropy(out.transpose(1, 2), xo[..., i]) for i, out in enumerate(output))


def build(max_seq_len: int) -> MusicTransformerWrapper:
  return MusicTransformerWrapper(MMT_FIELD_SIZES, max_seq_len)


def count_parameters(model: nn.Module) -> int:
  return sum(p.numel() for p in model.parameters())


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch", type=int, required=True)
  parser.add_argument("--seq", type=int, required=True, help="model length L")
  parser.add_argument("--steps", type=int, default=3, help="timed steps")
  parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
  parser.add_argument("--threads", type=int, default=2)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument(
    "--bf16", action="store_true", help="forward and loss under torch.autocast(device, bfloat16)"
  )
  parser.add_argument("--device", default="cpu", help="cpu, or cuda on a GPU machine")
  args = parser.parse_args(argv)

  torch.set_num_threads(args.threads)
  torch.manual_seed(args.seed)
  # The reference's size, checked on every run before anything is timed: at max_seq_len
  # 1024 exactly MMT's count; a longer position table adds its rows.
  max_seq_len = max(MMT_MAX_SEQ_LEN, args.seq)
  model = build(max_seq_len)
  parameters = count_parameters(model)
  assert parameters == MMT_PARAMETERS + (max_seq_len - MMT_MAX_SEQ_LEN) * DIM, parameters
  device = torch.device(args.device)
  model.to(device).train()
  optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)

  rng = np.random.default_rng(args.seed)
  seq = torch.from_numpy(
    np.stack([rng.integers(0, n, (args.batch, args.seq + 1)) for n in MMT_FIELD_SIZES], -1)
  ).to(device)
  mask = torch.ones((args.batch, args.seq + 1), dtype=torch.bool, device=device)

  def step() -> float:
    optimizer.zero_grad()
    # PyTorch's mixed precision: matmuls in bfloat16, parameters and optimizer float32.
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
      loss = autoregressive_loss(model, seq, mask)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    return loss.detach().item()  # waits for the device

  times, losses = [], []
  for i in range(args.warmup + args.steps):
    if i == args.warmup:
      own, machine = cpu_seconds()
    start = time.perf_counter()
    losses.append(step())
    if i >= args.warmup:
      times.append(time.perf_counter() - start)
  own_end, machine_end = cpu_seconds()
  print(
    json.dumps(
      {
        "pipeline": "torch-bf16" if args.bf16 else "torch",
        "batch": args.batch,
        "seq": args.seq,
        "parameters": parameters,
        "step_seconds": statistics.median(times),
        "step_times": times,
        "losses": losses,
        "peak_rss_bytes": peak_rss_bytes(),
        "threads": torch.get_num_threads(),
        "platform": "gpu" if device.type == "cuda" else device.type,
        **(
          {
            "device_kind": torch.cuda.get_device_name(device),
            "peak_device_bytes": torch.cuda.max_memory_allocated(device),
          }
          if device.type == "cuda"
          else {}
        ),
        "compile_seconds": None,
        "cpu_per_wall": (own_end - own) / sum(times),
        "others_cpu_per_wall": (machine_end - machine - (own_end - own)) / sum(times),
      }
    )
  )
  return 0


if __name__ == "__main__":
  sys.exit(main())
