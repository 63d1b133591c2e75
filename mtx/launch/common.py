"""What every `mtx-launch` target shares: the flags naming the run, the template filler,
the checks of a config against the cluster's devices, and writing or printing the result.

The flags are absl's, defined once here and read by each target (slurm.py, tpu.py, k8s.py),
so `--config`, `--workdir`, `--nodes` and `--image` mean the same thing everywhere.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import sys
from pathlib import Path
from typing import Any

from absl import flags

from mtx.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]
LAUNCH_DIR = REPO_ROOT / "launch"
_FIELD = re.compile(r"\{\{([A-Z_]+)\}\}")

CONFIG = flags.DEFINE_string("config", None, "The config file (configs/NAME.py) to train.")
WORKDIR = flags.DEFINE_string(
  "workdir",
  None,
  "The run's workdir (a restarted job resumes from it; gs://... on Cloud TPU and GKE); "
  "sample: the run to sample.",
)
NODES = flags.DEFINE_integer(
  "nodes", 1, "How many hosts (SLURM nodes, TPU VM workers per slice, pods per Job)."
)
GPUS_PER_NODE = flags.DEFINE_integer(
  "gpus_per_node", 8, "GPU jobs: GPUs on each host (SLURM node, Kubernetes pod)."
)
SLICES = flags.DEFINE_integer(
  "slices", 1, "TPU jobs: how many slices (multislice over the data-center network)."
)
IMAGE = flags.DEFINE_string(
  "image",
  "",
  "A container image with mtx installed (the Dockerfile, launch/container.md); k8s needs one.",
)
JOB_NAME = flags.DEFINE_string(
  "job_name", None, "The job's name (default: mtx-<config, dataset or run>)."
)
OUTPUT = flags.DEFINE_string("output", None, "Write the file here (default: print it).")
DRY_RUN = flags.DEFINE_bool(
  "dry_run", False, "Print what would be written or run, and write or run nothing."
)


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


def template(*parts: str) -> str:
  """The text of launch/<parts>; ConfigError when mtx-launch runs outside a checkout."""
  path = LAUNCH_DIR.joinpath(*parts)
  if not path.is_file():
    raise ConfigError(f"the template {path} is missing: run mtx-launch from an mtx checkout")
  return path.read_text()


def positive(name: str, value: int | None) -> int:
  if value is None or value < 1:
    raise ConfigError(f"--{name} must be at least 1, got {value}")
  return value


def required(name: str, value: str | None, what: str) -> str:
  if not value:
    raise ConfigError(f"{what} needs --{name}")
  return value


def absolute(path: str) -> str:
  """A local path made absolute (jobs run elsewhere); a URL (gs://...) unchanged."""
  if is_url(path):
    return path
  return str(Path(path).expanduser().absolute())


def is_url(path: str) -> bool:
  return re.match(r"^[a-z][a-z0-9+.-]*://", path) is not None


def binary_flags(extra: list[str]) -> list[str]:
  """The words after `--`, for the job's binary: each must be a --flag."""
  for word in extra:
    if not word.startswith("--"):
      raise ConfigError(f"{word!r} after `--` is not a --flag for the job's binary")
  return list(extra)


def shell_words(words: list[str]) -> str:
  return " ".join(shlex.quote(word) for word in words)


def config_file(name: str, what: str) -> str:
  """--config's value, checked to exist."""
  config = required(name, CONFIG.value, what)
  if not Path(config).is_file():
    raise ConfigError(f"--config={config} does not exist (configs/README.md lists the configs)")
  return config


def in_checkout(config: str, why: str) -> str:
  """`config`'s path relative to the checkout (where a job's hosts find it: the image, the
  workers' copy); ConfigError saying `why` when it lies elsewhere."""
  try:
    return Path(config).resolve().relative_to(REPO_ROOT).as_posix()
  except ValueError:
    raise ConfigError(
      f"--config={config} is outside the mtx checkout ({REPO_ROOT}), so {why}: put it under "
      "configs/"
    ) from None


def load_config(path: str, overrides: list[str]) -> Any:
  """The config file's get_config() with the `--config.a.b=v` overrides among `overrides`
  applied (values parsed as the field's type), as mtx-train will see it."""
  spec = importlib.util.spec_from_file_location("mtx_launch_config", path)
  module = importlib.util.module_from_spec(spec)
  if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))  # configs import `configs.base`
  try:
    spec.loader.exec_module(module)
    config = module.get_config()
  except Exception as e:  # pylint: disable=broad-except
    raise ConfigError(f"--config={path} could not be loaded: {type(e).__name__}: {e}") from None
  for word in overrides:
    match = re.match(r"^--config\.([\w.]+)=(.*)$", word)
    if not match:
      continue
    *parents, leaf = match.group(1).split(".")
    node = config
    try:
      for part in parents:
        node = node[part]
      current = node[leaf]
    except (KeyError, AttributeError):
      raise ConfigError(
        f"{word}: the config has no {match.group(1)} (configs/base.py lists every field)"
      ) from None
    node[leaf] = _parsed(word, match.group(2), current)
  return config


def _parsed(word: str, text: str, current: Any) -> Any:
  if isinstance(current, bool):
    return text.lower() in ("1", "true", "yes")
  if isinstance(current, int | float):
    try:
      return type(current)(text)
    except ValueError:
      raise ConfigError(f"{word}: {text!r} is not a valid {type(current).__name__}") from None
  return text


def check_devices(config: Any, processes: int, devices: int) -> tuple[int, int, int]:
  """The (data, fsdp, tensor) mesh the job will build over `devices` devices in `processes`
  processes; ConfigError, naming the node count, when the config's mesh or batch does not fit."""
  from mtx.train.config import mesh_shape

  try:
    shape = mesh_shape(config.mesh, devices)
  except ConfigError as e:
    raise ConfigError(
      f"the config's mesh does not fit {devices} devices in {processes} process(es) "
      f"(change --nodes or the mesh): {e}"
    ) from None
  batch = config.train.batch_size
  if batch % processes:
    raise ConfigError(
      f"train.batch_size ({batch}) does not divide over {processes} processes: "
      "change --nodes or the batch size"
    )
  if batch % (shape[0] * shape[1]):
    raise ConfigError(
      f"train.batch_size ({batch}) does not divide over mesh.data x mesh.fsdp "
      f"({shape[0]} x {shape[1]}) on {devices} devices: change --nodes or the mesh"
    )
  return shape


def emit(text: str, what: str, executable: bool = False) -> None:
  """Writes `text` to --output (not with --dry_run), or prints it."""
  if OUTPUT.value and not DRY_RUN.value:
    output = Path(OUTPUT.value)
    if output.is_dir():
      raise ConfigError(f"--output={output} is a directory; name the file to write")
    try:
      output.parent.mkdir(parents=True, exist_ok=True)
      output.write_text(text)
      if executable:
        output.chmod(0o755)
    except OSError as e:
      raise ConfigError(
        f"--output={output} cannot be written ({e.strerror or e}); pass a file in a folder "
        "you can write to"
      ) from None
    print(f"wrote {output}: {what.format(output=output)}")
    return
  sys.stdout.write(text)
