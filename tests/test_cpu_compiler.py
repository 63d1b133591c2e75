"""mtx's XLA CPU options: composed without clobbering the user's, known to the installed
XLA, and refused once JAX has started (XLA would silently ignore them then)."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys

import jax.numpy as jnp
import pytest

from mtx.cpu_compiler import (
  DOT_FLAG,
  SCHEDULE_FLAG,
  configure_cpu_compiler,
  cpu_compiler_flags,
  jax_backends_started,
)


def test_flags_are_appended_once_and_the_users_own_setting_wins():
  assert cpu_compiler_flags("", "0.10.2").split() == [SCHEDULE_FLAG, DOT_FLAG]
  # Applied twice: nothing doubles.
  once = cpu_compiler_flags("--xla_dump_to=/tmp/d", "0.10.2")
  assert cpu_compiler_flags(once, "0.10.2") == once
  assert once.split() == ["--xla_dump_to=/tmp/d", SCHEDULE_FLAG, DOT_FLAG]
  # The user's value of the same option stays, and ours is not added beside it.
  own = (
    "--xla_cpu_experimental_ynn_fusion_type=+dot "
    "--xla_cpu_enable_concurrency_optimized_scheduler=true"
  )
  assert cpu_compiler_flags(own, "0.10.2") == own
  # A jaxlib they were not measured with gets none of them (its XLA may not know them).
  assert cpu_compiler_flags("--xla_dump_to=/tmp/d", "0.11.0") == "--xla_dump_to=/tmp/d"


def test_the_installed_xla_knows_every_flag_it_is_given():
  """XLA aborts at start on a flag it does not know: a fresh process with exactly what
  `configure_cpu_compiler` sets must run a computation."""
  flags = cpu_compiler_flags("", importlib.metadata.version("jaxlib"))
  code = "import jax.numpy as jnp; print(float((jnp.ones((64, 64)) @ jnp.ones((64, 8))).sum()))"
  done = subprocess.run(
    [sys.executable, "-c", code],
    capture_output=True,
    text=True,
    env={**os.environ, "XLA_FLAGS": flags},
    timeout=300,
  )
  assert done.returncode == 0, done.stderr[-2000:]
  assert done.stdout.strip().splitlines()[-1] == "32768.0"


def test_configure_refuses_to_run_after_jax_started():
  """XLA reads XLA_FLAGS when the CPU client is created: a late call would do nothing, so
  it raises instead (this process has run JAX computations already)."""
  jnp.ones(2).block_until_ready()
  before = os.environ.get("XLA_FLAGS")
  with pytest.raises(RuntimeError, match="before JAX's first computation"):
    configure_cpu_compiler()
  assert os.environ.get("XLA_FLAGS") == before


def test_jax_backends_started_turns_true_at_the_first_computation_and_never_imports_jax():
  """The one "has JAX started?" check (XLA_FLAGS still count; workers may be forked):
  False before JAX is imported (and it does not import it), False after the import,
  True once a computation made a backend."""
  code = (
    "import sys; from mtx.cpu_compiler import jax_backends_started as started; "
    "print(started(), 'jax' in sys.modules); import jax.numpy as jnp; print(started()); "
    "jnp.ones(2).block_until_ready(); print(started())"
  )
  done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-2000:]
  assert done.stdout.split() == ["False", "False", "False", "True"]
  jnp.ones(2).block_until_ready()
  assert jax_backends_started()
