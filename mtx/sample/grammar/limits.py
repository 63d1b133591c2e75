"""What a run's training data says about time and length: the sampler's default limits.

numpy only, read once per run (`mtx.train.loop.run_record` saves them with the run,
`mtx.sample.restore.sampling_limits` reads them back); what a time counts is the
representation's grammar's (`Grammar.time_unit`, `Grammar.note_times`).
"""

from __future__ import annotations

import numpy as np

from mtx.representation.codec import Codec
from mtx.sample.grammar.base import grammar_class

# The silence limit is the longest silence at least this share of the training songs reach.
SILENCE_SHARE = 0.01


def note_times(codec: Codec, tokens: np.ndarray) -> np.ndarray | None:
  """The time of each note of a song, in `TIME_UNITS`: (n_notes,) int64, or None where
  the grammar has no time limit (mmm). mmt: each note row's beat; performance: the time
  steps before each note-on or note-off (the sum of the time-shifts so far); remi: the
  bar lines before each Pitch (1 in the first bar)."""
  tokens = np.asarray(tokens).reshape(-1, codec.n_fields)
  return grammar_class(codec).note_times(codec, tokens)


def time_limits(codec: Codec, songs) -> dict:
  """What a run's data says about time and length, for the sampler's defaults.

  songs: token arrays (n, n_fields) of the training split, read once. Returns
  {"max_time_jump": the largest time between two consecutive notes of a song,
   "max_first_time": the largest time before a song's first note (both in `TIME_UNITS`;
   0 where the representation has none), "max_onset_notes": mmt, the most note rows at
   one beat and position (0 for the others), "max_silence": mmt, the longest silence,
   in positions, between the end of every note so far and the next note, that at least
   SILENCE_SHARE of the songs reach (the 99th percentile of the songs' longest silences:
   one song's four-beat rest does not license every sample to pause four beats; absent
   for the others), "longest_song": the most rows of a song, "songs": how many}. A pure
   function of the tokens.
  """
  kind = grammar_class(codec)
  jump = first = longest = count = onset = 0
  silences = []
  for tokens in songs:
    tokens = np.asarray(tokens).reshape(-1, codec.n_fields)
    count += 1
    longest = max(longest, len(tokens))
    if kind.limits_silence:
      silences.append(kind.longest_silence(codec, tokens))
    onset = max(onset, kind.onset_notes(codec, tokens))
    times = kind.note_times(codec, tokens)
    if times is None or not len(times):
      continue
    first = max(first, int(times[0]))
    if len(times) > 1:
      jump = max(jump, int(np.diff(times).max()))
  limits = {
    "max_time_jump": jump,
    "max_first_time": first,
    "max_onset_notes": onset,
    "longest_song": longest,
    "songs": count,
  }
  if kind.limits_silence:
    limits["max_silence"] = (
      int(np.percentile(silences, 100 * (1 - SILENCE_SHARE), method="higher")) if silences else 0
    )
  return limits
