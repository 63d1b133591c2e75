"""Each figure is a valid PNG of its fixed size, and the same input gives the same bytes."""

from __future__ import annotations

import matplotlib.image
import numpy as np
import pytest

from mtx.evaluate import plots
from mtx.evaluate.curves import group_curves
from mtx.representation.notetable import from_notes

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _curves():
  steps = np.arange(0, 200, 20)
  decay = np.exp(-steps / 80.0)
  return group_curves(
    {
      "train/loss": (steps, 4 * decay + 1),
      "eval/loss": (steps[::2], 4 * decay[::2] + 1.2),
      "train/loss/pitch": (steps, 2 * decay + 0.5),
      "eval/loss/pitch": (steps[::2], 2 * decay[::2] + 0.6),
      "train/accuracy/pitch": (steps, 1 - decay),
      "train/learning_rate": (steps, steps * 1e-5),
      "train/tokens_per_second": (steps, np.full(steps.shape, 1e4)),
    }
  )


def _table(drums: bool = True):
  rows = [[i * 240, i * 240 + 200, 60 + i % 12, 80, 0, 0, 0] for i in range(24)]
  rows += [[i * 480, i * 480 + 900, 48 + i % 5, 64, 42, 0, 1] for i in range(12)]
  if drums:
    rows += [[i * 240, i * 240 + 60, 36, 100, 0, 1, 2] for i in range(24)]
  return from_notes(np.array(rows), ticks_per_beat=480, source="song.mid")


def _empty_table():
  return from_notes(np.zeros((0, 7)), ticks_per_beat=480)


RNG = np.random.default_rng(0)
KS = np.arange(-24, 25)
GAINS = RNG.normal(0, 0.1, (4, KS.size))
SIMILARITY = np.clip(RNG.normal(0, 0.3, (24, 24)), -1, 1)
ARC_WEIGHTS = RNG.random((2, 12))
ARC_ONSETS = np.concatenate([[np.nan], np.arange(11) / 2])
SAMPLES = RNG.normal(size=20)

# name -> (call writing the PNG at path, expected (height, width) in pixels)
CASES = {
  "curves": (lambda p: plots.plot_curves(_curves(), p), (800, 1500)),
  "curves_empty": (lambda p: plots.plot_curves({}, p), (800, 1500)),
  "piano_roll": (lambda p: plots.plot_piano_roll(_table(), p, title="a <song>"), (500, 1200)),
  "piano_roll_cut": (lambda p: plots.plot_piano_roll(_table(), p, max_beats=4), (500, 1200)),
  "piano_roll_empty": (lambda p: plots.plot_piano_roll(_empty_table(), p), (500, 1200)),
  "gain_pitch": (
    lambda p: plots.plot_relative_gain(KS, GAINS, GAINS.mean(0), p, field="pitch"),
    (450, 900),
  ),
  "gain_beat": (
    lambda p: plots.plot_relative_gain(KS, GAINS, GAINS.mean(0), p, field="beat", xlabel="beats"),
    (450, 900),
  ),
  "category": (
    lambda p: plots.plot_category_attention(
      np.full((3, 3), 1 / 3), ["note", "instrument", "start"], p, title="t"
    ),
    (650, 750),
  ),
  "similarity": (
    lambda p: plots.plot_similarity(
      SIMILARITY, p, tick_labels=[plots.note_name(60 + i) if i % 12 == 0 else "" for i in range(24)]
    ),
    (650, 750),
  ),
  "arcs": (
    lambda p: plots.plot_attention_arcs(
      ARC_ONSETS, 60 + np.arange(12) % 7, ARC_WEIGHTS, 9, p, top_k=4
    ),
    (360, 800),
  ),
  "histograms": (
    lambda p: plots.plot_metric_histograms(
      {"a": SAMPLES, "b": [np.nan, 1.0, 1.0]}, np.ones((5, 2)), p, names=["a", "b"]
    ),
    (320, 900),
  ),
  "histograms_no_values": (
    lambda p: plots.plot_metric_histograms({"a": []}, {"a": [np.nan]}, p, names=["a"]),
    (320, 450),
  ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_figure_is_a_png_of_fixed_size_with_deterministic_bytes(tmp_path, name):
  plot, (height, width) = CASES[name]
  first = plot(tmp_path / "a" / f"{name}.png")
  second = plot(tmp_path / f"{name}.png")
  data = first.read_bytes()
  assert data.startswith(PNG_SIGNATURE)
  assert b"Software" not in data and b"Matplotlib" not in data
  image = matplotlib.image.imread(first)
  assert image.shape[:2] == (height, width)
  rgb = (image[..., :3] * 255).round().astype(np.int64)
  assert np.unique(rgb[..., 0] << 16 | rgb[..., 1] << 8 | rgb[..., 2]).size > 2  # not blank
  assert second.read_bytes() == data
  assert [p.name for p in first.parent.iterdir()] == [first.name]  # no temporary left


def test_note_names_follow_scientific_pitch():
  assert [plots.note_name(p) for p in (0, 60, 61, 69, 127)] == ["C-1", "C4", "C#4", "A4", "G9"]
