"""`mtx-launch`: a SLURM batch script for mtx-train, mtx-prepare or mtx-sample, from flags.

    mtx-launch slurm --config=configs/mmt_lmd.py --workdir=/shared/runs/lmd \
        --nodes=4 --gpus_per_node=8 --partition=gpu --time=2-00:00:00 \
        --output=lmd.sbatch -- --config.data.data_dir=/shared/data
    sbatch lmd.sbatch
    mtx-launch slurm --template=train_cpu --config=configs/jsb_tiny.py --workdir=runs/t --tasks=2
    mtx-launch slurm --template=prepare --dataset=lmd --manual_dir=/shared/lmd \
        --data_dir=/shared/data --cpus_per_task=64
    mtx-launch slurm --template=sample --workdir=/shared/runs/lmd --output_dir=samples

Fills one of the templates in launch/slurm/ (train, train_cpu, prepare, sample: each a
readable batch script whose double-braced fields this fills in) and prints it, or writes it to
--output. Flags after `--` go to the binary the job runs, one word each (shell-quoted in the
script). An #SBATCH line whose value is left empty (no --partition) is commented out
(`##SBATCH`), so the cluster's default applies. Paths become absolute: the script runs
wherever SLURM starts it. launch/README.md says how to watch, stop and resume the job.
Bad input exits with status 2 and one line.
"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

from absl import flags

from mtx.cli.app import run as run_app
from mtx.errors import ConfigError

TEMPLATE_DIR = Path(__file__).resolve().parents[2] / "launch" / "slurm"
TEMPLATES = ("train", "train_cpu", "prepare", "sample")
_FIELD = re.compile(r"\{\{([A-Z_]+)\}\}")
# SLURM's --time: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S.
_TIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")

_TEMPLATE = flags.DEFINE_enum("template", "train", list(TEMPLATES), "Which batch script.")
_CONFIG = flags.DEFINE_string(
  "config", None, "train, train_cpu: the config file (configs/NAME.py)."
)
_WORKDIR = flags.DEFINE_string(
  "workdir",
  None,
  "train, train_cpu: the run's workdir (a requeued job resumes from it); sample: the run.",
)
_NODES = flags.DEFINE_integer("nodes", 1, "train: how many nodes.")
_GPUS = flags.DEFINE_integer("gpus_per_node", 8, "train: GPUs on each node.")
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
_JOB_NAME = flags.DEFINE_string(
  "job_name", None, "The job's name (default: mtx-<config or dataset>)."
)
_LOG = flags.DEFINE_string(
  "log", None, "The job's output file (default: <job_name>-%j.out, %j the job id)."
)
_REPO = flags.DEFINE_string("repo", None, "Where the job runs: the mtx checkout (default: here).")
_IMAGE = flags.DEFINE_string(
  "image", "", "A container image for pyxis/enroot (srun --container-image)."
)
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
_OUTPUT = flags.DEFINE_string("output", None, "Write the script here (default: print it).")
_DRY_RUN = flags.DEFINE_bool(
  "dry_run", False, "Print the script and write nothing, --output or not."
)

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


def render(template: str, values: dict[str, str]) -> str:
  """The template with each double-braced NAME replaced by values[NAME]; an #SBATCH line whose
  fields are all empty becomes `##SBATCH` (SLURM skips it)."""
  missing = sorted(set(_FIELD.findall(template)) - set(values))
  if missing:
    raise ValueError(f"no value for {', '.join(missing)}")
  lines = []
  for line in template.splitlines(keepends=True):
    names = _FIELD.findall(line)
    if line.startswith("#SBATCH") and names and not any(values[name] for name in names):
      line = "#" + line
    lines.append(_FIELD.sub(lambda m: values[m.group(1)], line))
  return "".join(lines)


def _directive(name: str, value: str) -> str:
  """A value for an #SBATCH line, which SLURM reads up to the first blank."""
  if re.search(r"\s|#", value):
    raise ConfigError(f"--{name}={value!r} must be one word (no blanks or '#')")
  return value


def _positive(name: str, value: int) -> str:
  if value is None or value < 1:
    raise ConfigError(f"--{name} must be at least 1, got {value}")
  return str(value)


def _absolute(path: str) -> str:
  return str(Path(path).expanduser().absolute())


def _required(name: str, value: str | None, template: str) -> str:
  if not value:
    raise ConfigError(f"--template={template} needs --{name}")
  return value


def template_values(template: str, extra: list[str]) -> dict[str, str]:
  """The fields of `template` from the flags (validated)."""
  q = shlex.quote
  repo = _absolute(_REPO.value or ".")
  if not Path(repo, "mtx").is_dir():
    raise ConfigError(f"--repo={repo} is not an mtx checkout (no mtx/ there)")
  for word in extra:
    if not word.startswith("--"):
      raise ConfigError(f"{word!r} after `--` is not a --flag for the job's binary")
  seconds = time_limit_seconds(_TIME_LIMIT.value)
  values = {
    "PARTITION": _directive("partition", _PARTITION.value),
    "TIME": _directive("time", _TIME_LIMIT.value),
    "CPUS_PER_TASK": _positive("cpus_per_task", _CPUS.value or _DEFAULT_CPUS[template]),
    "REPO": q(repo),
    "IMAGE": q(_IMAGE.value),
    "SETUP": _SETUP.value,
  }
  if "\n" in _SETUP.value:
    raise ConfigError("--setup must be one shell line")
  if template in ("train", "train_cpu"):
    config = _required("config", _CONFIG.value, template)
    if not Path(config).is_file():
      raise ConfigError(f"--config={config} does not exist (configs/README.md lists the configs)")
    workdir = _absolute(_required("workdir", _WORKDIR.value, template))
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
    values |= {
      "NODES": _positive("nodes", _NODES.value),
      "GPUS_PER_NODE": _positive("gpus_per_node", _GPUS.value),
      "TASKS_PER_NODE": str(_GPUS.value) if _PROCESS_PER.value == "gpu" else "1",
      "PROCESS_PER": _PROCESS_PER.value,
    }
  elif template == "train_cpu":
    values |= {
      "TASKS": _positive("tasks", _TASKS.value),
      "DEVICES_PER_TASK": _positive("devices_per_task", _DEVICES_PER_TASK.value),
      "MEM_PER_CPU": _directive("mem_per_cpu", _MEM_PER_CPU.value),
    }
  elif template == "prepare":
    dataset = _required("dataset", _DATASET.value, template)
    values |= {
      "DATASET": q(dataset),
      "MANUAL_DIR": q(_absolute(_MANUAL_DIR.value) if _MANUAL_DIR.value else ""),
      "DATA_DIR": q(_absolute(_required("data_dir", _DATA_DIR.value, template))),
      "PREPARE_FLAGS": " ".join(q(word) for word in extra),
    }
    name = dataset
  elif template == "sample":
    workdir = _absolute(_required("workdir", _WORKDIR.value, template))
    if not Path(workdir, "checkpoints").is_dir():
      raise ConfigError(f"--workdir={workdir} holds no checkpoints/: not a run mtx-train wrote")
    values |= {
      "WORKDIR": q(workdir),
      "OUTPUT_DIR": q(_absolute(_required("output_dir", _OUTPUT_DIR.value, template))),
      "GPUS_PER_NODE": "1",  # the sampler runs on one device
      "SAMPLE_FLAGS": " ".join(q(word) for word in extra),
    }
    name = f"sample-{Path(workdir).name}"
  job_name = _directive("job_name", _JOB_NAME.value or f"mtx-{name}")
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
    return [_WORKDIR.value, _OUTPUT_DIR.value]
  return [_WORKDIR.value]


def main(argv: list[str]) -> None:
  if len(argv) < 2 or argv[1] != "slurm":
    raise ConfigError("usage: mtx-launch slurm --config=configs/NAME.py --workdir=DIR ...")
  template = _TEMPLATE.value
  path = TEMPLATE_DIR / f"{template}.sbatch"
  if not path.is_file():
    raise ConfigError(f"the template {path} is missing: run mtx-launch from an mtx checkout")
  script = render(path.read_text(), template_values(template, argv[2:]))
  if _OUTPUT.value and not _DRY_RUN.value:
    output = Path(_OUTPUT.value)
    if output.is_dir():
      raise ConfigError(f"--output={output} is a directory; name the file to write")
    output.write_text(script)
    output.chmod(0o755)
    print(f"wrote {output}: submit it with `sbatch {output}`")
    return
  sys.stdout.write(script)


def run() -> None:
  run_app(main)


if __name__ == "__main__":
  run()
