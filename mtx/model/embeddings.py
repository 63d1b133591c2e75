"""Token and position embeddings of a multi-field token row.

A row of F fields is embedded as the sum of F lookups, one table per field
(MMT's `MusicTransformerWrapper` sums one `TokenEmbedding` per field); a
single-field representation is the case F = 1. Table sizes come from the codec's
field table, never from constants here.

Absolute positions are optional: sinusoidal (Vaswani et al. 2017), learned (a
table of `max_seq_len` rows, as x-transformers' `AbsolutePositionalEmbedding`
that MMT uses), or none (Music Transformer's relative attention carries the
order). Positions come from the batch's `positions` (B, L), so packed segments
each start again at 0.

Scale: every table is initialized with standard deviation `embed_dim ** -0.5`
and the sinusoids are multiplied by the same factor, as x-transformers scales
its position embedding by `dim ** -0.5`; the pre-LayerNorm blocks then see
tokens and positions at the same magnitude.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

POSITION_EMBEDDINGS = ("sinusoidal", "learned", "none")


def sinusoidal_positions(positions: jax.Array, embed_dim: int) -> jax.Array:
  """Vaswani et al.'s encoding: (...,) int -> (..., embed_dim) float32.

  Channel 2i is sin(p / 10000^(2i/D)), channel 2i+1 the cosine of the same
  angle (interleaved, as the paper writes it).
  """
  if embed_dim % 2:
    raise ValueError(f"sinusoidal positions need an even embed_dim, got {embed_dim}")
  inv_freq = 1.0 / (10000.0 ** (np.arange(0, embed_dim, 2, dtype=np.float64) / embed_dim))
  angles = positions.astype(jnp.float32)[..., None] * jnp.asarray(inv_freq, jnp.float32)
  return jnp.stack([jnp.sin(angles), jnp.cos(angles)], axis=-1).reshape(*positions.shape, embed_dim)


class FieldEmbeddings(nnx.Module):
  """Sum of one embedding table per field, plus optional absolute positions.

  Params (float32): `tables[f]` (size_f, D) with axes ('vocab', 'embed');
  `position_table` (max_seq_len, D) with axes ('max_len', 'embed') when learned.
  Output in the compute `dtype`.
  """

  def __init__(
    self,
    field_sizes: Sequence[int],
    embed_dim: int,
    *,
    position_embedding: str = "none",
    max_seq_len: int = 0,
    dtype=jnp.float32,
    param_dtype=jnp.float32,
    rngs: nnx.Rngs,
  ):
    if position_embedding not in POSITION_EMBEDDINGS:
      raise ValueError(
        f"position_embedding must be one of {POSITION_EMBEDDINGS}, got {position_embedding!r}"
      )
    if position_embedding == "learned" and max_seq_len <= 0:
      raise ValueError("learned positions need max_seq_len > 0")
    self.embed_dim = embed_dim
    self.position_embedding = position_embedding
    self.max_seq_len = max_seq_len
    self.dtype = dtype
    init = nnx.initializers.normal(embed_dim**-0.5)
    self.tables = nnx.List(
      [
        nnx.Embed(
          size,
          embed_dim,
          dtype=jnp.float32,
          param_dtype=param_dtype,
          embedding_init=nnx.with_partitioning(init, ("vocab", "embed")),
          rngs=rngs,
        )
        for size in field_sizes
      ]
    )
    if position_embedding == "learned":
      self.position_table = nnx.Embed(
        max_seq_len,
        embed_dim,
        dtype=jnp.float32,
        param_dtype=param_dtype,
        embedding_init=nnx.with_partitioning(init, ("max_len", "embed")),
        rngs=rngs,
      )
    else:
      self.position_table = nnx.data(None)

  def __call__(self, tokens: jax.Array, positions: jax.Array | None = None) -> jax.Array:
    """tokens (B, L, F) int, positions (B, L) int (default 0..L-1) -> (B, L, D)."""
    x = sum(table(tokens[..., f]) for f, table in enumerate(self.tables))  # (B, L, D) f32
    if self.position_embedding != "none":
      if positions is None:
        positions = jnp.broadcast_to(jnp.arange(tokens.shape[1]), tokens.shape[:2])
      if self.position_embedding == "learned":
        if tokens.shape[1] > self.max_seq_len:
          raise ValueError(
            f"{tokens.shape[1]} tokens do not fit learned positions over "
            f"max_seq_len={self.max_seq_len}; crop the windows or raise "
            "max_seq_len"
          )
        x = x + self.position_table(positions)
      else:
        x = x + sinusoidal_positions(positions, self.embed_dim) * (self.embed_dim**-0.5)
    return x.astype(self.dtype)
