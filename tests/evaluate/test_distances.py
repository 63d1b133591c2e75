"""The set distances (overlap area, KL) and the Fréchet symbolic-feature distance give the
known answers on sets with known distributions, and NaN with a reason on degenerate ones."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mtx.evaluate import distances as d
from mtx.representation.notetable import from_notes


def _normal_cdf(x: float) -> float:
  return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def test_distance_sets_exclude_self_pairs_and_take_every_cross_pair():
  assert sorted(d.intra_set_distances([0.0, 1.0, 3.0]).tolist()) == [1, 1, 2, 2, 3, 3]
  assert sorted(d.inter_set_distances([0.0, 1.0], [3.0]).tolist()) == [2, 3]
  assert d.intra_set_distances([5.0]).size == 0
  sampled = d.intra_set_distances(np.arange(100.0), max_pairs=1000)
  assert sampled.size == 1000 and np.all(sampled > 0)  # a sample of pairs, still no self pair
  assert d.inter_set_distances(np.arange(50.0), np.arange(50.0), max_pairs=100).size == 100


def test_overlap_area_is_one_for_a_set_with_itself_and_zero_for_far_apart_sets():
  rng = np.random.default_rng(0)
  x = rng.normal(size=500)
  assert d.overlap_area(x, x) == pytest.approx(1.0, abs=1e-3)
  assert d.overlap_area(x, x + 100.0) < 1e-6
  assert d.overlap_area(x, rng.normal(size=500)) > 0.85  # two draws of one distribution


def test_overlap_and_kl_match_the_closed_forms_for_two_gaussians():
  """N(0, 1) and N(1, 1): OA = 2 Phi(-1/2) = 0.617, KL = 1/2 nat. The KDE widens each by
  its bandwidth (about 0.18 at n = 5000), which moves both by about 3%."""
  rng = np.random.default_rng(1)
  a, b = rng.normal(0.0, 1.0, 5000), rng.normal(1.0, 1.0, 5000)
  assert d.overlap_area(a, b) == pytest.approx(2 * _normal_cdf(-0.5), abs=0.03)
  assert d.kl_divergence(a, b) == pytest.approx(0.5, abs=0.05)
  assert d.kl_divergence(a, a) == pytest.approx(0.0, abs=1e-9)
  far = d.kl_divergence(a, a + 50.0)
  assert math.isfinite(far) and far > 100  # large, not inf, where the density underflows


def test_degenerate_sets_give_nan_with_a_reason_and_never_raise():
  for a, words in (
    ([1.0], "at least 2"),
    ([], "at least 2"),
    ([2.0, 2.0, 2.0], "zero variance"),
    ([math.nan, 1.0], "at least 2"),
    ([1.0, math.inf], "infinite"),
  ):
    oa, kl, reason = d.compare_densities(a, [0.0, 1.0, 2.0])
    assert math.isnan(oa) and math.isnan(kl) and words in reason, (a, reason)
  assert math.isnan(d.overlap_area([0.0, 1.0, 2.0], [3.0, 3.0]))
  assert math.isnan(d.kl_divergence([0.0, 1.0], [7.0]))


def test_set_distances_places_samples_among_or_away_from_the_truth():
  rng = np.random.default_rng(2)
  truth = {"metric": rng.normal(size=400).tolist()}
  close = d.set_distances({"metric": rng.normal(size=300).tolist()}, truth)["metric"]
  away = d.set_distances({"metric": (rng.normal(size=300) + 10.0).tolist()}, truth)["metric"]
  assert close["reason"] is None and close["overlap_area"] > 0.85
  assert close["kl_divergence"] < 0.05
  assert away["overlap_area"] < 0.01 and away["kl_divergence"] > 2
  # E|X - Y| = 2 / sqrt(pi) for independent standard normals.
  assert close["intra_truth_mean"] == pytest.approx(2 / math.sqrt(math.pi), abs=0.08)
  assert close["inter_mean"] == pytest.approx(2 / math.sqrt(math.pi), abs=0.08)
  assert away["inter_mean"] == pytest.approx(10.0, abs=0.2)
  assert close["n_truth"] == 400 and close["n_sample"] == 300 and not close["sampled_pairs"]


def test_set_distances_drops_nans_and_explains_each_degenerate_metric():
  samples = {
    "nan_mixed": [1.0, math.nan, 2.0, 4.0],
    "constant": [3.0, 3.0, 3.0],
    "sample_only": [1.0, 2.0],
    "all_nan": [math.nan, math.nan],
  }
  truth = {
    "nan_mixed": [1.5, 2.5, math.nan, 0.5],
    "constant": [3.0, 3.0, 3.0],
    "truth_only": [1.0, 2.0, 3.0],
    "all_nan": [1.0, 2.0, 5.0],
  }
  report = d.set_distances(samples, truth)
  assert set(report) == set(samples) | set(truth)
  mixed = report["nan_mixed"]
  assert (mixed["n_sample"], mixed["n_sample_nan"], mixed["n_truth"], mixed["n_truth_nan"]) == (
    3,
    1,
    3,
    1,
  )
  assert mixed["reason"] is None and 0 <= mixed["overlap_area"] <= 1.0 + 1e-9
  assert "zero variance" in report["constant"]["reason"]
  assert report["constant"]["intra_truth_mean"] == 0.0
  assert "ground-truth" in report["sample_only"]["reason"]
  assert "no sample values" in report["truth_only"]["reason"]
  assert "no sample values" in report["all_nan"]["reason"]
  for row in report.values():
    if row["reason"]:
      assert math.isnan(row["overlap_area"]) and math.isnan(row["kl_divergence"])


# ---- Fréchet symbolic-feature distance ------------------------------------------------------


def _gaussian(rng, mean, rotation, variances, n):
  return mean + (rng.normal(size=(n, len(mean))) * np.sqrt(variances)) @ rotation.T


def test_frechet_distance_is_zero_to_itself_symmetric_and_matches_the_closed_form():
  """Covariances Q diag(l_a) Q^T and Q diag(l_b) Q^T commute, so
  Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) = sum (sqrt(l_a) - sqrt(l_b))^2."""
  rng = np.random.default_rng(3)
  rotation, _ = np.linalg.qr(rng.normal(size=(4, 4)))
  mean_a, mean_b = np.array([0.0, 1.0, 2.0, 3.0]), np.array([1.0, 1.0, 0.0, 3.5])
  var_a, var_b = np.array([1.0, 4.0, 0.25, 2.0]), np.array([2.0, 1.0, 0.25, 0.5])
  a = _gaussian(rng, mean_a, rotation, var_a, 40_000)
  b = _gaussian(rng, mean_b, rotation, var_b, 40_000)
  closed = np.sum((mean_a - mean_b) ** 2) + np.sum((np.sqrt(var_a) - np.sqrt(var_b)) ** 2)
  assert d.frechet_distance(a, b) == pytest.approx(closed, abs=0.1)
  assert d.frechet_distance(a, b) == pytest.approx(d.frechet_distance(b, a), rel=1e-6)
  assert d.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)


def test_frechet_distance_of_degenerate_inputs_is_nan_with_a_reason():
  rng = np.random.default_rng(4)
  good = rng.normal(size=(10, 3))
  for a, b, words in (
    (good[:1], good, "at least 2"),
    (good, good[:, :2], "shapes"),
    (np.full((4, 3), math.nan), good, "not finite"),
    (good[0], good, "shapes"),
  ):
    result = d.frechet_result(a, b)
    assert math.isnan(result["value"]) and words in result["reason"], result
    assert math.isnan(d.frechet_distance(a, b))


def _table(rows, ticks_per_beat=12):
  notes = [
    (on, off, pitch, 80, program, drum, track) for on, off, pitch, program, drum, track in rows
  ]
  return from_notes(np.array(notes, np.int64).reshape(-1, 7), ticks_per_beat=ticks_per_beat)


def _features(table) -> dict[str, float]:
  vector = d.feature_vector(table)
  assert vector.shape == (len(d.FEATURE_NAMES),) and np.all(np.isfinite(vector))
  return dict(zip(d.FEATURE_NAMES, vector.tolist()))


def test_feature_vector_of_a_scale_and_a_second_voice():
  scale = [60, 62, 64, 65, 67, 69, 71, 72]
  rows = [(12 * i, 12 * i + 12, p, 0, 0, 0) for i, p in enumerate(scale)]
  rows += [(0, 48, 48, 32, 0, 1), (48, 96, 55, 32, 0, 1)]  # a bass: 4 beats, +7
  rows += [(0, 1, 36, 0, 1, 2)] * 3  # drums count as notes, never in the histograms
  f = _features(_table(rows))
  assert len(set(d.FEATURE_NAMES)) == len(d.FEATURE_NAMES) == 12 + 25 + 8 + 2
  assert f["pitch_class_0"] == pytest.approx(3 / 10)  # C4, C5, C3 of 10 pitched notes
  # Intervals within each track only: the scale's +2 x5, +1 x2, and the bass's +7.
  assert f["interval_+2"] == pytest.approx(5 / 8) and f["interval_+1"] == pytest.approx(2 / 8)
  assert f["interval_+7"] == pytest.approx(1 / 8) and f["interval_-12"] == 0.0
  assert f["duration_1_beats"] == pytest.approx(8 / 10)
  assert f["duration_4_beats"] == pytest.approx(2 / 10)
  assert f["notes_per_beat"] == pytest.approx(13 / 8)
  assert f["polyphony"] == pytest.approx(2.0)  # scale and bass sound together throughout
  for prefix in ("pitch_class_", "interval_", "duration_"):
    assert sum(v for k, v in f.items() if k.startswith(prefix)) == pytest.approx(1.0)


def test_feature_vector_clips_intervals_and_durations_and_survives_an_empty_table():
  rows = [(0, 1, 40, 0, 0, 0), (12, 12 + 12 * 20, 80, 0, 0, 0), (300, 300, 20, 0, 0, 0)]
  f = _features(_table(rows))
  assert f["interval_+12"] == pytest.approx(0.5) and f["interval_-12"] == pytest.approx(0.5)
  # 1/12 beat -> nearest power of two 1/16; 20 beats -> 8 (the longest); 0 -> shortest.
  assert f["duration_0.0625_beats"] == pytest.approx(2 / 3)
  assert f["duration_8_beats"] == pytest.approx(1 / 3)
  empty = _features(_table([]))
  assert all(value == 0.0 for value in empty.values())


def test_frechet_distance_on_feature_vectors_of_two_sets():
  rng = np.random.default_rng(5)

  def random_table(low):
    onsets = np.sort(rng.integers(0, 480, 40))
    rows = [
      (int(o), int(o) + int(rng.integers(1, 24)), int(rng.integers(low, low + 12)), 0, 0, 0)
      for o in onsets
    ]
    return _table(rows)

  set_a = np.stack([d.feature_vector(random_table(60)) for _ in range(30)])
  set_b = np.stack([d.feature_vector(random_table(61)) for _ in range(30)])
  same = d.frechet_result(set_a, set_a)
  apart = d.frechet_result(set_a, set_b)
  assert same["value"] == pytest.approx(0.0, abs=1e-6)
  assert apart["value"] > same["value"] and apart["reason"] is None
  assert apart["method"] in ("sqrtm", "eigh")


def test_every_field_of_a_comparison_has_a_definition_for_the_report():
  row = d.set_distances({"metric": [1.0, 2.0, 3.0]}, {"metric": [1.0, 2.5, 4.0]})["metric"]
  defined = {name.rsplit(".", 1)[-1] for name in d.DEFINITIONS}
  assert set(row) <= defined
  assert "frechet_feature_distance" in defined
  assert "not FMD" in d.DEFINITIONS["music_metrics.frechet_feature_distance"]
