r"""`mtx-train`: train (or resume) a model from a config file.

    mtx-train --config=configs/jsb_tiny.py --workdir=runs/jsb_tiny \
        --config.data.data_dir=data --config.train.num_steps=2000

Any config field can be overridden with --config.SECTION.KEY=VALUE. Rerunning
the same command resumes from the latest checkpoint in --workdir, exactly.
Multi-host: --coordinator_address/--num_processes/--process_id, or the
environment (mtx/train/distributed.py). Bad input exits with status 2 and one
line; SIGTERM saves a checkpoint and exits 0 (before the first step: exits 0
having trained nothing). Every checkpoint is verified when restored: a damaged
one is refused by name, or, with --fallback_to_intact_checkpoint, moved to
<workdir>/damaged_checkpoints and the newest intact one restored.
"""

from __future__ import annotations

import sys

from absl import flags, logging
from ml_collections import config_flags

from mtx.cli.app import run as run_app
from mtx.errors import ConfigError
from mtx.train.stop import StopSignals

# Installed when the binary starts (`run`), before JAX and the restore take their
# seconds: a SIGTERM then is a request to stop, not a silent exit 143.
_STOP = StopSignals()

_CONFIG = config_flags.DEFINE_config_file(
  "config",
  None,
  "A config file (configs/NAME.py); override fields with --config.x.y=v.",
  lock_config=True,
)
_WORKDIR = flags.DEFINE_string(
  "workdir",
  None,
  "Where checkpoints, TensorBoard events and config.json go; a rerun resumes from here.",
)
_COORDINATOR = flags.DEFINE_string(
  "coordinator_address", None, "Multi-host: HOST:PORT of process 0's coordinator."
)
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Multi-host: the process count.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "Multi-host: this process's index.")
_FALLBACK = flags.DEFINE_boolean(
  "fallback_to_intact_checkpoint",
  False,
  "When the latest checkpoint is damaged, move it (and any other damaged newer one) to "
  "<workdir>/damaged_checkpoints and resume from the newest intact one, instead of "
  "stopping with an error.",
)


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise ConfigError(f"unexpected arguments {argv[1:]}; every input is a --flag")
  if not flags.FLAGS["config"].present:
    raise ConfigError("pass --config=configs/NAME.py (configs/README.md lists them)")
  config = _CONFIG.value
  try:
    config.keys()  # ml_collections defers a failed load (a missing file) to first use
  except OSError as e:
    cause = str(e.__cause__ or e).replace("\n", " ")
    raise ConfigError(f"--config could not be loaded: {' '.join(cause.split())}") from None
  if not _WORKDIR.value:
    raise ConfigError("pass --workdir=DIR: where checkpoints and logs go")
  from mtx.cli.paths import check_output_dir

  check_output_dir(
    _WORKDIR.value, "workdir", bucket_ok=True
  )  # before JAX starts: a file, read-only, full
  from mtx.cpu_compiler import configure_cpu_compiler
  from mtx.train import distributed

  configure_cpu_compiler()  # before JAX starts: XLA's CPU schedule and dot options
  distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  import jax

  from mtx.train.loop import report, train

  if not flags.FLAGS["verbosity"].present:  # Orbax and TFDS log every file at INFO
    logging.set_verbosity(logging.WARNING)
  report(
    f"devices: {jax.device_count()} x {jax.devices()[0].device_kind} on "
    f"{jax.process_count()} process(es)"
  )
  result = train(config, _WORKDIR.value, stop=_STOP, fallback_to_intact=_FALLBACK.value)
  where = _WORKDIR.value
  if result.preempted:  # the loop said where it stopped and what was saved
    return
  last = result.eval_metrics.get(result.step)
  final = f", validation loss {last['loss']:.4f}" if last else ""
  print(f"trained to step {result.step}{final}; checkpoints in {where}/checkpoints")
  sys.stdout.flush()


def run() -> None:
  _STOP.install()
  run_app(main)


if __name__ == "__main__":
  run()
