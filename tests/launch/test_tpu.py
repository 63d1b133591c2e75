"""mtx-launch tpu: the gcloud commands it would run are the ones launch/tpu/README.md shows, and
every flag they give gcloud is one the installed gcloud knows; the scripts pass shellcheck; bad
input is one line and exit 2; and launch/tpu/worker.sh, run as two local processes standing
in for two TPU VM workers, trains one job, restarts after a failure and resumes.

No TPU and no Google Cloud account here: nothing is sent to gcloud but `--help`.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mtx.errors import ConfigError
from mtx.launch.tpu import slice_shape
from tests.train.helpers import REPO, cli_env

TPU_DIR = REPO / "launch" / "tpu"
README = TPU_DIR / "README.md"
WORKER = TPU_DIR / "worker.sh"
CONFIG_FILE = "tests/train/cli_config.py"
ZONE = "--gcp_zone=us-west4-a"


def _launch(*args: str) -> subprocess.CompletedProcess:
  return subprocess.run(
    [sys.executable, "-m", "mtx.cli.launch", "tpu", *args],
    cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=120,
  )  # fmt: skip


def readme_examples() -> list[tuple[list[str], list[str]]]:
  """(mtx-launch's arguments after `tpu`, the printed lines) of each ```console block."""
  examples = []
  for block in re.findall(r"```console\n(.*?)```", README.read_text(), re.S):
    first, *printed = block.strip("\n").split("\n")
    words = shlex.split(first.removeprefix("$ "))
    assert words[:2] == ["mtx-launch", "tpu"], first
    examples.append((words[2:], printed))
  return examples


EXAMPLES = readme_examples()


def test_the_readme_shows_every_action_and_both_kinds_of_create():
  actions = {args[0] for args, _ in EXAMPLES}
  assert actions == {"create", "status", "setup", "run", "logs", "stop", "delete"}
  created = " ".join(line for args, lines in EXAMPLES if args[0] == "create" for line in lines)
  for part in ("tpu-vm create", "queued-resources create", "--node-id=", "--node-count=2"):
    assert part in created


@pytest.mark.parametrize("args, printed", EXAMPLES, ids=[" ".join(a[:1]) for a, _ in EXAMPLES])
def test_dry_run_prints_the_documented_commands(args, printed):
  result = _launch(*args)
  assert result.returncode == 0, result.stderr
  assert result.stdout.splitlines() == printed


def _gcloud_help(group: tuple[str, ...]) -> str:
  shown = subprocess.run(
    ["gcloud", *group, "--help"], capture_output=True, text=True, timeout=120,
    env=dict(os.environ, CLOUDSDK_CORE_DISABLE_PROMPTS="1", PAGER="cat", TERM="dumb"),
  )  # fmt: skip
  assert shown.returncode == 0, f"gcloud has no `{' '.join(group)}`: {shown.stderr}"
  return re.sub(r"\x1b\[[0-9;]*m", "", shown.stdout)


def test_every_flag_given_to_gcloud_is_in_that_commands_help():
  if shutil.which("gcloud") is None:
    pytest.skip("gcloud is not installed: the flags are not checked against its --help")
  commands = [shlex.split(line) for _, lines in EXAMPLES for line in lines]
  gcloud = [words for words in commands if words[0] == "gcloud"]
  by_group: dict[tuple[str, ...], set[str]] = {}
  for words in gcloud:
    group = tuple(words[1:5])  # compute tpus tpu-vm|queued-resources VERB
    names = {word.split("=")[0] for word in words[5:] if word.startswith("--")}
    by_group.setdefault(group, set()).update(names)
  assert len(by_group) >= 7, by_group
  for group, names in by_group.items():
    text = _gcloud_help(group)
    for name in names:
      assert re.search(rf"{re.escape(name)}\b", text), f"gcloud {' '.join(group)}: no {name}"


def test_the_scripts_pass_shellcheck():
  scripts = sorted(TPU_DIR.glob("*.sh"))
  assert {p.name for p in scripts} >= {"worker.sh", "setup.sh"}
  if shutil.which("shellcheck") is None:
    pytest.skip("shellcheck is not installed (apt-get install shellcheck): not linted")
  lint = subprocess.run(["shellcheck", *map(str, scripts)], capture_output=True, text=True)
  assert lint.returncode == 0, lint.stdout


@pytest.mark.parametrize(
  "accelerator, shape",
  [
    ("v4-8", (1, 4)), ("v4-32", (4, 16)), ("v5p-16", (2, 8)), ("v3-32", (4, 32)),
    ("v5litepod-1", (1, 1)), ("v5litepod-8", (1, 8)), ("v5litepod-16", (4, 16)),
    ("v6e-4", (1, 4)), ("v6e-256", (64, 256)),
  ],
)  # fmt: skip
def test_a_tpu_type_names_its_hosts_and_devices(accelerator, shape):
  assert slice_shape(accelerator) == shape


@pytest.mark.parametrize("accelerator", ["v7-8", "v4-12", "v5litepod-12", "v6e", "tpu-v4-8", ""])
def test_an_unknown_tpu_type_is_refused(accelerator):
  with pytest.raises(ConfigError, match="--tpu_type"):
    slice_shape(accelerator)


RUN = ["run", "--tpu_name=t", "--tpu_type=v5litepod-16", ZONE, "--workdir=gs://b/r", "--dry_run"]


@pytest.mark.parametrize(
  "args, names",
  [
    (RUN, ["--config"]),
    (RUN + ["--config=configs/nope.py"], ["configs/nope.py", "does not exist"]),
    (RUN + ["--config=configs/jsb_tiny.py", "--", "--config.mesh.fsdp=3"], ["v5litepod-16", "mesh"]),
    (["run", "--tpu_name=t", "--tpu_type=v5litepod-12", ZONE], ["--tpu_type"]),
    (["run", "--tpu_name=t", "--tpu_type=v9-8", ZONE], ["--tpu_type='v9-8'", "v5litepod-N"]),
    (["create", "--tpu_type=v4-8", ZONE], ["--tpu_name"]),
    (["create", "--tpu_name=t", "--tpu_type=v4-8"], ["--gcp_zone"]),
    (["create", "--tpu_name=t", ZONE], ["--tpu_type"]),
    (["create", "--tpu_name=T_1", "--tpu_type=v4-8", ZONE], ["--tpu_name='T_1'"]),
    (["create", "--tpu_name=t", "--tpu_type=v4-8", ZONE, "--slices=2"], ["--tpu_queued"]),
    (["launch", "--tpu_name=t", ZONE], ["'launch'", "create"]),
    ([], ["usage: mtx-launch tpu"]),
    (["logs", "--tpu_name=t", ZONE, "--", "--x=1"], ["after `--`"]),
    (["setup", "--tpu_name=t", ZONE, "--tpu_setup=https://x/mtx.git"], ["GIT_URL#REV"]),
    (
      RUN[:-2] + ["--workdir=/tmp/run", "--config=configs/jsb_tiny.py"],
      ["--workdir=/tmp/run", "4 TPU VMs", "gs://"],
    ),
    (
      RUN + ["--config=configs/jsb_tiny.py", "--", "--config.data.data_dir=/data"],
      ["--config.data.data_dir=/data", "gs://"],
    ),
    (RUN + ["--config=/etc/hostname"], ["outside the mtx checkout"]),
    (RUN + ["--config=configs/jsb_tiny.py", "--tpu_restarts=-1"], ["--tpu_restarts"]),
  ],
)  # fmt: skip
def test_bad_input_is_one_line_and_exit_2(args, names):
  result = _launch(*args)
  assert result.returncode == 2, (result.stdout, result.stderr)
  assert len(result.stderr.strip().splitlines()) == 1, result.stderr
  assert result.stdout == ""
  for name in names:
    assert name in result.stderr, (name, result.stderr)


def test_a_single_host_slice_may_use_a_local_workdir():
  result = _launch(
    "run", "--tpu_name=t", "--tpu_type=v5litepod-8", ZONE, "--config=configs/jsb_tiny.py",
    "--workdir=/home/me/runs/jsb", "--dry_run", "--", "--config.data.data_dir=/home/me/data",
  )  # fmt: skip
  assert result.returncode == 0, result.stderr
  assert "--workdir=/home/me/runs/jsb" in result.stdout


FAKE_GCLOUD = """#!/usr/bin/env bash
printf '%s\\n' "$(printf '%q ' gcloud "$@")" >> "$GCLOUD_CALLS"
exit "${GCLOUD_STATUS:-0}"
"""


@pytest.mark.parametrize("status", [0, 1])
def test_without_dry_run_it_runs_the_printed_commands_and_stops_at_a_failure(tmp_path, status):
  bin_dir, calls = tmp_path / "bin", tmp_path / "calls"
  bin_dir.mkdir()
  (bin_dir / "gcloud").write_text(FAKE_GCLOUD)
  (bin_dir / "gcloud").chmod(0o755)
  args = ["stop", "--tpu_name=t", ZONE, "--tpu_queued", "--slices=2"]
  printed = _launch(*args, "--dry_run").stdout.splitlines()
  env = cli_env() | {
    "PATH": os.pathsep.join([str(bin_dir), os.environ["PATH"]]),
    "GCLOUD_CALLS": str(calls),
    "GCLOUD_STATUS": str(status),
  }
  result = subprocess.run(
    [sys.executable, "-m", "mtx.cli.launch", "tpu", *args],
    cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
  )  # fmt: skip
  ran = [shlex.split(line) for line in calls.read_text().splitlines()]
  if status == 0:
    assert result.returncode == 0, result.stderr
    assert ran == [shlex.split(line) for line in printed] and len(ran) == 2
  else:
    assert result.returncode == 2 and ran == [shlex.split(printed[0])]
    assert (
      result.stderr.strip() == f"error: `{printed[0]}` failed with status 1 (its output is above)"
    )


# --- worker.sh with a stand-in for mtx-train (no JAX: fast) ---

FAKE_TRAIN = """#!/usr/bin/env bash
echo "fake mtx-train $* MTX_DISTRIBUTED=${MTX_DISTRIBUTED:-unset} in $PWD"
if [[ "${FAKE_MODE:-}" == sleep ]]; then
  sleep 60 &
  trap 'echo "fake: TERM, saving"; kill $!; exit 0' TERM
  wait $!
fi
exit "${FAKE_STATUS:-0}"
"""


def _worker_env(tmp_path, **extra) -> dict:
  fake = tmp_path / "fake-train"
  fake.write_text(FAKE_TRAIN)
  fake.chmod(0o755)
  env = {k: v for k, v in os.environ.items() if not k.startswith(("MTX_", "TPU_"))}
  return env | {"MTX_TRAIN_BIN": str(fake), "MTX_RESTART_DELAY": "0", "HOME": str(tmp_path)} | extra


def test_the_worker_restarts_a_failing_binary_at_most_restarts_times(tmp_path):
  logs = tmp_path / "logs"
  result = subprocess.run(
    ["bash", str(WORKER), "--restarts=2", f"--log_dir={logs}", "--", "--config=c.py"],
    env=_worker_env(tmp_path, FAKE_STATUS="3", TPU_WORKER_ID="5"),
    capture_output=True, text=True, timeout=60,
  )  # fmt: skip
  assert result.returncode == 3
  log = (logs / "worker-5.log").read_text()
  assert log.count("fake mtx-train --config=c.py MTX_DISTRIBUTED=auto") == 3, log
  assert f"in {REPO}" in log  # run from the checkout, so --config=configs/... resolves
  assert "restart 2 of 2" in log and "failed 3 times" in log
  assert not (logs / "worker-5.pid").exists()


def test_detach_refuses_a_second_start_and_stop_ends_the_worker_without_restart(tmp_path):
  logs = tmp_path / "logs"
  env = _worker_env(tmp_path, FAKE_MODE="sleep", MTX_PROCESS_ID="1",
                    MTX_COORDINATOR_ADDRESS="127.0.0.1:1")  # fmt: skip
  start = ["bash", str(WORKER), "--detach", f"--log_dir={logs}", "--", "--workdir=w"]
  first = subprocess.run(start, env=env, capture_output=True, text=True, timeout=30)
  assert first.returncode == 0 and "worker 1 started" in first.stdout, first.stderr
  pid_file = logs / "worker-1.pid"
  deadline = time.monotonic() + 20
  while not (pid_file.exists() and "fake mtx-train" in (logs / "worker-1.log").read_text()):
    assert time.monotonic() < deadline, "the detached worker did not start"
    time.sleep(0.1)
  again = subprocess.run(start, env=env, capture_output=True, text=True, timeout=30)
  assert again.returncode == 2 and "already running" in again.stderr
  stop = ["bash", str(WORKER), "--stop", f"--log_dir={logs}", "--stop_wait=30"]
  stopped = subprocess.run(stop, env=env, capture_output=True, text=True, timeout=60)
  assert stopped.returncode == 0 and "stopped" in stopped.stdout, stopped.stdout
  log = (logs / "worker-1.log").read_text()
  assert "MTX_DISTRIBUTED=unset" in log  # an explicit coordinator: no auto-detection
  assert "fake: TERM, saving" in log and "stopped (mtx-train exited with status 0)" in log
  assert log.count("attempt ") == 1 and not pid_file.exists()


# --- two worker.sh processes as two TPU VM workers, with the real mtx-train ---

# The first attempt of each worker trains to step 2 (a checkpoint), then fails as a crash would.
FAIL_ONCE = """#!/usr/bin/env bash
marker="$MARKER_DIR/failed-$MTX_PROCESS_ID"
if [[ ! -e "$marker" ]]; then
  touch "$marker"
  mtx-train "$@" --config.train.num_steps=2 || exit
  echo "injected failure after step 2"
  exit 3
fi
exec mtx-train "$@"
"""


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _losses(log: str) -> dict[int, float]:
  found = re.findall(r"\[process \d\] step (\d+)/\d+ \| loss ([0-9.]+)", log)
  return {int(step): float(loss) for step, loss in found}


def test_two_workers_train_one_job_restart_after_a_failure_and_resume(prepared_dir, tmp_path):
  wrapper = tmp_path / "fail-once"
  wrapper.write_text(FAIL_ONCE)
  wrapper.chmod(0o755)
  workdir, logs = tmp_path / "run", tmp_path / "logs"
  port = _free_port()
  flags = [
    f"--config={CONFIG_FILE}", f"--workdir={workdir}", f"--config.data.data_dir={prepared_dir}",
    "--config.train.num_steps=4", "--config.train.log_every=1",
    "--config.train.checkpoint_every=2", "--config.train.eval_every=2",
  ]  # fmt: skip
  workers = []
  for index in range(2):
    env = cli_env(devices=1) | {
      "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),
      "MTX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
      "MTX_NUM_PROCESSES": "2",
      "MTX_PROCESS_ID": str(index),
      "MTX_TRAIN_BIN": str(wrapper),
      "MTX_RESTART_DELAY": "1",
      "MARKER_DIR": str(tmp_path),
      "MTX_VENV": str(tmp_path / "no-venv"),  # mtx-train from PATH, not a worker's venv
    }
    command = ["bash", str(WORKER), "--restarts=1", f"--log_dir={logs}", "--", *flags]
    workers.append(subprocess.Popen(command, env=env, start_new_session=True))
  try:
    statuses = [worker.wait(timeout=600) for worker in workers]
  finally:
    for worker in workers:
      if worker.poll() is None:
        os.killpg(worker.pid, signal.SIGKILL)
  texts = [(logs / f"worker-{index}.log").read_text() for index in range(2)]
  assert statuses == [0, 0], "\n".join(text[-3000:] for text in texts)
  for index, text in enumerate(texts):
    assert text.count(f"[process {index}] devices: 2 x cpu on 2 process(es)") == 2, text[-3000:]
    assert "injected failure after step 2" in text and "restart 1 of 1" in text
    assert re.search(rf"\[process {index}\] resumed from \S+ at step 2\b", text), text[-3000:]
    assert "attempt 2 of 2" in text and "exited with status 0" in text
  losses = [_losses(text) for text in texts]
  assert sorted(losses[0]) == [1, 2, 3, 4] and losses[0] == losses[1]
  assert (workdir / "checkpoints" / "4").is_dir()
