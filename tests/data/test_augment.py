"""Augmentation: transposed or stretched tokens decode to the same notes, moved."""

from __future__ import annotations

import numpy as np
import pytest

from mtx.data.augment import (
  random_tempo,
  random_transpose,
  shift_remi_tempo,
  stretch_performance,
  tempo_bin_ratio,
  tempo_shift_range,
  transpose,
  transpose_range,
)
from mtx.errors import ConfigError
from mtx.representation import CODEC_NAMES, get_codec
from mtx.representation.remi import qpm_to_tempo_bin
from tests.data.helpers import PITCH, TRACK, decoded, note_rows, sorted_rows


def _songs(name, chorale_tokens, drum_files):
  codec = get_codec(name)
  return chorale_tokens[name][:3] + [codec.encode(f) for f in drum_files]


@pytest.mark.parametrize("name", CODEC_NAMES)
def test_transposed_tokens_decode_to_the_notes_shifted_and_drums_kept(
  name, chorale_tokens, drum_files
):
  codec = get_codec(name)
  drums_seen = 0
  for tokens in _songs(name, chorale_tokens, drum_files):
    before, report = decoded(codec, tokens)
    assert report.dropped == 0
    drums = before.is_drum
    drums_seen += int(drums.sum())
    low = -int(before.pitch[~drums].min())
    high = 127 - int(before.pitch[~drums].max())
    for shift in sorted({low, -5, 3, high}):
      after, report = decoded(codec, transpose(codec, tokens, shift))
      assert report.dropped == 0
      expected = np.delete(before.notes_array(), TRACK, axis=1)
      expected[~drums, PITCH] += shift
      np.testing.assert_array_equal(note_rows(after), sorted_rows(expected))
  if drum_files and name != "performance":  # performance drops drums when encoding
    assert drums_seen > 0, "the Lakh files must bring drums"


@pytest.mark.parametrize("name", CODEC_NAMES)
def test_transpose_range_is_exactly_the_shifts_that_keep_pitches_in_range(
  name, chorale_tokens, drum_files
):
  codec = get_codec(name)
  for tokens in _songs(name, chorale_tokens, drum_files)[2:4]:
    table, _ = decoded(codec, tokens)
    pitches = table.pitch[~table.is_drum].astype(int)
    low, high = transpose_range(codec, tokens, -200, 200)
    fits = [s for s in range(-200, 201) if pitches.min() + s >= 0 and pitches.max() + s <= 127]
    assert (low, high) == (fits[0], fits[-1])
    assert transpose_range(codec, tokens, -5, 6) == (max(-5, low), min(6, high))
    with pytest.raises(ConfigError, match="out of 0..127"):
      transpose(codec, tokens, high + 1)


@pytest.mark.parametrize("name", CODEC_NAMES)
def test_random_transposition_stays_in_range_and_varies(name, chorale_tokens, drum_files):
  codec = get_codec(name)
  tokens = _songs(name, chorale_tokens, drum_files)[-1]
  before, _ = decoded(codec, tokens)
  pitched = ~before.is_drum
  shifts = set()
  for seed in range(12):
    moved = random_transpose(codec, tokens, np.random.default_rng(seed), (-60, 60))
    after, report = decoded(codec, moved)
    assert report.dropped == 0
    assert after.pitch.min() >= 0 and after.pitch.max() <= 127
    np.testing.assert_array_equal(
      np.sort(after.pitch[after.is_drum]), np.sort(before.pitch[~pitched])
    )
    shifts.add(int(after.pitch[~after.is_drum].min()) - int(before.pitch[pitched].min()))
  assert len(shifts) > 3


@pytest.mark.parametrize("factor", [0.9, 0.95, 1.05, 1.1])
def test_performance_stretch_scales_time_and_keeps_every_note(
  factor, chorale_tokens, changing_files
):
  codec = get_codec("performance")
  songs = chorale_tokens["performance"][:2] + [codec.encode(f) for f in changing_files]
  step = codec.ticks_per_step
  for tokens in songs:
    before, _ = decoded(codec, tokens)
    stretched = stretch_performance(codec, tokens, factor)
    after, report = decoded(codec, stretched)
    assert report.dropped == 0
    assert after.num_notes == before.num_notes
    np.testing.assert_array_equal(after.pitch, before.pitch)  # same order: time order kept
    np.testing.assert_array_equal(after.velocity, before.velocity)
    on_before, on_after = before.onset // step, after.onset // step
    np.testing.assert_array_equal(np.sign(np.diff(on_after)), np.sign(np.diff(on_before)))
    assert np.all(after.offset > after.onset)
    assert np.abs(on_after - on_before * factor).max() <= 2
    assert abs(after.offset.max() / before.offset.max() - factor) < 0.01
    assert np.all(stretched < codec.vocab.size) and stretched.dtype == tokens.dtype


def test_remi_tempo_shift_moves_every_tempo_by_whole_bins_and_keeps_the_notes(
  chorale_tokens, changing_files
):
  codec = get_codec("remi")
  songs = chorale_tokens["remi"][:2] + [codec.encode(f) for f in changing_files]
  for tokens in songs:
    before, _ = decoded(codec, tokens)
    bins = qpm_to_tempo_bin(before.tempo_qpm)
    low, high = tempo_shift_range(codec, tokens, (0.5001, 1.999))
    fits = [
      d
      for d in range(-40, 41)
      if bins.min() + d >= 0 and bins.max() + d <= 31 and 0.5001 <= tempo_bin_ratio() ** -d <= 1.999
    ]
    assert (low, high) == (fits[0], fits[-1])
    for d in (low, 1, high):
      after, report = decoded(codec, shift_remi_tempo(codec, tokens, d))
      assert report.dropped == 0
      np.testing.assert_array_equal(note_rows(after), note_rows(before))
      np.testing.assert_array_equal(qpm_to_tempo_bin(after.tempo_qpm)[: bins.size], bins + d)
      np.testing.assert_allclose(
        after.tempo_qpm / before.tempo_qpm, tempo_bin_ratio() ** d, rtol=1e-4
      )


def test_random_tempo_draws_from_the_stretch_range(chorale_tokens):
  remi, performance = get_codec("remi"), get_codec("performance")
  tokens = chorale_tokens["remi"][0]
  before, _ = decoded(remi, tokens)
  ratios = set()
  for seed in range(20):
    after, _ = decoded(remi, random_tempo(remi, tokens, np.random.default_rng(seed), (0.9, 1.1)))
    ratios.add(round(float(before.tempo_qpm[0] / after.tempo_qpm[0]), 3))
  assert ratios == {round(tempo_bin_ratio() ** d, 3) for d in (-1, 0, 1)}
  tokens = chorale_tokens["performance"][0]
  before, _ = decoded(performance, tokens)
  for seed in range(5):
    after, _ = decoded(
      performance, random_tempo(performance, tokens, np.random.default_rng(seed), (0.9, 1.1))
    )
    assert 0.89 < after.offset.max() / before.offset.max() < 1.11
  mmt_tokens = chorale_tokens["mmt"][0]
  np.testing.assert_array_equal(
    random_tempo(get_codec("mmt"), mmt_tokens, np.random.default_rng(0), (0.9, 1.1)), mmt_tokens
  )
