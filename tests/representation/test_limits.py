"""Every codec bounds what one file may expand to, and refuses or truncates past it
quickly; the reader bounds the note table; decoding names bad token arrays."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from mtx.errors import ConfigError, DecodeError, MidiReadError
from mtx.representation import CODEC_NAMES, get_codec
from mtx.representation.midi_io import read_note_table, scan_smf
from mtx.representation.performance import ticks_to_time_steps
from tests.midi_corpus import NEEDS_SHARED, SHARED_MIDI_FILES
from tests.representation.limited_worker import Failure, WorkerPool, vlq


def smf(events: bytes, ticks_per_beat: int = 96) -> bytes:
  """A one-track type-0 file holding `events` (delta times included)."""
  track = events + b"\x00\xff\x2f\x00"
  return (
    b"MThd"
    + struct.pack(">IHHH", 6, 0, 1, ticks_per_beat)
    + b"MTrk"
    + struct.pack(">I", len(track))
    + track
  )


def note(delta: int, pitch: int, length: int) -> bytes:
  return vlq(delta) + bytes([0x90, pitch, 100]) + vlq(length) + bytes([0x80, pitch, 0])


# A 40-byte file: a note at 0 and one 2**28 - 1 ticks later at 1 tick per beat and
# the slowest tempo MIDI holds (16.8 s a beat): 268 million beats, 143 years.
SLOWEST_TEMPO = b"\x00\xff\x51\x03\xff\xff\xff"
FAR_NOTE = smf(SLOWEST_TEMPO + note(0, 60, 1) + note(0x0FFFFFFF, 62, 1), ticks_per_beat=1)
# One note that starts at 0 and never stops for 2**28 - 1 ticks.
ENDLESS_NOTE = smf(SLOWEST_TEMPO + note(0, 60, 0x0FFFFFFF), ticks_per_beat=1)


def _run(pool, jobs):
  results = dict(pool.run(jobs))
  failures = [r.problem for r in results.values() if isinstance(r, Failure)]
  assert not failures, failures
  return results


def test_files_that_would_expand_without_bound_are_refused_quickly_in_bounded_memory(tmp_path):
  far, endless = tmp_path / "far_note.mid", tmp_path / "endless_note.mid"
  far.write_bytes(FAR_NOTE)
  endless.write_bytes(ENDLESS_NOTE)
  pool = WorkerPool(workers=1, memory_bytes=512 << 20, timeout_s=60.0)
  try:
    results = _run(pool, [("far", far, CODEC_NAMES, {}), ("endless", endless, CODEC_NAMES, {})])
  finally:
    pool.close()
  for label, path in (("far", far), ("endless", endless)):
    for codec, (outcome, detail, _, seconds) in results[label].items():
      if label == "endless" and codec in ("mmt", "remi"):
        # their notes are capped at 32 beats (max_duration), so the note just fits
        assert outcome == "ok", (codec, detail)
      else:
        assert outcome == "mtx" and detail.startswith("RepresentationOverflowError"), (
          label,
          codec,
          detail,
        )
        assert path.name in detail and ("raise max_" in detail) and "truncate" in detail
      assert seconds < 5, (label, codec, seconds)


def test_truncation_keeps_the_start_within_the_limit(tmp_path):
  far = tmp_path / "far_note.mid"
  far.write_bytes(FAR_NOTE)
  options = {
    "performance": {"overflow": "truncate", "max_seconds": 600},
    "remi": {"overflow": "truncate", "max_beat": 64},
    "mmm": {"overflow": "truncate", "max_beat": 64},
    "mmt": {"overflow": "truncate"},
  }
  pool = WorkerPool(workers=1, memory_bytes=512 << 20, timeout_s=60.0)
  try:
    results = _run(pool, [("far", far, CODEC_NAMES, options)])
  finally:
    pool.close()
  for codec, (outcome, detail, rows, _) in results["far"].items():
    assert outcome == "ok", (codec, detail)
    assert rows < 50, (codec, rows)  # the first note alone, with the bars before it
  # In process now that it is known to be small: only the first note is left.
  for codec in CODEC_NAMES:
    midi = get_codec(codec, **options[codec]).decode(get_codec(codec, **options[codec]).encode(far))
    assert [n.pitch for i in midi.instruments for n in i.notes] == [60], codec


def test_the_limits_cover_the_mahler_symphony_and_maestro_with_a_wide_margin():
  """No real file comes near the defaults: the longest of ../shared/midi lasts
  under 1/5 of performance's max_seconds and under 1/5 of remi's and mmm's max_beat."""
  if not SHARED_MIDI_FILES:
    pytest.skip("no real MIDI corpus at ../shared/midi")
  longest_seconds = longest_beats = 0.0
  for path in SHARED_MIDI_FILES:
    table = read_note_table(path)
    end = int(table.offset.max())
    longest_beats = max(longest_beats, end / table.ticks_per_beat)
    longest_seconds = max(
      longest_seconds, float(ticks_to_time_steps(np.array([end]), table, 100)[0]) / 100
    )
  assert 2_000 < longest_seconds < get_codec("performance").max_seconds / 5
  assert 4_000 < longest_beats < min(get_codec("remi").max_beat, get_codec("mmm").max_beat) / 5


def test_times_past_32_bit_ticks_are_refused_not_wrapped(tmp_path):
  """symusic keeps ticks in int32: ten deltas of 2**28 - 1 would read as negative times."""
  events = note(0, 60, 10) + b"".join(vlq(0x0FFFFFFF) + b"\xb0\x07\x64" for _ in range(10))
  path = tmp_path / "wraps.mid"
  path.write_bytes(smf(events + note(0, 62, 10)))
  assert scan_smf(path.read_bytes()).last_tick > 2**31
  with pytest.raises(MidiReadError) as info:
    read_note_table(path)
  assert "wraps.mid" in str(info.value) and "delta times are corrupt" in str(info.value)


def test_note_ons_never_released_are_counted_in_the_read_report(tmp_path):
  # on 60, on 60, off 60 (one of the two never ends), on 62 (never ends), on 64 + off 64
  events = (
    b"\x00\x90\x3c\x40\x00\x90\x3c\x40\x10\x80\x3c\x00\x00\x90\x3e\x40"
    + note(0, 64, 5)
    + b"\x00\x90\x41\x00"
  )  # a note-on of velocity 0: a note-off
  path = tmp_path / "hanging.mid"
  path.write_bytes(smf(events))
  table = read_note_table(path)
  assert (table.read_report.note_ons, table.read_report.unreleased) == (4, 2)
  assert table.num_notes == 2


@NEEDS_SHARED
def test_every_note_on_of_the_real_files_is_a_note_or_counted_as_unreleased():
  unreleased = {}
  for path in SHARED_MIDI_FILES:
    table = read_note_table(path)
    report = table.read_report
    assert table.num_notes == report.note_ons - report.unreleased, path
    if report.unreleased:
      unreleased[path.name] = report.unreleased
  assert unreleased == {"1390.mid": 17, "bwv299.mid": 2, "bwv315.mid": 1}


@pytest.mark.parametrize("codec_name", CODEC_NAMES)
def test_bad_length_options_raise_config_errors(codec_name):
  option = "max_seconds" if codec_name == "performance" else "max_beat"
  for bad in (0, -1, 2.5, "long", True):
    with pytest.raises(ConfigError, match=option):
      get_codec(codec_name, **{option: bad})
  with pytest.raises(ConfigError, match="overflow must be 'error' or 'truncate'"):
    get_codec(codec_name, overflow="wrap")


@pytest.mark.parametrize("codec_name", CODEC_NAMES)
def test_ragged_and_huge_unsigned_tokens_raise_decode_errors_that_say_what_is_wrong(codec_name):
  codec = get_codec(codec_name)
  n = codec.n_fields
  with pytest.raises(DecodeError, match="not a rectangular array"):
    codec.decode([[0] * n, [0] * (n + 1)])
  huge = np.full((1, n), np.iinfo(np.uint64).max, np.uint64)
  with pytest.raises(DecodeError, match="is 18446744073709551615, outside"):
    codec.decode(huge)
