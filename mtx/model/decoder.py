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
no biases (`attention.py`). With these choices the MMT-size config has exactly
the parameter count of the MMT reference model (`params.py`).

Dropout: `dropout_rate` on the summed embeddings (MMT's emb_dropout) and on
each residual branch (Vaswani et al.); `attention_dropout_rate` (default
`dropout_rate`) on the attention probabilities. x-transformers instead drops
inside the feed-forward, after the GELU (ff_dropout); no parameter depends on
where dropout sits. Every mask comes from a counter hash of the entry's
coordinates and a fresh per-call seed from the module's `dropout` rng stream
(`attention.hash_dropout`): threefry cost a third of a CPU training step.

Attention memory: `attention_block_size` (default DEFAULT_ATTENTION_BLOCK_SIZE):
causal attention by T x T tiles, FlashAttention's forward and backward, so no
(B, H, L, L) tensor is built (`attention.chunked_attention`); 0 computes the whole
L x L at once.
On CPU, call `mtx.cpu_compiler.configure_cpu_compiler()` first thing in the program.

Params are float32; `config.dtype` ('float32' or 'bfloat16') is the compute
dtype: activations and matmuls run in it, LayerNorm statistics, softmax and the
heads in float32. Every parameter carries logical axis names through
`nnx.with_partitioning`; a rule table elsewhere maps them onto a mesh. Flax
shards annotated parameters as it creates them, which needs a mesh and rules
in context; outside a mesh, build under `nnx.use_eager_sharding(False)`.

The configuration (an `ml_collections.ConfigDict` or any object with these
attributes; see configs/model_*.py): num_layers, embed_dim, num_heads,
mlp_ratio, dropout_rate, [attention_dropout_rate], relative,
max_relative_distance, position_embedding ('sinusoidal' | 'learned' | 'none'),
max_seq_len, dtype, [attention_block_size].
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from mtx.errors import ConfigError
from mtx.model.attention import MultiHeadAttention, hash_dropout
from mtx.model.embeddings import POSITION_EMBEDDINGS, FieldEmbeddings
from mtx.model.heads import FieldHeads

COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
# Queries per attention block when a config does not say (measured: docs/benchmarks.md).
DEFAULT_ATTENTION_BLOCK_SIZE = 256
# torch's nn.LayerNorm default, which the MMT reference uses.
LAYER_NORM_EPSILON = 1e-5


def compute_dtype(name: str):
  if name not in COMPUTE_DTYPES:
    raise ConfigError(f"model dtype must be one of {', '.join(COMPUTE_DTYPES)}; got {name!r}")
  return COMPUTE_DTYPES[name]


def mlp_dim(config: Any) -> int:
  """Width of the MLP: mlp_ratio * embed_dim, rounded (ratios like 1024/384 are inexact)."""
  return int(round(config.mlp_ratio * config.embed_dim))


def _layer_norm(embed_dim: int, dtype, rngs: nnx.Rngs) -> nnx.LayerNorm:
  return nnx.LayerNorm(
      embed_dim, epsilon=LAYER_NORM_EPSILON, dtype=dtype, param_dtype=jnp.float32,
      scale_init=nnx.with_partitioning(nnx.initializers.ones_init(), ("embed",)),
      bias_init=nnx.with_partitioning(nnx.initializers.zeros_init(), ("embed",)), rngs=rngs)


class MLP(nnx.Module):
  """Linear -> GELU -> Linear, kernels ('embed', 'mlp') and ('mlp', 'embed')."""

  def __init__(self, embed_dim: int, mlp_dim: int, *, dtype, rngs: nnx.Rngs):
    kernel_init = nnx.initializers.lecun_normal()
    zeros = nnx.initializers.zeros_init()
    self.up = nnx.Linear(
        embed_dim, mlp_dim, dtype=dtype, param_dtype=jnp.float32,
        kernel_init=nnx.with_partitioning(kernel_init, ("embed", "mlp")),
        bias_init=nnx.with_partitioning(zeros, ("mlp",)), rngs=rngs)
    self.down = nnx.Linear(
        mlp_dim, embed_dim, dtype=dtype, param_dtype=jnp.float32,
        kernel_init=nnx.with_partitioning(kernel_init, ("mlp", "embed")),
        bias_init=nnx.with_partitioning(zeros, ("embed",)), rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    """(..., D) -> (..., D), the matmuls on the rows flattened to 2-D: with (B, L, D)
    operands XLA's CPU backend computed the kernels' gradients by contracting two axes,
    through transposed copies of the activations (one MLP's forward and backward: 559 ms
    3-D against 311 ms 2-D at 8 x 512; docs/benchmarks.md, "Model training step")."""
    rows = x.reshape(-1, x.shape[-1])
    return self.down(jax.nn.gelu(self.up(rows), approximate=False)).reshape(x.shape)


def dropout(module: nnx.Dropout, x: jax.Array, deterministic: bool) -> jax.Array:
  """`module`'s rate and rng stream (one fresh uint32 seed per call), the mask from
  `hash_dropout`: far cheaper than threefry on a CPU, and recomputed in the backward pass
  rather than stored (measured: docs/benchmarks.md, "Model training step")."""
  if deterministic or module.rate == 0.0:
    return x
  return hash_dropout(x, module.rate, jax.random.bits(module.rngs(), (), jnp.uint32))


class DecoderBlock(nnx.Module):
  """Pre-LayerNorm block: x + Drop(Attn(LN(x))); x + Drop(MLP(LN(x)))."""

  def __init__(self, *, embed_dim: int, num_heads: int, mlp_dim: int, dropout_rate: float,
               attention_dropout_rate: float, relative: bool, max_relative_distance: int,
               dtype, rngs: nnx.Rngs, attention_block_size: int | None = None):
    self.attention_norm = _layer_norm(embed_dim, dtype, rngs)
    self.attention = MultiHeadAttention(
        embed_dim=embed_dim, num_heads=num_heads, relative=relative,
        max_relative_distance=max_relative_distance, dropout_rate=attention_dropout_rate,
        block_size=attention_block_size, dtype=dtype, param_dtype=jnp.float32, rngs=rngs)
    self.mlp_norm = _layer_norm(embed_dim, dtype, rngs)
    self.mlp = MLP(embed_dim, mlp_dim, dtype=dtype, rngs=rngs)
    self.dropout = nnx.Dropout(dropout_rate, rngs=rngs)

  def __call__(self, x, *, segment_ids=None, deterministic=True, cache=None):
    h, cache = self.attention(self.attention_norm(x), segment_ids=segment_ids,
                              deterministic=deterministic, cache=cache)
    x = x + dropout(self.dropout, h, deterministic)
    x = x + dropout(self.dropout, self.mlp(self.mlp_norm(x)), deterministic)
    return x, cache


def attention_block_size(config: Any) -> int | None:
  """Queries per attention block (`chunked_attention`), None for the full L x L path.

  Read with a default, so configs written before the key existed get the measured best
  (docs/benchmarks.md, "Model training step"); 0 or None in a config asks for the full path.
  """
  size = getattr(config, "attention_block_size", DEFAULT_ATTENTION_BLOCK_SIZE)
  return int(size) if size else None


def check_config(config: Any) -> None:
  """Raise ConfigError naming the first bad hyper-parameter."""
  for name in ("num_layers", "embed_dim", "num_heads"):
    if int(getattr(config, name)) <= 0:
      raise ConfigError(f"model.{name} must be positive; got {getattr(config, name)}")
  if config.embed_dim % config.num_heads:
    raise ConfigError(f"model.embed_dim ({config.embed_dim}) must be a multiple of "
                      f"model.num_heads ({config.num_heads})")
  if config.mlp_ratio <= 0 or mlp_dim(config) <= 0:
    raise ConfigError(f"model.mlp_ratio must be positive; got {config.mlp_ratio}")
  if config.position_embedding not in POSITION_EMBEDDINGS:
    raise ConfigError(f"model.position_embedding must be one of {POSITION_EMBEDDINGS}; "
                      f"got {config.position_embedding!r}")
  if config.position_embedding == "learned" and config.max_seq_len <= 0:
    raise ConfigError("model.max_seq_len must be positive for learned positions")
  if config.relative and config.max_relative_distance <= 0:
    raise ConfigError("model.max_relative_distance must be positive for relative attention")
  if not 0.0 <= config.dropout_rate < 1.0:
    raise ConfigError(f"model.dropout_rate must be in [0, 1); got {config.dropout_rate}")
  size = getattr(config, "attention_block_size", None)
  if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
    raise ConfigError("model.attention_block_size must be a whole number >= 0 (0 or None: "
                      f"the full attention); got {size!r}")
  compute_dtype(config.dtype)


class Decoder(nnx.Module):
  """Multi-field causal decoder. `field_sizes`: the codec's `fields.sizes`."""

  def __init__(self, config: Any, field_sizes: Sequence[int], *, rngs: nnx.Rngs):
    check_config(config)
    dtype = compute_dtype(config.dtype)
    embed_dim = int(config.embed_dim)
    attention_dropout = getattr(config, "attention_dropout_rate", None)
    if attention_dropout is None:
      attention_dropout = config.dropout_rate
    self.field_sizes = tuple(int(s) for s in field_sizes)
    self.dtype = dtype
    self.embeddings = FieldEmbeddings(
        self.field_sizes, embed_dim, position_embedding=config.position_embedding,
        max_seq_len=int(config.max_seq_len), dtype=dtype, rngs=rngs)
    self.embedding_dropout = nnx.Dropout(config.dropout_rate, rngs=rngs)
    self.blocks = nnx.List([
        DecoderBlock(embed_dim=embed_dim, num_heads=int(config.num_heads),
                     mlp_dim=mlp_dim(config),
                     dropout_rate=config.dropout_rate,
                     attention_dropout_rate=attention_dropout,
                     relative=bool(config.relative),
                     max_relative_distance=int(config.max_relative_distance),
                     attention_block_size=attention_block_size(config),
                     dtype=dtype, rngs=rngs)
        for _ in range(int(config.num_layers))])
    self.final_norm = _layer_norm(embed_dim, dtype, rngs)
    self.heads = FieldHeads(embed_dim, self.field_sizes, rngs=rngs)

  def init_cache(self, batch_size: int, max_length: int) -> tuple:
    """One empty attention cache per block, in the compute dtype."""
    return tuple(block.attention.init_cache(batch_size, max_length, self.dtype)
                 for block in self.blocks)

  def __call__(self, tokens: jax.Array, *, positions: jax.Array | None = None,
               segment_ids: jax.Array | None = None, deterministic: bool = True,
               cache: tuple | None = None) -> tuple[tuple[jax.Array, ...], tuple | None]:
    """tokens (B, L, F) int -> (one float32 (B, L, size_f) per field, cache).

    positions (B, L): absolute positions for the position embedding (packing
    restarts them per segment); default 0..L-1, or, with a cache, the cache's
    filled count onwards. segment_ids (B, L): packed segments (no cache).
    """
    if positions is None and cache is not None:
      start = cache[0]["index"]
      positions = jnp.broadcast_to(start + jnp.arange(tokens.shape[1]), tokens.shape[:2])
    x = self.embeddings(tokens, positions)  # (B, L, D)
    x = dropout(self.embedding_dropout, x, deterministic)
    new_cache = []
    for i, block in enumerate(self.blocks):
      x, layer_cache = block(x, segment_ids=segment_ids, deterministic=deterministic,
                             cache=None if cache is None else cache[i])
      new_cache.append(layer_cache)
    x = self.final_norm(x)
    return self.heads(x), (None if cache is None else tuple(new_cache))

  def attention_maps(self, tokens: jax.Array, *, positions: jax.Array | None = None,
                     segment_ids: jax.Array | None = None) -> tuple[jax.Array, ...]:
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
      maps.append(block.attention.probabilities(block.attention_norm(x),
                                                segment_ids=segment_ids))
      if i + 1 < len(self.blocks):
        x, _ = block(x, segment_ids=segment_ids, deterministic=True)
    return tuple(maps)
