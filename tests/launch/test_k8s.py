"""mtx-launch k8s: every manifest passes the validators a cluster would apply (Job and Service:
kubernetes-validate --strict; JobSet: the JobSet CRD's schema, with unknown fields refused),
the templates and the output pass yamllint, two pods resolved as Kubernetes would start them
train together, and bad input is one line with exit status 2.

yamllint runs with YAMLLINT_CONFIG: its default rules, lines up to 100 characters.
"""

from __future__ import annotations

import copy
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.train.helpers import REPO, cli_env

BIN = Path(sys.executable).parent
TINY = str(REPO / "configs" / "jsb_tiny.py")
CLI_CONFIG = str(REPO / "tests" / "train" / "cli_config.py")
JOBSET_CRD = REPO.parent / "shared" / "k8s" / "jobset.x-k8s.io_jobsets.yaml"
YAMLLINT_CONFIG = "{extends: default, rules: {line-length: {max: 100}}}"
IMAGE = "us-docker.pkg.dev/project/mtx/mtx:tpu"
DATA = "--config.data.data_dir=gs://bucket/data"
ACCELERATORS = {
  "cpu": ["--accelerator=cpu", "--nodes=2", "--cpu=2", "--memory=8Gi"],
  "gpu": ["--accelerator=gpu", "--nodes=2", "--gpus_per_node=8"],
  "tpu": ["--accelerator=tpu", "--nodes=2", "--gke_tpu_accelerator=tpu-v5p-slice",
          "--gke_tpu_topology=2x2x2", "--tolerations=google.com/tpu=present:NoSchedule"],
  "tpu_2_slices": ["--accelerator=tpu", "--nodes=2", "--slices=2",
                   "--gke_tpu_accelerator=tpu-v5p-slice", "--gke_tpu_topology=2x2x2"],
}  # fmt: skip


def _launch(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
  return subprocess.run(
    [sys.executable, "-m", "mtx.cli.launch", "k8s", *args],
    cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=timeout,
  )  # fmt: skip


def _render(tmp_path, *args: str) -> tuple[Path, list[dict]]:
  out = tmp_path / "manifest.yaml"
  result = _launch(f"--output={out}", *args)
  assert result.returncode == 0, result.stderr
  return out, list(yaml.safe_load_all(out.read_text()))


def _yamllint(*paths) -> None:
  lint = subprocess.run(
    [BIN / "yamllint", "-s", "-d", YAMLLINT_CONFIG, *map(str, paths)],
    capture_output=True, text=True,
  )  # fmt: skip
  assert lint.returncode == 0, lint.stdout


def _kubernetes_validate(path) -> subprocess.CompletedProcess:
  return subprocess.run(
    [BIN / "kubernetes-validate", "--strict", "--quiet", str(path)], capture_output=True, text=True
  )


def _strict(schema):
  """The CRD schema refusing unknown fields, as kubernetes-validate --strict does (the API
  server would drop them silently): additionalProperties false wherever properties are listed
  and unknown fields are not kept on purpose."""
  schema = copy.deepcopy(schema)

  def walk(node):
    if isinstance(node, dict):
      if (
        "properties" in node
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
      ):
        node["additionalProperties"] = False
      for value in node.values():
        walk(value)
    elif isinstance(node, list):
      for value in node:
        walk(value)

  walk(schema)
  return schema


@pytest.fixture(scope="module")
def jobset_validator():
  if not JOBSET_CRD.is_file():
    pytest.skip(f"the JobSet CRD is not at {JOBSET_CRD} (/work/shared/k8s/README.md)")
  import jsonschema

  crd = yaml.safe_load(JOBSET_CRD.read_text())
  (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha2"]
  schema = _strict(version["schema"]["openAPIV3Schema"])
  jsonschema.Draft7Validator.check_schema(schema)
  return jsonschema.Draft7Validator(schema)


def test_the_templates_are_yaml_that_yamllint_passes():
  templates = sorted((REPO / "launch" / "k8s").glob("*.yaml"))
  assert [p.name for p in templates] == ["job.yaml", "jobset.yaml"]
  _yamllint(*templates)
  kinds = [[doc["kind"] for doc in yaml.safe_load_all(p.read_text())] for p in templates]
  assert kinds == [["Job", "Service"], ["JobSet"]]
  assert all("{{JOB_NAME}}" in p.read_text() for p in templates)


def _container(documents: list[dict]) -> tuple[dict, dict]:
  """(the Job spec, the pod spec) of a JobSet's replicated Job or of a Job."""
  first = documents[0]
  if first["kind"] == "JobSet":
    job = first["spec"]["replicatedJobs"][0]["template"]["spec"]
  else:
    job = first["spec"]
  return job, job["template"]["spec"]


# Several TPU slices need a JobSet (--kind=job refuses them: test_bad_input_is_one_line...).
MANIFESTS = [("jobset", a) for a in ACCELERATORS] + [("job", "cpu"), ("job", "gpu"), ("job", "tpu")]


@pytest.mark.parametrize("kind, accelerator", MANIFESTS)
def test_every_manifest_validates_and_passes_yamllint(kind, accelerator, tmp_path, request):
  out, documents = _render(
    tmp_path, f"--kind={kind}", *ACCELERATORS[accelerator], f"--image={IMAGE}",
    f"--config={TINY}", "--workdir=gs://bucket/runs/tiny", "--", DATA,
  )  # fmt: skip
  _yamllint(out)
  if kind == "jobset":
    validator = request.getfixturevalue("jobset_validator")
    (jobset,) = documents
    errors = [e.message for e in validator.iter_errors(jobset)]
    assert not errors, errors
    assert jobset["spec"]["network"]["enableDNSHostnames"] is True
    replicas = jobset["spec"]["replicatedJobs"][0]["replicas"]
    assert replicas == (2 if accelerator == "tpu_2_slices" else 1)
  else:
    checked = _kubernetes_validate(out)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    job, service = documents
    assert service["spec"]["clusterIP"] == "None"
    assert job["spec"]["template"]["spec"]["subdomain"] == service["metadata"]["name"]
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert job["spec"]["backoffLimit"] == 3 * 2  # --max_restarts x --nodes
  job, pod = _container(documents)
  assert job["completionMode"] == "Indexed" and job["parallelism"] == job["completions"] == 2
  (container,) = pod["containers"]
  assert container["args"] == [
    "mtx-train", "--config=/opt/mtx/configs/jsb_tiny.py", "--workdir=gs://bucket/runs/tiny", DATA
  ]  # fmt: skip
  env = {e["name"]: e.get("value") for e in container["env"]}
  resources = container["resources"]
  if accelerator == "cpu":
    assert resources["requests"] == {"cpu": "2", "memory": "8Gi"} and env["JAX_PLATFORMS"] == "cpu"
  if accelerator == "gpu":
    assert resources["limits"]["nvidia.com/gpu"] == 8
  if accelerator.startswith("tpu"):
    assert resources["limits"]["google.com/tpu"] == 4
    assert pod["nodeSelector"]["cloud.google.com/gke-tpu-topology"] == "2x2x2"
    assert container["securityContext"] == {"runAsUser": 0}  # TPU devices belong to root
  processes = 4 if accelerator == "tpu_2_slices" else 2
  assert env["MTX_NUM_PROCESSES"] == str(processes)
  assert ("MEGASCALE_NUM_SLICES" in env) == (accelerator == "tpu_2_slices")


def test_the_validators_refuse_a_broken_manifest(jobset_validator, tmp_path):
  """The checks above can fail: a count as a string, an unknown field, a nameless container."""
  _, (jobset,) = _render(
    tmp_path, f"--image={IMAGE}", f"--config={TINY}", "--workdir=gs://b/r", "--", DATA
  )
  assert not list(jobset_validator.iter_errors(jobset))
  for breaks in (
    lambda js: js["spec"]["replicatedJobs"][0]["template"]["spec"].update(parallelism="2"),
    lambda js: js["spec"]["network"].update(enableDNSHostname=True),
    lambda js: _container([js])[1]["containers"][0].pop("name"),
  ):
    broken = copy.deepcopy(jobset)
    breaks(broken)
    assert list(jobset_validator.iter_errors(broken))
  out, (job, service) = _render(
    tmp_path, "--kind=job", f"--image={IMAGE}", f"--config={TINY}", "--workdir=gs://b/r",
    "--", DATA,
  )  # fmt: skip
  job["spec"]["parallelism"] = "2"
  out.write_text(yaml.safe_dump_all([job, service]))
  assert _kubernetes_validate(out).returncode != 0


def _resolve(container: dict, labels: dict[str, str], completion_index: int) -> dict[str, str]:
  """The environment Kubernetes gives the container of the pod with these labels and index."""
  env = {"JOB_COMPLETION_INDEX": str(completion_index)}
  for entry in container["env"]:
    if "value" in entry:
      env[entry["name"]] = entry["value"]
    else:
      path = entry["valueFrom"]["fieldRef"]["fieldPath"]
      assert path.startswith("metadata.labels['") and path.endswith("']"), path
      env[entry["name"]] = labels[path[len("metadata.labels['") : -2]]
  return env


def _pods(documents: list[dict]) -> list[dict[str, str]]:
  """Every pod's environment, in the order Kubernetes numbers them (Job, then pod)."""
  first = documents[0]
  jobs = first["spec"]["replicatedJobs"][0]["replicas"] if first["kind"] == "JobSet" else 1
  job, pod = _container(documents)
  return [
    _resolve(pod["containers"][0], {"jobset.sigs.k8s.io/job-index": str(j)}, i)
    for j in range(jobs)
    for i in range(job["completions"])
  ]


def test_each_pod_gets_its_own_process_id_and_the_first_pod_coordinates(tmp_path):
  from mtx.train.distributed import settings_from

  common = [f"--image={IMAGE}", f"--config={TINY}", "--workdir=gs://b/r", "--job_name=lmd-1"]
  _, job = _render(tmp_path, "--kind=job", "--accelerator=cpu", "--nodes=2", *common, "--", DATA)
  _, jobset = _render(tmp_path, *ACCELERATORS["tpu_2_slices"], *common, "--", DATA)
  for documents, count, coordinator in (
    (job, 2, "lmd-1-0.lmd-1:8476"),
    (jobset, 4, "lmd-1-train-0-0.lmd-1:8476"),
  ):
    found = [settings_from(None, None, None, environ=env) for env in _pods(documents)]
    assert [s["process_id"] for s in found] == list(range(count))
    assert {(s["coordinator_address"], s["num_processes"]) for s in found} == {(coordinator, count)}
  assert [env["MEGASCALE_SLICE_ID"] for env in _pods(jobset)] == ["0", "0", "1", "1"]


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_two_pods_of_a_rendered_jobset_train_together(prepared_dir, tmp_path):
  """The rendered CPU JobSet's container, run as Kubernetes would run pods 0 and 1: the
  command and args as written (the shell wrapper included), the environment resolved from the
  pod labels, the coordinator's DNS name resolved to this host and the claim's mount to a
  local folder; /opt/mtx is this checkout."""
  mount = tmp_path / "claim"
  mount.mkdir()
  (mount / "data").symlink_to(prepared_dir)
  _, documents = _render(
    tmp_path, "--accelerator=cpu", "--nodes=2", f"--image={IMAGE}", f"--config={CLI_CONFIG}",
    "--volume_claim=runs:/mnt/runs", "--workdir=/mnt/runs/run", "--",
    "--config.data.data_dir=/mnt/runs/data", "--config.train.num_steps=2",
    "--config.train.log_every=1", "--config.train.checkpoint_every=2",
    "--config.train.eval_every=2",
  )  # fmt: skip
  job, pod = _container(documents)
  (container,) = pod["containers"]
  assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == "runs"
  assert container["volumeMounts"][0]["mountPath"] == "/mnt/runs"
  name = documents[0]["metadata"]["name"]
  host, port = _pods(documents)[0]["MTX_COORDINATOR_ADDRESS"].rsplit(":", 1)
  assert host == f"{name}-train-0-0.{name}" and port == str(container["ports"][0]["containerPort"])
  args = [
    arg.replace("/opt/mtx", str(REPO)).replace("/mnt/runs", str(mount))
    for arg in container["args"][1:]
  ]
  command = [*container["command"], sys.executable, "-m", "mtx.cli.train", *args]
  address = f"127.0.0.1:{_free_port()}"
  processes = []
  for index, env in enumerate(_pods(documents)):
    env = cli_env(devices=1) | env | {"MTX_COORDINATOR_ADDRESS": address}
    log = (tmp_path / f"pod-{index}.log").open("w")
    processes.append(
      subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    )
  try:
    codes = [p.wait(timeout=600) for p in processes]
  finally:
    for p in processes:
      if p.poll() is None:
        p.kill()
  logs = [(tmp_path / f"pod-{i}.log").read_text() for i in range(2)]
  assert codes == [0, 0], "\n".join(log[-3000:] for log in logs)
  losses = []
  for index, log in enumerate(logs):
    assert f"[process {index}] devices: 2 x cpu on 2 process(es)" in log, log[-3000:]
    losses.append(re.findall(rf"\[process {index}\] step (\d+)/\d+ \| loss ([0-9.]+)", log))
  assert [step for step, _ in losses[0]] == ["1", "2"] and losses[0] == losses[1], losses
  assert (mount / "run" / "checkpoints" / "2").is_dir()


def _wrapper(child: str, signal_after: float | None) -> int:
  """The exit status of the manifests' shell wrapper around a Python child."""
  (documents,) = [list(yaml.safe_load_all((REPO / "launch" / "k8s" / "jobset.yaml").read_text()))]
  command = _container(documents)[1]["containers"][0]["command"]
  process = subprocess.Popen([*command, sys.executable, "-c", child])
  if signal_after is not None:
    time.sleep(signal_after)
    process.send_signal(signal.SIGTERM)
  return process.wait(timeout=60)


def test_a_signal_stop_is_a_failure_for_kubernetes_and_other_exits_pass_through():
  """mtx-train exits 0 after saving on SIGTERM; the wrapper makes that 143, so the JobSet
  restarts instead of counting the preempted pod as done."""
  saves_on_term = (
    "import signal, sys, time\n"
    "signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\n"
    "time.sleep(30)\n"
  )
  started = time.monotonic()
  assert _wrapper(saves_on_term, signal_after=1.0) == 143
  assert time.monotonic() - started < 20  # the child was stopped, not waited out
  assert _wrapper("pass", signal_after=None) == 0
  assert _wrapper("raise SystemExit(3)", signal_after=None) == 3


@pytest.mark.parametrize(
  "args, names",
  [
    ([f"--config={TINY}", "--workdir=gs://b/r", "--", DATA], "--image"),
    ([f"--image={IMAGE}", "--config=configs/nope.py", "--workdir=gs://b/r"], "configs/nope.py"),
    # 3 pods x 8 GPUs: a mesh with fsdp=16 does not divide 24 devices.
    ([f"--image={IMAGE}", f"--config={TINY}", "--workdir=gs://b/r", "--nodes=3",
      "--", DATA, "--config.mesh.fsdp=16"], "--nodes"),
    ([f"--image={IMAGE}", f"--config={TINY}", "--workdir=runs/x", "--", DATA], "runs/x"),
    ([f"--image={IMAGE}", f"--config={TINY}", "--workdir=/runs/x", "--", DATA], "--volume_claim"),
    ([f"--image={IMAGE}", f"--config={TINY}", "--workdir=gs://b/r"], "data_dir"),
    ([f"--image={IMAGE}", f"--config={TINY}", "--workdir=gs://b/r", "--tolerations=a=b:Never",
      "--", DATA], "--tolerations"),
    ([f"--image={IMAGE}", f"--config={TINY}", "--workdir=gs://b/r", "--job_name=Big_Run",
      "--", DATA], "--job_name"),
    ([f"--image={IMAGE}", "--config=/tmp", "--workdir=gs://b/r", "--", DATA], "/tmp"),
    (["--kind=job", *ACCELERATORS["tpu_2_slices"], f"--image={IMAGE}", f"--config={TINY}",
      "--workdir=gs://b/r", "--", DATA], "--kind=jobset"),
    ([*ACCELERATORS["tpu"], "--nodes=3", f"--image={IMAGE}", f"--config={TINY}",
      "--workdir=gs://b/r", "--", DATA], "--gke_tpu_topology"),
    ([f"--image={IMAGE}", f"--config={TINY}", "--workdir=gs://b/r", "--", DATA,
      "--workdir=gs://b/other"], "--workdir"),
  ],
)  # fmt: skip
def test_bad_input_is_one_line_and_exit_2(args, names):
  result = _launch(*args)
  assert result.returncode == 2, result.stderr
  assert len(result.stderr.strip().splitlines()) == 1 and names in result.stderr, result.stderr


def test_a_config_outside_the_checkout_is_refused(tmp_path):
  outside = tmp_path / "mine.py"
  outside.write_text(Path(TINY).read_text())
  result = _launch(f"--image={IMAGE}", f"--config={outside}", "--workdir=gs://b/r", "--", DATA)
  assert result.returncode == 2 and "rebuild the image" in result.stderr, result.stderr


def test_dry_run_prints_and_writes_nothing(tmp_path):
  out = tmp_path / "job.yaml"
  result = _launch(
    f"--image={IMAGE}", f"--config={TINY}", "--workdir=gs://b/r", f"--output={out}",
    "--dry_run", "--", DATA,
  )  # fmt: skip
  assert result.returncode == 0, result.stderr
  assert "kind: JobSet" in result.stdout and not out.exists()
