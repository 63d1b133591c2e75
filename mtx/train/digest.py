"""Digests that make a checkpoint verifiable: Orbax's data files carry no checksum.

A flipped bit in a data file restores without error (docs/benchmarks.md,
"Checkpoints"), so every checkpoint also stores a digest of every array it
holds, and a restore recomputes them on what it read and refuses a mismatch
(`mtx.train.verify`).

An array's digest must come out the same however the array is split: training
saves it sharded over the run's mesh (over several processes on a multi-host job),
mtx-sample restores it on another mesh. So it is a pair of sums over the
array's raw bits u_i (the float's bytes read as an unsigned integer) at global
flat index i, modulo 2**64:

    s0 = sum(u_i)        s1 = sum((i + 1) * u_i)

Each shard adds its part (computed on its host copy, replicas counted once), and
the processes' parts add up. Any change of one element changes s0 (the change is
a nonzero integer below 2**64); elements moved or swapped change s1.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

import jax
import numpy as np

_MASK = (1 << 64) - 1
_UINTS = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def _local_sums(array: Any) -> tuple[int, int]:
  """(s0, s1) of the shards of `array` this process holds (replica 0 of each)."""
  if isinstance(array, jax.Array) and jax.dtypes.issubdtype(array.dtype, jax.dtypes.prng_key):
    array = jax.random.key_data(array)
  if not isinstance(array, jax.Array):
    array = np.asarray(array)
    return _shard_sums(array, (), array.shape)
  s0 = s1 = 0
  for shard in array.addressable_shards:
    if shard.replica_id != 0:
      continue
    a, b = _shard_sums(np.asarray(shard.data), shard.index, array.shape)
    s0, s1 = (s0 + a) & _MASK, (s1 + b) & _MASK
  return s0, s1


def _shard_sums(local: np.ndarray, index: tuple, shape: tuple) -> tuple[int, int]:
  """The part of (s0, s1) of a block `local` at `index` (slices) of an array of `shape`.

  sum((i + 1) * u) splits over the axes: the global flat index of local element m
  is base + sum_d m_d * stride_d, so s1 = (base + 1) * s0 + sum_d stride_d *
  (arange(n_d) . marginal_d), marginal_d being u summed over every other axis."""
  local = np.ascontiguousarray(local)
  uint = _UINTS.get(local.dtype.itemsize)
  if uint is None:  # an odd item size: its bytes, each an element of a wider last axis
    local = local.view(np.uint8).reshape(*local.shape, local.dtype.itemsize)
    shape, index, uint = (*shape, local.shape[-1]), (*index, slice(None)), np.uint8
  u = local.view(uint).astype(np.uint64, copy=False)
  strides = [1] * len(shape)
  for d in range(len(shape) - 2, -1, -1):
    strides[d] = strides[d + 1] * int(shape[d + 1])
  starts = [(index[d].start or 0) if d < len(index) else 0 for d in range(len(shape))]
  s0 = int(u.sum(dtype=np.uint64))
  base = sum(start * stride for start, stride in zip(starts, strides))
  s1 = (base + 1) * s0
  for d in range(u.ndim):
    if u.shape[d] < 2:
      continue
    others = tuple(a for a in range(u.ndim) if a != d)
    marginal = u.sum(axis=others, dtype=np.uint64) if others else u
    weighted = int((np.arange(u.shape[d], dtype=np.uint64) * marginal).sum(dtype=np.uint64))
    s1 += strides[d] * weighted
  return s0 & _MASK, s1 & _MASK


def _hex(s0: int, s1: int) -> str:
  return f"{s0:016x}{s1:016x}"


def leaf_name(path: tuple) -> str:
  """`params/blocks/0/attention/query/value`: a leaf's path as an error names it."""
  parts = []
  for key in path:
    for attr in ("key", "idx", "name"):
      if hasattr(key, attr):
        parts.append(str(getattr(key, attr)))
        break
    else:
      parts.append(str(key))
  return "/".join(parts)


def tree_digests(tree: Any) -> dict[str, str]:
  """Leaf path (`leaf_name`) -> digest of that array, the same on every
  process. On several processes each adds its shards and the parts are summed
  across them (a collective: every process must call it)."""
  flat = jax.tree_util.tree_flatten_with_path(tree)[0]
  names = [leaf_name(path) for path, _ in flat]
  sums = [_local_sums(leaf) for _, leaf in flat]
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils

    # As 32-bit halves: JAX without x64 would narrow uint64 on the way.
    halves = np.array(
      [[v & 0xFFFFFFFF, v >> 32] for pair in sums for v in pair], dtype=np.uint32
    ).reshape(len(sums), 4)
    gathered = np.asarray(multihost_utils.process_allgather(halves)).reshape(-1, len(sums), 4)
    sums = [(0, 0)] * len(sums)
    for part in gathered.astype(np.uint64):
      sums = [
        ((a + (int(p[0]) | int(p[1]) << 32)) & _MASK, (b + (int(p[2]) | int(p[3]) << 32)) & _MASK)
        for (a, b), p in zip(sums, part)
      ]
  return {name: _hex(a, b) for name, (a, b) in zip(names, sums)}


def bytes_digest(data: bytes) -> str:
  """CRC-32 and length of a small file's bytes (the iterator state)."""
  return f"{zlib.crc32(data):08x}-{len(data)}"


def json_digest(value: Any) -> str:
  """Digest of a JSON value (the run record, the metrics) as written canonically:
  equal for the value saved and the value read back, whatever the file's layout."""
  text = json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=True)
  return bytes_digest(text.encode())
