"""Metrics out: TensorBoard event files and the log, from process 0 only.

Event files are written with tensorboardX (no TensorFlow needed); point
`tensorboard --logdir=<workdir>/tensorboard` at them. `train/...` and
`eval/...` scalars share steps, so curves line up.
"""

from __future__ import annotations

import os
from typing import Mapping

from absl import logging


class Summary:
  """Scalars to `<workdir>/tensorboard` (process 0) and to the log."""

  def __init__(self, workdir: str | os.PathLike, *, enabled: bool = True):
    self._writer = None
    if enabled:
      from tensorboardX import SummaryWriter

      self._writer = SummaryWriter(os.path.join(os.fspath(workdir), "tensorboard"),
                                   flush_secs=10)

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
    if self._writer is not None:
      self._writer.close()


def progress_line(step: int, num_steps: int, metrics: Mapping[str, float]) -> str:
  """One line per log interval: step, loss, accuracy, speed."""
  parts = [f"step {step:,}/{num_steps:,}", f"loss {metrics['loss']:.4f}"]
  for key in ("eval_loss", "tokens_per_second", "mfu", "learning_rate"):
    if key in metrics:
      value = metrics[key]
      parts.append(f"{key.replace('_', ' ')} " + (
          f"{value:.2%}" if key == "mfu" else f"{value:,.0f}" if key == "tokens_per_second"
          else f"{value:.3g}"))
  return " | ".join(parts)


def log(line: str) -> None:
  logging.info("%s", line)
