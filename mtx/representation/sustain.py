"""The sustain pedal folded into note durations, as the Music Transformer data.

Performance codecs have no pedal event: like Magenta's pipeline for MAESTRO
(note_seq `sequences_lib.apply_sustain_control_changes`, then quantization),
the pedal is applied to the notes before encoding, so that what the model
hears is how long each string sounds. The rule, per track (a pedal acts only
on the notes of its own track):

- controller 64 with value >= 64 presses the pedal, a value < 64 releases it;
  at one tick, presses are read before releases (so a press and a release at
  the same tick leave the pedal up), and pedal events before note events;
- a note released while the pedal is down sounds on until the next release of
  the pedal (or, with none later, until the last event of the input: the
  latest note-off or pedal event);
- a note struck while the pedal is down ends every note of the same pitch of
  its track that still sounds (held or sustained) at that instant; a note
  ended that way at its own onset (two strikes of one key at one instant) is
  removed, and of such strikes the one latest in input order is kept.

Everything is computed on integer ticks, which gives the same order as
note_seq's seconds because the tempo map is monotonic. Vectorized per track:
the input order stands in for note_seq's note order.
"""

from __future__ import annotations

import numpy as np

PEDAL_DOWN_VALUE = 64  # controller-64 values >= this press the pedal


def apply_sustain(
  onset, offset, pitch, track, sustain_tick, sustain_value, sustain_track
) -> tuple[np.ndarray, np.ndarray]:
  """Offsets after the sustain pedal, and which notes survive.

  Arguments are a `NoteTable`'s arrays (or any subset of its notes with the
  pedal events that concern them). Returns `(offset, keep)`: the new (n,) int64
  offsets, and an (n,) bool mask that is False only for a note struck twice at
  one instant under the pedal (see the module docstring).
  """
  onset = np.asarray(onset, np.int64)
  offset = np.asarray(offset, np.int64)
  pitch = np.asarray(pitch, np.int64)
  track = np.asarray(track, np.int64)
  sustain_tick = np.asarray(sustain_tick, np.int64)
  sustain_value = np.asarray(sustain_value, np.int64)
  sustain_track = np.asarray(sustain_track, np.int64)
  new_offset = offset.copy()
  keep = np.ones(onset.shape[0], bool)
  if onset.size == 0 or sustain_tick.size == 0:
    return new_offset, keep
  last_event = max(int(offset.max()), int(onset.max()), int(sustain_tick.max()))
  for k in np.unique(sustain_track):
    notes = np.flatnonzero(track == k)
    if notes.size == 0:
      continue
    pedal = sustain_track == k
    ticks, down_after = pedal_states(sustain_tick[pedal], sustain_value[pedal])
    end, removed = _sustain_one_track(
      onset[notes], offset[notes], pitch[notes], ticks, down_after, last_event
    )
    new_offset[notes] = end
    keep[notes] = ~removed
  return new_offset, keep


def pedal_states(ticks, values) -> tuple[np.ndarray, np.ndarray]:
  """The pedal of one track as (sorted distinct ticks, down after that tick).

  After all events at a tick the pedal is down unless one of them is a
  release (presses are read first)."""
  ticks = np.asarray(ticks, np.int64)
  values = np.asarray(values, np.int64)
  unique_ticks, inverse = np.unique(ticks, return_inverse=True)
  released = np.zeros(unique_ticks.size, bool)
  np.logical_or.at(released, inverse.reshape(-1), values < PEDAL_DOWN_VALUE)
  return unique_ticks, ~released


def _pedal_down_at(times, ticks, down_after) -> np.ndarray:
  """Whether the pedal is down when a note event at `times` is read."""
  last = np.searchsorted(ticks, times, side="right") - 1
  return (last >= 0) & down_after[np.maximum(last, 0)]


def _sustain_one_track(onset, offset, pitch, ticks, down_after, last_event):
  """(new offsets, removed mask) for the notes of one track."""
  n = onset.size
  # A note let go with the pedal down sounds until the next pedal release, or
  # the last event when none follows (it is the sentinel at the end).
  release_ticks = np.append(ticks[~down_after], last_event)
  release_end = release_ticks[np.searchsorted(release_ticks[:-1], offset, side="right")]
  natural_end = np.where(_pedal_down_at(offset, ticks, down_after), release_end, offset)

  # The first later strike of the same pitch under the pedal ends the note,
  # if the note still sounds then (its natural end is inclusive: a note-on is
  # read before a note-off at the same tick, and a pedal release before both).
  order = np.lexsort((np.arange(n), onset, pitch))
  s_pitch, s_onset, s_end = pitch[order], onset[order], natural_end[order]
  strikes = np.flatnonzero(_pedal_down_at(s_onset, ticks, down_after))
  if strikes.size == 0:
    return natural_end, np.zeros(n, bool)
  following = np.searchsorted(strikes, np.arange(n), side="right")
  nxt = strikes[np.minimum(following, strikes.size - 1)]
  cut = (following < strikes.size) & (s_pitch[nxt] == s_pitch) & (s_onset[nxt] <= s_end)
  end_sorted = np.where(cut, s_onset[nxt], s_end)
  removed_sorted = cut & (end_sorted == s_onset)

  end = np.empty(n, np.int64)
  removed = np.empty(n, bool)
  end[order] = end_sorted
  removed[order] = removed_sorted
  return end, removed
