"""Bars: the time-signature vocabulary and the bar grid of bar-based codecs.

REMI and MMM place notes inside bars, so encoder and decoder must agree on where
every bar starts. The grid is built on a step grid of `steps_per_beat` steps per
quarter note:

- a time signature n/d makes bars of n * 4 / d beats; only signatures in
  `TIME_SIGNATURES` (denominators 1-16, bars of at most 8 beats) have a token:
  any other one is read as 4/4, and a file without one is 4/4 from the start;
- a change takes effect at the first barline (of the signature before it) at or
  after the change's quantized step, so every bar is whole.

Moving a barline never moves a note: notes keep their absolute step. Only the
bar in which a note is written changes, and the decoder rebuilds the same grid
from the time-signature tokens.
"""

from __future__ import annotations

import numpy as np

from mtx.representation.notetable import NoteTable
from mtx.representation.quantize import ticks_to_steps

MAX_BAR_BEATS = 8
DEFAULT_TIME_SIGNATURE = (4, 4)

# (numerator, denominator) pairs with a token, in token order.
TIME_SIGNATURES = tuple(
  (numerator, denominator)
  for denominator in (1, 2, 4, 8, 16)
  for numerator in range(1, MAX_BAR_BEATS * denominator // 4 + 1)
)
_TS_INDEX = {ts: i for i, ts in enumerate(TIME_SIGNATURES)}
DEFAULT_TS_INDEX = _TS_INDEX[DEFAULT_TIME_SIGNATURE]


def time_signature_index(numerator: int, denominator: int) -> int:
  """Token index of a signature; unsupported signatures map to 4/4."""
  return _TS_INDEX.get((int(numerator), int(denominator)), DEFAULT_TS_INDEX)


def bar_steps(ts_index: int, steps_per_beat: int) -> int:
  """Length of one bar of signature `ts_index` in steps (a whole number for
  steps_per_beat a multiple of 4, as 16ths are the finest denominator)."""
  numerator, denominator = TIME_SIGNATURES[ts_index]
  return numerator * 4 * steps_per_beat // denominator


def max_bar_steps(steps_per_beat: int) -> int:
  return MAX_BAR_BEATS * steps_per_beat


def bar_grid(table: NoteTable, steps_per_beat: int, last_step: int):
  """Bars covering steps 0..last_step (inclusive).

  Returns (starts, ts_indices): int64 arrays, one entry per bar: its first step
  and its time signature's index in `TIME_SIGNATURES`.
  """
  if steps_per_beat % 4:
    raise ValueError(f"steps_per_beat must be a multiple of 4, got {steps_per_beat}")
  change_steps = ticks_to_steps(table.ts_tick, table.ticks_per_beat, steps_per_beat)
  change_ts = [time_signature_index(n, d) for n, d in zip(table.ts_numerator, table.ts_denominator)]
  starts, signatures = [], []
  current = DEFAULT_TS_INDEX
  pending = 0  # next change to apply
  step = 0
  while step <= last_step:
    # apply every change whose step is at or before this barline (last one wins)
    while pending < len(change_ts) and change_steps[pending] <= step:
      current = change_ts[pending]
      pending += 1
    starts.append(step)
    signatures.append(current)
    step += bar_steps(current, steps_per_beat)
  return np.asarray(starts, np.int64), np.asarray(signatures, np.int64)
