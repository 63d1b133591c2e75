"""`mtx-launch k8s`: a Kubernetes manifest running mtx-train, one JAX process per pod.

    mtx-launch k8s --accelerator=tpu --gke_tpu_accelerator=tpu-v5p-slice \
        --gke_tpu_topology=2x2x2 --nodes=2 --slices=2 --image=IMAGE \
        --config=configs/mmt_lmd.py --workdir=gs://bucket/runs/lmd --output=lmd.yaml \
        -- --config.data.data_dir=gs://bucket/data

`--kind=jobset` (default) fills launch/k8s/jobset.yaml: a JobSet with one Indexed Job per
TPU slice (one on CPU and GPU) that restarts as a whole when a pod fails. `--kind=job` fills
launch/k8s/job.yaml: an indexed batch/v1 Job and its headless Service, for clusters without
the JobSet controller. The string fields are filled in the template's text; the counts,
resources, node selectors, tolerations, volumes and the flags after `--` are then set in the
loaded YAML, which is written back out (launch/k8s/README.md).

Checked before anything is written, as the pods would find it: the config is in this checkout
(the image holds it at /opt/mtx), the workdir and the data are on storage every pod reads
(gs://... or a mounted PersistentVolumeClaim), and the config's mesh and batch fit the job's
processes and devices.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Any

import yaml
from absl import flags

from mtx.errors import ConfigError
from mtx.launch import common
from mtx.launch.common import positive, required

IMAGE_ROOT = PurePosixPath("/opt/mtx")  # where the Dockerfile puts the checkout
REPLICATED_JOB = "train"
MEGASCALE_PORT = 8081  # the multislice (DCN) coordinator's, as xpk and Ray set it
_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")  # DNS-1035: Service names, hostnames
_LABEL_KEY = re.compile(rf"^({_LABEL}(\.{_LABEL})*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
_QUANTITY = re.compile(r"^\d+(\.\d+)?(m|k|Ki|M|Mi|G|Gi|T|Ti)?$")
_TOPOLOGY = re.compile(r"^\d+(x\d+)*$")
_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
# Set by the manifest itself: after `--` they would fight it.
_OWN_FLAGS = ("--config=", "--workdir=", "--coordinator_address", "--num_processes", "--process_id")

_KIND = flags.DEFINE_enum(
  "kind", "jobset", ["jobset", "job"], "k8s: a JobSet, or an indexed Job with a headless Service."
)
_ACCELERATOR = flags.DEFINE_enum(
  "accelerator", "gpu", ["cpu", "gpu", "tpu"], "k8s: what each pod runs on."
)
_NAMESPACE = flags.DEFINE_string("namespace", "default", "k8s: the namespace.")
_PORT = flags.DEFINE_integer("port", 8476, "k8s: the JAX coordinator's port on the first pod.")
_CPU = flags.DEFINE_string("cpu", None, "k8s: CPU request per pod (default: 1 on CPU, else none).")
_MEMORY = flags.DEFINE_string(
  "memory", None, "k8s: memory request and limit per pod (default: 4Gi on CPU, else none)."
)
_CHIPS = flags.DEFINE_integer("chips_per_node", 4, "k8s, TPU: google.com/tpu chips per pod (host).")
_GKE_TPU_ACCELERATOR = flags.DEFINE_string(
  "gke_tpu_accelerator", None, "k8s, TPU: the GKE node label, e.g. tpu-v5p-slice, tpu-v6e-slice."
)
_GKE_TPU_TOPOLOGY = flags.DEFINE_string(
  "gke_tpu_topology", None, "k8s, TPU: the slice's topology (GKE node label), e.g. 2x2x2, 4x4."
)
_NODE_SELECTOR = flags.DEFINE_string(
  "node_selector", "", "k8s: extra node labels the pods need, KEY=VALUE,..."
)
_TOLERATIONS = flags.DEFINE_string(
  "tolerations", "", "k8s: taints the pods tolerate, KEY[=VALUE][:EFFECT],... (no VALUE: any)."
)
_VOLUME_CLAIM = flags.DEFINE_string(
  "volume_claim", "", "k8s: PersistentVolumeClaims to mount in every pod, NAME:/MOUNT,..."
)
_MAX_RESTARTS = flags.DEFINE_integer(
  "max_restarts", 3, "k8s: restarts of the whole job after a failure (preemptions not counted)."
)
_SERVICE_ACCOUNT = flags.DEFINE_string(
  "service_account", "", "k8s: the pods' service account (e.g. one with access to the bucket)."
)
_GRACE = flags.DEFINE_integer(
  "termination_grace_seconds", 300, "k8s: seconds from SIGTERM to SIGKILL: long enough to save."
)


def default_job_name(config: str) -> str:
  return "mtx-" + Path(config).stem.lower().replace("_", "-")


def pairs(name: str, text: str) -> dict[str, str]:
  """KEY=VALUE,... of --node_selector as a dict of valid label keys and values."""
  result = {}
  for item in filter(None, text.split(",")):
    key, sep, value = item.partition("=")
    if not sep or not _LABEL_KEY.match(key) or not _LABEL_VALUE.match(value) or len(value) > 63:
      raise ConfigError(f"--{name}: {item!r} is not KEY=VALUE with a valid label key and value")
    result[key] = value
  return result


def tolerations(text: str) -> list[dict[str, str]]:
  """KEY[=VALUE][:EFFECT],... of --tolerations as Kubernetes tolerations."""
  result = []
  for item in filter(None, text.split(",")):
    rest, _, effect = item.partition(":")
    key, sep, value = rest.partition("=")
    if (
      not _LABEL_KEY.match(key)
      or not _LABEL_VALUE.match(value)
      or (effect and effect not in _EFFECTS)
    ):
      raise ConfigError(
        f"--tolerations: {item!r} is not KEY[=VALUE][:EFFECT] with EFFECT one of "
        f"{', '.join(_EFFECTS)} (e.g. google.com/tpu=present:NoSchedule)"
      )
    toleration = {"key": key, "operator": "Equal" if sep else "Exists"}
    if sep:
      toleration["value"] = value
    if effect:
      toleration["effect"] = effect
    result.append(toleration)
  return result


def volume_claims(text: str) -> dict[str, str]:
  """NAME:/MOUNT,... of --volume_claim: mount path -> claim name."""
  mounts = {}
  for item in filter(None, text.split(",")):
    name, _, mount = item.partition(":")
    if not _NAME.match(name) or not mount.startswith("/") or mount.rstrip("/") == "":
      raise ConfigError(
        f"--volume_claim: {item!r} is not NAME:/MOUNT (a PersistentVolumeClaim's name and an "
        "absolute path to mount it at)"
      )
    mounts[str(PurePosixPath(mount))] = name
  return mounts


def shared_path(what: str, path: str, mounts: dict[str, str]) -> str:
  """`path` if every pod reads the same thing there (a URL such as gs://, or a path in a
  mounted claim); ConfigError otherwise, saying where to put it."""
  if common.is_url(path) and not path.startswith("file:"):
    return path
  fix = "use gs://BUCKET/... or a path under a --volume_claim=NAME:/MOUNT"
  if not path.startswith("/"):
    raise ConfigError(f"{what}={path!r} is not a path the pods share: {fix}")
  if not any(PurePosixPath(path).is_relative_to(mount) for mount in mounts):
    raise ConfigError(f"{what}={path} is in each pod's own disk, not on shared storage: {fix}")
  return path


def _image_config(config: str) -> str:
  """The config's path inside the image (the checkout is at /opt/mtx there)."""
  relative = common.in_checkout(config, "not in the image; rebuild the image after")
  return str(IMAGE_ROOT / relative)


def _checked_name(value: str, what: str, longest_host: str) -> str:
  if not _NAME.match(value) or len(value) > 63:
    raise ConfigError(
      f"{what}={value!r} must be a DNS label: lowercase letters, digits and '-', starting with "
      "a letter, at most 63 characters"
    )
  if len(longest_host) > 63:
    raise ConfigError(
      f"the pod hostname {longest_host} is longer than 63 characters: shorten --job_name"
    )
  return value


def _devices(accelerator: str, nodes: int, slices: int) -> tuple[int, int]:
  """(processes, devices) of the whole job: one process per pod."""
  if accelerator != "tpu" and slices != 1:
    raise ConfigError(f"--slices={slices} is for TPUs (multislice); use --nodes on {accelerator}")
  if accelerator == "cpu":
    return nodes, nodes
  if accelerator == "gpu":
    return nodes, nodes * positive("gpus_per_node", common.GPUS_PER_NODE.value)
  return nodes * slices, nodes * slices * positive("chips_per_node", _CHIPS.value)


def _tpu_selector(nodes: int) -> dict[str, str]:
  accelerator = required("gke_tpu_accelerator", _GKE_TPU_ACCELERATOR.value, "--accelerator=tpu")
  topology = required("gke_tpu_topology", _GKE_TPU_TOPOLOGY.value, "--accelerator=tpu")
  if not _TOPOLOGY.match(topology):
    raise ConfigError(f"--gke_tpu_topology={topology!r} is not a topology like 2x2x2 or 4x4")
  chips = 1
  for size in topology.split("x"):
    chips *= int(size)
  if chips != nodes * _CHIPS.value:
    raise ConfigError(
      f"--gke_tpu_topology={topology} has {chips} chips, but --nodes={nodes} x "
      f"--chips_per_node={_CHIPS.value} is {nodes * _CHIPS.value}: one pod per host of the slice"
    )
  return {
    "cloud.google.com/gke-tpu-accelerator": accelerator,
    "cloud.google.com/gke-tpu-topology": topology,
  }


def _resources(accelerator: str) -> dict[str, Any]:
  cpu = _CPU.value or ("1" if accelerator == "cpu" else None)
  memory = _MEMORY.value or ("4Gi" if accelerator == "cpu" else None)
  requests, limits = {}, {}
  for name, value in (("cpu", cpu), ("memory", memory)):
    if value is None:
      continue
    if not _QUANTITY.match(value):
      raise ConfigError(f"--{name}={value!r} is not a Kubernetes quantity (e.g. 8, 500m, 16Gi)")
    requests[name] = value
  if memory:
    limits["memory"] = memory
  if accelerator == "gpu":
    limits["nvidia.com/gpu"] = common.GPUS_PER_NODE.value
  if accelerator == "tpu":
    requests["google.com/tpu"] = limits["google.com/tpu"] = _CHIPS.value
  return {key: value for key, value in (("requests", requests), ("limits", limits)) if value}


def _pod_spec(pod: dict, accelerator: str, selector: dict, extra: list[str], mounts: dict) -> None:
  """Sets the structured parts of a pod template's spec from the flags."""
  container = pod["containers"][0]
  container["args"] += extra
  container["ports"][0]["containerPort"] = _PORT.value
  container["resources"] = _resources(accelerator)
  pod["terminationGracePeriodSeconds"] = positive("termination_grace_seconds", _GRACE.value)
  selector = selector | pairs("node_selector", _NODE_SELECTOR.value)
  if accelerator == "tpu":  # the slice builder's port and the multislice coordinator's
    container["ports"] += [{"containerPort": 8471}, {"containerPort": MEGASCALE_PORT}]
    # The image runs as uid 1000; TPU device files belong to root (launch/container.md).
    container["securityContext"] = {"runAsUser": 0}
  if accelerator == "cpu":  # no accelerator plugin to probe for
    container["env"].append({"name": "JAX_PLATFORMS", "value": "cpu"})
  if selector:
    pod["nodeSelector"] = selector
  if _TOLERATIONS.value:
    pod["tolerations"] = tolerations(_TOLERATIONS.value)
  if _SERVICE_ACCOUNT.value:
    pod["serviceAccountName"] = _checked_name(_SERVICE_ACCOUNT.value, "--service_account", "")
  volumes = [
    {"name": f"shared-{i}", "persistentVolumeClaim": {"claimName": claim}}
    for i, claim in enumerate(mounts.values())
  ]
  container_mounts = [{"name": f"shared-{i}", "mountPath": mount} for i, mount in enumerate(mounts)]
  if accelerator == "gpu":  # NCCL needs more shared memory than a container's default 64 MB
    volumes.append({"name": "dshm", "emptyDir": {"medium": "Memory"}})
    container_mounts.append({"name": "dshm", "mountPath": "/dev/shm"})
  if volumes:
    pod["volumes"] = volumes
    container["volumeMounts"] = container_mounts


def manifests(extra: list[str]) -> list[dict]:
  """The filled-in documents (JobSet; or Job and Service) of --kind."""
  kind, accelerator = _KIND.value, _ACCELERATOR.value
  extra = common.binary_flags(extra)
  for word in extra:
    if word.startswith(_OWN_FLAGS):
      raise ConfigError(
        f"{word.split('=')[0]} after `--` is set by the manifest: pass it to mtx-launch"
      )
  config = common.config_file("config", "mtx-launch k8s")
  image = required("image", common.IMAGE.value, "mtx-launch k8s (a container image with mtx)")
  mounts = volume_claims(_VOLUME_CLAIM.value)
  workdir = shared_path(
    "--workdir", required("workdir", common.WORKDIR.value, "mtx-launch k8s"), mounts
  )
  nodes, slices = positive("nodes", common.NODES.value), positive("slices", common.SLICES.value)
  if kind == "job" and slices > 1:
    raise ConfigError(f"--slices={slices} needs --kind=jobset (one Job per slice)")
  processes, devices = _devices(accelerator, nodes, slices)
  selector = _tpu_selector(nodes) if accelerator == "tpu" else {}
  loaded = common.load_config(config, extra)
  data_dir = loaded.data.data_dir
  if not data_dir:
    raise ConfigError(
      "config.data.data_dir is empty (TFDS's default, inside each pod): pass "
      "`-- --config.data.data_dir=gs://BUCKET/data` (or a path under a --volume_claim)"
    )
  shared_path("config.data.data_dir", data_dir, mounts)
  common.check_devices(loaded, processes, devices)
  port = _PORT.value
  if not 0 < port < 65536:
    raise ConfigError(f"--port={port} is not a TCP port")
  name = common.JOB_NAME.value or default_job_name(config)
  namespace = _checked_name(_NAMESPACE.value, "--namespace", "")
  if kind == "jobset":
    host = f"{name}-{REPLICATED_JOB}-{slices - 1}-{nodes - 1}"
    coordinator = f"{name}-{REPLICATED_JOB}-0-0.{name}"
  else:
    host, coordinator = f"{name}-{nodes - 1}", f"{name}-0.{name}"
  name = _checked_name(name, "--job_name", host)
  values = {
    "JOB_NAME": name,
    "NAMESPACE": namespace,
    "REPLICATED_JOB": REPLICATED_JOB,
    "IMAGE": image,
    "CONFIG": _image_config(config),
    "WORKDIR": workdir,
    "COORDINATOR": f"{coordinator}:{port}",
    "NUM_PROCESSES": str(processes),
    "PROCESSES_PER_JOB": str(nodes),
  }
  for field, value in values.items():  # each goes into a double-quoted YAML string
    if re.search(r"[\s\"\\]", value):
      raise ConfigError(f"--{field.lower()}={value!r} must not hold blanks, quotes or backslashes")
  text = common.render(common.template("k8s", f"{kind}.yaml"), values)
  documents = list(yaml.safe_load_all(text))
  max_restarts = _MAX_RESTARTS.value
  if max_restarts is None or max_restarts < 0:
    raise ConfigError(f"--max_restarts must be 0 or more, got {max_restarts}")
  if kind == "jobset":
    (jobset,) = documents
    jobset["spec"]["failurePolicy"]["maxRestarts"] = max_restarts
    replicated = jobset["spec"]["replicatedJobs"][0]
    replicated["replicas"] = slices
    job = replicated["template"]["spec"]
  else:
    job, service = documents
    job["spec"]["backoffLimit"] = max_restarts * nodes
    service["spec"]["ports"][0]["port"] = port
    job = job["spec"]
  job["parallelism"] = job["completions"] = nodes
  pod = job["template"]["spec"]
  _pod_spec(pod, accelerator, selector, extra, mounts)
  if accelerator == "tpu" and slices > 1:
    pod["containers"][0]["env"] += _megascale_env(name, slices)
  return documents


def _megascale_env(name: str, slices: int) -> list[dict]:
  """What joins TPU slices over the data-center network (libtpu's multislice runtime reads
  these): the first host of slice 0 coordinates, a pod's slice is its Job's index."""
  return [
    {
      "name": "MEGASCALE_COORDINATOR_ADDRESS",
      "value": f"{name}-{REPLICATED_JOB}-0-0.{name}:{MEGASCALE_PORT}",
    },
    {"name": "MEGASCALE_PORT", "value": str(MEGASCALE_PORT)},
    {"name": "MEGASCALE_NUM_SLICES", "value": str(slices)},
    {
      "name": "MEGASCALE_SLICE_ID",
      "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['jobset.sigs.k8s.io/job-index']"}},
    },
  ]


class _Dumper(yaml.SafeDumper):
  """Block sequences indented under their key (what yamllint and kubectl users expect), and
  multi-line strings (the container's shell wrapper) as literal blocks."""

  def increase_indent(self, flow=False, indentless=False):
    return super().increase_indent(flow, False)


def _string(dumper: yaml.SafeDumper, value: str):
  style = "|" if "\n" in value else None
  return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _string)


def dump(documents: list[dict]) -> str:
  header = (
    f"# Written by mtx-launch k8s from launch/k8s/{_KIND.value}.yaml; apply it with kubectl.\n"
  )
  return header + yaml.dump_all(
    documents, Dumper=_Dumper, sort_keys=False, explicit_start=True, width=96
  )


def main(extra: list[str]) -> None:
  common.emit(dump(manifests(extra)), "start it with `kubectl apply -f {output}`")
