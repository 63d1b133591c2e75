"""The report's figures: one function per figure, each writing one PNG and returning its
path.

Figures are built on `matplotlib.figure.Figure` directly, never through pyplot: no
display is needed, no global figure list grows inside a long evaluation, and the
backend of a notebook that imports this module is left alone. The output is
deterministic, so a rerun of the same evaluation gives the same bytes (reports can be
diffed and cached): matplotlib's default style whatever the user's matplotlibrc, a
fixed size and dpi (no tight bounding box, whose size depends on the text), and no
"Software" stamp in the PNG.
"""

from __future__ import annotations

import functools
import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import matplotlib.style
import numpy as np
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, PathPatch
from matplotlib.path import Path as MplPath

from mtx.evaluate.curves import Series, TrainingCurves, group_curves
from mtx.evaluate.report import write_atomic
from mtx.representation.fields import DRUMS, PROGRAM_INSTRUMENT
from mtx.representation.notetable import NoteTable

DPI = 100
_RC = {
  "font.size": 9,
  "axes.titlesize": 10,
  "legend.fontsize": 8,
  "axes.grid": False,
  "savefig.facecolor": "white",
  "figure.facecolor": "white",
}
_NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
# Relative pitch landmarks: (interval in semitones, name, line style).
_PITCH_GUIDES = ((12, "octave", "-"), (7, "fifth", "--"), (5, "fourth", ":"))


def _styled(plot):
  """Runs a plot function under matplotlib's default style plus ours, so the user's
  matplotlibrc cannot change the picture."""

  @functools.wraps(plot)
  def wrapper(*args, **kwargs):
    with matplotlib.style.context("default"), matplotlib.rc_context(_RC):
      return plot(*args, **kwargs)

  return wrapper


def _new_figure(width: float, height: float) -> Figure:
  return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _save(fig: Figure, path: str | os.PathLike) -> Path:
  buffer = io.BytesIO()
  fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
  return write_atomic(path, buffer.getvalue())


def _colors(n: int) -> list:
  cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20"]
  return [cmap(i % cmap.N) for i in range(n)]


def _blank(ax, text: str) -> None:
  ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.45")
  ax.set_xticks([])
  ax.set_yticks([])


def note_name(pitch: int) -> str:
  """MIDI pitch -> scientific pitch name, 60 -> C4."""
  return f"{_NOTE_NAMES[pitch % 12]}{pitch // 12 - 1}"


# ---- training curves ----


def _plot_series(ax, series: Series | None, **style) -> bool:
  if series is None or not series[0].size:
    return False
  steps, values = series
  marker = "o" if steps.size <= 30 else None
  ax.plot(steps, values, marker=marker, markersize=3, **style)
  return True


@_styled
def plot_curves(curves: TrainingCurves | Mapping[str, Series], path) -> Path:
  """Training curves against step: total loss (train and validation), loss and accuracy
  per field (train solid, validation dashed), learning rate, tokens/s and gradient
  norm. A panel whose scalar was never logged says so; empty curves give one
  "no training curves" figure, so the report's layout does not depend on the run."""
  if not isinstance(curves, TrainingCurves):
    curves = group_curves(dict(curves))
  fig = _new_figure(15, 8)
  if curves.empty:
    _blank(fig.add_subplot(), "no training curves (no TensorBoard events in the run)")
    return _save(fig, path)
  axes = fig.subplots(2, 3)
  splits = (("train", "-", "train"), ("eval", "--", "validation"))

  ax = axes[0, 0]
  drawn = [
    _plot_series(
      ax, curves.loss.get(split, {}).get("total"), linestyle=style, color=color, label=label
    )
    for (split, style, label), color in zip(splits, ("C0", "C1"))
  ]
  _finish(ax, "loss (sum over fields)", "nats per row", any(drawn))

  for ax, group, title, ylabel in (
    (axes[0, 1], curves.loss, "loss per field", "nats"),
    (axes[0, 2], curves.accuracy, "accuracy per field", "accuracy"),
  ):
    fields = sorted({f for split in group.values() for f in split if f != "total"})
    drawn = []
    for field, color in zip(fields, _colors(len(fields))):
      for split, style, label in splits:
        drawn.append(
          _plot_series(
            ax,
            group.get(split, {}).get(field),
            linestyle=style,
            color=color,
            label=f"{field} ({label})",
          )
        )
    _finish(ax, title, ylabel, any(drawn))

  for ax, series, title, ylabel in (
    (axes[1, 0], curves.learning_rate, "learning rate", "learning rate"),
    (axes[1, 1], curves.tokens_per_second, "throughput", "tokens / s"),
    (axes[1, 2], curves.other.get("train/grad_norm"), "gradient norm", "L2 norm"),
  ):
    _finish(ax, title, ylabel, _plot_series(ax, series, color="C2"), legend=False)
  return _save(fig, path)


def _finish(ax, title: str, ylabel: str, drawn: bool, legend: bool = True) -> None:
  ax.set_title(title)
  if not drawn:
    _blank(ax, "not logged")
    return
  ax.set_xlabel("step")
  ax.set_ylabel(ylabel)
  ax.grid(alpha=0.3)
  if legend:
    ax.legend(ncols=2 if len(ax.get_lines()) > 6 else 1)


# ---- piano roll ----


def _track_label(program: int, is_drum: bool) -> str:
  if is_drum:
    return DRUMS
  return PROGRAM_INSTRUMENT[program] or f"program {program}"


@_styled
def plot_piano_roll(
  table: NoteTable, path, *, title: str = "", max_beats: float | None = None
) -> Path:
  """Notes as bars, time in beats across and pitch up, one colour per track (legend:
  the track's instrument), bar lines from the first time signature, loudness as
  opacity. `max_beats` keeps the first beats of a long song readable."""
  fig = _new_figure(12, 5)
  ax = fig.add_subplot()
  ax.set_title(title or table.source)
  tpb = float(table.ticks_per_beat)
  onset = table.onset / tpb
  offset = table.offset / tpb
  keep = onset < max_beats if max_beats is not None else np.ones(onset.shape, bool)
  if not keep.any():
    _blank(ax, "no notes")
    return _save(fig, path)
  tracks = np.unique(table.track[keep])
  colors = dict(zip(tracks.tolist(), _colors(len(tracks))))
  labels = {}
  for track in tracks.tolist():
    first = int(np.flatnonzero(table.track == track)[0])
    labels[track] = _track_label(int(table.program[first]), bool(table.is_drum[first]))
  repeated = {label for label in labels.values() if list(labels.values()).count(label) > 1}
  handles = [
    Patch(
      color=colors[t], label=(f"{labels[t]} (track {t})" if labels[t] in repeated else labels[t])
    )
    for t in tracks.tolist()
  ]

  start = onset[keep]
  end = np.maximum(offset[keep], start + 1 / 16)  # a zero-length note still shows
  if max_beats is not None:
    end = np.minimum(end, max_beats)
  pitch = table.pitch[keep].astype(np.float64)
  verts = np.stack(
    [
      np.stack([start, pitch - 0.4], -1),
      np.stack([end, pitch - 0.4], -1),
      np.stack([end, pitch + 0.4], -1),
      np.stack([start, pitch + 0.4], -1),
    ],
    axis=1,
  )
  face = np.array([colors[t] for t in table.track[keep].tolist()])
  face[:, 3] = 0.35 + 0.65 * np.clip(table.velocity[keep] / 127.0, 0, 1)
  ax.add_collection(PolyCollection(verts, facecolors=face, edgecolors="0.2", linewidths=0.2))

  right = max_beats if max_beats is not None else float(end.max())
  low, high = int(pitch.min()) - 2, int(pitch.max()) + 2
  ax.set_xlim(0, max(right, 1.0))
  ax.set_ylim(low, high)
  beats_per_bar = (
    float(table.ts_numerator[0]) * 4 / float(table.ts_denominator[0])
    if table.ts_numerator.size
    else 4.0
  )
  bars = np.arange(0, max(right, 1.0) + 1e-9, beats_per_bar)
  if bars.size <= 200:
    ax.vlines(bars, low, high, colors="0.85", linewidths=0.6, zorder=0)
  octaves = [p for p in range(0, 128, 12) if low <= p <= high]
  ax.set_yticks(octaves, [note_name(p) for p in octaves])
  ax.set_xlabel("beat")
  ax.set_ylabel("pitch")
  fig.legend(handles=handles, loc="outside right upper", title="track")
  return _save(fig, path)


# ---- attention ----


@_styled
def plot_relative_gain(
  ks, gain_per_head, mean_gain, path, *, field: str, xlabel: str | None = None, title: str = ""
) -> Path:
  """Attention gain against the difference k of one field between query and key (the
  MMT paper's relative-attention view): each head thin, their mean thick, a zero line,
  and the musical landmarks where the field has them: bar lines (multiples of 4 beats)
  for beat-like fields, octaves, fifths and fourths (+-12, +-7, +-5) for pitch."""
  ks = np.asarray(ks, np.float64)
  gain_per_head = np.atleast_2d(np.asarray(gain_per_head, np.float64))  # (H, K)
  mean_gain = np.asarray(mean_gain, np.float64)  # (K,)
  fig = _new_figure(9, 4.5)
  ax = fig.add_subplot()
  handles = []
  if ks.size:
    lo, hi = float(ks.min()), float(ks.max())
    if "pitch" in field:
      for interval, name, style in _PITCH_GUIDES:
        at = [x for x in (-interval, interval) if lo <= x <= hi]
        if at:
          ax.vlines(
            at,
            0,
            1,
            transform=ax.get_xaxis_transform(),
            colors="0.6",
            linestyles=style,
            linewidths=0.8,
            zorder=0,
          )
          handles.append(
            Line2D([], [], color="0.6", linestyle=style, label=f"±{interval} ({name})")
          )
    elif "beat" in field:
      at = [x for x in np.arange(math.ceil(lo / 4) * 4, hi + 1e-9, 4) if x != 0]
      if at:
        ax.vlines(
          at,
          0,
          1,
          transform=ax.get_xaxis_transform(),
          colors="0.6",
          linestyles=":",
          linewidths=0.8,
          zorder=0,
        )
        handles.append(Line2D([], [], color="0.6", linestyle=":", label="bar (4 beats)"))
  ax.axhline(0, color="0.3", linewidth=0.8)
  heads = gain_per_head.shape[0]
  for h, color in zip(range(heads), _colors(heads)):
    ax.plot(
      ks,
      gain_per_head[h],
      color=color,
      linewidth=0.8,
      alpha=0.6,
      label=f"head {h}" if heads <= 10 else None,
    )
  ax.plot(ks, mean_gain, color="black", linewidth=2.4, label="mean over heads")
  ax.set_xlabel(xlabel or f"k (difference in {field})")
  ax.set_ylabel("attention gain")
  ax.set_title(title or f"relative attention gain by {field} difference")
  ax.grid(alpha=0.2)
  fig.legend(handles=ax.get_legend_handles_labels()[0] + handles, loc="outside right upper")
  return _save(fig, path)


def _annotate(ax, matrix: np.ndarray, fmt: str) -> None:
  finite = matrix[np.isfinite(matrix)]
  middle = (finite.min() + finite.max()) / 2 if finite.size else 0.0
  for (i, j), value in np.ndenumerate(matrix):
    if np.isfinite(value):
      ax.text(
        j,
        i,
        format(value, fmt),
        ha="center",
        va="center",
        fontsize=7,
        color="white" if value < middle else "black",
      )


def _tick_positions(labels: Sequence[str], limit: int = 40) -> list[int]:
  """Where to put labels along a long axis: the labelled ones when the caller left the
  others empty (octaves of a pitch table), else every n-th."""
  named = [i for i, label in enumerate(labels) if label]
  if len(named) < len(labels) and len(named) <= limit:
    return named
  step = max(1, math.ceil(len(labels) / 16))
  return list(range(0, len(labels), step))


@_styled
def plot_category_attention(matrix, labels: Sequence[str], path, *, title: str = "") -> Path:
  """Mean attention from query category (rows) to key category (columns) as a heatmap,
  with the values written in when the table is small enough to read."""
  matrix = np.asarray(matrix, np.float64)  # (C, C)
  fig = _new_figure(7.5, 6.5)
  ax = fig.add_subplot()
  image = ax.imshow(matrix, cmap="viridis", interpolation="nearest")
  fig.colorbar(image, ax=ax, shrink=0.8, label="attention")
  positions = list(range(len(labels)))
  ax.set_xticks(positions, labels, rotation=90 if max(map(len, labels), default=0) > 3 else 0)
  ax.set_yticks(positions, labels)
  ax.set_xlabel("key")
  ax.set_ylabel("query")
  ax.set_title(title or "attention between categories")
  if matrix.shape[0] <= 12:
    _annotate(ax, matrix, ".2f")
  return _save(fig, path)


@_styled
def plot_similarity(
  matrix, path, *, title: str = "", tick_labels: Sequence[str] | None = None
) -> Path:
  """Cosine similarity between embedding rows, -1 (blue) to 1 (red): for a pitch table,
  bands at +-12 off the diagonal are octaves the model learned to be alike."""
  matrix = np.asarray(matrix, np.float64)  # (V, V)
  fig = _new_figure(7.5, 6.5)
  ax = fig.add_subplot()
  image = ax.imshow(matrix, cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
  fig.colorbar(image, ax=ax, shrink=0.8, label="cosine similarity")
  if tick_labels is not None and len(tick_labels) == matrix.shape[0]:
    at = _tick_positions(list(tick_labels))
    ax.set_xticks(at, [tick_labels[i] for i in at], rotation=90)
    ax.set_yticks(at, [tick_labels[i] for i in at])
  ax.set_title(title or "embedding similarity")
  return _save(fig, path)


def _arc(x0: float, y0: float, x1: float, y1: float, lift: float) -> MplPath:
  """A quadratic Bézier from (x0, y0) to (x1, y1), bowed upward by `lift`."""
  control = ((x0 + x1) / 2, (y0 + y1) / 2 + lift)
  return MplPath([(x0, y0), control, (x1, y1)], [MplPath.MOVETO, MplPath.CURVE3, MplPath.CURVE3])


@_styled
def plot_attention_arcs(
  onsets_beats, pitches, weights, query: int, path, *, top_k: int = 8, title: str = ""
) -> Path:
  """Music Transformer's view of one query: the notes as a piano roll of dots, and per
  head (one panel each) arcs from the query note to the earlier notes it attends to
  most, width and opacity by weight. Rows with a NaN onset or pitch (not notes: the
  start of song, an instrument header) are not drawn; each panel's title says what
  share of the head's attention its arcs hold, and the weight on the query itself."""
  onsets = np.asarray(onsets_beats, np.float64)  # (L,)
  pitch = np.asarray(pitches, np.float64)  # (L,)
  weights = np.atleast_2d(np.asarray(weights, np.float64))  # (H, L)
  heads = weights.shape[0]
  cols = min(heads, 4)
  rows = math.ceil(heads / cols)
  fig = _new_figure(4 * cols, 3.2 * rows + 0.4)
  axes = np.atleast_1d(fig.subplots(rows, cols, sharex=True, sharey=True, squeeze=False))
  axes = axes.reshape(-1)
  drawable = np.isfinite(onsets) & np.isfinite(pitch)
  before = drawable & (np.arange(onsets.size) < query)
  x_span = max(np.ptp(onsets[drawable]), 1.0) if drawable.any() else 1.0
  y_span = max(np.ptp(pitch[drawable]), 12.0) if drawable.any() else 12.0
  colors = _colors(heads)
  for h, ax in enumerate(axes):
    if h >= heads:
      ax.set_visible(False)
      continue
    ax.scatter(onsets[drawable & ~before], pitch[drawable & ~before], s=6, color="0.85")
    ax.scatter(onsets[before], pitch[before], s=8, color="0.55")
    row = np.where(before, weights[h], -np.inf)
    keys = [
      int(k) for k in np.argsort(-row, kind="stable")[:top_k] if np.isfinite(row[k]) and row[k] > 0
    ]
    strongest = max((weights[h, k] for k in keys), default=1.0)
    for k in keys:
      share = weights[h, k] / strongest
      distance = math.hypot(
        (onsets[query] - onsets[k]) / x_span, (pitch[query] - pitch[k]) / y_span
      )
      patch = PathPatch(
        _arc(onsets[k], pitch[k], onsets[query], pitch[query], 0.35 * distance * y_span),
        facecolor="none",
        edgecolor=colors[h],
        linewidth=0.6 + 3.4 * share,
        alpha=0.25 + 0.75 * share,
      )
      ax.add_patch(patch)
      ax.scatter([onsets[k]], [pitch[k]], s=10 + 40 * share, color=colors[h], zorder=3)
    if 0 <= query < onsets.size and drawable[query]:
      ax.scatter(
        [onsets[query]], [pitch[query]], marker="*", s=120, color="crimson", zorder=4, label="query"
      )
    held = float(sum(weights[h, k] for k in keys))
    self_weight = float(weights[h, query]) if 0 <= query < weights.shape[1] else float("nan")
    ax.set_title(f"head {h}: top {len(keys)} hold {held:.0%}, self {self_weight:.0%}")
    ax.grid(alpha=0.2)
  for ax in axes[-cols:]:
    ax.set_xlabel("beat")
  for ax in axes[::cols]:
    ax.set_ylabel("pitch")
  if drawable.any():
    axes[0].set_xlim(onsets[drawable].min() - 0.5, onsets[drawable].max() + 0.5)
    axes[0].set_ylim(pitch[drawable].min() - 3, pitch[drawable].max() + 0.45 * y_span)
  fig.suptitle(title or f"attention of row {query} (top {top_k} earlier notes per head)")
  return _save(fig, path)


# ---- music metrics ----


def _metric_values(values, index: int, name: str) -> np.ndarray:
  column = values[name] if isinstance(values, Mapping) else np.asarray(values)[:, index]
  column = np.asarray(column, np.float64).reshape(-1)
  return column[np.isfinite(column)]


@_styled
def plot_metric_histograms(sample_values, truth_values, path, names: Sequence[str]) -> Path:
  """Per metric, the distribution over generated samples against the ground-truth
  songs, on shared bins and as densities so sets of different sizes compare.
  Values are name -> (n,) per set, or (n, M) arrays with columns in `names` order;
  NaN (a metric undefined for a song) is left out."""
  count = max(len(names), 1)
  cols = min(count, 3)
  rows = math.ceil(count / cols)
  fig = _new_figure(4.5 * cols, 3.2 * rows)
  axes = np.asarray(fig.subplots(rows, cols, squeeze=False)).reshape(-1)
  for i, ax in enumerate(axes):
    if i >= len(names):
      ax.set_visible(False)
      continue
    name = names[i]
    samples = _metric_values(sample_values, i, name)
    truth = _metric_values(truth_values, i, name)
    ax.set_title(name)
    both = np.concatenate([samples, truth])
    if not both.size:
      _blank(ax, "no values")
      continue
    lo, hi = float(both.min()), float(both.max())
    if hi - lo < 1e-12:
      lo, hi = lo - 0.5, hi + 0.5
    bins = np.linspace(lo, hi, 21)
    if truth.size:
      ax.hist(
        truth,
        bins=bins,
        density=True,
        color="C0",
        alpha=0.35,
        label=f"ground truth (n={truth.size})",
      )
    if samples.size:
      ax.hist(
        samples,
        bins=bins,
        density=True,
        histtype="step",
        color="C3",
        linewidth=1.6,
        label=f"samples (n={samples.size})",
      )
    ax.set_ylabel("density")
    ax.legend()
  if not names:
    _blank(axes[0], "no metrics")
  return _save(fig, path)
