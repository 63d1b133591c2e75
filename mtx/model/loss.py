"""The multi-field training loss: a sum of per-field cross-entropies.

    sums = field_sums(logits, batch["targets"], batch["mask"],
                      codec.field_mask_table(), codec.fields.names)
    metrics = field_means(sums, codec.fields.names)   # metrics["loss"]: the total
    total, metrics = multi_field_loss(...)            # the two at once

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

Sums and means are kept apart because batches add up: `field_sums` of several
batches (an evaluation set, the micro-batches of an accumulated step) add, and
`field_means` is the one place that divides, once, by the counts of the whole.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

# The summed quantities of each field: "<kind>/<field name>" in `field_sums`.
SUM_KINDS = ("nll", "correct", "count")


def field_weights(
  targets: jax.Array, mask: jax.Array, field_mask_table: np.ndarray | jax.Array | None
) -> jax.Array:
  """Float32 (B, L, F): 1 where field f of target row (b, l) counts, else 0."""
  counted = jnp.broadcast_to(mask.astype(bool)[..., None], targets.shape)
  if field_mask_table is not None:
    table = jnp.asarray(field_mask_table, bool)  # (n_types, F)
    counted = counted & table[jnp.clip(targets[..., 0], 0, table.shape[0] - 1)]
  return counted.astype(jnp.float32)


def _names(n_fields: int, names: Sequence[str] | None) -> list[str]:
  return [str(f) for f in range(n_fields)] if names is None else list(names)


def field_sums(
  logits: Sequence[jax.Array],
  targets: jax.Array,
  mask: jax.Array,
  field_mask_table: np.ndarray | jax.Array | None = None,
  field_names: Sequence[str] | None = None,
) -> dict[str, jax.Array]:
  """Per field, over the counted rows of one batch: summed cross-entropy ("nll/<name>"),
  correct argmax predictions ("correct/<name>") and the count ("count/<name>").

  logits: one (B, L, size_f) array per field; targets (B, L, F) int, mask (B, L);
  names default to the field index."""
  if len(logits) != targets.shape[-1]:
    raise ValueError(f"{len(logits)} logit arrays for targets with {targets.shape[-1]} fields")
  names = _names(len(logits), field_names)
  weights = field_weights(targets, mask, field_mask_table)  # (B, L, F)
  sums = {}
  for f, field_logits in enumerate(logits):
    field_logits = field_logits.astype(jnp.float32)
    target = targets[..., f]
    log_probs = jax.nn.log_softmax(field_logits, axis=-1)
    nll = -jnp.take_along_axis(log_probs, target[..., None], axis=-1)[..., 0]  # (B, L)
    correct = (jnp.argmax(field_logits, axis=-1) == target).astype(jnp.float32)
    weight = weights[..., f]
    sums[f"nll/{names[f]}"] = (nll * weight).sum()
    sums[f"correct/{names[f]}"] = (correct * weight).sum()
    sums[f"count/{names[f]}"] = weight.sum()
  return sums


def field_means(
  sums: dict, names: Sequence[str], counts: jax.Array | None = None
) -> dict[str, jax.Array]:
  """Per field "loss/<name>" and "accuracy/<name>" (means over the counted rows), and
  "loss", their total, from `field_sums` (of one batch or added over several).

  `counts` (F,): the counts to divide by instead of the sums' own; a micro-batch's
  loss divided by its whole batch's counts has the whole batch's gradient."""
  metrics = {}
  total = 0.0
  for f, name in enumerate(names):
    count = jnp.maximum(sums[f"count/{name}"] if counts is None else counts[f], 1.0)
    metrics[f"loss/{name}"] = sums[f"nll/{name}"] / count
    metrics[f"accuracy/{name}"] = sums[f"correct/{name}"] / count
    total = total + metrics[f"loss/{name}"]
  metrics["loss"] = total
  return metrics


def multi_field_loss(
  logits: Sequence[jax.Array],
  targets: jax.Array,
  mask: jax.Array,
  field_mask_table: np.ndarray | jax.Array | None = None,
  field_names: Sequence[str] | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """(total loss, metrics) of one batch: `field_means` of its `field_sums`, with the
  counts ("count/<name>") kept; names default to the field index."""
  sums = field_sums(logits, targets, mask, field_mask_table, field_names)
  names = _names(len(logits), field_names)
  metrics = field_means(sums, names)
  metrics.update({f"count/{name}": sums[f"count/{name}"] for name in names})
  return metrics["loss"], metrics
