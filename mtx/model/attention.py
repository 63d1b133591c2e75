"""Causal multi-head attention with relative positions (Shaw et al. 2018) and a KV cache.

The relative term follows Music Transformer (Huang et al. 2019): one learned embedding per
head for each distance `d = query_pos - key_pos`, added to the content logits before the
softmax, and computed with the *skewing* trick so that its memory is O(L * Dh) for the
gathered embeddings plus the O(L^2) logits, never the O(L^2 * Dh) tensor of Shaw et al.

Conventions (shared by every function here):
- The attention is causal, so only distances `d >= 0` are ever used. Distances past
  `R - 1` (R = `max_relative_distance`) are clipped to `R - 1` (Shaw et al.'s clipping): every
  key further than R - 1 tokens away shares the last embedding. Entries above the diagonal
  (`d < 0`) are 0 in the relative logits; the causal mask removes them afterwards.
- Content and relative logits are summed and then scaled by `1 / sqrt(Dh)`, as in Shaw et
  al. and Music Transformer; with the relative table zeroed the layer is plain scaled
  dot-product attention, the same one the `relative=False` path computes.
- Projections have no biases (as in x-transformers, the MMT reference), so an attention layer
  holds `4 * D * H * Dh` parameters, plus `R * H * Dh` for the relative table.
- Packing: tokens attend only to earlier tokens of the same segment (`segment_ids`, 0 =
  padding; padding tokens attend to earlier padding, never to real tokens and never the other
  way, so no softmax row is empty). Relative distances inside a segment are token-index
  differences, which are right because a segment is contiguous.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

# Query blocks per `lax.map` in `_checkpointed_blocks` (see there why 2).
_BLOCKS_PER_LOOP = 2
# A finite "minus infinity": exp underflows to 0 in float32 and no NaN appears.
_MASK_VALUE = -1e30


# ----------------------------------------------------------------------------------------
# Pure functions: the relative term.


def _per_head(rel: jax.Array) -> jax.Array:
  """(R, Dh) shared table -> (1, R, Dh); (H, R, Dh) as is."""
  return rel[None] if rel.ndim == 2 else rel


def relative_logits_naive(q: jax.Array, rel: jax.Array) -> jax.Array:
  """The O(L^2 * Dh) reference: S[b, h, i, j] = q[b, h, i] . rel[h, min(i - j, R - 1)].

  q: (B, H, L, Dh); rel: (H, R, Dh), or (R, Dh) shared by the heads.
  Returns (B, H, L, L) logits in q's dtype, 0 above the diagonal (j > i).
  Builds the full (H, L, L, Dh) table of Shaw et al.: only for tests and benchmarks.
  """
  length = q.shape[-2]
  rel = _per_head(rel)
  num_rel = rel.shape[-2]
  pos = jnp.arange(length)
  dist = pos[:, None] - pos[None, :]  # (L, L)
  table = rel[:, jnp.clip(dist, 0, num_rel - 1), :]  # (H or 1, L, L, Dh)
  logits = jnp.einsum("bhid,hijd->bhij", q, table)
  return jnp.where(dist >= 0, logits, jnp.zeros((), logits.dtype))


def _skew(qe: jax.Array) -> jax.Array:
  """(..., L, L) with column m = distance L-1-m  ->  (..., L, L) with column j = key j.

  Huang et al. 2019, section 3.4.1: pad one zero column on the left, view the (L, L + 1)
  matrix as (L + 1, L), drop the first row. Row i then holds qe[i, L-1-i+j] at column j for
  j <= i, i.e. distance i - j; the entries above the diagonal are leftovers (zeroed by the
  caller).
  """
  *batch, length, _ = qe.shape
  padded = jnp.pad(qe, [(0, 0)] * len(batch) + [(0, 0), (1, 0)])  # (..., L, L+1)
  return padded.reshape(*batch, length + 1, length)[..., 1:, :]  # (..., L, L)


def relative_logits_skewed(q: jax.Array, rel: jax.Array) -> jax.Array:
  """Same values as `relative_logits_naive`, in O(L * Dh + L^2) memory.

  q: (B, H, L, Dh); rel: (H, R, Dh) or (R, Dh). Returns (B, H, L, L), 0 above the diagonal.
  E_r holds the embeddings for relative positions -(L-1)..0, i.e. distances L-1..0, clipped
  to R - 1 (so any L works, shorter or longer than R): gathering it costs L * Dh per head.
  """
  length = q.shape[-2]
  rel = _per_head(rel)
  num_rel = rel.shape[-2]
  dist = jnp.minimum(jnp.arange(length - 1, -1, -1), num_rel - 1)  # (L,): L-1..0
  e_r = rel[:, dist, :]  # (H or 1, L, Dh)
  qe = jnp.einsum("bhid,hmd->bhim", q, e_r)  # (B, H, L, L)
  logits = _skew(qe)
  causal = jnp.tril(jnp.ones((length, length), dtype=bool))
  return jnp.where(causal, logits, jnp.zeros((), logits.dtype))


def relative_logits_at(
  q: jax.Array, rel: jax.Array, q_positions: jax.Array, k_positions: jax.Array
) -> jax.Array:
  """Relative logits for queries and keys at arbitrary positions (the cached path).

  q: (B, H, Lq, Dh); rel: (H, R, Dh) or (R, Dh); q_positions: (Lq,), k_positions: (Lk,)
  int. Returns (B, H, Lq, Lk): q[t] . rel[clip(q_positions[t] - k_positions[j], 0, R-1)],
  0 where the key is after the query. Memory O(Lq * R + Lq * Lk): the queries meet every
  embedding once, then a gather picks each pair's distance (no Lq * Lk * Dh tensor).
  """
  rel = _per_head(rel)
  num_rel = rel.shape[-2]
  qr = jnp.einsum("bhtd,hrd->bhtr", q, rel)  # (B, H, Lq, R)
  dist = q_positions[:, None] - k_positions[None, :]  # (Lq, Lk)
  index = jnp.broadcast_to(
    jnp.clip(dist, 0, num_rel - 1), qr.shape[:2] + dist.shape
  )
  logits = jnp.take_along_axis(qr, index, axis=-1)  # (B, H, Lq, Lk)
  return jnp.where(dist >= 0, logits, jnp.zeros((), logits.dtype))


def relative_logits_block(
  q: jax.Array, rel: jax.Array, start: jax.Array | int, num_keys: int
) -> jax.Array:
  """The relative logits of a block of queries against keys 0..num_keys-1, skewed.

  q: (B, H, T, Dh) queries at positions start..start+T-1 (`start` may be traced);
  rel: (H, R, Dh) or (R, Dh). Returns (B, H, T, num_keys), the rows start..start+T-1 of
  `relative_logits_skewed` over num_keys keys (0 where the key is after the query), in
  O(T * (T + num_keys)) memory: the block meets the T + num_keys embeddings of distances
  start+T-1 down to start-num_keys once, and a rectangular skew puts each pair's distance
  in place. Skew: row t of qe (T, W) must move left by T-1-t; reading the flattened rows
  from offset T-1 with a row width of W-1 does exactly that.
  """
  length = q.shape[-2]
  rel = _per_head(rel)
  num_rel = rel.shape[-2]
  width = length + num_keys
  dist = start + length - 1 - jnp.arange(width)  # distance of column m of qe
  e_r = rel[:, jnp.clip(dist, 0, num_rel - 1), :]  # (H or 1, W, Dh)
  qe = jnp.einsum("bhtd,hmd->bhtm", q, e_r)  # (B, H, T, W)
  *batch, _, _ = qe.shape
  flat = qe.reshape(*batch, length * width)[..., length - 1 : length * width - 1]
  logits = flat.reshape(*batch, length, width - 1)[..., :num_keys]
  causal = jnp.arange(num_keys)[None, :] <= start + jnp.arange(length)[:, None]
  return jnp.where(causal, logits, jnp.zeros((), logits.dtype))


def attention_mask(
  q_positions: jax.Array,
  k_positions: jax.Array,
  q_segments: jax.Array | None = None,
  k_segments: jax.Array | None = None,
) -> jax.Array:
  """Boolean mask (B or 1, 1, Lq, Lk): key j visible to query t.

  Causal by position (k <= q); with segments, only within the same segment id.
  Positions are (Lq,) / (Lk,) int; segments (B, Lq) / (B, Lk) int.
  """
  mask = (k_positions[None, :] <= q_positions[:, None])[None, None]  # (1, 1, Lq, Lk)
  if q_segments is not None:
    same = q_segments[:, :, None] == k_segments[:, None, :]  # (B, Lq, Lk)
    mask = mask & same[:, None]
  return mask


def _fmix32(x: jax.Array) -> jax.Array:
  """MurmurHash3's 32-bit finalizer: a bijection of uint32 in which every input bit flips
  each output bit with probability about 1/2."""
  x = x ^ (x >> 16)
  x = x * jnp.uint32(0x85EBCA6B)
  x = x ^ (x >> 13)
  x = x * jnp.uint32(0xC2B2AE35)
  return x ^ (x >> 16)


def dropout_keep_mask(
  seed: jax.Array,
  shape: tuple[int, ...],
  q_positions: jax.Array,
  rate: float,
  row_stride: int | None = None,
  key_start: jax.Array | int = 0,
) -> jax.Array:
  """Which attention probabilities dropout keeps: bool `shape` = (B, H, Lq, Lk).

  Entry (b, h, i, j), i the query at `q_positions[i]`, j the key at index j (keys start at
  0), is kept with probability 1 - rate, decided by a hash of (seed, b, h, query
  position, key j): a pure function of the
  entry's coordinates, so a block of queries draws exactly the entries the full matrix
  draws for it, and the backward pass's recomputation redraws them for free. Why not
  `jax.random`: threefry costs about 12 ns an entry on this CPU against 2 for the hash,
  and attention dropout draws B H L^2 entries per layer (twice with recomputation).
  Two MurmurHash3 finalizer rounds (one per query row, one per entry); `seed` is a uint32
  scalar, fresh per call (from the layer's dropout rng stream). A query row's id is
  (b H + h) row_stride + position, so `row_stride` must exceed every position (default
  Lk: in causal self-attention no query is past the last key) and be the same wherever
  the same matrix is drawn, in full or by blocks with fewer keys. Ids are uint32: they
  wrap past 2^32 rows (B H L), where rows would start to share masks. `key_start` (may be
  traced): the keys are key_start..key_start+Lk-1, for a tile of keys further along.
  """
  batch, heads, _, num_keys = shape
  stride = num_keys if row_stride is None else row_stride
  row = (jnp.arange(batch * heads, dtype=jnp.uint32).reshape(batch, heads, 1, 1)
         * jnp.uint32(stride)) + q_positions.astype(jnp.uint32)[:, None]  # (B, H, Lq, 1)
  row = _fmix32(row ^ seed.astype(jnp.uint32))
  keys = jnp.asarray(key_start, jnp.uint32) + jnp.arange(num_keys, dtype=jnp.uint32)
  bits = _fmix32(row + keys * jnp.uint32(0x9E3779B9))
  threshold = min(int(round(rate * 2.0**32)), 2**32 - 1)
  return bits >= jnp.uint32(threshold)


def hash_dropout(x: jax.Array, rate: float, seed: jax.Array) -> jax.Array:
  """Dropout on activations x (B, L, ...) with `dropout_keep_mask`'s hash for the mask.

  Kept entries are scaled by 1 / (1 - rate), as `nnx.Dropout` does. The mask costs a few
  integer operations per entry instead of threefry's dozens, and being a function of the
  entry's coordinates it can be recomputed in the backward pass instead of stored.
  """
  if rate == 0.0:
    return x
  batch, length = x.shape[:2]
  width = int(np.prod(x.shape[2:], dtype=np.int64))
  kept = dropout_keep_mask(  # row ids b L + l: one per (batch, position)
    seed, (batch, 1, length, width), jnp.arange(length), rate, row_stride=length
  )
  kept = kept.reshape(x.shape)
  return jnp.where(kept, x / (1.0 - rate), jnp.zeros((), x.dtype))


def _dropout_probs(
  probs: jax.Array, dropout, q_positions: jax.Array, row_stride: int | None = None
) -> jax.Array:
  """Attention dropout on probs (B, H, Lq, Lk); `dropout` is None or (rate, uint32 seed)."""
  if dropout is None:
    return probs
  rate, seed = dropout
  kept = dropout_keep_mask(seed, probs.shape, q_positions, rate, row_stride)
  return jnp.where(kept, probs / (1.0 - rate), jnp.zeros((), probs.dtype))


def _attention_logits(
  q: jax.Array, k: jax.Array, mask: jax.Array, rel_logits: jax.Array | None
) -> jax.Array:
  """Scaled, masked float32 logits (B, H, Lq, Lk): (q . k + relative) / sqrt(Dh), and
  `_MASK_VALUE` where `mask` hides the key. Both softmax paths start here."""
  logits = jnp.einsum("bhtd,bhsd->bhts", q, k, preferred_element_type=jnp.float32)
  if rel_logits is not None:
    logits = logits + rel_logits.astype(jnp.float32)
  logits = logits * (q.shape[-1] ** -0.5)
  return jnp.where(mask, logits, _MASK_VALUE)


def _softmax_attend(
  q: jax.Array,
  k: jax.Array,
  v: jax.Array,
  mask: jax.Array,
  rel_logits: jax.Array | None,
  dropout=None,
  q_positions: jax.Array | None = None,
  row_stride: int | None = None,
) -> jax.Array:
  """Explicit attention: (B, H, Lq, Dh) x (B, H, Lk, Dh) -> (B, H, Lq, Dh).

  Logits and softmax in float32 whatever the compute dtype; probabilities are cast back to
  v's dtype for the value matmul. `dropout`: None, or (rate, seed) for `dropout_keep_mask`
  with the queries at `q_positions` (Lq,) and its `row_stride` (default Lk).
  """
  logits = _attention_logits(q, k, mask, rel_logits)
  probs = _dropout_probs(jax.nn.softmax(logits, axis=-1), dropout, q_positions, row_stride)
  return jnp.einsum("bhts,bhsd->bhtd", probs.astype(v.dtype), v)


def library_attention(
  q: jax.Array,
  k: jax.Array,
  v: jax.Array,
  *,
  mask: jax.Array | None = None,
  segment_ids: jax.Array | None = None,
) -> jax.Array:
  """Plain attention through `jax.nn.dot_product_attention`: (B, H, Lq, Dh) -> same.

  mask None: causal self-attention from position 0 (training, a primer's prefill), queries
  kept to their own segment when `segment_ids` (B, L) is given; the causal part goes as
  `is_causal`, which cuDNN's kernel uses to skip the masked half. Otherwise `mask`
  (`attention_mask`'s (B or 1, 1, Lq, Lk)) as given: cached decoding.
  Why the implementation is named: with `implementation=None`, jax (0.10) always takes
  XLA's path, never the fused kernel. So cuDNN is asked for where it can run and pays
  (whole sequences on a GPU backend, 16-bit inputs) and XLA elsewhere, and where cuDNN
  refuses the shapes (it checks them while tracing: head size, lengths) XLA's path runs
  instead.
  """
  causal = mask is None
  if causal and segment_ids is not None:
    mask = (segment_ids[:, :, None] == segment_ids[:, None, :])[:, None]  # (B, 1, L, L)
  implementations = ["xla"]
  if causal and jax.default_backend() == "gpu" and q.dtype in (jnp.bfloat16, jnp.float16):
    implementations.insert(0, "cudnn")  # a decoding step's few queries gain nothing from it
  # dot_product_attention takes (B, L, H, Dh).
  args = [jnp.swapaxes(x, 1, 2) for x in (q, k, v)]
  for implementation in implementations:
    try:
      out = jax.nn.dot_product_attention(*args, mask=mask, is_causal=causal,
                                         implementation=implementation)
      break
    except (NotImplementedError, ValueError, RuntimeError):
      if implementation == implementations[-1]:
        raise
  return jnp.swapaxes(out, 1, 2)


def chunked_attention(
  q: jax.Array,
  k: jax.Array,
  v: jax.Array,
  *,
  block_size: int,
  segment_ids: jax.Array | None = None,
  rel: jax.Array | None = None,
  dropout=None,
) -> jax.Array:
  """Causal self-attention by blocks: no (B, H, L, L) tensor is kept.

  q, k, v: (B, H, L, Dh); segment_ids (B, L) or None; rel (H, R, Dh) or None (the relative
  term); `dropout` None or (rate, uint32 seed). Same values as `_softmax_attend` over the
  full causal mask, the dropout pattern included (`dropout_keep_mask` is a pure function of
  each entry's coordinates), and the same gradients.

  With a relative term: `_checkpointed_blocks`. Without one, the sequence is cut into
  blocks of T = `block_size` (padded to whole blocks), and the work goes by causal T x T
  tiles, query block i against key blocks j <= i: the tiles
  above the diagonal are skipped, about (n + 1) / (2 n) of the L x L work for n blocks.
  The forward is FlashAttention's (Dao et al. 2022): an online softmax (running maximum
  and sum per query) over a query block's tiles. The gradient is FlashAttention's too,
  with a custom VJP: the forward keeps only q, k, v, the output O and each query's
  log-sum-exp (B, H, L); the backward recomputes a tile's probabilities from them with one
  matmul (P = exp(S - lse): no second softmax and no P V, which `jax.checkpoint` would
  recompute), redraws its dropout mask from the hash, and uses rowsum(dO * O) for the
  softmax's Jacobian (it equals rowsum(P * dP), dropout included). Both passes are one
  `lax.fori_loop` over the tiles, so one tile's (B, H, T, T) temporaries are live at a
  time whatever XLA's scheduler: attention memory is O(B H T^2), not O(B H L^2) per layer.
  Measured against the earlier `jax.checkpoint`-per-block version: docs/benchmarks.md,
  "Model training step".
  """
  if rel is not None:
    return _checkpointed_blocks(q, k, v, block_size=block_size, segment_ids=segment_ids,
                                rel=rel, dropout=dropout)
  rate, seed = (0.0, jnp.zeros((), jnp.uint32)) if dropout is None else dropout
  return _blocked_attention(q, k, v, segment_ids, seed, int(block_size), float(rate))


def _checkpointed_blocks(q, k, v, *, block_size, segment_ids, rel, dropout):
  """`chunked_attention` with a relative term: blocks of T queries, each a
  `jax.checkpoint`ed `_softmax_attend` over all the keys it may see, recomputed in the
  backward pass, with its relative logits from `relative_logits_block` (one skew per
  block, over T + keys embeddings). Through FlashAttention's tiles the relative term cost
  a skew per T x T tile, over 2 T embeddings (twice a tile's width), and the relative
  training step ran 7% slower (docs/benchmarks.md, "Model training step").
  Causality skips key blocks: the blocks go by pairs, one `lax.map` per pair over the keys
  [0, end of the pair) only. Pairs, not one loop per block: XLA unrolls a one-trip loop,
  and the unrolled blocks' recomputations were then scheduled side by side (measured:
  3.4x the memory).
  """
  batch, heads, length, head_dim = q.shape
  block = min(block_size, length)
  num_blocks = -(-length // block)
  pad = num_blocks * block - length
  # Padded queries sit past the end: they see keys like the last real query and are dropped.
  q = jnp.pad(q, [(0, 0), (0, 0), (0, pad), (0, 0)])
  q_segments = None if segment_ids is None else jnp.pad(segment_ids, [(0, 0), (0, pad)])

  def one_block(xs, keys):
    q_blk, seg_q, start = xs
    k_pre, v_pre, seg_k = keys
    q_positions = start + jnp.arange(block)
    seg_q = None if seg_k is None else seg_q
    mask = attention_mask(q_positions, jnp.arange(k_pre.shape[2]), seg_q, seg_k)
    rel_logits = relative_logits_block(q_blk, rel, start, k_pre.shape[2])
    return _softmax_attend(q_blk, k_pre, v_pre, mask, rel_logits, dropout, q_positions,
                           row_stride=length)

  outputs = []
  for first in range(0, num_blocks, _BLOCKS_PER_LOOP):
    count = min(_BLOCKS_PER_LOOP, num_blocks - first)
    q_start, q_end = first * block, (first + count) * block
    k_end = min(q_end, length)
    q_blocks = q[:, :, q_start:q_end].reshape(batch, heads, count, block, head_dim)
    q_blocks = jnp.moveaxis(q_blocks, 2, 0)  # (count, B, H, T, Dh)
    if q_segments is None:
      seg_blocks, seg_k = jnp.zeros((count, 1, block), jnp.int32), None
    else:
      seg_blocks = jnp.moveaxis(q_segments[:, q_start:q_end].reshape(batch, count, block), 1, 0)
      seg_k = segment_ids[:, :k_end]
    keys = (k[:, :, :k_end], v[:, :, :k_end], seg_k)
    body = jax.checkpoint(functools.partial(one_block, keys=keys))
    starts = q_start + block * jnp.arange(count)
    out = jax.lax.map(body, (q_blocks, seg_blocks, starts))
    outputs.append(jnp.moveaxis(out, 0, 2).reshape(batch, heads, count * block, head_dim))
  return jnp.concatenate(outputs, axis=2)[:, :, :length]


class _Tiles:
  """The causal T x T tiles of an L x L attention, in the order both loops visit them:
  query block i = 0, 1, ..., and for each its key blocks j = 0..i (the ones above the
  diagonal are skipped: about (n + 1) / (2 n) of the L x L work for n blocks). The
  sequence is padded to whole blocks; padded keys come after every real query, so the
  causal mask hides them, and padded queries are dropped."""

  def __init__(self, length: int, block: int):
    self.length = length
    self.block = min(block, length)
    num_blocks = -(-length // self.block)
    self.padded = num_blocks * self.block
    pairs = [(i, j) for i in range(num_blocks) for j in range(i + 1)]
    self.count = len(pairs)
    self.q_starts = jnp.asarray([i for i, _ in pairs], jnp.int32) * self.block
    self.k_starts = jnp.asarray([j for _, j in pairs], jnp.int32) * self.block

  def pad(self, x: jax.Array | None) -> jax.Array | None:
    """(B, H, L, ...) or segment ids (B, L): the sequence axis padded with zeros."""
    if x is None:
      return None
    axis = 1 if x.ndim == 2 else 2
    widths = [(0, 0)] * x.ndim
    widths[axis] = (0, self.padded - self.length)
    return jnp.pad(x, widths)

  def rows(self, x: jax.Array, start: jax.Array) -> jax.Array:
    """The block at `start` along the sequence axis (2; 1 for segment ids)."""
    return jax.lax.dynamic_slice_in_dim(x, start, self.block, axis=1 if x.ndim == 2 else 2)

  @staticmethod
  def put(total: jax.Array, part: jax.Array, start: jax.Array) -> jax.Array:
    """total[:, :, start:start + T] = part, in place in a loop."""
    return jax.lax.dynamic_update_slice_in_dim(total, part, start, 2)

  def add(self, total: jax.Array, part: jax.Array, start: jax.Array) -> jax.Array:
    """total[:, :, start:start + T] += part, in place in a loop."""
    return self.put(total, self.rows(total, start) + part, start)

  def logits(self, q_t, k_t, segments, q_start, k_start):
    """Masked scaled logits (B, H, T, T) of one tile and the queries' positions."""
    q_positions = q_start + jnp.arange(self.block)
    seg_q = seg_k = None
    if segments is not None:
      seg_q, seg_k = self.rows(segments, q_start), self.rows(segments, k_start)
    mask = attention_mask(q_positions, k_start + jnp.arange(self.block), seg_q, seg_k)
    return _attention_logits(q_t, k_t, mask, None), q_positions

  def kept(self, seed, shape, q_positions, rate, k_start):
    """The tile's entries of the dropout mask the full L x L attention draws."""
    return dropout_keep_mask(seed, shape, q_positions, rate, row_stride=self.length,
                             key_start=k_start)


def _blocked_forward(q, k, v, segment_ids, seed, block, rate):
  """Outputs (B, H, L, Dh) and log-sum-exp (B, H, L) float32, tile by tile in one
  `lax.fori_loop` with the online softmax (a running maximum and sum per query), so one
  tile's temporaries are live at a time whatever XLA's scheduler. Dropout scales single
  entries, so dropping from the unnormalized weights and dividing by the sum at the end
  equals dropping from the probabilities."""
  tiles = _Tiles(q.shape[2], block)
  q_p, k_p, v_p, segments = tiles.pad(q), tiles.pad(k), tiles.pad(v), tiles.pad(segment_ids)
  f32 = jnp.float32

  def tile(t, carry):
    acc, peak, total = carry
    q_start, k_start = tiles.q_starts[t], tiles.k_starts[t]
    logits, q_positions = tiles.logits(tiles.rows(q_p, q_start), tiles.rows(k_p, k_start),
                                       segments, q_start, k_start)
    peak_old, total_old = tiles.rows(peak, q_start), tiles.rows(total, q_start)
    peak_new = jnp.maximum(peak_old, jnp.max(logits, axis=-1))
    weights = jnp.exp(logits - peak_new[..., None])
    rescale = jnp.exp(peak_old - peak_new)  # 0 once a real key replaces the initial peak
    total_new = total_old * rescale + jnp.sum(weights, axis=-1)
    if rate:
      kept = tiles.kept(seed, weights.shape, q_positions, rate, k_start)
      weights = jnp.where(kept, weights * (1.0 / (1.0 - rate)), 0.0)
    part = jnp.einsum("bhts,bhsd->bhtd", weights.astype(v.dtype), tiles.rows(v_p, k_start),
                      preferred_element_type=f32)
    acc = tiles.put(acc, tiles.rows(acc, q_start) * rescale[..., None] + part, q_start)
    return acc, tiles.put(peak, peak_new, q_start), tiles.put(total, total_new, q_start)

  shape = q_p.shape
  # Every row meets its own key (the diagonal tile), so the initial peak is always
  # replaced by a real logit and its rows' stray weights are rescaled by exp(-1e30) = 0.
  carry = (jnp.zeros(shape, f32), jnp.full(shape[:3], _MASK_VALUE, f32),
           jnp.zeros(shape[:3], f32))
  acc, peak, total = jax.lax.fori_loop(0, tiles.count, tile, carry)
  length = q.shape[2]
  out = (acc / total[..., None])[:, :, :length].astype(v.dtype)
  return out, (peak + jnp.log(total))[:, :, :length]


@functools.partial(jax.custom_vjp, nondiff_argnums=(5, 6))
def _blocked_attention(q, k, v, segment_ids, seed, block, rate):
  return _blocked_forward(q, k, v, segment_ids, seed, block, rate)[0]


def _blocked_attention_fwd(q, k, v, segment_ids, seed, block, rate):
  out, lse = _blocked_forward(q, k, v, segment_ids, seed, block, rate)
  return out, (q, k, v, segment_ids, seed, out, lse)


def _blocked_attention_bwd(block, rate, residuals, d_out):
  """FlashAttention's backward, over the same tiles in one `lax.fori_loop`.

  Per tile (query block i, key block j): P = exp(S - lse); Pd = dropout(P);
  dV_j += Pd^T dO_i; dPd = dO_i V_j^T; dP = dropout(dPd);
  dS = P (dP - rowsum(dO_i * O_i)) / sqrt(Dh); dQ_i += dS K_j; dK_j += dS^T Q_i. Sums in
  float32; gradients returned in the inputs' dtypes.
  """
  q, k, v, segment_ids, seed, out, lse = residuals
  length = q.shape[2]
  tiles = _Tiles(length, block)
  f32 = jnp.float32
  scale = q.shape[-1] ** -0.5
  inv_keep = 1.0 / (1.0 - rate) if rate else 1.0
  # rowsum(P * dP) for every query, from the outputs: sum_j P_ij dP_ij = dO_i . O_i.
  # Padded queries have dO = 0, so every one of their terms below is 0 too.
  delta = jnp.sum(d_out.astype(f32) * out.astype(f32), axis=-1)  # (B, H, L)
  q_p, k_p, v_p, d_out_p = tiles.pad(q), tiles.pad(k), tiles.pad(v), tiles.pad(d_out)
  lse_p, delta_p = tiles.pad(lse[..., None])[..., 0], tiles.pad(delta[..., None])[..., 0]
  segments = tiles.pad(segment_ids)

  def tile(t, sums):
    d_q, d_k, d_v = sums
    q_start, k_start = tiles.q_starts[t], tiles.k_starts[t]
    q_t, d_out_t = tiles.rows(q_p, q_start), tiles.rows(d_out_p, q_start)
    k_t, v_t = tiles.rows(k_p, k_start), tiles.rows(v_p, k_start)
    logits, q_positions = tiles.logits(q_t, k_t, segments, q_start, k_start)
    probs = jnp.exp(logits - tiles.rows(lse_p, q_start)[..., None])
    d_dropped = jnp.einsum("bhtd,bhsd->bhts", d_out_t, v_t, preferred_element_type=f32)
    if rate:
      kept = tiles.kept(seed, probs.shape, q_positions, rate, k_start)
      dropped = jnp.where(kept, probs * inv_keep, 0.0)
      d_probs = jnp.where(kept, d_dropped * inv_keep, 0.0)
    else:
      dropped, d_probs = probs, d_dropped
    d_logits = probs * (d_probs - tiles.rows(delta_p, q_start)[..., None]) * scale
    d_logits = d_logits.astype(q.dtype)
    d_q_t = jnp.einsum("bhts,bhsd->bhtd", d_logits, k_t, preferred_element_type=f32)
    d_k_t = jnp.einsum("bhts,bhtd->bhsd", d_logits, q_t, preferred_element_type=f32)
    d_v_t = jnp.einsum("bhts,bhtd->bhsd", dropped.astype(v.dtype), d_out_t,
                       preferred_element_type=f32)
    return (tiles.add(d_q, d_q_t, q_start), tiles.add(d_k, d_k_t, k_start),
            tiles.add(d_v, d_v_t, k_start))

  zeros = jnp.zeros(q_p.shape, f32)
  d_q, d_k, d_v = jax.lax.fori_loop(0, tiles.count, tile, (zeros, zeros, zeros))
  return (d_q[:, :, :length].astype(q.dtype), d_k[:, :, :length].astype(k.dtype),
          d_v[:, :, :length].astype(v.dtype), None, None)


_blocked_attention.defvjp(_blocked_attention_fwd, _blocked_attention_bwd)


# ----------------------------------------------------------------------------------------
# The layer.


def _fan_in_init(in_axis, out_axis):
  """Truncated-normal with fan-in scaling for a kernel whose in/out span several axes."""
  return nnx.initializers.variance_scaling(
    1.0, "fan_in", "truncated_normal", in_axis=in_axis, out_axis=out_axis
  )


class MultiHeadAttention(nnx.Module):
  """Causal multi-head self-attention, relative (Music Transformer) or plain.

  Parameters (float32, each with logical axis names for the sharding rule table):
    query/key/value kernels (D, H, Dh): ('embed', 'heads', 'kv')
    out kernel (H, Dh, D): ('heads', 'kv', 'embed')
    relative table (R, H, Dh): ('relpos', 'heads', 'kv'), one per head, only if `relative`.
  `dtype` is the compute dtype (inputs and kernels are cast to it for the matmuls; logits
  and softmax stay float32). With `relative=False`, and no attention dropout in play,
  `jax.nn.dot_product_attention` runs (`library_attention`: cuDNN's fused kernel on a
  GPU in bfloat16 or float16); attention dropout (on the probabilities, as x-transformers
  does) needs the explicit path.
  With `block_size` (queries per block; None or 0: off), a sequence longer than a block
  runs `chunked_attention` instead, which never stores the (B, H, L, L) attention (the
  cached path stays whole: its queries are few). Same values either way, dropout masks
  included (`dropout_keep_mask`); on a GPU, block_size 0 leaves the fused kernel in play.

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
        f"embed_dim={embed_dim} is not a multiple of num_heads={num_heads}: pick sizes"
        " that divide"
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
        rel_init(
          rngs.params(), (max_relative_distance, num_heads, self.head_dim), param_dtype
        )
      )
    else:
      self.rel_embedding = nnx.data(None)
    self.dropout = nnx.Dropout(dropout_rate, rngs=rngs)

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
    copied each kernel into a transposed layout inside the decoding loop, every step (a
    third of a batch-1 step; docs/benchmarks.md, "Sampling"); with (B, L, D) operands, it
    computed the kernel's gradient through transposed copies of the activations (the 2-D
    form: +10% for the MMT-size training step; "Model training step")."""
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
    length = x.shape[1]
    dropout = None
    if self.dropout_rate > 0.0 and not deterministic:
      dropout = (self.dropout_rate, jax.random.bits(self.dropout.rngs(), (), jnp.uint32))

    if cache is None and self.block_size and length > self.block_size:
      out = chunked_attention(
        q,
        k,
        v,
        block_size=self.block_size,
        segment_ids=segment_ids,
        rel=self._rel_table() if self.relative else None,
        dropout=dropout,
      )
      return self._output(out), None
    if cache is None:
      positions = jnp.arange(length)
      q_segments = k_segments = segment_ids
      rel_logits = relative_logits_skewed(q, self._rel_table()) if self.relative else None
    else:
      if segment_ids is not None:
        raise ValueError(
          "segment_ids with a cache: cached decoding handles one sequence per row; pass"
          " segment_ids=None"
        )
      max_length = cache["k"].shape[2]
      if length > max_length:
        raise ValueError(
          f"{length} new tokens do not fit a cache of max_length={max_length}"
        )
      index = cache["index"]
      start = (0, 0, index, 0)
      k_all = jax.lax.dynamic_update_slice(cache["k"], k.astype(cache["k"].dtype), start)
      v_all = jax.lax.dynamic_update_slice(cache["v"], v.astype(cache["v"].dtype), start)
      cache = {"k": k_all, "v": v_all, "index": index + length}
      k, v = k_all.astype(self.dtype), v_all.astype(self.dtype)
      positions = index + jnp.arange(length)  # query positions
      q_segments = k_segments = None
      rel_logits = (
        relative_logits_at(q, self._rel_table(), positions, jnp.arange(max_length))
        if self.relative
        else None
      )
    k_positions = jnp.arange(k.shape[2])
    mask = attention_mask(positions, k_positions, q_segments, k_segments)

    if self.relative or dropout is not None:
      out = _softmax_attend(q, k, v, mask, rel_logits, dropout, positions)
    elif cache is None:
      out = library_attention(q, k, v, segment_ids=segment_ids)
    else:
      out = library_attention(q, k, v, mask=mask)
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
    the logits `__call__` softmaxes on its explicit path, built whole, without cache or
    dropout. For analysis only (`Decoder.attention_maps`): it stores B H L^2 floats, which
    the training and sampling paths never do.
    """
    x = x.astype(self.dtype)
    q = self._project(x, self.query)  # (B, H, L, Dh)
    k = self._project(x, self.key)
    positions = jnp.arange(x.shape[1])
    mask = attention_mask(positions, positions, segment_ids, segment_ids)
    rel_logits = relative_logits_skewed(q, self._rel_table()) if self.relative else None
    return jax.nn.softmax(_attention_logits(q, k, mask, rel_logits), axis=-1)
