"""The relative term of Music Transformer (Huang et al. 2019): its logits, by skewing.

One learned embedding per head for each distance `d = query_pos - key_pos` (Shaw et al.
2018), clipped to `R - 1`, meets the queries as logits added to the content logits. The
naive form builds Shaw et al.'s (H, L, L, Dh) table; skewing gets the same values from one
(L, L) product against L embeddings. The naive form stays here as the reference the tests
and `bench/model.py` compare with.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


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
  index = jnp.broadcast_to(jnp.clip(dist, 0, num_rel - 1), qr.shape[:2] + dist.shape)
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
