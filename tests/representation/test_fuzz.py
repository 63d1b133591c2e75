"""Mutated real MIDI files never crash a codec, hang it or blow up its memory.

Each mutant of a file of ../shared/midi (byte flips, truncations, wrong chunk
lengths, huge delta times, extreme divisions and tempos, empty tracks, a header
claiming 100 tracks, meta events with huge lengths, running status) is read and
encoded by every codec, and the tokens decoded again, in worker processes with
an address-space limit and a per-mutant deadline (`limited_worker`). Every
outcome must be tokens or an `mtx` error: a foreign exception, a dead worker or
a timeout fails the test, named by seed and index so that it reproduces:

    MTX_FUZZ_SEED=<seed> MTX_FUZZ_ONLY=<index> pytest tests/representation/test_fuzz.py

The default run makes MTX_FUZZ_MUTANTS=300 mutants (seed MTX_FUZZ_SEED=0); set
MTX_FUZZ_MUTANTS=5000 for a long run.
"""

from __future__ import annotations

import os
import random
import struct
import time

import pytest

from tests.midi_corpus import SHARED_MIDI, SHARED_MIDI_FILES
from tests.representation.limited_worker import CODECS, Failure, WorkerPool, vlq

NUM_MUTANTS = int(os.environ.get("MTX_FUZZ_MUTANTS", "300"))
SEED = int(os.environ.get("MTX_FUZZ_SEED", "0"))
ONLY = os.environ.get("MTX_FUZZ_ONLY")
# Sources: the small real files (a mutant of the 600 KB symphony costs as much as
# a hundred chorales), plus a few large ones so that long files get mutated too.
SMALL_BYTES = 12_000


def _track_chunks(data: bytes) -> list[tuple[int, int]]:
  """(offset of the chunk header, declared length) of each MTrk chunk."""
  chunks, position = [], 14
  while position + 8 <= len(data):
    length = int.from_bytes(data[position + 4 : position + 8], "big")
    if data[position : position + 4] == b"MTrk":
      chunks.append((position, length))
    position += 8 + length
  return chunks


def _insert_in_track(data: bytearray, rng: random.Random, event: bytes) -> bytearray:
  """`event` (delta time included) inserted at a random event boundary-ish spot
  of a track, with the chunk length fixed so that the rest still parses."""
  chunks = _track_chunks(bytes(data))
  if not chunks:
    return data + event
  position, length = rng.choice(chunks)
  # right after the chunk header, or after the first event (a note-on usually)
  at = position + 8 if rng.random() < 0.5 or length < 8 else position + 8 + min(length, 4)
  data[position + 4 : position + 8] = struct.pack(">I", (length + len(event)) & 0xFFFFFFFF)
  return data[:at] + event + data[at:]


def _mutate(data: bytes, rng: random.Random) -> tuple[bytes, str]:
  data = bytearray(data)
  kind = rng.choice(
    [
      "flip",
      "flips",
      "truncate",
      "chunk-length",
      "huge-delta",
      "huge-deltas",
      "division",
      "tempo",
      "empty-track",
      "100-tracks",
      "huge-meta",
      "running-status",
      "late-note",
      "insert-bytes",
    ]
  )
  if kind == "flip":
    i = rng.randrange(len(data))
    data[i] ^= 1 << rng.randrange(8)
  elif kind == "flips":
    for _ in range(rng.randint(2, 40)):
      data[rng.randrange(len(data))] = rng.randrange(256)
  elif kind == "truncate":
    data = data[: rng.randrange(1, len(data))]
  elif kind == "chunk-length":
    chunks = _track_chunks(bytes(data))
    if chunks:
      position, length = rng.choice(chunks)
      new = rng.choice([0, 1, length - 1, length + 1, length * 2, 0xFFFFFFFF, 0x7FFFFFFF])
      data[position + 4 : position + 8] = struct.pack(">I", max(0, new) & 0xFFFFFFFF)
  elif kind == "huge-delta":  # a note (or an event) far away in time
    delta = rng.choice([0x0FFFFFFF, 0x00FFFFFF, 10**7, 2**21])
    data = _insert_in_track(
      data, rng, vlq(delta) + bytes([0x90, 60, 100]) + vlq(1) + bytes([0x80, 60, 0])
    )
  elif kind == "huge-deltas":  # enough of them to pass 2**31 ticks
    events = b"".join(vlq(0x0FFFFFFF) + bytes([0xB0, 7, 100]) for _ in range(rng.randint(8, 20)))
    data = _insert_in_track(data, rng, events + b"\x00\x90\x3c\x40\x10\x80\x3c\x00")
  elif kind == "division":
    division = rng.choice([0, 1, 2, 3, 0x7FFF, 0x8000, 0xE250, 0xFFFF])
    data[12:14] = struct.pack(">H", division)
  elif kind == "tempo":
    mspq = rng.choice([0, 1, 2, 0xFFFFFF, 0x7FFFFF])
    data = _insert_in_track(data, rng, b"\x00\xff\x51\x03" + mspq.to_bytes(3, "big"))
  elif kind == "empty-track":
    chunks = _track_chunks(bytes(data))
    if chunks:
      position, length = rng.choice(chunks)
      data = data[:position] + b"MTrk\x00\x00\x00\x00" + data[position + 8 + length :]
  elif kind == "100-tracks":
    data[10:12] = struct.pack(">H", rng.choice([100, 0, 0xFFFF]))
  elif kind == "huge-meta":
    length = rng.choice([0x0FFFFFFF, 0x7F, 0x3FFF, len(data)])
    data = _insert_in_track(
      data, rng, b"\x00\xff" + bytes([rng.choice([1, 3, 0x7F, 0x2F])]) + vlq(length) + b"text"
    )
  elif kind == "running-status":  # note events relying on running status, some broken
    events = b"\x00\x90\x3c\x40" + b"".join(
      vlq(rng.randrange(0, 200)) + bytes([rng.randrange(128), rng.randrange(128)])
      for _ in range(rng.randint(1, 30))
    )
    if rng.random() < 0.5:
      events = events[4:]  # no status before the data bytes
    data = _insert_in_track(data, rng, events)
  elif kind == "late-note":  # a note whose note-off never comes, or comes very late
    pitch = rng.randrange(128)
    off = b"" if rng.random() < 0.5 else vlq(0x0FFFFFF) + bytes([0x80, pitch, 0])
    data = _insert_in_track(data, rng, b"\x00" + bytes([0x90, pitch, 90]) + off)
  else:
    at = rng.randrange(len(data) + 1)
    data = data[:at] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 16))) + data[at:]
  return bytes(data), kind


def _sources():
  small = [p for p in SHARED_MIDI_FILES if p.stat().st_size <= SMALL_BYTES]
  large = [p for p in SHARED_MIDI_FILES if p.stat().st_size > SMALL_BYTES]
  return small, large


def mutant(seed: int, index: int):
  """(source path, mutant bytes, mutation kinds) of mutant `index` of `seed`."""
  rng = random.Random(f"mtx-fuzz-{seed}-{index}")
  small, large = _sources()
  source = rng.choice(large) if large and rng.random() < 0.03 else rng.choice(small)
  data = source.read_bytes()
  kinds = []
  for _ in range(1 if rng.random() < 0.7 else rng.randint(2, 4)):
    data, kind = _mutate(data, rng)
    kinds.append(kind)
    if not data:
      break
  return source, data, kinds


@pytest.mark.skipif(
  not SHARED_MIDI_FILES,
  reason=f"no real MIDI corpus at {SHARED_MIDI} "
  "(../shared/midi is present in CI; set MTX_SHARED_MIDI to point elsewhere)",
)
def test_mutated_real_files_give_tokens_or_an_mtx_error_within_time_and_memory(tmp_path):
  indices = [int(ONLY)] if ONLY is not None else range(NUM_MUTANTS)
  jobs, described = [], {}
  for index in indices:
    source, data, kinds = mutant(SEED, index)
    path = tmp_path / f"mutant_{SEED}_{index}.mid"
    path.write_bytes(data)
    label = f"seed {SEED} index {index}"
    described[label] = (
      f"{label} ({'+'.join(kinds)} of {source.relative_to(SHARED_MIDI)}; "
      f"reproduce with MTX_FUZZ_SEED={SEED} MTX_FUZZ_ONLY={index})"
    )
    jobs.append((label, path, CODECS, {}))

  start = time.monotonic()
  pool = WorkerPool(workers=2, memory_bytes=1 << 30, timeout_s=30.0)
  failures, outcomes = [], {"ok": 0, "mtx": 0}
  try:
    for label, result in pool.run(jobs):
      if isinstance(result, Failure):
        failures.append(f"{described[label]}: {result.problem}")
        continue
      for codec, (outcome, detail, _, seconds) in result.items():
        if outcome == "foreign":
          failures.append(f"{described[label]}: {codec} raised {detail}")
        elif seconds > 10:
          failures.append(f"{described[label]}: {codec} took {seconds:.1f} s")
        else:
          outcomes[outcome] += 1
  finally:
    pool.close()
  elapsed = time.monotonic() - start
  assert not failures, "\n".join(failures)
  # The mutants must exercise both paths: files that still encode, and refusals.
  if ONLY is None and NUM_MUTANTS >= 100:
    assert outcomes["ok"] > 0.1 * NUM_MUTANTS and outcomes["mtx"] > 0.1 * NUM_MUTANTS, outcomes
  print(f"{len(jobs)} mutants x {len(CODECS)} codecs in {elapsed:.1f} s: {outcomes}")
