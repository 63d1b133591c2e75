"""Model FLOPs per token and the devices' peak, for MFU.

Counted as PaLM's appendix B does: 6 FLOPs per matmul weight per token
(forward 2, backward 4), plus the attention's score and value products,
12 x layers x L x D per token (the causal half is counted, as is usual, so
MFU is comparable across codebases). The relative term's skewed product adds
half of that again. Embedding lookups, norms, biases and the softmax are not
counted. With remat or accumulation the hardware does more work; MFU counts
only the model's.

Peak FLOP/s: a table of dense bf16 figures by device kind for GPUs and TPUs;
for a CPU, cores x clock x FLOPs per cycle from its vector units (32 float32
FLOPs per cycle per core with AVX2+FMA, 64 with AVX-512), an upper bound,
so CPU MFU reads low. `train.peak_flops_per_device` overrides both.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mtx.model.params import parameter_count

# Dense bf16 peak per device (vendor datasheets).
PEAK_FLOPS_BY_KIND = {
  "H200": 989e12,
  "H100": 989e12,
  "A100": 312e12,
  "L4": 121e12,
  "A10G": 125e12,
  "V100": 125e12,
  "TPU v6": 918e12,
  "TPU v5p": 459e12,
  "TPU v5 lite": 197e12,
  "TPU v5e": 197e12,
  "TPU v4": 275e12,
  "TPU v3": 123e12,
}


def matmul_parameters(config: Any, field_sizes: Sequence[int]) -> int:
  """Weights that take part in a matmul: attention and MLP kernels, head kernels."""
  counts = parameter_count(config, field_sizes)
  d, layers = int(config.embed_dim), int(config.num_layers)
  mlp = int(round(config.mlp_ratio * d))
  relative = int(config.max_relative_distance) * d if config.relative else 0
  not_matmul = layers * (4 * d + relative + mlp + d)  # norms, rel table, MLP biases
  return counts["blocks"] - not_matmul + counts["heads"] - int(sum(field_sizes))


def flops_per_token(config: Any, field_sizes: Sequence[int], seq_len: int) -> float:
  """Training FLOPs (forward + backward) per token at sequence length seq_len."""
  d, layers = int(config.embed_dim), int(config.num_layers)
  attention = 12 * layers * seq_len * d
  if config.relative:
    attention += 6 * layers * seq_len * d
  return 6.0 * matmul_parameters(config, field_sizes) + attention


def _cpu_peak() -> float:
  try:
    info = Path("/proc/cpuinfo").read_text()
  except OSError:
    return 0.0
  flags, mhz = set(), 0.0
  for line in info.splitlines():
    if line.startswith("flags") and not flags:
      flags = set(line.split(":", 1)[1].split())
    elif line.startswith("cpu MHz"):
      mhz = max(mhz, float(line.split(":", 1)[1]))
  per_cycle = 64 if "avx512f" in flags else 32 if {"avx2", "fma"} <= flags else 8
  cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
  return float(cores or 1) * mhz * 1e6 * per_cycle


def peak_flops_per_device(device, override: float = 0.0) -> float:
  """Peak FLOP/s of one device (0.0 when unknown). On CPU, jax has one device per
  process by default spanning every core; with forced host devices the cores are
  shared, so the peak is divided among them."""
  if override:
    return float(override)
  if device.platform == "cpu":
    import jax

    return _cpu_peak() / max(jax.local_device_count(), 1)
  return peak_flops_of_kind(getattr(device, "device_kind", ""))


def peak_flops_of_kind(device_kind: str) -> float:
  """PEAK_FLOPS_BY_KIND's figure for a device kind string (e.g. "NVIDIA H200"), 0.0 when
  unknown."""
  for name, peak in PEAK_FLOPS_BY_KIND.items():
    if name.lower() in device_kind.lower():
      return peak
  return 0.0
