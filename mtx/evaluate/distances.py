"""How far a set of samples is from the ground truth, beyond comparing two means.

Two measures:

- **Set distances** (Yang & Lerch 2020, "On the evaluation of generative models in
  music", the mgeval method), one scalar metric at a time. For values x (ground truth)
  and y (samples): the intra-set distances |x_i - x_j| over the ordered pairs i != j of
  each set, and the inter-set distances |y_i - x_j| over every sample and every truth
  file. Each distance set is smoothed into a density with a Gaussian KDE
  (`scipy.stats.gaussian_kde`, Scott's bandwidth), and the truth's intra-set density p is
  compared with the inter-set density q:
    overlap area OA = integral of min(p, q) dx   (1: the samples sit among the truth as
                                                   the truth sits among itself; 0: apart)
    KL(p || q)      = integral of p log(p / q) dx (nats; 0 when equal)
  Both integrals run over one grid covering both distance sets and 4 bandwidths beyond
  (mgeval integrates OA over [min, max] of the data only, so its OA of a set with
  itself falls short of 1; and its KL compares the two densities sampled on two
  different grids; here both share one grid).
- **Fréchet symbolic-feature distance**: the Fréchet distance between Gaussians fitted to
  a fixed vector of symbolic features per file (`feature_vector`). This is NOT the
  Fréchet Music Distance (FMD), which embeds files with pretrained models from a hub;
  it needs no weights and is comparable only with itself.

Degenerate inputs never raise: a comparison that cannot be made gives NaN and says why.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import scipy.linalg
from scipy import stats

from mtx.evaluate.music_metrics import file_metrics
from mtx.representation.notetable import NoteTable

GRID_SIZE = 1024  # points of the integration grid
GRID_BANDWIDTHS = 4.0  # the grid extends this many KDE bandwidths past the data
MAX_PAIRS = 2_000_000  # distance sets above this are a uniform random sample of pairs
MAX_KDE_POINTS = 4_000  # points a KDE is built on (its cost: points x grid points)
SEED = 0  # the sampling of pairs and KDE points is deterministic


# ---- distance sets and their densities --------------------------------------------------


def intra_set_distances(values, *, max_pairs: int = MAX_PAIRS, seed: int = SEED) -> np.ndarray:
  """|v_i - v_j| over the ordered pairs i != j (each unordered pair twice, as mgeval's
  leave-one-out loop does), or a uniform random sample of `max_pairs` of them."""
  values = np.asarray(values, np.float64).reshape(-1)
  n = values.size
  if n < 2:
    return np.zeros(0)
  if n * (n - 1) <= max_pairs:
    distances = np.abs(values[:, None] - values[None, :])
    return distances[~np.eye(n, dtype=bool)]
  rng = np.random.default_rng(seed)
  first = rng.integers(0, n, max_pairs)
  second = (first + rng.integers(1, n, max_pairs)) % n  # any index but `first`
  return np.abs(values[first] - values[second])


def inter_set_distances(
  values_a, values_b, *, max_pairs: int = MAX_PAIRS, seed: int = SEED
) -> np.ndarray:
  """|a_i - b_j| over every pair, or a uniform random sample of `max_pairs` pairs."""
  a = np.asarray(values_a, np.float64).reshape(-1)
  b = np.asarray(values_b, np.float64).reshape(-1)
  if a.size * b.size <= max_pairs:
    return np.abs(a[:, None] - b[None, :]).reshape(-1)
  rng = np.random.default_rng(seed)
  return np.abs(a[rng.integers(0, a.size, max_pairs)] - b[rng.integers(0, b.size, max_pairs)])


def density(values, *, max_points: int = MAX_KDE_POINTS, seed: int = SEED):
  """(gaussian_kde, None), or (None, why not): NaNs are dropped first; a KDE needs at least
  two values that are not all equal (its covariance is singular otherwise)."""
  values = np.asarray(values, np.float64).reshape(-1)
  values = values[~np.isnan(values)]
  if values.size < 2:
    return None, f"{values.size} value(s): a density needs at least 2"
  if not np.all(np.isfinite(values)):
    return None, "infinite values: no density"
  if np.ptp(values) == 0:
    return None, f"all {values.size} values equal {values[0]:g} (zero variance): no density"
  if values.size > max_points:
    values = np.random.default_rng(seed).choice(values, max_points, replace=False)
  try:
    return stats.gaussian_kde(values), None
  except (np.linalg.LinAlgError, ValueError) as e:
    return None, f"gaussian_kde failed ({e})"


def compare_densities(
  a,
  b,
  *,
  grid_size: int = GRID_SIZE,
  names: tuple[str, str] = ("first set", "second set"),
) -> tuple[float, float, str | None]:
  """(OA(p_a, p_b), KL(p_a || p_b) in nats, None), or (NaN, NaN, why not), the reason
  naming the set by `names`.

  Both densities are evaluated once on one grid of `grid_size` points covering both sets
  and GRID_BANDWIDTHS bandwidths beyond, and integrated by the trapezoid rule. Where p_b
  underflows to 0 under mass of p_a, its log comes from `logpdf`, so the KL of two sets
  far apart is large but finite.
  """
  pdf_a, why = density(a)
  if pdf_a is None:
    return math.nan, math.nan, f"{names[0]}: {why}"
  pdf_b, why = density(b)
  if pdf_b is None:
    return math.nan, math.nan, f"{names[1]}: {why}"
  reach = GRID_BANDWIDTHS * math.sqrt(max(pdf_a.covariance[0, 0], pdf_b.covariance[0, 0]))
  low = min(pdf_a.dataset.min(), pdf_b.dataset.min()) - reach
  high = max(pdf_a.dataset.max(), pdf_b.dataset.max()) + reach
  grid = np.linspace(low, high, grid_size)
  dx = grid[1] - grid[0]
  p, q = pdf_a(grid), pdf_b(grid)
  overlap = float(np.trapezoid(np.minimum(p, q), dx=dx))
  mass = p > 0
  log_p, log_q = np.zeros(grid_size), np.zeros(grid_size)
  log_p[mass] = np.log(p[mass])
  log_q[mass] = np.log(np.where(q[mass] > 0, q[mass], 1.0))
  underflow = mass & (q <= 0)
  if np.any(underflow):
    log_q[underflow] = pdf_b.logpdf(grid[underflow])
  divergence = float(np.trapezoid(np.where(mass, p * (log_p - log_q), 0.0), dx=dx))
  return overlap, divergence, None


def overlap_area(a, b, *, grid_size: int = GRID_SIZE) -> float:
  """Overlap area of the KDEs of `a` and `b`: integral of min(p_a, p_b); 1 for one
  distribution, 0 for disjoint ones; NaN where a KDE cannot be built
  (`compare_densities` says why)."""
  return compare_densities(a, b, grid_size=grid_size)[0]


def kl_divergence(a, b, *, grid_size: int = GRID_SIZE) -> float:
  """KL divergence of the KDE of `a` from that of `b`, integral of p_a log(p_a / p_b), in
  nats; NaN where a KDE cannot be built (`compare_densities` says why)."""
  return compare_densities(a, b, grid_size=grid_size)[1]


def _without_nan(values) -> tuple[np.ndarray, int]:
  """(the values that are not NaN, how many were NaN); None stands for no values."""
  values = np.asarray(values if values is not None else [], np.float64).reshape(-1)
  missing = np.isnan(values)
  return values[~missing], int(missing.sum())


def _mean_std(distances: np.ndarray) -> tuple[float, float]:
  if distances.size == 0:
    return math.nan, math.nan
  return float(distances.mean()), float(distances.std())


def set_distances(
  sample_values: dict[str, Sequence[float]], truth_values: dict[str, Sequence[float]]
) -> dict[str, dict]:
  """The mgeval comparison of every metric present in either dict (in the samples'
  order, then any the ground truth alone has).

  Per metric: n_sample, n_truth (values used) and n_sample_nan, n_truth_nan (dropped);
  mean and std (population) of the three distance sets, `intra_truth_*`,
  `intra_sample_*`, `inter_*`; `overlap_area` = OA(intra_truth, inter) and
  `kl_divergence` = KL(intra_truth || inter), NaN with `reason` saying why where they
  cannot be computed (reason is None otherwise); `sampled_pairs` is True where a distance
  set was too large and a random sample of `MAX_PAIRS` pairs stands for it.
  """
  report = {}
  for name in dict.fromkeys([*sample_values, *truth_values]):
    samples, samples_nan = _without_nan(sample_values.get(name))
    truth, truth_nan = _without_nan(truth_values.get(name))
    intra_truth = intra_set_distances(truth)
    intra_sample = intra_set_distances(samples)
    inter = inter_set_distances(samples, truth)
    sampled = (
      truth.size * (truth.size - 1) > MAX_PAIRS
      or samples.size * (samples.size - 1) > MAX_PAIRS
      or samples.size * truth.size > MAX_PAIRS
    )
    if truth.size < 2:
      oa, kl, reason = (
        math.nan,
        math.nan,
        (
          f"{truth.size} ground-truth value(s) that are not NaN: intra-set distances "
          "need at least 2"
        ),
      )
    elif samples.size < 1:
      oa, kl, reason = math.nan, math.nan, "no sample values that are not NaN"
    else:
      oa, kl, reason = compare_densities(
        intra_truth, inter, names=("intra-truth distances", "inter-set distances")
      )
    row = {
      "n_sample": int(samples.size),
      "n_truth": int(truth.size),
      "n_sample_nan": samples_nan,
      "n_truth_nan": truth_nan,
    }
    for label, distances in (
      ("intra_truth", intra_truth),
      ("intra_sample", intra_sample),
      ("inter", inter),
    ):
      row[f"{label}_mean"], row[f"{label}_std"] = _mean_std(distances)
    row.update(overlap_area=oa, kl_divergence=kl, reason=reason, sampled_pairs=bool(sampled))
    report[name] = row
  return report


# ---- Fréchet symbolic-feature distance ---------------------------------------------------

INTERVAL_RANGE = 12  # melodic intervals clipped to -12..12 semitones
DURATION_BIN_BEATS = tuple(2.0**k for k in range(-4, 4))  # 1/16 .. 8 beats, log2-spaced
RIDGE = 1e-6  # added to both covariances' diagonals: the histograms' sum-to-1 makes them singular

FEATURE_NAMES = (
  tuple(f"pitch_class_{c}" for c in range(12))
  + tuple(f"interval_{i:+d}" for i in range(-INTERVAL_RANGE, INTERVAL_RANGE + 1))
  + tuple(f"duration_{b:g}_beats" for b in DURATION_BIN_BEATS)
  + ("notes_per_beat", "polyphony")
)


def feature_vector(table: NoteTable, metrics: dict[str, float] | None = None) -> np.ndarray:
  """(len(FEATURE_NAMES),) float64 features of one file; every entry is finite.

  - pitch_class_*: the pitch-class histogram of pitched (non-drum) notes, normalized to
    sum 1 (all zero without pitched notes);
  - interval_*: the histogram of melodic intervals, pitch[i+1] - pitch[i] between
    successive notes of each non-drum track in the table's order (onset, then pitch),
    clipped to -12..12, normalized;
  - duration_*: the histogram of pitched notes' durations in beats, each in the bin of
    the nearest power of two in log2 (round(log2 d), clipped to -4..3; zero durations in
    the shortest bin), normalized;
  - notes_per_beat: all notes over the beats from tick 0 to the last offset (0 when that
    is 0);
  - polyphony: MusPy's polyphony, the mean number of pitches sounding where any sounds
    (0 where undefined).

  `metrics`: the table's `file_metrics`, where the caller has them already.
  """
  pitched = ~np.asarray(table.is_drum, bool)
  pitch = np.asarray(table.pitch, np.int64)[pitched]
  track = np.asarray(table.track, np.int64)[pitched]
  beats = (
    np.asarray(table.offset, np.int64)[pitched] - np.asarray(table.onset, np.int64)[pitched]
  ) / table.ticks_per_beat

  # The table is sorted by (onset, track, pitch): a stable sort by track puts each
  # track's notes together in (onset, pitch) order.
  order = np.argsort(track, kind="stable")
  pitch_by_track, track_sorted = pitch[order], track[order]
  follows = track_sorted[1:] == track_sorted[:-1]
  intervals = np.clip(np.diff(pitch_by_track)[follows], -INTERVAL_RANGE, INTERVAL_RANGE)

  with np.errstate(divide="ignore"):
    log_beats = np.log2(beats)
  low, high = round(math.log2(DURATION_BIN_BEATS[0])), round(math.log2(DURATION_BIN_BEATS[-1]))
  duration_bin = np.clip(np.round(np.nan_to_num(log_beats, neginf=low)), low, high) - low

  if metrics is None:
    metrics = file_metrics(table)
  return np.concatenate(
    [
      _normalized(np.bincount(pitch % 12, minlength=12)),
      _normalized(np.bincount(intervals + INTERVAL_RANGE, minlength=2 * INTERVAL_RANGE + 1)),
      _normalized(np.bincount(duration_bin.astype(np.int64), minlength=len(DURATION_BIN_BEATS))),
      np.nan_to_num([metrics["notes_per_beat"], metrics["polyphony"]], nan=0.0),
    ]
  ).astype(np.float64)


def _normalized(counts: np.ndarray) -> np.ndarray:
  total = counts.sum()
  return counts / total if total else np.zeros(counts.shape)


def frechet_result(features_a, features_b) -> dict:
  """The Fréchet distance between Gaussians fitted to two sets of feature rows, with how
  it was computed: {value, reason, method, n_a, n_b}.

    d^2 = ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2))

  S are sample covariances (ddof 1) plus RIDGE * I. `method` "sqrtm": the real part of
  `scipy.linalg.sqrtm(S_a S_b)`. Fallback "eigh", where sqrtm's result is not finite or
  has an imaginary part above 1e-6 of its scale (a near-singular product): the trace of
  (S_a S_b)^(1/2) equals that of the symmetric (S_a^(1/2) S_b S_a^(1/2))^(1/2), whose
  eigenvalues are clipped at 0. The value is clipped at 0 (rounding can leave -1e-15 for
  one set against itself). NaN with `reason` for fewer than 2 rows on a side, rows of
  different widths, or values that are not finite.
  """
  a = np.asarray(features_a, np.float64)
  b = np.asarray(features_b, np.float64)
  result = {
    "value": math.nan,
    "reason": None,
    "method": None,
    "n_a": int(a.shape[0]) if a.ndim else 0,
    "n_b": int(b.shape[0]) if b.ndim else 0,
  }
  if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
    result["reason"] = f"feature arrays of shapes {a.shape} and {b.shape}: need (n, k) and (m, k)"
    return result
  if a.shape[0] < 2 or b.shape[0] < 2:
    result["reason"] = f"{a.shape[0]} and {b.shape[0]} rows: a covariance needs at least 2"
    return result
  if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
    result["reason"] = "features that are not finite"
    return result
  ridge = RIDGE * np.eye(a.shape[1])
  mean_a, mean_b = a.mean(axis=0), b.mean(axis=0)
  cov_a = np.atleast_2d(np.cov(a, rowvar=False)) + ridge
  cov_b = np.atleast_2d(np.cov(b, rowvar=False)) + ridge
  trace_sqrt, method = _trace_sqrt_product(cov_a, cov_b)
  value = float(
    np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2.0 * trace_sqrt
  )
  result.update(value=max(value, 0.0), method=method)
  return result


def _trace_sqrt_product(cov_a: np.ndarray, cov_b: np.ndarray) -> tuple[float, str]:
  product_sqrt = scipy.linalg.sqrtm(cov_a @ cov_b)
  if np.all(np.isfinite(product_sqrt)):
    scale = float(np.max(np.abs(product_sqrt)))
    if float(np.max(np.abs(np.imag(product_sqrt)))) <= 1e-6 * scale:
      return float(np.trace(np.real(product_sqrt))), "sqrtm"
  values, vectors = np.linalg.eigh(cov_a)
  sqrt_a = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
  inner = np.linalg.eigvalsh(sqrt_a @ cov_b @ sqrt_a)
  return float(np.sum(np.sqrt(np.clip(inner, 0, None)))), "eigh"


def frechet_distance(features_a, features_b) -> float:
  """Fréchet symbolic-feature distance between two sets of `feature_vector` rows, (n, k)
  and (m, k); NaN where it cannot be computed (`frechet_result` says why). Not FMD."""
  return frechet_result(features_a, features_b)["value"]


# What the report's fields mean (dotted under the report's music_metrics section).
DEFINITIONS = {
  "music_metrics.distances.intra_truth_mean": "Mean of |x_i - x_j| over ordered pairs i != j of ground-truth files (the metric's "
  "spread within the ground truth; Yang & Lerch 2020).",
  "music_metrics.distances.intra_sample_mean": "Mean of |y_i - y_j| over ordered pairs i != j of samples.",
  "music_metrics.distances.inter_mean": "Mean of |y_i - x_j| over every sample i and every ground-truth file j.",
  "music_metrics.distances.intra_truth_std": "Population std of the intra-truth distances.",
  "music_metrics.distances.intra_sample_std": "Population std of the intra-sample distances.",
  "music_metrics.distances.inter_std": "Population std of the inter-set distances.",
  "music_metrics.distances.overlap_area": "Overlap area of the Gaussian KDEs of the intra-truth and the inter-set distances: "
  "integral of min(p, q). 1: samples sit among the ground truth as it sits among "
  "itself; 0: apart. NaN (with a reason) where a KDE cannot be built.",
  "music_metrics.distances.kl_divergence": "KL(intra-truth || inter-set) of the same KDEs, in nats: integral of p log(p / q). "
  "0 when equal; larger is farther.",
  "music_metrics.distances.n_sample": "Sample files with a value (not NaN) for the metric.",
  "music_metrics.distances.n_truth": "Ground-truth files with a value (not NaN).",
  "music_metrics.distances.n_sample_nan": "Sample files where the metric is NaN (dropped).",
  "music_metrics.distances.n_truth_nan": "Ground-truth files where the metric is NaN (dropped).",
  "music_metrics.distances.reason": "Why overlap_area and kl_divergence are NaN, if they are.",
  "music_metrics.distances.sampled_pairs": f"True where a distance set exceeded {MAX_PAIRS:,} pairs and a uniform random sample "
  "of that many stands for it.",
  "music_metrics.frechet_feature_distance": "Fréchet symbolic-feature distance (not FMD, which needs pretrained models): "
  "||mu_s - mu_t||^2 + Tr(S_s + S_t - 2 (S_s S_t)^(1/2)) between Gaussians fitted to "
  f"{len(FEATURE_NAMES)} features per file: pitch-class histogram "
  "(12), melodic-interval histogram within tracks (-12..12, 25), duration histogram "
  "(1/16..8 beats, log2 bins, 8), notes per beat, polyphony.",
}
