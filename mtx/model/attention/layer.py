"""The attention layer: its parameters, projections and KV cache; `dispatch.attend` does the
attention itself."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from mtx.model.attention.dispatch import attend
from mtx.model.attention.relative import relative_logits_skewed
from mtx.model.attention.whole import attention_logits, attention_mask


def _fan_in_init(in_axis, out_axis):
  """Truncated-normal with fan-in scaling for a kernel whose in/out span several axes."""
  return nnx.initializers.variance_scaling(
    1.0, "fan_in", "truncated_normal", in_axis=in_axis, out_axis=out_axis
  )


def write_cache(cache: dict, k: jax.Array, v: jax.Array) -> dict:
  """`cache` with the new keys and values k, v (B, H, L, Dh) written at [index, index + L).

  Raises ValueError when L exceeds the cache; a write that overflows from a traced index
  is the caller's to prevent (`MultiHeadAttention.init_cache`).
  """
  max_length = cache["k"].shape[2]
  length = k.shape[2]
  if length > max_length:
    raise ValueError(f"{length} new tokens do not fit a cache of max_length={max_length}")
  index = cache["index"]
  start = (0, 0, index, 0)
  return {
    "k": jax.lax.dynamic_update_slice(cache["k"], k.astype(cache["k"].dtype), start),
    "v": jax.lax.dynamic_update_slice(cache["v"], v.astype(cache["v"].dtype), start),
    "index": index + length,
  }


class MultiHeadAttention(nnx.Module):
  """Causal multi-head self-attention, relative (Music Transformer) or plain.

  Parameters (float32, each with logical axis names for the sharding rule table):
    query/key/value kernels (D, H, Dh): ('embed', 'heads', 'kv')
    out kernel (H, Dh, D): ('heads', 'kv', 'embed')
    relative table (R, H, Dh): ('relpos', 'heads', 'kv'), one per head, only if `relative`.
  `dtype` is the compute dtype (inputs and kernels are cast to it for the matmuls; logits
  and softmax stay float32). Attention dropout (`dropout_rate`) is on the probabilities,
  as x-transformers does. `block_size` (queries per block; None or 0: off) lets a
  sequence longer than a block go by blocks, which never store the (B, H, L, L)
  attention. Same values whichever path `dispatch.attend` takes, dropout masks included.

  Call: `y, cache = layer(x, segment_ids=..., deterministic=..., cache=...)`.
  Without a cache, x (B, L, D) is a whole (possibly packed) sequence and the returned cache
  is None. With a cache from `init_cache`, x holds the next L tokens (a primer, or one step):
  their keys and values are written at [index, index + L) and the updated cache returned.
  """

  def __init__(
    self,
    *,
    embed_dim: int,
    num_heads: int,
    relative: bool = True,
    max_relative_distance: int = 512,
    dropout_rate: float = 0.0,
    block_size: int | None = None,
    dtype=jnp.float32,
    param_dtype=jnp.float32,
    rngs: nnx.Rngs,
  ):
    if embed_dim % num_heads:
      raise ValueError(
        f"embed_dim={embed_dim} is not a multiple of num_heads={num_heads}: pick sizes that divide"
      )
    if relative and max_relative_distance < 1:
      raise ValueError(f"max_relative_distance={max_relative_distance} must be >= 1")
    if block_size is not None and block_size < 0:
      raise ValueError(f"block_size={block_size} must be >= 0 (0 or None: no blocks)")
    self.embed_dim = embed_dim
    self.num_heads = num_heads
    self.head_dim = embed_dim // num_heads
    self.relative = relative
    self.max_relative_distance = max_relative_distance
    self.dropout_rate = dropout_rate
    self.block_size = block_size or None
    self.dtype = dtype
    shape_in = (embed_dim, num_heads, self.head_dim)
    in_init = nnx.with_partitioning(_fan_in_init(0, (1, 2)), ("embed", "heads", "kv"))
    out_init = nnx.with_partitioning(_fan_in_init((0, 1), 2), ("heads", "kv", "embed"))
    self.query = nnx.Param(in_init(rngs.params(), shape_in, param_dtype))
    self.key = nnx.Param(in_init(rngs.params(), shape_in, param_dtype))
    self.value = nnx.Param(in_init(rngs.params(), shape_in, param_dtype))
    self.out = nnx.Param(
      out_init(rngs.params(), (num_heads, self.head_dim, embed_dim), param_dtype)
    )
    if relative:
      rel_init = nnx.with_partitioning(
        nnx.initializers.normal(self.head_dim**-0.5), ("relpos", "heads", "kv")
      )
      self.rel_embedding = nnx.Param(
        rel_init(rngs.params(), (max_relative_distance, num_heads, self.head_dim), param_dtype)
      )
    else:
      self.rel_embedding = nnx.data(None)
    # The stream that seeds the dropout hash, one fresh seed per call.
    self.dropout_rngs = rngs["dropout"].fork()

  def init_cache(self, batch_size: int, max_length: int, dtype=None) -> dict:
    """An empty cache: k, v (B, H, max_length, Dh) zeros in `dtype` (default: compute
    dtype) and `index`, the int32 count of filled positions (the same for every row).

    The caller keeps `index + new tokens <= max_length`: under jit the index is traced, and
    `dynamic_update_slice` would clamp an overflowing write instead of raising.
    """
    dtype = self.dtype if dtype is None else dtype
    shape = (batch_size, self.num_heads, max_length, self.head_dim)
    return {
      "k": jnp.zeros(shape, dtype),
      "v": jnp.zeros(shape, dtype),
      "index": jnp.zeros((), jnp.int32),
    }

  def _project(self, x: jax.Array, kernel: nnx.Param) -> jax.Array:
    """(B, L, D) -> (B, H, L, Dh) in the compute dtype.

    One 2-D matmul, (B L, D) x (D, H Dh), with the kernel in its own (D, H, Dh) order and
    the activation transposed after: asked for (B, H, L, Dh) directly, XLA's CPU backend
    copies each kernel into a transposed layout inside the decoding loop, every step, and
    with (B, L, D) operands it computes the kernel's gradient through transposed copies of
    the activations (docs/benchmarks.md, "Sampling" and "Model training step")."""
    batch, length, embed = x.shape
    kernel = kernel[...].astype(self.dtype)
    y = x.reshape(batch * length, embed) @ kernel.reshape(embed, -1)
    return jnp.swapaxes(y.reshape(batch, length, *kernel.shape[1:]), 1, 2)

  def _rel_table(self) -> jax.Array:
    """(H, R, Dh) in the compute dtype."""
    return jnp.swapaxes(self.rel_embedding[...].astype(self.dtype), 0, 1)

  def __call__(
    self,
    x: jax.Array,
    *,
    segment_ids: jax.Array | None = None,
    deterministic: bool = True,
    cache: dict | None = None,
  ) -> tuple[jax.Array, dict | None]:
    x = x.astype(self.dtype)
    q = self._project(x, self.query)  # (B, H, L, Dh)
    k = self._project(x, self.key)
    v = self._project(x, self.value)
    dropout = None
    if self.dropout_rate > 0.0 and not deterministic:
      dropout = (self.dropout_rate, jax.random.bits(self.dropout_rngs(), (), jnp.uint32))
    q_start = None
    if cache is not None:
      if segment_ids is not None:
        raise ValueError(
          "segment_ids with a cache: cached decoding handles one sequence per "
          "row; pass segment_ids=None"
        )
      q_start = cache["index"]
      cache = write_cache(cache, k, v)
      k, v = cache["k"].astype(self.dtype), cache["v"].astype(self.dtype)
    out = attend(
      q,
      k,
      v,
      rel=self._rel_table() if self.relative else None,
      segment_ids=segment_ids,
      dropout=dropout,
      block_size=self.block_size,
      q_start=q_start,
    )
    return self._output(out), cache

  def _output(self, out: jax.Array) -> jax.Array:
    """(B, H, L, Dh) -> (B, L, D) through the output kernel, in the compute dtype: the
    small activation is transposed, never the (H, Dh, D) kernel, and the matmul is 2-D
    (see `_project`)."""
    batch, heads, length, head_dim = out.shape
    out = jnp.swapaxes(out.astype(self.dtype), 1, 2).reshape(batch * length, heads * head_dim)
    kernel = self.out[...].astype(self.dtype).reshape(heads * head_dim, -1)
    return (out @ kernel).reshape(batch, length, -1)

  def probabilities(self, x: jax.Array, *, segment_ids: jax.Array | None = None) -> jax.Array:
    """The post-softmax attention of a whole sequence: (B, L, D) -> (B, H, L, L) float32.

    softmax_j((q_i . k_j + q_i . rel[min(i - j, R - 1)]) / sqrt(Dh)) over the keys j the
    causal and segment mask leave to query i (the relative term only with `relative`):
    the logits every attention path softmaxes, built whole, without cache or dropout. For
    analysis only (`Decoder.attention_maps`): it stores B H L^2 floats, which the training
    and sampling paths never do.
    """
    x = x.astype(self.dtype)
    q = self._project(x, self.query)  # (B, H, L, Dh)
    k = self._project(x, self.key)
    positions = jnp.arange(x.shape[1])
    mask = attention_mask(positions, positions, segment_ids, segment_ids)
    rel_logits = relative_logits_skewed(q, self._rel_table()) if self.relative else None
    return jax.nn.softmax(attention_logits(q, k, mask, rel_logits), axis=-1)
