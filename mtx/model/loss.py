"""The multi-field training loss: a sum of per-field cross-entropies.

    total, metrics = multi_field_loss(logits, batch["targets"], batch["mask"],
                                      codec.field_mask_table(), codec.fields.names)

Which predictions count: a target row (B, L) counts where `mask` is set; field f
of it counts where, in addition, the codec's `field_mask_table()[type, f]` is
set, `type` being the row's field 0 (MMT: the row type; notes count every field,
instrument rows type and instrument, the other rows the type only). With no
table (single-field codecs) every field of a masked row counts.

Normalization: each field's loss is the mean cross-entropy over the rows where
that field counts, and the total is the sum of those means, as MMT sums its
per-field `F.cross_entropy` means. (MMT's means run over every position, padding
and the forced zeros of non-note rows included; here they run over the counted
rows only, so fields predicted only on notes are not diluted by rows where they
mean nothing.) A field with no counted row contributes 0.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np


def field_weights(targets: jax.Array, mask: jax.Array,
                  field_mask_table: np.ndarray | jax.Array | None) -> jax.Array:
  """Float32 (B, L, F): 1 where field f of target row (b, l) counts, else 0."""
  counted = jnp.broadcast_to(mask.astype(bool)[..., None], targets.shape)
  if field_mask_table is not None:
    table = jnp.asarray(field_mask_table, bool)  # (n_types, F)
    counted = counted & table[jnp.clip(targets[..., 0], 0, table.shape[0] - 1)]
  return counted.astype(jnp.float32)


def multi_field_loss(logits: Sequence[jax.Array], targets: jax.Array, mask: jax.Array,
                     field_mask_table: np.ndarray | jax.Array | None = None,
                     field_names: Sequence[str] | None = None,
                     ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """(total loss, metrics) from one (B, L, size_f) logit array per field.

  targets (B, L, F) int, mask (B, L) bool. Metrics: "loss" (the total), and per
  field "loss/<name>", "accuracy/<name>" (argmax == target over counted rows) and
  "count/<name>" (counted rows); names default to the field index.
  """
  if len(logits) != targets.shape[-1]:
    raise ValueError(f"{len(logits)} logit arrays for targets with {targets.shape[-1]} fields")
  names = [str(f) for f in range(len(logits))] if field_names is None else list(field_names)
  weights = field_weights(targets, mask, field_mask_table)  # (B, L, F)
  total = jnp.zeros((), jnp.float32)
  metrics = {}
  for f, field_logits in enumerate(logits):
    field_logits = field_logits.astype(jnp.float32)
    target = targets[..., f]
    log_probs = jax.nn.log_softmax(field_logits, axis=-1)
    nll = -jnp.take_along_axis(log_probs, target[..., None], axis=-1)[..., 0]  # (B, L)
    correct = (jnp.argmax(field_logits, axis=-1) == target).astype(jnp.float32)
    weight = weights[..., f]
    count = weight.sum()
    denominator = jnp.maximum(count, 1.0)
    field_loss = (nll * weight).sum() / denominator
    total = total + field_loss
    metrics[f"loss/{names[f]}"] = field_loss
    metrics[f"accuracy/{names[f]}"] = (correct * weight).sum() / denominator
    metrics[f"count/{names[f]}"] = count
  metrics["loss"] = total
  return total, metrics
