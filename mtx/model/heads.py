"""One output head per token field: logits over that field's vocabulary.

MMT's `to_logits` is one `nn.Linear(dim, size_f)` (with bias) per field; the
sampler and the loss read the tuple field by field. The heads run in float32
whatever the compute dtype: they are a small share of the FLOPs (sum of the
field sizes, 502 for MMT, against 12 D per layer) and float32 logits keep the
softmax and the loss exact under bfloat16 compute.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx


class FieldHeads(nnx.Module):
  """Params: `heads[f].kernel` (D, size_f) axes ('embed', 'vocab'), bias ('vocab',)."""

  def __init__(
    self, embed_dim: int, field_sizes: Sequence[int], *, param_dtype=jnp.float32, rngs: nnx.Rngs
  ):
    kernel_init = nnx.with_partitioning(nnx.initializers.lecun_normal(), ("embed", "vocab"))
    bias_init = nnx.with_partitioning(nnx.initializers.zeros_init(), ("vocab",))
    self.heads = nnx.List(
      [
        nnx.Linear(
          embed_dim,
          size,
          dtype=jnp.float32,
          param_dtype=param_dtype,
          kernel_init=kernel_init,
          bias_init=bias_init,
          rngs=rngs,
        )
        for size in field_sizes
      ]
    )

  def __call__(self, x: jax.Array) -> tuple[jax.Array, ...]:
    """x (B, L, D) -> one float32 (B, L, size_f) per field.

    The heads run as one (D, sum of sizes) matmul, split afterwards: the same numbers as
    one `Linear` per field, but one well-shaped matmul instead of several narrow ones
    (sizes 5 or 13 use a CPU's vector units poorly), forward and backward; on the rows
    flattened to 2-D, as the decoder's other matmuls (`MLP`).
    """
    *lead, embed = x.shape
    x = x.astype(jnp.float32).reshape(-1, embed)
    kernel = jnp.concatenate([head.kernel[...] for head in self.heads], axis=1)
    bias = jnp.concatenate([head.bias[...] for head in self.heads])
    logits = (x @ kernel.astype(jnp.float32) + bias).reshape(*lead, -1)
    splits = np.cumsum([head.out_features for head in self.heads])[:-1]
    return tuple(jnp.split(logits, splits, axis=-1))
