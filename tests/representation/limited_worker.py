"""Runs codecs on MIDI files in worker processes with a memory and a time limit.

The fuzz and limit tests need to know that a bad file cannot take a codec into
a long computation or a huge allocation. In-process, such a file would hang
the test run or take the machine down; here each worker is a long-lived
subprocess (starting Python per file is too slow on 2 cores) under
`RLIMIT_AS`, and the parent gives every file a deadline. A worker that runs
past it is killed and replaced, a worker that dies is replaced, and both are
reported under the file's label so that the case reproduces.

Protocol: the parent writes one JSON line per job, {"path", "codecs",
"options"}; the worker answers one JSON line: per codec, [outcome, detail,
rows, seconds], outcome one of "ok", "mtx" (an `MtxError`, detail its class and
message) or "foreign" (any other exception: a bug). After encoding, the worker
decodes the tokens in strict mode: a codec must read back what it wrote.
"""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import selectors
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CODECS = ("mmt", "performance", "remi", "mmm")


def _serve(memory_bytes: int) -> None:
  """The worker's loop (runs in the subprocess)."""
  resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
  from mtx.errors import MtxError
  from mtx.representation import get_codec
  from mtx.representation.midi_io import load_note_table

  codecs = {}
  for line in sys.stdin:
    job = json.loads(line)
    results = {}
    for name in job["codecs"]:
      key = (name, json.dumps(job.get("options", {}).get(name, {}), sort_keys=True))
      if key not in codecs:
        codecs[key] = get_codec(name, **job.get("options", {}).get(name, {}))
      codec = codecs[key]
      start = time.perf_counter()
      try:
        tokens = codec.encode(load_note_table(job["path"]))
        codec.decode(tokens, strict=True)
        results[name] = ["ok", "", int(tokens.shape[0])]
      except MtxError as e:
        results[name] = ["mtx", f"{type(e).__name__}: {e}", 0]
      except BaseException as e:  # pylint: disable=broad-except
        results[name] = ["foreign", f"{type(e).__name__}: {e}"[:500], 0]
      results[name].append(round(time.perf_counter() - start, 3))
    sys.stdout.write(json.dumps(results) + "\n")
    sys.stdout.flush()


@dataclasses.dataclass
class Failure:
  label: str
  problem: str


class WorkerPool:
  """A few long-lived workers, each with `memory_bytes` of address space."""

  def __init__(self, workers: int = 2, memory_bytes: int = 1 << 30, timeout_s: float = 20.0):
    self.memory_bytes = memory_bytes
    self.timeout_s = timeout_s
    self.procs = [self._start() for _ in range(workers)]

  def _start(self) -> subprocess.Popen:
    env = dict(
      os.environ,
      OPENBLAS_NUM_THREADS="1",
      OMP_NUM_THREADS="1",
      PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    )
    code = (
      "import sys; from tests.representation.limited_worker import _serve; "
      f"_serve({self.memory_bytes})"
    )
    return subprocess.Popen(
      [sys.executable, "-c", code],
      stdin=subprocess.PIPE,
      stdout=subprocess.PIPE,
      stderr=subprocess.DEVNULL,
      text=True,
      cwd=REPO,
      env=env,
      bufsize=1,
    )

  def close(self) -> None:
    for proc in self.procs:
      proc.kill()
      proc.wait()

  def run(self, jobs):
    """Runs (label, path, codecs, options) jobs; yields (label, results | Failure)."""
    jobs = list(jobs)
    selector = selectors.DefaultSelector()
    busy = {}  # worker index -> (label, deadline)
    pending = iter(jobs)

    def give(index):
      job = next(pending, None)
      if job is None:
        return
      label, path, codecs, options = job
      proc = self.procs[index]
      proc.stdin.write(
        json.dumps({"path": str(path), "codecs": list(codecs), "options": options}) + "\n"
      )
      proc.stdin.flush()
      busy[index] = (label, time.monotonic() + self.timeout_s)
      selector.register(proc.stdout, selectors.EVENT_READ, index)

    def replace(index):
      selector.unregister(self.procs[index].stdout)
      self.procs[index].kill()
      self.procs[index].wait()
      self.procs[index] = self._start()
      del busy[index]

    for index in range(len(self.procs)):
      give(index)
    while busy:
      deadline = min(d for _, d in busy.values())
      for key, _ in selector.select(timeout=max(0.0, deadline - time.monotonic())):
        index = key.data
        label = busy[index][0]
        line = self.procs[index].stdout.readline()
        if not line:
          code = self.procs[index].wait()
          replace(index)
          yield (
            label,
            Failure(
              label,
              f"the worker died (exit status {code}): a crash in "
              "native code, or memory past RLIMIT_AS",
            ),
          )
        else:
          selector.unregister(self.procs[index].stdout)
          del busy[index]
          yield label, json.loads(line)
        give(index)
      now = time.monotonic()
      for index, (label, deadline) in list(busy.items()):
        if now > deadline:
          replace(index)
          yield label, Failure(label, f"no answer within {self.timeout_s:.0f} s")
          give(index)


def vlq(value: int) -> bytes:
  """A MIDI variable-length quantity (delta times, chunk and meta lengths)."""
  out = [value & 0x7F]
  value >>= 7
  while value:
    out.append(0x80 | (value & 0x7F))
    value >>= 7
  return bytes(reversed(out))
