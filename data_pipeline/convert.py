"""One corpus file -> its tokens and provenance, or the reason it was skipped.

`convert_file` is the per-file job of every builder, run in a worker process
(or a Beam worker): it reads the MIDI file once, encodes it with the config's
codec and returns a `Converted` example (as the record TFDS stores, when given
a `RecordFormat`: serializing is then the workers' work too, not the main
process'), or a `BadFile` with the reason. It
never raises for a file: a corrupt, empty, truncated or note-less file, one a
representation cannot express, and even an unexpected exception from a parser
all become a `BadFile`, so one file never stops a prepare.

What a song becomes beyond the codec (`CodecSpec`): with `shift_to_first_note`,
the song moves earlier by whole beats so that its first note lies in beat 0 (the
MMT reference's `extract.py`: `notes[:, 0] -= notes[0, 0]`); with `min_notes`, a
song with fewer notes than that (counted as the representation keeps them) is
left out, listed as a `BadFile` with `dropped` set (the reference drops songs of
fewer than 50 notes). mtx's defaults keep leading silence and every song with a
note.

`ConversionPool` runs it over many files on a process pool. A worker that dies
(a parser crashing in C++ on a malformed file, the kernel's out-of-memory killer)
breaks the pool; the files that were in flight are then converted again one at a
time, each in a process of its own, so the culprit is named, with how its process
died, and the others are kept. No file is ever lost without a line in the report.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import multiprocessing
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from data_pipeline.corpus import CorpusFile, file_problem, md5_of_file
from data_pipeline.records import RecordFormat
from mtx.errors import MidiReadError, MtxError, RepresentationOverflowError
from mtx.representation import Codec, get_codec
from mtx.representation.codec import DecodeReport
from mtx.representation.midi_io import load_note_table
from mtx.representation.notetable import (NoteTable, normalize_tempos,
                                          normalize_time_signatures)
from mtx.representation.quantize import ticks_to_steps

# Tasks in flight per worker (enough to keep it busy, few enough that results
# waiting to be written stay small), and the most files in one task.
_TASKS_PER_WORKER = 4
_MAX_CHUNK = 32


@dataclasses.dataclass(frozen=True)
class CodecSpec:
  """A representation, its options and what is done to each song before and after
  encoding: what a worker needs to turn a file into an example.

  With `overflow="truncate"` (mmt), files that overflow are still converted, and
  flagged `truncated`: the worker first encodes with `overflow="error"` to know.
  shift_to_first_note: move the song earlier by whole beats, its first note into
    beat 0 (`shift_to_first_beat`).
  min_notes: leave out a song with fewer notes than this, as the representation keeps
    them (0: keep every song with a note).
  """

  representation: str
  options: tuple[tuple[str, Any], ...] = ()
  shift_to_first_note: bool = False
  min_notes: int = 0

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
  """A good file: its example key, the example the builder writes (a dict, or
  the serialized `record` when converted with a RecordFormat), its split, and
  whether the codec dropped notes it could not express (overflow="truncate")."""

  key: str
  example: dict | None
  truncated: bool = False
  split: str = ""
  record: bytes = b""


@dataclasses.dataclass(frozen=True)
class BadFile:
  """A skipped file and why: one line of `bad_files.tsv`. `dropped`: a good file the
  preparation leaves out by choice (fewer notes than `min_notes`), not a broken one."""

  path: str
  reason: str
  dropped: bool = False


TOO_FEW_NOTES = "TooFewNotes"


def convert_file(file: CorpusFile, spec: CodecSpec,
                 record_format: RecordFormat | None = None) -> Converted | BadFile:
  """The example of one file (serialized with `record_format` if given), or a
  `BadFile`; never raises for a bad file."""
  try:
    return _convert(file, spec, record_format)
  except MtxError as e:
    return BadFile(str(file.path), f"{type(e).__name__}: {_without_path(str(e), file)}")
  except Exception as e:  # pylint: disable=broad-except
    # A failure mtx does not know yet (a parser bug, memory running out): skipped and
    # reported with its type, so that one file cannot stop a prepare of thousands.
    return BadFile(str(file.path), unexpected_reason(e))


def unexpected_reason(error: BaseException) -> str:
  """The report's reason for an exception mtx does not expect: never empty. A
  MemoryError (whose message is usually empty) says what ran out and what to do;
  another exception without a message says where it was raised."""
  message = " ".join(str(error).split())
  name = type(error).__name__
  if isinstance(error, MemoryError):
    return (f"unexpected MemoryError: {message + '; ' if message else ''}the converter ran "
            "out of memory on this file (it may need more than this machine has free beside "
            "the other workers): retry with fewer --num_workers, or drop the file")
  if not message:
    frames = traceback.extract_tb(error.__traceback__) if error.__traceback__ else []
    where = (f", raised at {Path(frames[-1].filename).name}:{frames[-1].lineno} in "
             f"{frames[-1].name}" if frames else "")
    message = f"(the exception has no message{where})"
  return f"unexpected {name}: {message}"


def _without_path(message: str, file: CorpusFile) -> str:
  """mtx's messages start with the file's path; the report has it in its own column."""
  prefix = f"{file.path}: "
  return message[len(prefix):] if message.startswith(prefix) else message


def _convert(file: CorpusFile, spec: CodecSpec,
             record_format: RecordFormat | None) -> Converted | BadFile:
  problem = file_problem(file.path)
  if problem and problem != "no such file":  # the reader says "no such file" itself
    raise MidiReadError(f"{file.path}: {problem}")
  table = load_note_table(file.path)
  if spec.shift_to_first_note:
    table = shift_to_first_beat(table, getattr(spec.codec(), "resolution", None))
  truncated = False
  try:
    tokens = spec.strict_codec().encode(table)
  except RepresentationOverflowError:
    if not spec.truncates:
      raise
    tokens = spec.codec().encode(table)
    truncated = True
  if spec.min_notes:
    kept = notes_kept(spec.codec(), tokens)
    if kept < spec.min_notes:
      return BadFile(str(file.path), f"{TOO_FEW_NOTES}: {kept} notes as {spec.representation} "
                     f"keeps them, fewer than --min_notes {spec.min_notes}", dropped=True)
  example = {
      "tokens": tokens.astype(np.int32, copy=False),
      # The file name's own bytes: kept exactly, whatever its encoding (os.fsdecode it).
      "path": os.fsencode(file.path),
      "md5": file.md5 or md5_of_file(file.path),
      "split": file.split,
      "metadata": {k: _text(v) for k, v in dict(file.metadata).items()},
      "num_notes": int(table.num_notes),
  }
  key = _text(file.key)
  if record_format is not None:
    return Converted(key, None, truncated, file.split, record_format.serialize(example))
  return Converted(key, example, truncated, file.split)


def _text(value: str) -> str | bytes:
  """A string from a file name as TFDS can store and hash it: itself when it is
  UTF-8, else its own bytes (a str with surrogateescape'd bytes cannot be encoded)."""
  try:
    value.encode("utf-8")
    return value
  except UnicodeEncodeError:
    return value.encode("utf-8", "surrogateescape")


def shift_to_first_beat(table: NoteTable, steps_per_beat: int | None = None) -> NoteTable:
  """`table` moved earlier by whole beats so that its first note lies in beat 0, its
  position in the beat kept: the MMT reference's `notes[:, 0] -= notes[0, 0]` on its
  (beat, position, ...) rows. With `steps_per_beat` (the codec's grid, mmt's 12), the
  first note's beat is the one it rounds into on that grid, as the reference's beat
  is; a note rounding up into that beat from just before it moves to tick 0.
  Tempo, time-signature and pedal events move too; the ones in force at the cut
  start at tick 0. A song whose first note is in beat 0 comes back as it was."""
  if table.num_notes == 0:
    return table
  tpb = int(table.ticks_per_beat)
  first = int(table.onset.min())
  if steps_per_beat:
    beat = int(ticks_to_steps(first, tpb, int(steps_per_beat))) // int(steps_per_beat)
  else:
    beat = first // tpb
  shift = beat * tpb
  if shift == 0:
    return table
  onset = np.maximum(table.onset - shift, 0)
  offset = np.maximum(table.offset - shift, onset)
  tempo_tick, tempo_mspq = normalize_tempos(np.maximum(table.tempo_tick - shift, 0),
                                            table.tempo_mspq)
  ts_tick, ts_num, ts_den = normalize_time_signatures(
      np.maximum(table.ts_tick - shift, 0), table.ts_numerator, table.ts_denominator)
  sustain_tick = np.maximum(table.sustain_tick - shift, 0)
  # Per track (events grouped by track, in time order): of the events moved to tick 0,
  # only the last, the pedal as it was at the cut.
  same_track = table.sustain_track[:-1] == table.sustain_track[1:]
  keep = np.ones(sustain_tick.shape, bool)
  keep[:-1] = ~(same_track & (sustain_tick[:-1] == 0) & (sustain_tick[1:] == 0))
  return dataclasses.replace(
      table, onset=onset, offset=offset, tempo_tick=tempo_tick, tempo_mspq=tempo_mspq,
      ts_tick=ts_tick, ts_numerator=ts_num, ts_denominator=ts_den,
      sustain_tick=sustain_tick[keep], sustain_value=table.sustain_value[keep],
      sustain_track=table.sustain_track[keep])


def notes_kept(codec: Codec, tokens: np.ndarray) -> int:
  """How many notes `tokens` hold, as the codec decodes them (mmt: its note rows, after
  its own dropping of unknown programs and duplicates, as the reference counts)."""
  tokens = codec.check_tokens(tokens)
  return codec.decode_table(tokens, DecodeReport(strict=False, rows=int(tokens.shape[0]))
                            ).num_notes


def default_num_workers() -> int:
  """The cores this process may run on."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # not on Linux
    return os.cpu_count() or 1


def convert_chunk(files: list[CorpusFile], spec: CodecSpec,
                  record_format: RecordFormat | None = None) -> list[Converted | BadFile]:
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
    chunks.append(files[start:start + size])
    start += size
  return chunks


class ConversionPool:
  """`convert_file` over many files on `num_workers` processes (in-process
  when num_workers <= 1). One pool serves a whole prepare, all splits.
  With a `record_format`, results carry serialized records, not examples.

      with ConversionPool(spec, num_workers) as pool:
        for result in pool.convert(files): ...
  """

  def __init__(self, spec: CodecSpec, num_workers: int,
               record_format: RecordFormat | None = None):
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
      self._stopping = threading.Thread(target=self._pool.shutdown, kwargs={"wait": True},
                                        name="mtx-pool-stop", daemon=True)
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


def _convert_alone(file: CorpusFile, spec: CodecSpec,
                   record_format: RecordFormat | None) -> Converted | BadFile:
  """Converts one file in a process of its own, so that a crash names this file and
  says how its process died (a signal, an exit status)."""
  context = multiprocessing.get_context(pool_start_method())
  receive, send = context.Pipe(duplex=False)
  process = context.Process(target=_convert_and_send, args=(send, file, spec, record_format),
                            name="mtx-convert-alone", daemon=True)
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


def _convert_and_send(send, file: CorpusFile, spec: CodecSpec,
                      record_format: RecordFormat | None) -> None:
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
      return (f"the converter crashed on this file: its process was killed ({name}), most "
              "likely by the kernel's out-of-memory killer: the file needs more memory than "
              "was free; retry with fewer --num_workers, or drop the file")
    return (f"the converter crashed on this file: its process died of {name} (a parser "
            "fault); the file is likely malformed")
  return (f"the converter's process exited (status {exitcode}) before returning a result "
          "for this file")


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
  others = [t for t in threading.enumerate()
            if t is not current and not type(t).__module__.startswith("tqdm")]
  if "fork" in methods and not others and not _jax_started():
    return "fork"
  return "forkserver" if "forkserver" in methods else "spawn"


def _jax_started() -> bool:
  """Whether this process has started a JAX backend (never imports JAX itself)."""
  bridge = sys.modules.get("jax._src.xla_bridge")
  return bool(bridge is not None and bridge.backends_are_initialized())


def process_pool(num_workers: int) -> concurrent.futures.ProcessPoolExecutor:
  """A pool whose workers ignore Ctrl-C (the parent stops the pool) and exit
  when the parent is killed; started as `pool_start_method` says."""
  method = pool_start_method()
  context = multiprocessing.get_context(method)
  if method == "forkserver":
    context.set_forkserver_preload([__name__])
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
