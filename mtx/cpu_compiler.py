"""XLA's CPU compiler options that mtx's training runs set before JAX starts.

    from mtx.cpu_compiler import configure_cpu_compiler
    configure_cpu_compiler()   # first thing in the program, before any JAX computation

XLA reads these from the XLA_FLAGS environment variable only, once, when the CPU client
is created (jax 0.10.2: passed as a `compiler_options` entry, a flag is accepted and
ignored), so they are appended there. Measured on the MMT-size training step
(docs/benchmarks.md, "Model training step"):

- `--xla_cpu_enable_concurrency_optimized_scheduler=false`: XLA's default CPU scheduler
  orders a program for concurrency between operations and keeps far more activations
  alive at once: at 8 x 1024 the step plans 3.4 GiB of temporaries, 2.6 GiB with the
  memory-minimizing schedule, at the same speed within noise.
- `--xla_cpu_experimental_ynn_fusion_type=-individual_dot`: single matrix products go to
  XLA's own dot runtime instead of one YNNPACK fusion each: +8-10% at 8 x 512, +4-9% at
  2 x 1024, +7% at 8 x 1024, +15-19% for the tiny config (steps alternated between
  processes); the relative-attention step is unchanged.

Both are set only for the jaxlib versions they were measured with (MEASURED_JAXLIB): XLA
aborts at start on a flag it does not know, and these are internal options that a newer
XLA may rename (the GPU machines' image carries a newer jaxlib). A flag the user already put
in XLA_FLAGS for the same option is left as it is.
"""

from __future__ import annotations

import importlib.metadata
import os
import sys

SCHEDULE_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler=false"
DOT_FLAG = "--xla_cpu_experimental_ynn_fusion_type=-individual_dot"
# jaxlib versions whose XLA knows both flags and was measured with them.
MEASURED_JAXLIB = ("0.10.",)


def cpu_compiler_flags(existing: str, jaxlib_version: str) -> str:
  """XLA_FLAGS with mtx's CPU options appended, for a jaxlib in MEASURED_JAXLIB (else
  `existing` as it is); `existing` (the user's) keeps its own setting of any option."""
  flags = existing.split()
  if not jaxlib_version.startswith(MEASURED_JAXLIB):
    return " ".join(flags)
  options = {flag.split("=", 1)[0] for flag in flags}
  flags += [flag for flag in (SCHEDULE_FLAG, DOT_FLAG) if flag.split("=", 1)[0] not in options]
  return " ".join(flags)


def configure_cpu_compiler() -> None:
  """Appends mtx's CPU options to XLA_FLAGS; must run before JAX's first computation
  creates the CPU client (a later call would do nothing, so it raises). Harmless on a
  GPU or TPU host: the options only touch XLA's CPU compiler."""
  if jax_backends_started():
    raise RuntimeError(
      "configure_cpu_compiler() must run before JAX's first computation: "
      "call it at the start of the program"
    )
  try:
    jaxlib_version = importlib.metadata.version("jaxlib")
  except importlib.metadata.PackageNotFoundError:
    jaxlib_version = ""
  os.environ["XLA_FLAGS"] = cpu_compiler_flags(os.environ.get("XLA_FLAGS", ""), jaxlib_version)


def jax_backends_started() -> bool:
  """Whether this process has created a JAX backend (run a computation), without ever
  importing JAX: what decides if XLA_FLAGS can still take effect, and if a process may
  fork (a started runtime's threads are native, invisible to `threading`). JAX has no
  public way to ask; a JAX without `jax._src.xla_bridge.backends_are_initialized`
  answers False."""
  bridge = sys.modules.get("jax._src.xla_bridge")
  started = getattr(bridge, "backends_are_initialized", None)
  return bool(started is not None and started())
