"""The optimizer: AdamW with a learning-rate schedule and global-norm clipping.

    tx, schedule = make_optimizer(config.train)

Weight decay applies to matrices and embedding tables only (ndim >= 2), not to
biases, LayerNorm scales or the 1-D parameters, as t5x and MaxText do.
Gradient accumulation is not an optax wrapper here: the train step sums the
micro-batches' gradients inside one jitted call (`step.py`), which keeps one
optimizer update per step and the exact full-batch gradient.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax


def make_schedule(train: Any) -> optax.Schedule:
  """The learning rate at each step, from train.schedule and its settings."""
  peak = float(train.learning_rate)
  warmup = int(train.warmup_steps)
  end = peak * float(train.end_learning_rate_ratio)
  total = int(train.num_steps)
  if train.schedule == "warmup_cosine":
    return optax.warmup_cosine_decay_schedule(
      init_value=0.0,
      peak_value=peak,
      warmup_steps=warmup,
      decay_steps=max(total, warmup + 1),
      end_value=end,
    )
  if train.schedule == "warmup_linear":  # MMT's: warm up, decay linearly, then hold
    decay_end = int(train.decay_steps) or total
    return optax.join_schedules(
      [
        optax.linear_schedule(0.0, peak, warmup),
        optax.linear_schedule(peak, end, max(decay_end - warmup, 1)),
      ],
      [warmup],
    )
  if train.schedule == "inverse_sqrt":

    def inverse_sqrt(step):
      step = jnp.asarray(step, jnp.float32)
      ramp = peak * step / warmup
      decay = peak * jnp.sqrt(warmup / jnp.maximum(step, 1.0))
      return jnp.where(step < warmup, ramp, decay)

    return inverse_sqrt
  if train.schedule == "constant":
    return optax.join_schedules(
      [optax.linear_schedule(0.0, peak, warmup), optax.constant_schedule(peak)], [warmup]
    )
  raise ValueError(f"unknown schedule {train.schedule!r}")  # validate() refuses it first


def _decay_mask(params):
  return jax.tree.map(lambda p: p.ndim >= 2, params)


def make_optimizer(train: Any) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """(the optax transformation, its schedule)."""
  schedule = make_schedule(train)
  # Clipping off is the identity, so the optimizer state has one structure either way and
  # a run can resume with clipping changed.
  parts = [
    optax.clip_by_global_norm(float(train.grad_clip_norm))
    if train.grad_clip_norm > 0
    else optax.identity()
  ]
  parts.append(
    optax.adamw(
      schedule,
      b1=float(train.adam_b1),
      b2=float(train.adam_b2),
      eps=float(train.adam_eps),
      weight_decay=float(train.weight_decay),
      mask=_decay_mask,
    )
  )
  return optax.chain(*parts), schedule
