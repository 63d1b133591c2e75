"""Metrics out: TensorBoard event files and the log, from process 0 only.

Event files are written with tensorboardX (no TensorFlow needed); point
`tensorboard --logdir=<workdir>/tensorboard` at them. `train/...` and
`eval/...` scalars share steps, so curves line up. A resumed run passes
`purge_step` (the first step after its checkpoint): TensorBoard then hides what
the interrupted run logged from that step on, which the resumed run logs again.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from absl import logging


class Summary:
  """Scalars to `<workdir>/tensorboard` (process 0) and to the log."""

  def __init__(
    self, workdir: str | os.PathLike, *, enabled: bool = True, purge_step: int | None = None
  ):
    self._writer = None
    if enabled:
      from tensorboardX import SummaryWriter

      self._writer = SummaryWriter(
        os.path.join(os.fspath(workdir), "tensorboard"), flush_secs=10, purge_step=purge_step
      )

  def scalars(self, step: int, prefix: str, values: Mapping[str, float]) -> None:
    if self._writer is None:
      return
    for name, value in values.items():
      self._writer.add_scalar(f"{prefix}/{name}", float(value), global_step=int(step))

  def text(self, step: int, name: str, value: str) -> None:
    if self._writer is not None:
      self._writer.add_text(name, value, global_step=int(step))

  def flush(self) -> None:
    if self._writer is not None:
      self._writer.flush()

  def close(self) -> None:
    """Closes the event file; a failure to write it (a full disk) is a warning, not a
    second error over the one that stopped the run."""
    if self._writer is not None:
      try:
        self._writer.close()
      except OSError as e:
        logging.warning("TensorBoard events could not be written: %s", e)


def progress_line(step: int, num_steps: int, metrics: Mapping[str, float]) -> str:
  """One line per log interval: step, loss, accuracy, speed."""
  parts = [f"step {step:,}/{num_steps:,}", f"loss {metrics['loss']:.4f}"]
  for key in ("eval_loss", "tokens_per_second", "mfu", "learning_rate"):
    if key in metrics:
      value = metrics[key]
      parts.append(
        f"{key.replace('_', ' ')} "
        + (
          f"{value:.2%}"
          if key == "mfu"
          else f"{value:,.0f}"
          if key == "tokens_per_second"
          else f"{value:.3g}"
        )
      )
  return " | ".join(parts)


def log(line: str) -> None:
  logging.info("%s", line)
