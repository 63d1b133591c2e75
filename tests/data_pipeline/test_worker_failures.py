"""A conversion worker that runs out of memory, raises without a message or is killed
(the out-of-memory killer's SIGKILL): every file comes back, converted or with a
reason that says what happened; nothing hangs, nothing is lost silently."""

from __future__ import annotations

import threading
from collections.abc import Mapping

from data_pipeline.convert import BadFile, CodecSpec, Converted, convert_file, unexpected_reason
from data_pipeline.corpus import CorpusFile
from data_pipeline.pool import ConversionPool
from tests.data_pipeline.test_builder import _KillsItsWorker


class _Raises(Mapping):
  """Metadata whose reading raises `error` in a worker: a failure inside a conversion
  (a real MemoryError has no message, as this one)."""

  def __init__(self, error: BaseException):
    self.error = error

  def __getitem__(self, key):
    raise KeyError(key)

  def __iter__(self):
    raise self.error

  def __len__(self):
    return 0


def test_a_memory_error_is_reported_with_a_reason(music21_chorales):
  """The issue: `unexpected MemoryError: ` with nothing after it."""
  file = CorpusFile(music21_chorales[0], "train", "big", _Raises(MemoryError()))
  reason = convert_file(file, CodecSpec("mmt")).reason
  assert reason.startswith("unexpected MemoryError: the converter ran out of memory")
  assert "--num_workers" in reason
  with ConversionPool(CodecSpec("mmt"), num_workers=2) as pool:
    results = list(pool.convert([file, CorpusFile(music21_chorales[1], "train", "ok")]))
  (bad,) = [r for r in results if isinstance(r, BadFile)]
  assert bad.reason == reason and sum(isinstance(r, Converted) for r in results) == 1


def test_an_exception_without_a_message_says_where_it_was_raised(music21_chorales):
  file = CorpusFile(music21_chorales[0], "train", "k", _Raises(RuntimeError()))
  reason = convert_file(file, CodecSpec("mmt")).reason
  assert reason.startswith(
    "unexpected RuntimeError: (the exception has no message, raised at test_worker_failures.py:"
  )
  assert unexpected_reason(ValueError("two\nlines")) == "unexpected ValueError: two lines"


def test_killed_workers_are_reported_and_nothing_hangs_or_is_lost(music21_chorales):
  good = [CorpusFile(p, "train", p.name) for p in music21_chorales[:10]]
  killed = [
    CorpusFile(music21_chorales[i], "train", f"killed{i}", _KillsItsWorker()) for i in range(3)
  ]
  files = good[:3] + killed[:2] + good[3:8] + killed[2:] + good[8:]
  results = []

  def run():
    with ConversionPool(CodecSpec("mmt"), num_workers=2) as pool:
      results.extend(pool.convert(files))

  worker = threading.Thread(target=run, daemon=True)
  worker.start()
  worker.join(timeout=240)
  assert not worker.is_alive(), "the conversion hung after its workers were killed"
  assert len(results) == len(files)
  assert sorted(r.key for r in results if isinstance(r, Converted)) == sorted(f.key for f in good)
  bad = [r for r in results if isinstance(r, BadFile)]
  assert len(bad) == len(killed)
  for row in bad:
    assert "killed (SIGKILL)" in row.reason and "out-of-memory killer" in row.reason
