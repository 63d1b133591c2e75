"""What every bench prints about where it ran: the CPU and package versions.

Kept free of imports with side effects (bench/tokenize.py pins thread pools on
import), so any bench can use it.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import resource
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
