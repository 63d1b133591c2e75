"""`mtx-launch tpu ACTION`: mtx-train on a Cloud TPU VM slice (or several), through gcloud.

    mtx-launch tpu create --tpu_name=NAME --tpu_type=v5litepod-16 --gcp_zone=ZONE [--tpu_spot]
    mtx-launch tpu setup  --tpu_name=NAME --gcp_zone=ZONE          # copy the checkout, install
    mtx-launch tpu run    --tpu_name=NAME --tpu_type=v5litepod-16 --gcp_zone=ZONE \
        --config=configs/NAME.py --workdir=gs://BUCKET/runs/NAME -- --config.data.data_dir=gs://...
    mtx-launch tpu logs|stop|status|delete --tpu_name=NAME --gcp_zone=ZONE

Each action runs its gcloud commands one after the other, or, with --dry_run, prints them
(one a line, shell-quoted) and runs nothing: launch/tpu/README.md shows every action's
commands, and tests/launch/test_tpu.py checks that the README and this module agree. The
words after `--` go to mtx-train on every worker. `--slices=N` (N > 1) makes a multislice
queued resource (`--tpu_queued`): nodes NAME-0 ... NAME-(N-1), joined over the data-center
network; JAX reads the slices' MEGASCALE_* settings from each VM's metadata.

On the workers, launch/tpu/worker.sh runs mtx-train detached, logs to one file a worker and
restarts it after a failure (it resumes from the workdir's latest checkpoint). Bad input,
and a gcloud command that fails, end in one line and exit status 2.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
import subprocess
import sys

from absl import flags

from mtx.errors import ConfigError
from mtx.launch import common

ACTIONS = ("create", "status", "setup", "run", "logs", "stop", "delete")
# On each worker, relative to the ssh user's home: the checkout and the copied archive.
REMOTE_CHECKOUT = "mtx"
REMOTE_ARCHIVE = "mtx.tar.gz"
WORKER_SCRIPT = f"{REMOTE_CHECKOUT}/launch/tpu/worker.sh"

_NAME = flags.DEFINE_string(
  "tpu_name", None, "TPU jobs: the TPU VM (or queued resource) name; slices are NAME-0, NAME-1."
)
_TYPE = flags.DEFINE_string(
  "tpu_type", None, "TPU jobs: the accelerator type of one slice (v5litepod-16, v4-32, v6e-8)."
)
_VERSION = flags.DEFINE_string(
  "tpu_version", None, "TPU jobs: the runtime version (default: the one for --tpu_type's chip)."
)
_SPOT = flags.DEFINE_bool("tpu_spot", False, "TPU jobs: Spot VMs (cheaper; preempted any time).")
_QUEUED = flags.DEFINE_bool(
  "tpu_queued", False, "TPU jobs: a queued resource instead of `tpu-vm create` (--slices > 1)."
)
_RESTARTS = flags.DEFINE_integer(
  "tpu_restarts", 3, "TPU jobs: how often each worker restarts mtx-train after a failure."
)
_SETUP = flags.DEFINE_string(
  "tpu_setup",
  "copy",
  "TPU jobs: `copy` (git archive of this checkout's HEAD, scp'd to every worker) or "
  "GIT_URL#REV to clone on every worker.",
)
_LOG_DIR = flags.DEFINE_string(
  "tpu_log_dir", "mtx-logs", "TPU jobs: the workers' log folder (relative to the home folder)."
)
_LOG_LINES = flags.DEFINE_integer("tpu_log_lines", 50, "TPU jobs: `logs` shows this many lines.")
_ALLOW_LOCAL = flags.DEFINE_bool(
  "tpu_allow_local_paths",
  False,
  "TPU jobs: allow a workdir or data_dir off a bucket on a multi-host slice (each worker "
  "then writes or reads its own disk).",
)
_PROJECT = flags.DEFINE_string("gcp_project", None, "TPU jobs: the project (default: gcloud's).")
_ZONE = flags.DEFINE_string("gcp_zone", None, "TPU jobs: the zone (us-west4-a, us-central2-b).")

# How an accelerator type's number counts: TensorCores on v2, v3, v4 and v5p (two a chip;
# JAX shows each v2/v3 core as a device, one v4/v5p chip as one device), chips on v5e
# (v5litepod) and v6e. Value: (TensorCores per JAX device, or 0 where chips are counted).
# Hosts (TPU VMs) per slice, from the Cloud TPU docs (tpu/docs/v4, v5p, v5e, v6e and
# "TPU configurations"): 4 chips a VM (v2-8 and v3-8: 8 cores, 4 chips, one VM), except that
# v5e and v6e slices of 1, 4 or 8 chips are one VM.
GENERATIONS = {"v2": 1, "v3": 1, "v4": 2, "v5p": 2, "v5litepod": 0, "v6e": 0}
# The runtime (TPU software) version for each, from Cloud TPU's "TPU software versions".
DEFAULT_VERSIONS = {
  "v2": "tpu-ubuntu2204-base",
  "v3": "tpu-ubuntu2204-base",
  "v4": "tpu-ubuntu2204-base",
  "v5p": "v2-alpha-tpuv5",
  "v5litepod": "v2-alpha-tpuv5-lite",
  "v6e": "v2-alpha-tpuv6e",
}


def slice_shape(accelerator: str, hosts: int | None = None) -> tuple[int, int]:
  """(hosts, JAX devices) of one slice of `accelerator`; `hosts` (--nodes) overrides the
  table where it is wrong for a new type."""
  match = re.fullmatch(r"(v2|v3|v4|v5p|v5litepod|v6e)-(\d+)", accelerator or "")
  if not match:
    raise ConfigError(
      f"--tpu_type={accelerator!r} is not a TPU type this knows: "
      f"{', '.join(f'{g}-N' for g in GENERATIONS)} (launch/tpu/README.md)"
    )
  generation, count = match.group(1), int(match.group(2))
  cores_per_device = GENERATIONS[generation]
  if cores_per_device:  # TensorCores counted: 8 a VM
    valid, devices, table_hosts = count % 8 == 0, count // cores_per_device, count // 8
  else:  # chips counted: 1, 4, 8 on one VM, then 4 a VM
    valid, devices = count in (1, 4, 8) or (count >= 16 and count % 16 == 0), count
    table_hosts = 1 if count <= 8 else count // 4
  if not valid or count < 1:
    raise ConfigError(f"--tpu_type={accelerator}: {count} is not a {generation} slice size")
  hosts = table_hosts if hosts is None else hosts
  if hosts < 1 or devices % hosts:
    raise ConfigError(f"--nodes={hosts} hosts do not divide --tpu_type={accelerator}'s devices")
  return hosts, devices


@dataclasses.dataclass(frozen=True)
class Tpu:
  """What names the TPU in every gcloud command."""

  name: str
  zone: str
  project: str | None = None
  accelerator: str = ""
  version: str = ""
  spot: bool = False
  queued: bool = False
  slices: int = 1

  def nodes(self) -> list[str]:
    """The TPU VMs: a queued resource of N slices names them NAME-0 ... NAME-(N-1)."""
    if self.slices > 1:
      return [f"{self.name}-{index}" for index in range(self.slices)]
    return [self.name]

  def where(self) -> list[str]:
    return [f"--zone={self.zone}"] + ([f"--project={self.project}"] if self.project else [])


_GCLOUD_TPUS = ["gcloud", "compute", "tpus"]


def create_commands(tpu: Tpu) -> list[list[str]]:
  spot = ["--spot"] if tpu.spot else []
  if not tpu.queued:
    return [
      [*_GCLOUD_TPUS, "tpu-vm", "create", tpu.name, *tpu.where(),
       f"--accelerator-type={tpu.accelerator}", f"--version={tpu.version}", *spot]
    ]  # fmt: skip
  nodes = [f"--node-id={tpu.name}"]
  if tpu.slices > 1:
    nodes = [f"--node-count={tpu.slices}", f"--node-prefix={tpu.name}"]
  return [
    [*_GCLOUD_TPUS, "queued-resources", "create", tpu.name, *tpu.where(),
     f"--accelerator-type={tpu.accelerator}", f"--runtime-version={tpu.version}", *nodes, *spot]
  ]  # fmt: skip


def status_commands(tpu: Tpu) -> list[list[str]]:
  kind = "queued-resources" if tpu.queued else "tpu-vm"
  return [[*_GCLOUD_TPUS, kind, "describe", tpu.name, *tpu.where()]]


def delete_commands(tpu: Tpu) -> list[list[str]]:
  """Deletes the VMs (a queued resource with its nodes: --force), without asking (--quiet)."""
  if tpu.queued:
    return [[*_GCLOUD_TPUS, "queued-resources", "delete", tpu.name, *tpu.where(), "--force",
             "--quiet"]]  # fmt: skip
  return [[*_GCLOUD_TPUS, "tpu-vm", "delete", tpu.name, *tpu.where(), "--quiet"]]


def on_all_workers(tpu: Tpu, command: str) -> list[list[str]]:
  """`command` run by ssh on every worker of every slice, one slice after the other."""
  return [
    [*_GCLOUD_TPUS, "tpu-vm", "ssh", node, *tpu.where(), "--worker=all", "--command", command]
    for node in tpu.nodes()
  ]


def archive_path(tpu: Tpu) -> str:
  return f"/tmp/{tpu.name}-mtx.tar.gz"


def setup_commands(tpu: Tpu, source: str) -> list[list[str]]:
  """Puts the code on every worker (~/mtx, replaced) and installs it (launch/tpu/setup.sh)."""
  install = f"bash {REMOTE_CHECKOUT}/launch/tpu/setup.sh"
  if source == "copy":
    archive = archive_path(tpu)
    unpack = (
      f"rm -rf {REMOTE_CHECKOUT} && mkdir {REMOTE_CHECKOUT} && "
      f"tar -xzf {REMOTE_ARCHIVE} -C {REMOTE_CHECKOUT} && {install}"
    )
    return [
      ["git", "archive", "--format=tar.gz", f"--output={archive}", "HEAD"],
      *(
        [*_GCLOUD_TPUS, "tpu-vm", "scp", archive, f"{node}:{REMOTE_ARCHIVE}", *tpu.where(),
         "--worker=all"]
        for node in tpu.nodes()
      ),
      *on_all_workers(tpu, unpack),
    ]  # fmt: skip
  url, _, rev = source.partition("#")
  if not url or not rev or re.search(r"\s", source):
    raise ConfigError(
      f"--tpu_setup={source!r} must be `copy` or GIT_URL#REV (a branch, tag or sha)"
    )
  q = shlex.quote
  clone = (
    f"rm -rf {REMOTE_CHECKOUT} && git clone --quiet {q(url)} {REMOTE_CHECKOUT} && "
    f"git -C {REMOTE_CHECKOUT} checkout --quiet {q(rev)} && {install}"
  )
  return on_all_workers(tpu, clone)


def worker_command(train_flags: list[str], restarts: int, log_dir: str) -> str:
  """The line each worker runs: worker.sh detaches, so the ssh session can end."""
  return shlex.join(
    ["bash", WORKER_SCRIPT, "--detach", f"--restarts={restarts}", f"--log_dir={log_dir}", "--",
     *train_flags]
  )  # fmt: skip


def logs_commands(tpu: Tpu, log_dir: str, lines: int) -> list[list[str]]:
  return on_all_workers(tpu, f"tail -n {lines} {shlex.quote(log_dir)}/worker-*.log")


def stop_commands(tpu: Tpu, log_dir: str) -> list[list[str]]:
  """TERM to each worker's loop: mtx-train saves a checkpoint and the loop ends."""
  return on_all_workers(tpu, shlex.join(["bash", WORKER_SCRIPT, "--stop", f"--log_dir={log_dir}"]))


def _tpu_from_flags(action: str) -> Tpu:
  what = f"mtx-launch tpu {action}"
  slices = common.positive("slices", common.SLICES.value)
  if slices > 1 and not _QUEUED.value:
    raise ConfigError(f"--slices={slices} needs --tpu_queued: only queued resources make slices")
  accelerator = version = ""
  if action in ("create", "run"):
    accelerator = common.required("tpu_type", _TYPE.value, what)
    slice_shape(accelerator)
    version = _VERSION.value or DEFAULT_VERSIONS[accelerator.split("-")[0]]
  return Tpu(
    name=_name(common.required("tpu_name", _NAME.value, what)),
    zone=common.required("gcp_zone", _ZONE.value, what),
    project=_PROJECT.value,
    accelerator=accelerator,
    version=version,
    spot=_SPOT.value,
    queued=_QUEUED.value,
    slices=slices,
  )


def _name(name: str) -> str:
  if not re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name):
    raise ConfigError(
      f"--tpu_name={name!r}: a TPU name is lowercase letters, digits and dashes, "
      "starting with a letter"
    )
  return name


def train_flags(tpu: Tpu, extra: list[str]) -> list[str]:
  """mtx-train's flags on the workers, once the config is checked against the slices."""
  extra = common.binary_flags(extra)
  config = common.config_file("config", "mtx-launch tpu run")
  relative = common.in_checkout(config, "the workers, which get the checkout, do not have it")
  workdir = common.required("workdir", common.WORKDIR.value, "mtx-launch tpu run")
  hosts_override = common.NODES.value if flags.FLAGS["nodes"].present else None
  hosts, devices = slice_shape(tpu.accelerator, hosts_override)
  processes = hosts * tpu.slices
  config_values = common.load_config(config, extra)
  data_dir = str(config_values.data.get("data_dir", "") or "")
  if processes > 1 and not _ALLOW_LOCAL.value:
    for flag, path in (("workdir", workdir), ("config.data.data_dir", data_dir)):
      if path and not path.startswith("gs://"):
        raise ConfigError(
          f"--{flag}={path} is not on a bucket, but {processes} TPU VMs share it: "
          "use gs://BUCKET/... (or --tpu_allow_local_paths)"
        )
  try:
    common.check_devices(config_values, processes, devices * tpu.slices)
  except ConfigError as e:
    message = str(e).replace("--nodes", "--tpu_type/--slices")
    raise ConfigError(f"--tpu_type={tpu.accelerator} x {tpu.slices} slice(s): {message}") from None
  return [f"--config={relative}", f"--workdir={workdir}", *extra]


def commands(action: str, extra: list[str]) -> list[list[str]]:
  """The commands of `action`, from the flags (validated)."""
  if action not in ACTIONS:
    raise ConfigError(f"mtx-launch tpu {action!r}: the action is one of {', '.join(ACTIONS)}")
  if extra and action != "run":
    raise ConfigError(f"mtx-launch tpu {action} takes no words after `--` ({extra[0]!r})")
  tpu = _tpu_from_flags(action)
  log_dir = _LOG_DIR.value
  if not log_dir or re.search(r"[\s'\"*?]", log_dir):
    raise ConfigError(f"--tpu_log_dir={log_dir!r} must be a folder name without blanks or quotes")
  if action == "create":
    return create_commands(tpu)
  if action == "status":
    return status_commands(tpu)
  if action == "setup":
    return setup_commands(tpu, _SETUP.value)
  if action == "run":
    restarts = _RESTARTS.value
    if restarts is None or restarts < 0:
      raise ConfigError(f"--tpu_restarts must be 0 or more, got {restarts}")
    return on_all_workers(tpu, worker_command(train_flags(tpu, extra), restarts, log_dir))
  if action == "logs":
    return logs_commands(tpu, log_dir, common.positive("tpu_log_lines", _LOG_LINES.value))
  if action == "stop":
    return stop_commands(tpu, log_dir)
  return delete_commands(tpu)


def execute(command: list[str]) -> None:
  """Runs `command` from the checkout, its output streamed; ConfigError when it fails."""
  try:
    status = subprocess.run(command, cwd=common.REPO_ROOT, check=False).returncode
  except FileNotFoundError:
    raise ConfigError(
      f"{command[0]} is not installed: install the Google Cloud CLI "
      "(cloud.google.com/sdk/docs/install), then `gcloud auth login`"
    ) from None
  if status:
    raise ConfigError(f"`{shlex.join(command)}` failed with status {status} (its output is above)")


def main(extra: list[str]) -> None:
  if not extra or extra[0].startswith("-"):
    raise ConfigError(
      f"usage: mtx-launch tpu {'|'.join(ACTIONS)} --tpu_name=NAME ... (launch/tpu/)"
    )
  action, rest = extra[0], extra[1:]
  planned = commands(action, rest)
  if common.DRY_RUN.value:
    sys.stdout.write("".join(shlex.join(command) + "\n" for command in planned))
    return
  if action == "setup" and _SETUP.value == "copy":
    dirty = subprocess.run(
      ["git", "status", "--porcelain", "--untracked-files=no"],
      cwd=common.REPO_ROOT, capture_output=True, text=True, check=False,
    ).stdout  # fmt: skip
    if dirty.strip():
      print("warning: uncommitted changes are not copied (git archive HEAD)", file=sys.stderr)
  for command in planned:
    print(f"+ {shlex.join(command)}", flush=True)
    execute(command)
  if action == "run":
    print(f"started on every worker; watch: mtx-launch tpu logs --tpu_name={_NAME.value} ...")
