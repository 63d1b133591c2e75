"""Mean relative attention (Dong et al., ICASSP 2023, "Multitrack Music Transformer", 5.3).

The question: does a head attend to earlier events because of how they relate musically to
the query (one beat back, an octave below, the same instrument) more often than the events'
mere frequency explains? The analysis weighs every (query, key) pair of a teacher-forced
sequence by its attention and files it under how the two rows' values of one field differ.

Definition (mtx). Sequences of field values v (codes; `none_code`, 0, means "none"), and a
layer's attention a (H, L, L), post-softmax. The pairs are the causal ones, query s after
key t (s > t: the diagonal is excluded), both rows valid (not padding, same segment), with
v[s] != none and v[t] != none.
- Ordered field (beat, position, pitch: values on a line). Difference k = v[s] - v[t], query
  minus key: looking back 4 beats is k = +4.
    gamma_k = sum of a[h, s, t] over pairs with difference k / sum of a[h, s, t] over all pairs
    baseline_k = (number of pairs with difference k) / (number of pairs)
    gain_k = gamma_k - baseline_k;  ratio_k = gamma_k / baseline_k (NaN where baseline_k = 0)
  per layer and head, both sums taken over all the sequences added before dividing. Only
  the configured k range is returned, but pairs outside it count in both denominators, so
  returned entries are true fractions of all the weight (their sum is <= 1, and 1 when the
  range covers every difference). Averages: over heads (layers, K), over layers and heads
  (K,): means of the per-head gamma, gain and ratio against the same baseline.
- Categorical field (instrument; values without an order). Query category i, key category
  j: gamma[i, j] = sum of a over pairs with v[s] = i, v[t] = j / sum of a over pairs with
  v[s] = i (normalized per query category), baseline[i, j] the same with pair counts; gain
  and ratio likewise. Rows and columns are the field's codes other than `none_code`.
A head whose gain is 0 everywhere spreads its weight over earlier events exactly as their
pair counts do; a peak of gain at k says the head looks k steps back more than chance.

Deviations from MMT's script (salu133445/mmt, `mmt/visualize_attention.py`):
- Sign: MMT's histogram axis is key minus query (v[k_] - v[k]); mtx's k is query minus key,
  so MMT's "-4 beats" is mtx's k = +4.
- Pairs: MMT sums over every pair, query k in 1..n-2 and key k_ in 0..n-3, key-after-query
  and the diagonal included. Its gamma so keeps each query's weight on itself (at
  difference 0), and its baseline counts the key-after-query pairs that causal attention
  never weights, which mixes the future into its gain at every k. mtx keeps causal pairs
  s > t in both. MMT's loops also skip query 0 and the last key row; mtx keeps every
  valid row.
- Sequences: MMT reads the attention off `generate` (a test sequence's first seq_len - 1
  rows as primer, one row sampled), 100 sequences one at a time; mtx takes any batches of
  teacher-forced windows, padding and packing excluded by `valid` and `segment_ids`.
- Layers: MMT analyses the last layer; mtx every layer (result axis 0), and the averages.
- Range: MMT keeps every difference; mtx returns a configured range (defaults
  `DEFAULT_K_RANGES` by field name, else every difference the field's size allows), with
  the weight outside it in the normalization.
- Categorical: MMT's matrix (type, duration, instrument) sums the weight of all pairs, the
  diagonal included, skips code 0 except for type (whose 0 is start-of-song), and has no
  baseline. mtx: the causal pairs, `none_code` skipped in every field analysed (so type's
  start-of-song too), and a baseline.
Which fields are analysed, and which are ordered, is the caller's choice from the codec's
field table; nothing here knows MMT's field list.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mtx.errors import ConfigError

# k ranges when the caller names an ordered field without one (inclusive): what MMT's plots
# show, in beats, positions and semitones.
DEFAULT_K_RANGES = {"beat": (0, 64), "position": (-12, 12), "pitch": (-48, 48)}


# ----------------------------------------------------------------------------------------
# Pure functions: pairs and their sums.


@functools.lru_cache(maxsize=8)
def causal_pairs(length: int) -> tuple[np.ndarray, np.ndarray]:
  """(query s, key t) index arrays of the L (L - 1) / 2 pairs s > t, row by row."""
  queries, keys = np.tril_indices(length, -1)
  queries.flags.writeable = keys.flags.writeable = False
  return queries, keys


def difference_bins(differences: np.ndarray, k_min: int, k_max: int) -> np.ndarray:
  """(P,) differences -> (P,) bins of K + 1, K = k_max - k_min + 1: bin k - k_min for
  k_min <= k <= k_max, bin K for every difference outside (kept for the normalization)."""
  width = k_max - k_min + 1
  bins = differences.astype(np.int64) - k_min
  return np.where((bins >= 0) & (bins < width), bins, width)


def category_bins(query_values: np.ndarray, key_values: np.ndarray, size: int) -> np.ndarray:
  """(P,) bins of size^2: query category * size + key category, values in [0, size)."""
  return query_values.astype(np.int64) * size + key_values


def weighted_histogram(bins: np.ndarray, weights: np.ndarray, num_bins: int) -> np.ndarray:
  """(H, num_bins) float64: out[h, n] = sum of weights[h, p] over the pairs p in bin n.

  bins (P,) int; weights (H, P). One `np.bincount` per head over the same bins (no H P
  index array: at L = 1024 a map has half a million pairs per head)."""
  return np.stack([np.bincount(bins, w, minlength=num_bins) for w in weights])


def _divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
  """num / den, NaN where den is 0 (nothing to normalize by)."""
  with np.errstate(divide="ignore", invalid="ignore"):
    return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def _compare(gamma: np.ndarray, baseline: np.ndarray) -> dict[str, np.ndarray]:
  """gain and ratio of gamma (..., X) against baseline (X): plain and averaged."""
  out = {"gamma": gamma, "gain": gamma - baseline, "ratio": _divide(gamma, baseline)}
  for name in ("gamma", "gain", "ratio"):
    out[f"{name}_mean_heads"] = np.mean(out[name], axis=1)
    out[f"{name}_mean"] = np.mean(out[name], axis=(0, 1))
  return out


# ----------------------------------------------------------------------------------------
# The accumulator.


class AttentionAnalysis:
  """Mean relative attention accumulated over batches (see the module docstring).

      analysis = AttentionAnalysis(codec.fields, representation=codec.name,
                                   ordered=("beat", "position", "pitch"),
                                   categorical=("instrument",))
      for batch in batches:   # teacher-forced windows; mask: not padding
        maps = model.attention_maps(batch["inputs"], positions=batch["positions"],
                                    segment_ids=batch["segment_ids"])  # (B, H, L, L) each
        analysis.add(maps, batch["inputs"], batch["mask"], segment_ids=batch["segment_ids"])
      result = analysis.result()   # {field: {"ks", "gamma", "baseline", "gain", ...}}

  fields: the codec's field table (`codec.fields`: names and sizes); representation: its
  name, for the error message. ordered: field names, or {name: (k_min, k_max)} (inclusive;
  a name alone takes `DEFAULT_K_RANGES` or every difference its size allows).
  categorical: field names. none_code: the code meaning "none", skipped (None: keep all).
  A field the representation lacks raises `ConfigError`.
  Cost per sequence: O(layers H L^2 / 2) per field, in `np.bincount`; a categorical field
  holds layers H size^2 sums.
  """

  def __init__(
    self,
    fields: Any,
    *,
    representation: str,
    ordered: Sequence[str] | Mapping[str, tuple[int, int]] = (),
    categorical: Sequence[str] = (),
    none_code: int | None = 0,
  ):
    self.field_names = tuple(fields.names)
    self.field_sizes = tuple(int(s) for s in fields.sizes)
    self.representation = representation
    self.none_code = none_code
    if not isinstance(ordered, Mapping):
      ordered = {name: None for name in ordered}
    for name in [*ordered, *categorical]:
      if name not in self.field_names:
        raise ConfigError(
          f"attention analysis: representation '{representation}' has no field "
          f"'{name}'; its fields are {', '.join(self.field_names)}"
        )
    both = set(ordered) & set(categorical)
    if both:
      raise ConfigError(
        f"attention analysis: {', '.join(sorted(both))} asked for as both "
        "ordered and categorical; pick one"
      )
    self.k_ranges = {}
    for name, k_range in ordered.items():
      if k_range is None:
        largest = self.field_sizes[self.field_names.index(name)] - 1
        k_range = DEFAULT_K_RANGES.get(name, (-largest, largest))
      k_min, k_max = (int(k) for k in k_range)
      if k_min > k_max:
        raise ConfigError(
          f"attention analysis: the k range of '{name}' is empty "
          f"({k_min}..{k_max}); give (k_min, k_max) with k_min <= k_max"
        )
      self.k_ranges[name] = (k_min, k_max)
    self.categorical = tuple(categorical)
    self.num_layers = self.num_heads = None
    self.sequences = 0
    self._weights: dict[str, np.ndarray] = {}  # field -> (layers, H, bins...) float64
    self._counts: dict[str, np.ndarray] = {}  # field -> (bins...) int64

  def _start(self, num_layers: int, num_heads: int) -> None:
    self.num_layers, self.num_heads = num_layers, num_heads
    for name, (k_min, k_max) in self.k_ranges.items():
      bins = (k_max - k_min + 2,)
      self._weights[name] = np.zeros((num_layers, num_heads) + bins)
      self._counts[name] = np.zeros(bins, np.int64)
    for name in self.categorical:
      size = self.field_sizes[self.field_names.index(name)]
      self._weights[name] = np.zeros((num_layers, num_heads, size, size))
      self._counts[name] = np.zeros((size, size), np.int64)

  def add(
    self, probs_per_layer: Sequence[Any], tokens: Any, valid: Any = None, *, segment_ids: Any = None
  ) -> None:
    """Accumulate one batch.

    probs_per_layer: one (B, H, L, L) post-softmax attention per layer (`attention_maps`);
    tokens (B, L, F) int: the codes the model read; valid (B, L) bool, default all: rows
    that are neither query nor key when False (padding). segment_ids (B, L), optional:
    packed rows, only pairs inside one segment count.
    """
    layers = [np.asarray(p, np.float32) for p in probs_per_layer]
    tokens = np.asarray(tokens)
    batch, length, num_fields = tokens.shape
    if not layers or num_fields != len(self.field_names):
      raise ValueError(
        f"add: expected attention maps and tokens (B, L, "
        f"{len(self.field_names)}); got {len(layers)} maps, tokens "
        f"{tokens.shape}"
      )
    heads = layers[0].shape[1]
    for probs in layers:
      if probs.shape != (batch, heads, length, length):
        raise ValueError(
          f"add: attention of shape {probs.shape} for tokens {tokens.shape}; "
          f"expected {(batch, heads, length, length)} per layer"
        )
    if self.num_layers is None:
      self._start(len(layers), heads)
    elif (len(layers), heads) != (self.num_layers, self.num_heads):
      raise ValueError(
        f"add: {len(layers)} layers x {heads} heads after {self.num_layers} x {self.num_heads}"
      )
    valid = np.ones((batch, length), bool) if valid is None else np.asarray(valid, bool)
    queries, keys = causal_pairs(length)
    flat = queries * length + keys  # pair -> index into a flattened (L, L) map
    for b in range(batch):
      if not valid[b].any():
        continue
      self.sequences += 1
      pair_ok = valid[b, queries] & valid[b, keys]
      if segment_ids is not None:
        seg = np.asarray(segment_ids[b])
        pair_ok &= seg[queries] == seg[keys]
      rows = [probs[b].reshape(heads, length * length) for probs in layers]
      for name in [*self.k_ranges, *self.categorical]:
        values = tokens[b, :, self.field_names.index(name)].astype(np.int64)
        keep = pair_ok
        if self.none_code is not None:
          keep = keep & (values[queries] != self.none_code) & (values[keys] != self.none_code)
        pairs = flat[keep]
        v_query, v_key = values[queries[keep]], values[keys[keep]]
        counts = self._counts[name]
        if name in self.k_ranges:
          bins = difference_bins(v_query - v_key, *self.k_ranges[name])
        else:
          bins = category_bins(v_query, v_key, counts.shape[0])
        counts += np.bincount(bins, minlength=counts.size).reshape(counts.shape)
        sums = self._weights[name]
        for layer, row in enumerate(rows):
          sums[layer] += weighted_histogram(bins, row[:, pairs], counts.size).reshape(
            sums.shape[1:]
          )

  def result(self) -> dict[str, dict[str, Any]]:
    """{field: arrays and numbers} for every field asked for.

    Ordered field: ks (K,); gamma, gain, ratio (layers, H, K); their `_mean_heads`
    (layers, K) and `_mean` (K,); baseline (K,); pair_counts (K,) and num_pairs (all
    differences); weight_total (layers, H), the weight over all pairs; sequences.
    Categorical field: codes (C,), the field's codes but `none_code`; gamma, gain, ratio
    (layers, H, C, C), row = query category; their means; baseline and pair_counts (C, C);
    sequences. Rows of a query category never seen are NaN.
    """
    if self.num_layers is None:
      raise ValueError("result: no attention was added")
    out = {}
    for name, (k_min, k_max) in self.k_ranges.items():
      weights, counts = self._weights[name], self._counts[name]
      gamma = _divide(weights[..., :-1], weights.sum(-1, keepdims=True))
      baseline = _divide(counts[:-1], counts.sum())
      out[name] = {
        "kind": "ordered",
        "ks": np.arange(k_min, k_max + 1),
        "baseline": baseline,
        **_compare(gamma, baseline),
        "pair_counts": counts[:-1].copy(),
        "num_pairs": int(counts.sum()),
        "weight_total": weights.sum(-1),
        "sequences": self.sequences,
      }
    for name in self.categorical:
      codes = np.arange(self._counts[name].shape[0])
      if self.none_code is not None:
        codes = codes[codes != self.none_code]
      cells = np.ix_(codes, codes)
      weights = self._weights[name][(slice(None), slice(None)) + cells]
      counts = self._counts[name][cells]
      gamma = _divide(weights, weights.sum(-1, keepdims=True))
      baseline = _divide(counts, counts.sum(-1, keepdims=True))
      out[name] = {
        "kind": "categorical",
        "codes": codes,
        "baseline": baseline,
        **_compare(gamma, baseline),
        "pair_counts": counts,
        "num_pairs": int(counts.sum()),
        "sequences": self.sequences,
      }
    return out
