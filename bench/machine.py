"""What every bench prints about where it ran: the CPU and package versions.

Kept free of imports with side effects (bench/tokenize.py pins thread pools on
import), so any bench can use it.
"""

from __future__ import annotations

import importlib.metadata
import platform
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
