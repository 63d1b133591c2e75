"""A batch iterator whose position can be saved and restored.

`BatchIterator.get_state()` returns JSON bytes: grain's iterator state (plain
integers: where each reader is in the index space) plus the pipeline's settings.
A fresh iterator built with the same settings and given that state with
`set_state` yields exactly the batches the first one would have yielded next.
Restoring into a pipeline built differently (another seed, batch size,
sharding, worker count, dataset size...) would silently yield other batches,
so it raises `ConfigError` naming the settings that differ.

The bytes interface is the one grain's Orbax handler uses for iterators that
are not grain `DatasetIterator`s, so a training loop checkpoints the input
position beside the model with
`ocp.args.Composite(data=grain.checkpoint.CheckpointSave(iterator))` and
restores it with `grain.checkpoint.CheckpointRestore(iterator)`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from mtx.errors import ConfigError

STATE_FORMAT = 1


class BatchIterator(Iterator[dict]):
  """Iterates batches (dicts of numpy arrays) from a grain `IterDataset`."""

  def __init__(self, dataset, settings: dict[str, Any]):
    self._dataset = dataset
    self._iterator = iter(dataset)
    self.settings = json.loads(json.dumps(settings))  # as a restored state will hold them

  def __iter__(self) -> BatchIterator:
    return self

  def __next__(self) -> dict:
    return next(self._iterator)

  def get_state(self) -> bytes:
    """JSON bytes of the position (after the last batch returned) and settings."""
    state = {"format": STATE_FORMAT, "settings": self.settings, "grain": self._iterator.get_state()}
    return json.dumps(state, sort_keys=True).encode()

  def set_state(self, state: bytes | str | dict) -> None:
    """Moves to a position saved by `get_state` of an identically built pipeline."""
    if isinstance(state, (bytes, str)):
      try:
        state = json.loads(state)
      except ValueError as e:
        raise ConfigError(
          f"input iterator state is not JSON ({e}); pass the bytes that "
          "BatchIterator.get_state returned"
        ) from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
      raise ConfigError(
        "input iterator state has an unknown format; pass the bytes that "
        "BatchIterator.get_state returned"
      )
    saved = state.get("settings", {})
    differ = sorted(
      k for k in set(saved) | set(self.settings) if saved.get(k) != self.settings.get(k)
    )
    if differ:
      details = ", ".join(
        f"{k}: saved {saved.get(k)!r}, now {self.settings.get(k)!r}" for k in differ
      )
      raise ConfigError(
        f"input iterator state was saved by a pipeline built differently "
        f"({details}); rebuild it with the saved settings to resume exactly"
      )
    self._iterator.set_state(state["grain"])

  def start_prefetch(self) -> None:
    """Starts background reading now (grain's Orbax handler calls it on restore)."""
    self._iterator.start_prefetch()

  def close(self) -> None:
    """Stops background threads and worker processes."""
    self._iterator.close()
