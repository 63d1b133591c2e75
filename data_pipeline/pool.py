"""`convert_file` over many files on a process pool: one pool serves a whole prepare.

A worker that dies
(a parser crashing in C++ on a malformed file, the kernel's out-of-memory killer)
breaks the pool; the files that were in flight are then converted again one at a
time, each in a process of its own, so the culprit is named, with how its process
died, and the others are kept. No file is ever lost without a line in the report.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Iterable, Iterator

from data_pipeline.convert import BadFile, CodecSpec, Converted, convert_file, unexpected_reason
from data_pipeline.corpus import CorpusFile
from data_pipeline.records import RecordFormat
from mtx.cpu_compiler import jax_backends_started

# Tasks in flight per worker (enough to keep it busy, few enough that results
# waiting to be written stay small), and the most files in one task.
_TASKS_PER_WORKER = 4
_MAX_CHUNK = 32


def default_num_workers() -> int:
  """The cores this process may run on."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # not on Linux
    return os.cpu_count() or 1


def convert_chunk(
  files: list[CorpusFile], spec: CodecSpec, record_format: RecordFormat | None = None
) -> list[Converted | BadFile]:
  """`convert_file` over a few files: one task of a worker (fewer round trips
  than one task per file, which matters for small files)."""
  return [convert_file(file, spec, record_format) for file in files]


def guided_chunks(files: list, num_workers: int) -> list[list]:
  """`files` in consecutive chunks, one per task: each a share of what is left
  (at most _MAX_CHUNK), so that the first are large (few round trips) and the
  last single files (no worker still busy with a long last chunk while the
  others have nothing left), as OpenMP's guided schedule."""
  chunks, start = [], 0
  while start < len(files):
    left = len(files) - start
    size = max(1, min(_MAX_CHUNK, left // (num_workers * _TASKS_PER_WORKER)))
    chunks.append(files[start : start + size])
    start += size
  return chunks


class ConversionPool:
  """`convert_file` over many files on `num_workers` processes (in-process
  when num_workers <= 1). One pool serves a whole prepare, all splits.
  With a `record_format`, results carry serialized records, not examples.

      with ConversionPool(spec, num_workers) as pool:
        for result in pool.convert(files): ...
  """

  def __init__(self, spec: CodecSpec, num_workers: int, record_format: RecordFormat | None = None):
    self.spec = spec
    self.num_workers = num_workers
    self.record_format = record_format
    self._pool: concurrent.futures.ProcessPoolExecutor | None = None
    self._stopping: threading.Thread | None = None

  def __enter__(self) -> ConversionPool:
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()

  def start(self) -> None:
    """Starts the workers now (else on first use)."""
    if self.num_workers > 1 and self._pool is None:
      self._pool = process_pool(self.num_workers)

  def stop(self) -> None:
    """Lets the workers exit now, in the background (the job is done): the
    caller writes its output meanwhile, then `close(wait=True)` waits."""
    if self._pool is not None and self._stopping is None:
      self._stopping = threading.Thread(
        target=self._pool.shutdown, kwargs={"wait": True}, name="mtx-pool-stop", daemon=True
      )
      self._stopping.start()

  def close(self, wait: bool = False) -> None:
    """Stops the workers; `wait`: until they and the pool's threads have ended
    (after a finished job; an interrupted one does not wait)."""
    if self._stopping is not None:
      if wait:
        self._stopping.join()
      self._stopping = None
    elif self._pool is not None:
      self._pool.shutdown(wait=wait, cancel_futures=True)
    self._pool = None

  def convert(self, files: Iterable[CorpusFile]) -> Iterator[Converted | BadFile]:
    """The results of `files`, in completion order."""
    files = list(files)
    if self.num_workers <= 1:
      for file in files:
        yield convert_file(file, self.spec, self.record_format)
      return
    queue = guided_chunks(files, self.num_workers)[::-1]
    while queue:
      suspects = yield from self._convert_until_broken(queue)
      for file in suspects:
        yield _convert_alone(file, self.spec, self.record_format)

  def _convert_until_broken(self, queue: list[list[CorpusFile]]):
    """Converts chunks popped from `queue` until it is empty or a worker dies;
    returns the files that were in flight when the pool broke."""
    self.start()
    in_flight: dict[concurrent.futures.Future, list[CorpusFile]] = {}
    while queue or in_flight:
      while queue and len(in_flight) < self.num_workers * _TASKS_PER_WORKER:
        chunk = queue.pop()
        in_flight[self._pool.submit(convert_chunk, chunk, self.spec, self.record_format)] = chunk
      done, _ = concurrent.futures.wait(in_flight, return_when=concurrent.futures.FIRST_COMPLETED)
      broken, failed = [], []
      for future in done:
        chunk = in_flight.pop(future)
        try:
          results = future.result()
        except concurrent.futures.process.BrokenProcessPool:
          broken.extend(chunk)
          continue
        except Exception:  # pylint: disable=broad-except
          # The chunk's results could not come back (one too large to pickle, memory
          # running out while sending it): each file again, alone, to name the one.
          failed.extend(chunk)
          continue
        yield from results
      for file in failed:
        yield _convert_alone(file, self.spec, self.record_format)
      if broken:
        self.close()
        return broken + [file for chunk in in_flight.values() for file in chunk]
    return []


def _convert_alone(
  file: CorpusFile, spec: CodecSpec, record_format: RecordFormat | None
) -> Converted | BadFile:
  """Converts one file in a process of its own, so that a crash names this file and
  says how its process died (a signal, an exit status)."""
  context = multiprocessing.get_context(pool_start_method())
  receive, send = context.Pipe(duplex=False)
  process = context.Process(
    target=_convert_and_send,
    args=(send, file, spec, record_format),
    name="mtx-convert-alone",
    daemon=True,
  )
  process.start()
  send.close()
  try:
    result = receive.recv()
  except (EOFError, OSError):  # the process died before sending anything
    result = None
  finally:
    receive.close()
  process.join()
  if result is None:
    return BadFile(str(file.path), died_reason(process.exitcode))
  return result


def _convert_and_send(
  send, file: CorpusFile, spec: CodecSpec, record_format: RecordFormat | None
) -> None:
  _init_worker()
  result = convert_file(file, spec, record_format)
  try:
    send.send(result)
  except Exception as e:  # pylint: disable=broad-except
    send.send(BadFile(str(file.path), unexpected_reason(e)))
  send.close()


def died_reason(exitcode: int | None) -> str:
  """The report's reason for a file whose converter process died with `exitcode`."""
  if exitcode is not None and exitcode < 0:
    try:
      name = signal.Signals(-exitcode).name
    except ValueError:
      name = f"signal {-exitcode}"
    if -exitcode == signal.SIGKILL:
      return (
        f"the converter crashed on this file: its process was killed ({name}), most "
        "likely by the kernel's out-of-memory killer: the file needs more memory than "
        "was free; retry with fewer --num_workers, or drop the file"
      )
    return (
      f"the converter crashed on this file: its process died of {name} (a parser "
      "fault); the file is likely malformed"
    )
  return (
    f"the converter's process exited (status {exitcode}) before returning a result for this file"
  )


def pool_start_method() -> str:
  """How `process_pool` starts workers now: "fork" while no other thread runs
  here but tqdm's monitor (it only ever takes tqdm's lock, which workers never
  use); else "forkserver" (or "spawn" where there is none), since forking
  beside other threads could copy a lock one of them holds.

  Forked workers start at once and need no `if __name__ == "__main__"` guard
  in the caller's script; a fork server, like spawn, imports the caller's main
  script again in each worker (a script without that guard would run again).
  A prepare joins its pool's threads when it ends, so a script calling it
  twice still forks; threads of the caller's own (a JAX runtime's, a data
  loader's) switch to the fork server. So does a started JAX runtime: its
  threads are native, invisible to `threading`.
  """
  methods = multiprocessing.get_all_start_methods()
  current = threading.current_thread()
  others = [
    t
    for t in threading.enumerate()
    if t is not current and not type(t).__module__.startswith("tqdm")
  ]
  if "fork" in methods and not others and not jax_backends_started():
    return "fork"
  return "forkserver" if "forkserver" in methods else "spawn"


def process_pool(num_workers: int) -> concurrent.futures.ProcessPoolExecutor:
  """A pool whose workers ignore Ctrl-C (the parent stops the pool) and exit
  when the parent is killed; started as `pool_start_method` says."""
  method = pool_start_method()
  context = multiprocessing.get_context(method)
  if method == "forkserver":
    context.set_forkserver_preload([__name__])
  pool = concurrent.futures.ProcessPoolExecutor(
    num_workers, mp_context=context, initializer=_init_worker
  )
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
