"""Pure quantization helpers shared by the codecs (numpy in, numpy out)."""

from __future__ import annotations

import numpy as np


def ticks_to_steps(ticks, ticks_per_beat: int, steps_per_beat: int) -> np.ndarray:
  """Rounds ticks to the nearest step of a `steps_per_beat` grid, halves up.

  Integer arithmetic, so the result never depends on float rounding."""
  ticks = np.asarray(ticks, np.int64)
  return (2 * ticks * steps_per_beat + ticks_per_beat) // (2 * ticks_per_beat)


def ticks_to_steps_like_muspy(ticks, ticks_per_beat: int, steps_per_beat: int) -> np.ndarray:
  """Rounds ticks to a `steps_per_beat` grid exactly as MusPy's
  `Music.adjust_resolution`, which the MMT reference's data preparation calls:
  `round(tick * (steps_per_beat / ticks_per_beat))` on float64, Python's `round`,
  so an exact half step goes to the even step (2.5 -> 2, 3.5 -> 4).

  The float product is the reference's rule, float rounding included; np.rint is
  the same IEEE round-half-to-even as Python's `round` on a float."""
  ticks = np.asarray(ticks, np.int64)
  return np.rint(ticks * (steps_per_beat / ticks_per_beat)).astype(np.int64)


def nearest_index(values, table: np.ndarray) -> np.ndarray:
  """Index of the nearest entry of the sorted `table`; ties go to the smaller."""
  values = np.asarray(values, np.int64)
  table = np.asarray(table, np.int64)
  right = np.clip(np.searchsorted(table, values, side="left"), 0, len(table) - 1)
  left = np.clip(right - 1, 0, len(table) - 1)
  take_left = np.abs(values - table[left]) <= np.abs(table[right] - values)
  return np.where(take_left, left, right)


def ticks_to_seconds(
  ticks, tempo_tick: np.ndarray, tempo_mspq: np.ndarray, ticks_per_beat: int
) -> np.ndarray:
  """Converts ticks to seconds through a piecewise-constant tempo map.

  `tempo_tick` must start at 0 (as `NoteTable` guarantees)."""
  ticks = np.asarray(ticks, np.int64)
  tempo_tick = np.asarray(tempo_tick, np.int64)
  seconds_per_tick = np.asarray(tempo_mspq, np.float64) / 1e6 / ticks_per_beat
  segment_seconds = np.diff(tempo_tick) * seconds_per_tick[:-1]
  start_seconds = np.concatenate([[0.0], np.cumsum(segment_seconds)])
  segment = np.searchsorted(tempo_tick, ticks, side="right") - 1
  return start_seconds[segment] + (ticks - tempo_tick[segment]) * seconds_per_tick[segment]
