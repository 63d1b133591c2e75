"""One corpus file -> its tokens and provenance, or the reason it was skipped.

`convert_file` is the per-file job of every builder, run in a worker process
(or a Beam worker): it reads the MIDI file once, encodes it with the config's
codec and returns a `Converted` example, or a `BadFile` with the reason. It
never raises for a file: a corrupt, empty, truncated or note-less file, one a
representation cannot express, and even an unexpected exception from a parser
all become a `BadFile`, so one file never stops a prepare.

`ConversionPool` runs it over many files on a process pool. A worker that dies
(a parser crashing in C++ on a malformed file) breaks the pool; the files that
were in flight are then converted again one at a time, each in a pool of its
own, so the culprit is named and the others are kept.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import multiprocessing
import os
import signal
import threading
import time
from typing import Any, Iterable, Iterator

import numpy as np

from data_pipeline.corpus import CorpusFile, md5_of_file
from mtx.errors import MtxError, RepresentationOverflowError
from mtx.representation import Codec, get_codec
from mtx.representation.midi_io import load_note_table

# Tasks in flight per worker (enough to keep it busy, few enough that results
# waiting to be written stay small), and the most files in one task.
_TASKS_PER_WORKER = 4
_MAX_CHUNK = 32


@dataclasses.dataclass(frozen=True)
class CodecSpec:
  """A representation and its options: what a worker needs to build the codec.

  With `overflow="truncate"` (mmt), files that overflow are still converted, and
  flagged `truncated`: the worker first encodes with `overflow="error"` to know.
  """

  representation: str
  options: tuple[tuple[str, Any], ...] = ()

  @property
  def truncates(self) -> bool:
    return dict(self.options).get("overflow") == "truncate"

  def codec(self) -> Codec:
    return _codec(self.representation, self.options)

  def strict_codec(self) -> Codec:
    """The codec that raises on overflow instead of truncating."""
    if not self.truncates:
      return self.codec()
    return _codec(self.representation,
                  tuple((k, "error" if k == "overflow" else v) for k, v in self.options))


@functools.cache
def _codec(representation: str, options: tuple[tuple[str, Any], ...]) -> Codec:
  return get_codec(representation, **dict(options))


@dataclasses.dataclass(frozen=True)
class Converted:
  """A good file: its example key, the example the builder writes, and whether
  the codec dropped notes it could not express (overflow="truncate")."""

  key: str
  example: dict
  truncated: bool = False


@dataclasses.dataclass(frozen=True)
class BadFile:
  """A skipped file and why: one line of `bad_files.tsv`."""

  path: str
  reason: str


def convert_file(file: CorpusFile, spec: CodecSpec) -> Converted | BadFile:
  """The example of one file, or a `BadFile`; never raises for a bad file."""
  try:
    return _convert(file, spec)
  except MtxError as e:
    return BadFile(str(file.path), f"{type(e).__name__}: {_without_path(str(e), file)}")
  except Exception as e:  # pylint: disable=broad-except
    # A failure mtx does not know yet (a parser bug): skipped and reported with
    # its type, so that one file cannot stop a prepare of thousands.
    return BadFile(str(file.path), f"unexpected {type(e).__name__}: {e}")


def _without_path(message: str, file: CorpusFile) -> str:
  """mtx's messages start with the file's path; the report has it in its own column."""
  prefix = f"{file.path}: "
  return message[len(prefix):] if message.startswith(prefix) else message


def _convert(file: CorpusFile, spec: CodecSpec) -> Converted:
  table = load_note_table(file.path)
  truncated = False
  try:
    tokens = spec.strict_codec().encode(table)
  except RepresentationOverflowError:
    if not spec.truncates:
      raise
    tokens = spec.codec().encode(table)
    truncated = True
  example = {
      "tokens": tokens.astype(np.int32, copy=False),
      "path": str(file.path),
      "md5": md5_of_file(file.path),
      "split": file.split,
      "metadata": dict(file.metadata),
      "num_notes": int(table.num_notes),
  }
  return Converted(file.key, example, truncated)


def default_num_workers() -> int:
  """The cores this process may run on."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # not on Linux
    return os.cpu_count() or 1


def convert_chunk(files: list[CorpusFile], spec: CodecSpec) -> list[Converted | BadFile]:
  """`convert_file` over a few files: one task of a worker (fewer round trips
  than one task per file, which matters for small files)."""
  return [convert_file(file, spec) for file in files]


class ConversionPool:
  """`convert_file` over many files on `num_workers` processes (in-process
  when num_workers <= 1). One pool serves a whole prepare, all splits.

      with ConversionPool(spec, num_workers) as pool:
        for result in pool.convert(files): ...
  """

  def __init__(self, spec: CodecSpec, num_workers: int):
    self.spec = spec
    self.num_workers = num_workers
    self._pool: concurrent.futures.ProcessPoolExecutor | None = None

  def __enter__(self) -> ConversionPool:
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()

  def start(self) -> None:
    """Starts the workers now (else on first use)."""
    if self.num_workers > 1 and self._pool is None:
      self._pool = process_pool(self.num_workers)

  def close(self) -> None:
    if self._pool is not None:
      self._pool.shutdown(wait=False, cancel_futures=True)
      self._pool = None

  def convert(self, files: Iterable[CorpusFile]) -> Iterator[Converted | BadFile]:
    """The results of `files`, in completion order."""
    files = list(files)
    if self.num_workers <= 1:
      for file in files:
        yield convert_file(file, self.spec)
      return
    # A chunk per task, small enough that every worker gets several.
    size = max(1, min(_MAX_CHUNK, len(files) // (self.num_workers * 4)))
    queue = [files[i:i + size] for i in range(0, len(files), size)][::-1]
    while queue:
      suspects = yield from self._convert_until_broken(queue)
      for file in suspects:
        yield _convert_alone(file, self.spec)

  def _convert_until_broken(self, queue: list[list[CorpusFile]]):
    """Converts chunks popped from `queue` until it is empty or a worker dies;
    returns the files that were in flight when the pool broke."""
    self.start()
    in_flight: dict[concurrent.futures.Future, list[CorpusFile]] = {}
    while queue or in_flight:
      while queue and len(in_flight) < self.num_workers * _TASKS_PER_WORKER:
        chunk = queue.pop()
        in_flight[self._pool.submit(convert_chunk, chunk, self.spec)] = chunk
      done, _ = concurrent.futures.wait(in_flight, return_when=concurrent.futures.FIRST_COMPLETED)
      broken = []
      for future in done:
        chunk = in_flight.pop(future)
        try:
          results = future.result()
        except concurrent.futures.process.BrokenProcessPool:
          broken.extend(chunk)
          continue
        yield from results
      if broken:
        self.close()
        return broken + [file for chunk in in_flight.values() for file in chunk]
    return []


def _convert_alone(file: CorpusFile, spec: CodecSpec) -> Converted | BadFile:
  """Converts one file in a pool of its own, so a crash names this file."""
  pool = process_pool(1)
  try:
    return pool.submit(convert_file, file, spec).result()
  except concurrent.futures.process.BrokenProcessPool:
    return BadFile(str(file.path), "the converter crashed on this file (its worker process "
                   "died, e.g. a parser segfault); the file is likely malformed")
  finally:
    pool.shutdown(wait=False, cancel_futures=True)


def process_pool(num_workers: int) -> concurrent.futures.ProcessPoolExecutor:
  """A pool whose workers ignore Ctrl-C (the parent stops the pool) and exit
  when the parent is killed.

  Workers are forked while this process has a single thread: they start at
  once and need no `if __name__ == "__main__"` guard in the caller's script.
  With other threads running, forking could copy a held lock, so they come
  from a fork server instead (which, like spawn, re-imports the main script).
  """
  methods = multiprocessing.get_all_start_methods()
  if "fork" in methods and threading.active_count() == 1:
    context = multiprocessing.get_context("fork")
  elif "forkserver" in methods:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
  else:
    context = multiprocessing.get_context("spawn")
  pool = concurrent.futures.ProcessPoolExecutor(num_workers, mp_context=context,
                                                initializer=_init_worker)
  for _ in range(num_workers):  # start the workers now, before any thread does
    pool.submit(int)
  return pool


def _init_worker() -> None:
  """Ctrl-C and SIGTERM are the parent's to handle (it stops the pool); and a
  worker exits when its parent is gone (killed with SIGKILL) instead of idling."""
  signal.signal(signal.SIGINT, signal.SIG_IGN)
  signal.signal(signal.SIGTERM, signal.SIG_DFL)
  parent = os.getppid()

  def exit_when_orphaned():
    while os.getppid() == parent:
      time.sleep(1.0)
    os._exit(1)

  threading.Thread(target=exit_when_orphaned, daemon=True).start()
