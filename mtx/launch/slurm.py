"""`mtx-launch slurm`: a SLURM batch script for mtx-train, mtx-prepare or mtx-sample.

Fills one of the templates in launch/slurm/ (train, train_cpu, prepare, sample: each a
readable batch script whose double-braced fields this fills in). Flags after `--` go to the
binary the job runs, one word each (shell-quoted in the script). An #SBATCH line whose value
is left empty (no --partition) is commented out (`##SBATCH`), so the cluster's default
applies. Paths become absolute: the script runs wherever SLURM starts it.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from absl import flags

from mtx.errors import ConfigError
from mtx.launch import common
from mtx.launch.common import absolute as _absolute
from mtx.launch.common import positive, required

TEMPLATES = ("train", "train_cpu", "prepare", "sample")
# SLURM's --time: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S.
_TIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")

_TEMPLATE = flags.DEFINE_enum("template", "train", list(TEMPLATES), "Which batch script.")
_PROCESS_PER = flags.DEFINE_enum(
  "process_per", "gpu", ["gpu", "node"], "train: one JAX process per GPU, or one per node."
)
_TASKS = flags.DEFINE_integer("tasks", 2, "train_cpu: how many processes on the node.")
_DEVICES_PER_TASK = flags.DEFINE_integer(
  "devices_per_task", 1, "train_cpu: XLA CPU devices per process."
)
_CPUS = flags.DEFINE_integer(
  "cpus_per_task", None, "CPUs per task (default: train 8, train_cpu 1, prepare 32, sample 8)."
)
_MEM_PER_CPU = flags.DEFINE_string("mem_per_cpu", "2G", "train_cpu: memory per CPU (SLURM units).")
_PARTITION = flags.DEFINE_string("partition", "", "The partition (default: the cluster's).")
_TIME_LIMIT = flags.DEFINE_string(
  "time", "24:00:00", "The time limit: D-HH:MM:SS, HH:MM:SS or minutes."
)
_SIGNAL_SECONDS = flags.DEFINE_integer(
  "signal_seconds", 120, "train, train_cpu: seconds before the time limit to save and requeue."
)
_LOG = flags.DEFINE_string(
  "log", None, "The job's output file (default: <job_name>-%j.out, %j the job id)."
)
_REPO = flags.DEFINE_string("repo", None, "Where the job runs: the mtx checkout (default: here).")
_MOUNTS = flags.DEFINE_string(
  "mounts", None, "With --image: SRC:DST,... to mount (default: the repository and the workdir)."
)
_SETUP = flags.DEFINE_string(
  "setup", ":", "A shell line run before the binary (e.g. 'source .venv/bin/activate')."
)
_DATASET = flags.DEFINE_string("dataset", None, "prepare: the dataset (mtx-prepare --dataset).")
_MANUAL_DIR = flags.DEFINE_string(
  "manual_dir", "", "prepare: the corpus (mtx-prepare --manual_dir)."
)
_DATA_DIR = flags.DEFINE_string("data_dir", None, "prepare: where the records go.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "sample: where the samples go.")

_DEFAULT_CPUS = {"train": 8, "train_cpu": 1, "prepare": 32, "sample": 8}


def time_limit_seconds(text: str) -> int:
  """Seconds in a SLURM --time value; ConfigError when it is not one."""
  match = _TIME.match(text.strip())
  if not match:
    raise ConfigError(f"--time={text!r} is not a SLURM time limit: D-HH:MM:SS, HH:MM:SS or minutes")
  days, first, second, third = (int(g) if g else None for g in match.groups())
  if days is not None:  # D-H[:M[:S]]
    hours, minutes, seconds = first, second or 0, third or 0
  elif third is not None:  # H:M:S
    hours, minutes, seconds = first, second, third
  else:  # M[:S]
    hours, minutes, seconds = 0, first, second or 0
  return (days or 0) * 86400 + hours * 3600 + minutes * 60 + seconds


def _directive(name: str, value: str) -> str:
  """A value for an #SBATCH line, which SLURM reads up to the first blank."""
  if re.search(r"\s|#", value):
    raise ConfigError(f"--{name}={value!r} must be one word (no blanks or '#')")
  return value


def template_values(template: str, extra: list[str]) -> dict[str, str]:
  """The fields of `template` from the flags (validated)."""
  q = shlex.quote
  repo = _absolute(_REPO.value or ".")
  if not Path(repo, "mtx").is_dir():
    raise ConfigError(f"--repo={repo} is not an mtx checkout (no mtx/ there)")
  common.binary_flags(extra)
  seconds = time_limit_seconds(_TIME_LIMIT.value)
  values = {
    "PARTITION": _directive("partition", _PARTITION.value),
    "TIME": _directive("time", _TIME_LIMIT.value),
    "CPUS_PER_TASK": _count("cpus_per_task", _CPUS.value or _DEFAULT_CPUS[template]),
    "REPO": q(repo),
    "IMAGE": q(common.IMAGE.value),
    "SETUP": _SETUP.value,
  }
  if "\n" in _SETUP.value:
    raise ConfigError("--setup must be one shell line")
  if template in ("train", "train_cpu"):
    config = common.config_file("config", f"--template={template}")
    workdir = _absolute(_needed("workdir", common.WORKDIR.value, template))
    if Path(workdir).exists() and not Path(workdir).is_dir():
      raise ConfigError(f"--workdir={workdir} is a file, not a directory")
    if _SIGNAL_SECONDS.value < 1 or _SIGNAL_SECONDS.value >= seconds:
      raise ConfigError(
        f"--signal_seconds={_SIGNAL_SECONDS.value} must be at least 1 and less than the "
        f"time limit ({seconds} s)"
      )
    values |= {
      "CONFIG": q(_absolute(config)),
      "WORKDIR": q(workdir),
      "TRAIN_FLAGS": " ".join(q(word) for word in extra),
      "SIGNAL_SECONDS": str(_SIGNAL_SECONDS.value),
    }
    name = Path(config).stem
  if template == "train":
    nodes, gpus = (
      positive("nodes", common.NODES.value),
      positive("gpus_per_node", common.GPUS_PER_NODE.value),
    )
    per_node = gpus if _PROCESS_PER.value == "gpu" else 1
    common.check_devices(common.load_config(config, extra), nodes * per_node, nodes * gpus)
    values |= {
      "NODES": _count("nodes", common.NODES.value),
      "GPUS_PER_NODE": _count("gpus_per_node", common.GPUS_PER_NODE.value),
      "TASKS_PER_NODE": str(common.GPUS_PER_NODE.value) if _PROCESS_PER.value == "gpu" else "1",
      "PROCESS_PER": _PROCESS_PER.value,
    }
  elif template == "train_cpu":
    tasks = positive("tasks", _TASKS.value)
    devices = tasks * positive("devices_per_task", _DEVICES_PER_TASK.value)
    common.check_devices(common.load_config(config, extra), tasks, devices)
    values |= {
      "TASKS": _count("tasks", _TASKS.value),
      "DEVICES_PER_TASK": _count("devices_per_task", _DEVICES_PER_TASK.value),
      "MEM_PER_CPU": _directive("mem_per_cpu", _MEM_PER_CPU.value),
    }
  elif template == "prepare":
    dataset = _needed("dataset", _DATASET.value, template)
    values |= {
      "DATASET": q(dataset),
      "MANUAL_DIR": q(_absolute(_MANUAL_DIR.value) if _MANUAL_DIR.value else ""),
      "DATA_DIR": q(_absolute(_needed("data_dir", _DATA_DIR.value, template))),
      "PREPARE_FLAGS": " ".join(q(word) for word in extra),
    }
    name = dataset
  elif template == "sample":
    workdir = _absolute(_needed("workdir", common.WORKDIR.value, template))
    if not Path(workdir, "checkpoints").is_dir():
      raise ConfigError(f"--workdir={workdir} holds no checkpoints/: not a run mtx-train wrote")
    values |= {
      "WORKDIR": q(workdir),
      "OUTPUT_DIR": q(_absolute(_needed("output_dir", _OUTPUT_DIR.value, template))),
      "GPUS_PER_NODE": "1",  # the sampler runs on one device
      "SAMPLE_FLAGS": " ".join(q(word) for word in extra),
    }
    name = f"sample-{Path(workdir).name}"
  job_name = _directive("job_name", common.JOB_NAME.value or f"mtx-{name}")
  mounts = _MOUNTS.value
  if mounts is None:
    paths = [repo, *(_absolute(p) for p in _mount_paths(template) if p)]
    mounts = ",".join(f"{p}:{p}" for p in dict.fromkeys(paths))
  values |= {
    "JOB_NAME": job_name,
    "LOG": _directive("log", _LOG.value or f"{job_name}-%j.out"),
    "MOUNTS": q(mounts),
  }
  return values


def _mount_paths(template: str) -> list[str]:
  if template == "prepare":
    return [_MANUAL_DIR.value, _DATA_DIR.value]
  if template == "sample":
    return [common.WORKDIR.value, _OUTPUT_DIR.value]
  return [common.WORKDIR.value]


def _count(name: str, value: int | None) -> str:
  return str(positive(name, value))


def _needed(name: str, value: str | None, template: str) -> str:
  return required(name, value, f"--template={template}")


def script(extra: list[str]) -> str:
  """The filled-in batch script of --template."""
  name = _TEMPLATE.value
  return common.render(common.template("slurm", f"{name}.sbatch"), template_values(name, extra))


def main(extra: list[str]) -> None:
  common.emit(script(extra), "submit it with `sbatch {output}`", executable=True)
