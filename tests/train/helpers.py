"""Test-sized configs and small utilities shared by the training tests."""

from __future__ import annotations

import os
import struct
import sys
from pathlib import Path

import numpy as np

from configs import base

REPO = Path(__file__).resolve().parents[2]
# Compiled steps are reused across tests and subprocesses (same program, same key).
COMPILATION_CACHE = Path(os.environ.get("MTX_TEST_JAX_CACHE", "/tmp/mtx-test-jax-cache"))


def use_compilation_cache() -> None:
  import jax

  jax.config.update("jax_compilation_cache_dir", str(COMPILATION_CACHE))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def small_config(data_dir, **train):
  """configs/base.py shrunk: a 1-layer decoder over 64 rows, dropout on (so resume must
  replay the random numbers), evaluation and checkpoints every 2 steps."""
  config = base.get_config()
  config.model.update(
    num_layers=1,
    embed_dim=32,
    num_heads=2,
    max_relative_distance=32,
    dropout_rate=0.1,
    attention_dropout_rate=0.1,
  )
  config.data.update(
    dataset="midi_folder", representation="mmt", data_dir=str(data_dir), seq_len=64
  )
  config.train.update(
    num_steps=6,
    batch_size=4,
    learning_rate=3e-3,
    warmup_steps=2,
    log_every=2,
    eval_every=2,
    eval_batches=2,
    checkpoint_every=2,
    keep_checkpoints=2,
    async_checkpointing=True,
  )
  config.train.update(train)
  return config


def flat_params(state) -> dict[str, np.ndarray]:
  import jax

  flat = jax.tree_util.tree_flatten_with_path(jax.device_get(state.params))[0]
  return {jax.tree_util.keystr(path): np.asarray(value) for path, value in flat}


def read_scalars(event_dir, *, purge: bool = True) -> dict[str, dict[int, float]]:
  """Tag -> {step: value} from every TensorBoard event file under event_dir, in the order
  written (the TFRecord framing parsed here; the protos are tensorboardX's). With
  `purge`, as TensorBoard shows them: a session restarted at step T (`purge_step`)
  hides the earlier values at steps >= T. Without it, the last value written wins."""
  from tensorboardX.proto import event_pb2

  scalars: dict[str, dict[int, float]] = {}
  for event in _events(event_dir):
    if purge and event.session_log.status == event_pb2.SessionLog.START and event.step:
      for values in scalars.values():
        for step in [s for s in values if s >= event.step]:
          del values[step]
    for value in event.summary.value:
      scalars.setdefault(value.tag, {})[event.step] = value.simple_value
  return scalars


def _events(event_dir):
  from tensorboardX.proto import event_pb2

  for path in sorted(
    Path(event_dir).rglob("events.out.tfevents.*"), key=lambda p: p.stat().st_mtime_ns
  ):
    data = path.read_bytes()
    offset = 0
    while offset < len(data):
      (length,) = struct.unpack("<Q", data[offset : offset + 8])
      record = data[offset + 12 : offset + 12 + length]
      offset += 12 + length + 4
      yield event_pb2.Event.FromString(record)


def cli_env(devices: int = 1) -> dict:
  """Environment for a subprocess binary: the repo importable, N CPU devices."""
  env = dict(os.environ)
  env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
  env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
  env["JAX_PLATFORMS"] = "cpu"
  env["JAX_COMPILATION_CACHE_DIR"] = str(COMPILATION_CACHE)
  env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0.5"
  return env


def train_command(config_file: str, workdir, *overrides: str) -> list[str]:
  return [
    sys.executable,
    "-m",
    "mtx.cli.train",
    f"--config={config_file}",
    f"--workdir={workdir}",
    *overrides,
  ]
