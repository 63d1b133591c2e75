"""Crops: each window decodes to the song's music from its start on, shifted to time 0."""

from __future__ import annotations

import numpy as np
import pytest

from mtx.data.crop import crop, crop_mmm, crop_mmt, mmm_layout, mmm_window, mmt_window, remi_window
from mtx.errors import ConfigError
from mtx.representation import CODEC_NAMES, bars, get_codec
from mtx.representation.mmt import BEAT, END_OF_SONG, NOTE, TYPE
from tests.data.helpers import OFFSET, ONSET, TRACK, decoded, note_rows, sorted_rows, value_at


def _rng(seed):
  return np.random.default_rng(seed)


def _notes(table):
  return np.delete(table.notes_array(), TRACK, axis=1)


def _shifted(rows, ticks):
  rows = rows.copy()
  rows[:, [ONSET, OFFSET]] -= ticks
  return sorted_rows(rows)


# ---- mmt ------------------------------------------------------------------------


@pytest.mark.parametrize("max_beat", [None, 8])
def test_mmt_window_keeps_the_header_and_decodes_to_the_notes_shifted_in_time(
  chorale_tokens, drum_files, max_beat
):
  codec = get_codec("mmt")
  tpb = codec.ticks_per_beat
  songs = chorale_tokens["mmt"][:4] + [codec.encode(f) for f in drum_files]
  for tokens in songs:
    header = int(np.argmax(tokens[:, TYPE] == NOTE))
    table, _ = decoded(codec, tokens)
    beat = table.onset // tpb
    last_beat = int(beat.max())
    for start in sorted({0, 1, last_beat // 2, last_beat}):
      window = mmt_window(tokens, start, max_beat)
      np.testing.assert_array_equal(window[:header], tokens[:header])
      got, report = decoded(codec, window)
      assert report.dropped == 0
      inside = beat >= start
      later = np.zeros_like(inside) if max_beat is None else beat >= start + max_beat
      expected = _shifted(_notes(table)[inside & ~later], start * tpb)
      np.testing.assert_array_equal(note_rows(got), expected)
      assert (window[-1, TYPE] == END_OF_SONG) == (not later.any())


def test_mmt_crop_starts_at_a_random_beat_and_fills_the_window(chorale_tokens):
  length = 128
  starts = set()
  for tokens in chorale_tokens["mmt"]:
    last_beat = int(tokens[tokens[:, TYPE] == NOTE, BEAT].max()) - 1
    for seed in range(4):
      got = crop_mmt(tokens, length, _rng(seed))
      assert len(got) == min(len(tokens), length)
      matches = [
        s for s in range(last_beat + 1) if np.array_equal(got, mmt_window(tokens, s)[:length])
      ]
      assert matches, "the crop is no window of the song"
      starts.add(matches[0])
  assert len(starts) > 5


def test_mmt_crop_with_max_beat_spans_at_most_that_many_beats(chorale_tokens):
  max_beat = 16
  for tokens in chorale_tokens["mmt"][:4]:
    last_beat = int(tokens[tokens[:, TYPE] == NOTE, BEAT].max()) - 1
    for seed in range(4):
      got = crop_mmt(tokens, 10_000, _rng(seed), max_beat=max_beat)
      assert got[got[:, TYPE] == NOTE, BEAT].max() - 1 < max_beat
      assert any(
        np.array_equal(got, mmt_window(tokens, s, max_beat))
        for s in range(max(last_beat + 2 - max_beat, 1))
      )


# ---- every representation -------------------------------------------------------


@pytest.mark.parametrize("name", CODEC_NAMES)
def test_short_songs_stay_whole_and_eval_crops_start_the_song(name, chorale_tokens):
  codec = get_codec(name)
  for tokens in chorale_tokens[name][:4]:
    n = len(tokens)
    np.testing.assert_array_equal(crop(codec, tokens, n + 10, _rng(0)), tokens)
    np.testing.assert_array_equal(crop(codec, tokens, n, _rng(1)), tokens)
    first = crop(codec, tokens, n // 2)
    np.testing.assert_array_equal(crop(codec, tokens, n // 2), first)
    if name == "mmm":  # the first bars of every track
      layout = mmm_layout(codec, tokens)
      assert any(
        np.array_equal(first, mmm_window(codec, tokens, layout, 0, count)[: n // 2])
        for count in range(1, layout.num_bars + 1)
      )
    else:
      np.testing.assert_array_equal(first, tokens[: n // 2])


def test_crop_length_must_be_positive(chorale_tokens):
  with pytest.raises(ConfigError, match="length"):
    crop(get_codec("mmt"), chorale_tokens["mmt"][0], 0)


# ---- performance ----------------------------------------------------------------


def test_performance_crop_is_a_contiguous_window_of_events(chorale_tokens):
  codec = get_codec("performance")
  start_of_song = codec.vocab.token("start-of-song")
  length = 200
  for tokens in chorale_tokens["performance"][:4]:
    n = len(tokens)
    for seed in range(4):
      got = crop(codec, tokens, length, _rng(seed))
      assert len(got) == length
      assert any(np.array_equal(got, tokens[s : s + length]) for s in range(n - length + 1))
      got = crop(codec, tokens, length, _rng(seed), start_token=True)
      assert len(got) == length and got[0, 0] == start_of_song
      assert any(np.array_equal(got[1:], tokens[s : s + length - 1]) for s in range(n))


# ---- remi -----------------------------------------------------------------------


def test_remi_window_decodes_to_the_music_from_its_bar_with_tempo_and_meter(
  chorale_tokens, changing_files
):
  codec = get_codec("remi")
  tps = codec.ticks_per_beat // codec.resolution
  bar = codec.vocab.token("bar")
  songs = chorale_tokens["remi"][:3] + [codec.encode(f) for f in changing_files]
  for tokens in songs:
    table, _ = decoded(codec, tokens)
    starts, _ = bars.bar_grid(table, codec.resolution, int(table.onset.max()) // tps)
    bar_rows = np.flatnonzero(tokens[:, 0] == bar)
    assert len(bar_rows) == len(starts)
    for j in sorted({1, len(bar_rows) // 2, len(bar_rows) - 1}):
      window = remi_window(codec, tokens, int(bar_rows[j]))
      got, report = decoded(codec, window)
      assert report.dropped == 0
      t0 = int(starts[j]) * tps
      np.testing.assert_array_equal(note_rows(got), _shifted(_notes(table)[table.onset >= t0], t0))
      ticks = np.unique(np.concatenate([[0], got.onset]))
      for times, values in (
        ("tempo_tick", "tempo_mspq"),
        ("ts_tick", "ts_numerator"),
        ("ts_tick", "ts_denominator"),
      ):
        np.testing.assert_array_equal(
          value_at(ticks, getattr(got, times), getattr(got, values)),
          value_at(ticks + t0, getattr(table, times), getattr(table, values)),
        )


def test_remi_crop_starts_at_a_random_bar_and_fills_the_window(chorale_tokens):
  codec = get_codec("remi")
  length = 256
  bar = codec.vocab.token("bar")
  starts = set()
  for tokens in chorale_tokens["remi"][:6]:
    bar_rows = np.flatnonzero(tokens[:, 0] == bar)
    for seed in range(4):
      got = crop(codec, tokens, length, _rng(seed))
      assert len(got) == length
      matches = [
        int(r) for r in bar_rows if np.array_equal(got, remi_window(codec, tokens, int(r), length))
      ]
      assert matches or np.array_equal(got, tokens[:length])
      starts.update(matches)
  assert len(starts) > 5


# ---- mmm ------------------------------------------------------------------------


def test_mmm_window_decodes_to_the_notes_inside_its_bars(
  chorale_tokens, drum_files, changing_files
):
  codec = get_codec("mmm")
  res, tps = codec.resolution, codec.ticks_per_beat // codec.resolution
  songs = (
    chorale_tokens["mmm"][:3]
    + [codec.encode(f) for f in drum_files[:1]]
    + [codec.encode(f) for f in changing_files if "bach" in str(f) or "pop909" in str(f)]
  )
  for tokens in songs:
    layout = mmm_layout(codec, tokens)
    assert layout is not None and layout.window_rows(0, layout.num_bars) == len(tokens)
    np.testing.assert_array_equal(mmm_window(codec, tokens, layout, 0, layout.num_bars), tokens)
    table, _ = decoded(codec, tokens)
    starts, ts = bars.bar_grid(table, res, int(table.offset.max()) // tps - 1)
    assert len(starts) == layout.num_bars
    ends = np.append(starts[1:], starts[-1] + bars.bar_steps(int(ts[-1]), res))
    count_bars = layout.num_bars
    for first, count in {(0, 1), (1, 2), (count_bars // 2, 3), (count_bars - 2, 2)}:
      window = mmm_window(codec, tokens, layout, first, count)
      assert len(window) == layout.window_rows(first, count)
      w0, w1 = int(starts[first]) * tps, int(ends[first + count - 1]) * tps
      got, report = decoded(codec, window)
      inside = (table.onset >= w0) & (table.onset < w1)
      expected = _notes(table)[inside]
      expected[:, OFFSET] = np.minimum(expected[:, OFFSET], w1)
      np.testing.assert_array_equal(note_rows(got), _shifted(expected, w0))
      orphan_offs = (table.onset < w0) & (table.offset > w0) & (table.offset <= w1)
      assert report.dropped == int(orphan_offs.sum())
      np.testing.assert_array_equal(
        value_at([0], got.ts_tick, got.ts_numerator),
        value_at([w0], table.ts_tick, table.ts_numerator),
      )


def test_mmm_crop_is_the_longest_window_of_bars_that_fits(chorale_tokens):
  codec = get_codec("mmm")
  length = 256
  firsts = set()
  for tokens in chorale_tokens["mmm"][:4]:
    layout = mmm_layout(codec, tokens)
    num_bars = layout.num_bars
    windows = {
      (f, c): mmm_window(codec, tokens, layout, f, c)
      for f in range(num_bars)
      for c in range(1, num_bars - f + 1)
    }
    for seed in range(3):
      got = crop_mmm(codec, tokens, length, _rng(seed))
      matches = [
        (f, c)
        for (f, c), w in windows.items()
        if np.array_equal(got, w[:length])
        and (c == 1 or len(w) <= length)
        and (f + c == num_bars or len(windows[f, c + 1]) > length)
      ]
      assert matches, "the crop is not the longest window of bars that fits"
      firsts.add(matches[0][0])
  assert len(firsts) > 3
