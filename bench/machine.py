"""What every bench prints about where it ran: the CPU and package versions.

Kept free of imports with side effects (bench/tokenize.py pins thread pools on
import), so any bench can use it.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import resource
import subprocess
from pathlib import Path


def package_version(package: str) -> str:
  """The installed version of `package`, or "not installed"."""
  try:
    return importlib.metadata.version(package)
  except importlib.metadata.PackageNotFoundError:
    return "not installed"


def cpu_model() -> str:
  """The CPU's model name from /proc/cpuinfo (or what platform knows)."""
  try:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
      if line.startswith("model name"):
        return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or "unknown"


def peak_rss_bytes() -> int:
  """This process's peak resident memory (Linux reports ru_maxrss in KiB)."""
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def cpu_seconds() -> tuple[float, float]:
  """(this process's CPU seconds, the whole machine's busy CPU seconds from /proc/stat).
  Around the timed steps, the machine's minus ours is what other processes took."""
  own = resource.getrusage(resource.RUSAGE_SELF)
  try:
    with open("/proc/stat") as stat:
      fields = [int(x) for x in stat.readline().split()[1:]]
    busy = (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # less idle, iowait
  except (OSError, ValueError, IndexError):
    busy = float("nan")
  return own.ru_utime + own.ru_stime, busy


def run_json_child(
  command: list[str], *, cwd: Path, timeout: float, env: dict | None = None
) -> dict:
  """Runs one bench child (each row in a process of its own) and returns the last JSON
  line it printed, or {"error": why}: timed out, or a failed exit or no JSON line, with
  the last line of its stderr."""
  try:
    done = subprocess.run(
      command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
  except subprocess.TimeoutExpired:
    return {"error": f"timed out after {timeout:.0f} s"}
  lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
  if done.returncode or not lines:
    tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
    return {"error": f"exit {done.returncode}: {tail[:300]}"}
  return json.loads(lines[-1])
