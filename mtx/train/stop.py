"""SIGTERM and Ctrl-C as a request to stop at the next safe point.

The loop reads `requested` between steps (it saves a checkpoint and returns).
`mtx-train` installs the handlers before anything slow starts (JAX, the dataset,
a checkpoint restore), so that a SIGTERM then, when nothing is at risk, stops the
run as soon as it can, saying so, with exit 0 (Python's default: exit 143, silent).
"""

from __future__ import annotations

import signal

import numpy as np
from absl import logging


class StopSignals:
  """SIGTERM/SIGINT set a flag (handlers restored by `uninstall` or on exit)."""

  def __init__(self):
    self.requested = False
    self.signum: int | None = None
    self._previous = {}

  def install(self) -> StopSignals:
    for sig in (signal.SIGTERM, signal.SIGINT):
      try:
        self._previous[sig] = signal.signal(sig, self._handle)
      except ValueError:  # not the main thread: no handlers, the caller stops us
        pass
    return self

  def uninstall(self) -> None:
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
    self._previous = {}

  def _handle(self, signum, frame):
    del frame
    logging.warning("signal %d: stopping at the next safe point", signum)
    self.requested = True
    self.signum = signum

  def __enter__(self):
    return self.install()

  def __exit__(self, *exc):
    self.uninstall()

  def agreed(self) -> bool:
    """Whether any process was asked to stop (all processes take the same branch)."""
    import jax

    if jax.process_count() == 1:
      return self.requested
    from jax.experimental import multihost_utils

    return bool(np.any(multihost_utils.process_allgather(np.array(self.requested))))
