"""grain input pipelines over prepared token records.

    source = builder.as_data_source("train")     # or any list of {"tokens": ...}
    batches = make_train_iterator(source, "mmt", seq_len=1024, batch_size=8, seed=0)
    batch = next(batches)   # inputs, targets (B, L, F) int32; mask (B, L) bool; ...
    state = batches.get_state()                   # JSON bytes; set_state resumes

A source is anything with `__len__` and `__getitem__` returning a dict with a
"tokens" int32 array (n, n_fields) (TFDS's `as_data_source`, a list). Training:

    source -> window (per example: augment, crop, pad; seeded by seed, epoch,
    index) -> this host's shard (every shard_count-th example from shard_index)
    -> shuffle (reseeded each epoch) -> repeat -> [worker processes] -> [pack]
    -> batch

Per-host sharding slices the index space, so the shards are disjoint and
cover the data; each host builds its own iterator. Worker processes
(`worker_count`) read interleaved slices and are merged back in order, so the
batches do not depend on the worker count. Packing (grain's first-fit packer,
as t5x and MaxText pack) puts several short windows into one row of seq_len,
each with its own `segment_ids` (1, 2, ...; 0 on padding) and `positions`
(0.. per segment); each window's targets were made inside the window, so no
target crosses a segment boundary.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import grain
import numpy as np

from mtx.data.state import BatchIterator
from mtx.data.window import WindowOptions, WindowTransform, pad_row
from mtx.errors import ConfigError
from mtx.representation import get_codec
from mtx.representation.codec import Codec

# Readers per process and examples read ahead: enough to hide reading and numpy
# work behind a training step without holding many batches in memory.
READ_THREADS = 2
READ_AHEAD = 64


def make_train_iterator(
  source,
  codec: str | Codec,
  *,
  seq_len: int,
  batch_size: int,
  seed: int,
  shuffle: bool = True,
  num_epochs: int | None = None,
  transpose: tuple[int, int] | None = (-5, 6),
  tempo_stretch: tuple[float, float] | None = (0.9, 1.1),
  max_beat: int | None = None,
  start_token: bool = False,
  pack: bool = False,
  shard_index: int | None = None,
  shard_count: int | None = None,
  worker_count: int = 0,
) -> BatchIterator:
  """Shuffled, augmented, cropped and batched training windows.

  codec: the representation the records were prepared with: a `Codec`, or a
    name built with default options.
  seq_len: rows the model sees (windows are seq_len + 1 rows; see `window`).
  batch_size: windows per batch, per host; the last partial batch of a finite
    run is dropped so every batch has one shape.
  seed: shuffle, crops and augmentation; same seed, same batches.
  num_epochs: None repeats forever.
  transpose: (low, high) semitones, inclusive, drawn per window (MMT: (-5, 6));
    narrowed so no note leaves 0..127; drums never move. None: off.
  tempo_stretch: (low, high) factor on durations for performance (continuous)
    and remi (whole tempo bins of about 8.7%); ignored by mmt and mmm, which
    carry no tempo. None: off.
  max_beat: mmt only: windows span at most this many beats (the reference's
    max_beat). start_token: performance only: windows that do not start the
    song get start-of-song in front.
  pack: several short windows per row, with segment_ids and positions.
  shard_index, shard_count: this host's shard; default jax.process_index() and
    jax.process_count().
  worker_count: worker processes (0: read in this process). They need absl
    flags parsed; when not, they are marked parsed with their defaults.
  """
  codec = _codec(codec)
  options = WindowOptions(
    seq_len=seq_len,
    transpose=_pair(transpose, "transpose"),
    tempo_stretch=_pair(tempo_stretch, "tempo_stretch"),
    max_beat=max_beat,
    start_token=bool(start_token),
  )
  _check_positive(batch_size=batch_size)
  if not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
    raise ConfigError(f"seed must be an integer in 0..2**32-1, got {seed!r}")
  if num_epochs is not None:
    _check_positive(num_epochs=num_epochs)
  if not isinstance(worker_count, (int, np.integer)) or worker_count < 0:
    raise ConfigError(f"worker_count must be an integer >= 0, got {worker_count!r}")
  size = _size(source)
  shard_index, shard_count = _shard(shard_index, shard_count, size)

  transform = WindowTransform(codec, options, size, seed=int(seed), pack=bool(pack))
  ds = grain.MapDataset.source(source).map_with_index(transform)
  ds = ds[shard_index::shard_count]
  if shuffle:
    ds = ds.shuffle(seed=int(seed))
  ds = ds.repeat(num_epochs)
  it = ds.to_iter_dataset(
    grain.ReadOptions(num_threads=READ_THREADS, prefetch_buffer_size=READ_AHEAD)
  )
  it = _in_workers(it, worker_count)
  if pack:
    it = _packed(it, seq_len, batch_size)
  it = it.batch(batch_size, drop_remainder=True)
  settings = dict(
    kind="train",
    representation=codec.name,
    seq_len=seq_len,
    batch_size=batch_size,
    seed=int(seed),
    shuffle=bool(shuffle),
    num_epochs=num_epochs,
    transpose=transpose,
    tempo_stretch=tempo_stretch,
    max_beat=max_beat,
    start_token=bool(start_token),
    pack=bool(pack),
    shard_index=shard_index,
    shard_count=shard_count,
    worker_count=int(worker_count),
    source_size=size,
  )
  return BatchIterator(it, settings)


def make_eval_iterator(
  source,
  codec: str | Codec,
  *,
  seq_len: int,
  batch_size: int,
  max_beat: int | None = None,
  shard_index: int | None = None,
  shard_count: int | None = None,
  worker_count: int = 0,
) -> BatchIterator:
  """One pass over the source in order: each example's window from its start,
  no augmentation. Every host yields the same number of batches (a multi-host
  eval step runs in lockstep): the last ones are filled with empty rows whose
  mask is all False."""
  codec = _codec(codec)
  options = WindowOptions(seq_len=seq_len, max_beat=max_beat)
  _check_positive(batch_size=batch_size)
  size = _size(source)
  shard_index, shard_count = _shard(shard_index, shard_count, size)
  per_host = math.ceil(math.ceil(size / shard_count) / batch_size) * batch_size
  shard = _EvalShard(
    source, range(shard_index, size, shard_count), per_host, np.zeros((0, codec.n_fields), np.int32)
  )
  transform = WindowTransform(codec, options, per_host)
  ds = grain.MapDataset.source(shard).map_with_index(transform)
  it = ds.to_iter_dataset(
    grain.ReadOptions(num_threads=READ_THREADS, prefetch_buffer_size=READ_AHEAD)
  )
  it = _in_workers(it, worker_count).batch(batch_size, drop_remainder=True)
  settings = dict(
    kind="eval",
    representation=codec.name,
    seq_len=seq_len,
    batch_size=batch_size,
    max_beat=max_beat,
    shard_index=shard_index,
    shard_count=shard_count,
    worker_count=int(worker_count),
    source_size=size,
  )
  return BatchIterator(it, settings)


class _EvalShard:
  """A host's examples in order, then empty examples up to `total`."""

  def __init__(self, source, indices: Sequence[int], total: int, empty_tokens: np.ndarray):
    self._source = source
    self._indices = indices
    self._total = total
    self._empty = {"tokens": empty_tokens}

  def __len__(self) -> int:
    return self._total

  def __getitem__(self, index: int) -> Any:
    if index < len(self._indices):
      return self._source[self._indices[index]]
    return self._empty


def _packed(it, seq_len: int, batch_size: int):
  from grain.experimental import FirstFitPackIterDataset

  lengths = {"inputs": seq_len, "targets": seq_len, "mask": seq_len}
  packed = FirstFitPackIterDataset(
    it, length_struct=lengths, num_packing_bins=batch_size, shuffle_bins=False
  )
  return packed.map(_packed_example)


def _packed_example(row: dict) -> dict:
  return {
    "inputs": row["inputs"],
    "targets": row["targets"],
    "mask": row["mask"],
    "segment_ids": row["inputs_segment_ids"],
    "positions": row["inputs_positions"],
  }


def _in_workers(it, worker_count: int):
  if not worker_count:
    return it
  from absl import flags

  if not flags.FLAGS.is_parsed():  # grain reads its flags in the workers
    flags.FLAGS.mark_as_parsed()
  return it.mp_prefetch(
    grain.MultiprocessingOptions(num_workers=int(worker_count)), worker_init_fn=_exit_with_parent
  )


def _exit_with_parent(worker_index: int, worker_count: int) -> None:
  """grain's worker initializer: the worker exits once its parent is gone. A kill -9
  of mtx-train left its workers (211 MB each) and multiprocessing's resource tracker
  running for minutes; the tracker goes when the workers do. A thread polling the
  parent's pid works whichever thread started the worker (PR_SET_PDEATHSIG fires
  when that thread ends, which need not be the process)."""
  del worker_index, worker_count
  import threading
  import time

  parent = os.getppid()

  def watch():
    while os.getppid() == parent:
      time.sleep(0.5)
    os._exit(0)

  threading.Thread(target=watch, name="mtx-exit-with-parent", daemon=True).start()


def _codec(codec: str | Codec) -> Codec:
  if isinstance(codec, Codec):
    return codec
  return get_codec(codec)


def _pair(value, name: str):
  if value is None:
    return None
  try:
    low, high = value
  except (TypeError, ValueError):
    raise ConfigError(f"{name} must be a pair (low, high) or None, got {value!r}") from None
  return (low, high)


def _check_positive(**values) -> None:
  for name, value in values.items():
    if not isinstance(value, (int, np.integer)) or value < 1:
      raise ConfigError(f"{name} must be a positive integer, got {value!r}")


def _size(source) -> int:
  try:
    size = len(source)
  except TypeError:
    raise ConfigError(
      f"the source must support len() and indexing (a TFDS data source, "
      f"a list); got {type(source).__name__}"
    ) from None
  if size == 0:
    raise ConfigError(
      "the source holds no examples: was the split prepared (mtx-prepare), "
      "and is it the split you meant?"
    )
  return size


def _shard(shard_index: int | None, shard_count: int | None, size: int) -> tuple[int, int]:
  """This host's shard: jax's process index and count unless given."""
  if shard_index is None or shard_count is None:
    import jax

    shard_index = jax.process_index() if shard_index is None else shard_index
    shard_count = jax.process_count() if shard_count is None else shard_count
  if not (
    isinstance(shard_count, (int, np.integer))
    and shard_count >= 1
    and isinstance(shard_index, (int, np.integer))
    and 0 <= shard_index < shard_count
  ):
    raise ConfigError(
      f"shard_index must be in 0..shard_count-1 and shard_count >= 1; got "
      f"{shard_index!r} of {shard_count!r}"
    )
  if shard_count > size:
    raise ConfigError(
      f"the source holds {size} examples, fewer than the {shard_count} "
      "shards (hosts): every host needs at least one"
    )
  return int(shard_index), int(shard_count)


__all__ = ["make_eval_iterator", "make_train_iterator", "pad_row"]
