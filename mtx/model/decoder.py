"""The multi-field decoder: embeddings, pre-LayerNorm blocks, one head per field.

    with nnx.use_eager_sharding(False):   # or: jax.set_mesh(mesh), nnx.logical_axis_rules(rules)
      model = Decoder(config, codec.fields.sizes, rngs=nnx.Rngs(params=0, dropout=1))
    logits, _ = model(batch["inputs"], positions=batch["positions"],
                      segment_ids=batch["segment_ids"], deterministic=False)
    cache = model.init_cache(batch_size, max_length)   # decoding: prefill, then step
    logits, cache = model(primer, cache=cache)
    logits, cache = model(next_row, cache=cache)

The block is the pre-LayerNorm one of x-transformers (the MMT reference) and of
tensor2tensor's Transformer (Music Transformer's): x + Drop(Attn(LN(x))), then
x + Drop(MLP(LN(x))), a final LayerNorm, then the heads. MLP: Linear (bias) ->
GELU (exact, as torch's nn.GELU) -> Linear (bias). Attention projections have
no biases (`attention/`). With these choices the MMT-size config has exactly
the parameter count of the MMT reference model (`params.py`).

Dropout: `dropout_rate` on the summed embeddings (MMT's emb_dropout) and on
each residual branch (Vaswani et al.); `attention_dropout_rate` (default
`dropout_rate`) on the attention probabilities. x-transformers instead drops
inside the feed-forward, after the GELU (ff_dropout); no parameter depends on
where dropout sits. Every mask comes from a counter hash of the entry's
coordinates and a fresh per-call seed from the module's `dropout` rng stream
(`attention.hash_dropout`), far cheaper than threefry on a CPU.

Attention memory: `attention_block_size` (default DEFAULT_ATTENTION_BLOCK_SIZE):
causal attention by blocks of that many queries, so no (B, H, L, L) tensor is
built (`attention/dispatch.py` says which path runs); 0 computes the whole
L x L at once.
On CPU, call `mtx.cpu_compiler.configure_cpu_compiler()` first thing in the program.

Params are float32; `config.dtype` ('float32' or 'bfloat16') is the compute
dtype: activations and matmuls run in it, LayerNorm statistics, softmax and the
heads in float32. Every parameter carries logical axis names through
`nnx.with_partitioning`; a rule table elsewhere maps them onto a mesh. Flax
shards annotated parameters as it creates them, which needs a mesh and rules
in context; outside a mesh, build under `nnx.use_eager_sharding(False)`.

The configuration: a `config.ModelConfig`, or the `config.model` section it is
built from (configs/model_*.py): num_layers, embed_dim, num_heads, mlp_ratio,
dropout_rate, [attention_dropout_rate], relative, max_relative_distance,
position_embedding ('sinusoidal' | 'learned' | 'none'), max_seq_len, dtype,
[attention_block_size].
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from mtx.model.attention import MultiHeadAttention, hash_dropout
from mtx.model.config import ModelConfig
from mtx.model.embeddings import FieldEmbeddings
from mtx.model.heads import FieldHeads

# torch's nn.LayerNorm default, which the MMT reference uses.
LAYER_NORM_EPSILON = 1e-5


def _layer_norm(embed_dim: int, dtype, rngs: nnx.Rngs) -> nnx.LayerNorm:
  return nnx.LayerNorm(
    embed_dim,
    epsilon=LAYER_NORM_EPSILON,
    dtype=dtype,
    param_dtype=jnp.float32,
    scale_init=nnx.with_partitioning(nnx.initializers.ones_init(), ("embed",)),
    bias_init=nnx.with_partitioning(nnx.initializers.zeros_init(), ("embed",)),
    rngs=rngs,
  )


class MLP(nnx.Module):
  """Linear -> GELU -> Linear, kernels ('embed', 'mlp') and ('mlp', 'embed')."""

  def __init__(self, embed_dim: int, mlp_dim: int, *, dtype, rngs: nnx.Rngs):
    kernel_init = nnx.initializers.lecun_normal()
    zeros = nnx.initializers.zeros_init()
    self.up = nnx.Linear(
      embed_dim,
      mlp_dim,
      dtype=dtype,
      param_dtype=jnp.float32,
      kernel_init=nnx.with_partitioning(kernel_init, ("embed", "mlp")),
      bias_init=nnx.with_partitioning(zeros, ("mlp",)),
      rngs=rngs,
    )
    self.down = nnx.Linear(
      mlp_dim,
      embed_dim,
      dtype=dtype,
      param_dtype=jnp.float32,
      kernel_init=nnx.with_partitioning(kernel_init, ("mlp", "embed")),
      bias_init=nnx.with_partitioning(zeros, ("embed",)),
      rngs=rngs,
    )

  def __call__(self, x: jax.Array) -> jax.Array:
    """(..., D) -> (..., D), the matmuls on the rows flattened to 2-D: with (B, L, D)
    operands XLA's CPU backend computes the kernels' gradients by contracting two axes,
    through transposed copies of the activations (docs/benchmarks.md, "Model training
    step")."""
    rows = x.reshape(-1, x.shape[-1])
    return self.down(jax.nn.gelu(self.up(rows), approximate=False)).reshape(x.shape)


def _dropout(x: jax.Array, rate: float, stream: nnx.RngStream, deterministic: bool) -> jax.Array:
  """`hash_dropout` of x with one fresh uint32 seed from `stream` per call."""
  if deterministic or rate == 0.0:
    return x
  return hash_dropout(x, rate, jax.random.bits(stream(), (), jnp.uint32))


class DecoderBlock(nnx.Module):
  """Pre-LayerNorm block: x + Drop(Attn(LN(x))); x + Drop(MLP(LN(x)))."""

  def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
    dtype = config.compute_dtype
    self.attention_norm = _layer_norm(config.embed_dim, dtype, rngs)
    self.attention = MultiHeadAttention(
      embed_dim=config.embed_dim,
      num_heads=config.num_heads,
      relative=config.relative,
      max_relative_distance=config.max_relative_distance,
      dropout_rate=config.attention_dropout_rate,
      block_size=config.attention_block_size,
      dtype=dtype,
      param_dtype=jnp.float32,
      rngs=rngs,
    )
    self.mlp_norm = _layer_norm(config.embed_dim, dtype, rngs)
    self.mlp = MLP(config.embed_dim, config.mlp_dim, dtype=dtype, rngs=rngs)
    self.dropout_rate = config.dropout_rate
    self.dropout_rngs = rngs["dropout"].fork()

  def __call__(self, x, *, segment_ids=None, deterministic=True, cache=None):
    h, cache = self.attention(
      self.attention_norm(x), segment_ids=segment_ids, deterministic=deterministic, cache=cache
    )
    x = x + _dropout(h, self.dropout_rate, self.dropout_rngs, deterministic)
    x = x + _dropout(
      self.mlp(self.mlp_norm(x)), self.dropout_rate, self.dropout_rngs, deterministic
    )
    return x, cache


class Decoder(nnx.Module):
  """Multi-field causal decoder. `field_sizes`: the codec's `fields.sizes`."""

  def __init__(self, config: Any, field_sizes: Sequence[int], *, rngs: nnx.Rngs):
    """config: a `ModelConfig`, or `config.model` to build one from (checked)."""
    config = ModelConfig.from_config(config)
    dtype = config.compute_dtype
    self.field_sizes = tuple(int(s) for s in field_sizes)
    self.dtype = dtype
    self.embeddings = FieldEmbeddings(
      self.field_sizes,
      config.embed_dim,
      position_embedding=config.position_embedding,
      max_seq_len=config.max_seq_len,
      dtype=dtype,
      rngs=rngs,
    )
    self.embedding_dropout_rate = config.dropout_rate
    self.embedding_dropout_rngs = rngs["dropout"].fork()
    self.blocks = nnx.List([DecoderBlock(config, rngs=rngs) for _ in range(config.num_layers)])
    self.final_norm = _layer_norm(config.embed_dim, dtype, rngs)
    self.heads = FieldHeads(config.embed_dim, self.field_sizes, rngs=rngs)

  def init_cache(self, batch_size: int, max_length: int) -> tuple:
    """One empty attention cache per block, in the compute dtype."""
    return tuple(
      block.attention.init_cache(batch_size, max_length, self.dtype) for block in self.blocks
    )

  def __call__(
    self,
    tokens: jax.Array,
    *,
    positions: jax.Array | None = None,
    segment_ids: jax.Array | None = None,
    deterministic: bool = True,
    cache: tuple | None = None,
  ) -> tuple[tuple[jax.Array, ...], tuple | None]:
    """tokens (B, L, F) int -> (one float32 (B, L, size_f) per field, cache).

    positions (B, L): absolute positions for the position embedding (packing
    restarts them per segment); default 0..L-1, or, with a cache, the cache's
    filled count onwards. segment_ids (B, L): packed segments (no cache).
    """
    if positions is None and cache is not None:
      start = cache[0]["index"]
      positions = jnp.broadcast_to(start + jnp.arange(tokens.shape[1]), tokens.shape[:2])
    x = self.embeddings(tokens, positions)  # (B, L, D)
    x = _dropout(x, self.embedding_dropout_rate, self.embedding_dropout_rngs, deterministic)
    new_cache = []
    for i, block in enumerate(self.blocks):
      x, layer_cache = block(
        x,
        segment_ids=segment_ids,
        deterministic=deterministic,
        cache=None if cache is None else cache[i],
      )
      new_cache.append(layer_cache)
    x = self.final_norm(x)
    return self.heads(x), (None if cache is None else tuple(new_cache))

  def attention_maps(
    self,
    tokens: jax.Array,
    *,
    positions: jax.Array | None = None,
    segment_ids: jax.Array | None = None,
  ) -> tuple[jax.Array, ...]:
    """Each block's post-softmax attention over tokens (B, L, F): one float32
    (B, H, L, L) per layer, first layer first.

    Walks the embeddings and blocks as the deterministic `__call__` does, taking
    `attention.probabilities` of each block's normalized input before running the block,
    so the maps are the ones the forward pass weights its values with (whatever
    `attention_block_size`: the blocked path computes the same softmax by tiles).
    positions, segment_ids: as for `__call__`. Memory: B H L^2 floats per layer; call it
    for analysis (`mtx.evaluate.attention_analysis`), never in training or sampling.
    """
    x = self.embeddings(tokens, positions)  # (B, L, D)
    maps = []
    for i, block in enumerate(self.blocks):
      maps.append(block.attention.probabilities(block.attention_norm(x), segment_ids=segment_ids))
      if i + 1 < len(self.blocks):
        x, _ = block(x, segment_ids=segment_ids, deterministic=True)
    return tuple(maps)
