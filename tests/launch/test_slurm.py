"""A real SLURM job: scripts/slurm_cluster.sh brings up a one-node cluster here, mtx-launch
fills in launch/slurm/train_cpu.sbatch, and `sbatch` runs mtx-train as two tasks that join one
jax.distributed job from SLURM's variables alone (no --coordinator_address, no MTX_*).

Checked: both tasks report 2 processes; they log the same loss at every step (a global
quantity); the checkpoint restores (mtx.sample.restore.load_run); and the job's losses match a
single-process run of the same config on 2 devices within LOSS_TOLERANCE. They are not equal:
each process reads its own shard of the data (mtx/data/pipeline.py), a single process reads
the whole, so the batches differ; the tolerance is the spread of batch losses of this tiny
model over 4 steps. Then the time limit's signal (USR1 to the batch script, as
--signal=B:USR1@120 sends it) makes mtx-train save and the job requeue, and the requeued run
resumes from the checkpoint.

Skips, saying why, where the cluster cannot be installed or started (not root, no apt-get).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.train.helpers import REPO, cli_env, train_command

CLUSTER = REPO / "scripts" / "slurm_cluster.sh"
CONFIG_FILE = str(REPO / "tests" / "train" / "cli_config.py")
# Relative difference allowed between the job's and a single process's loss.
LOSS_TOLERANCE = 0.05
JOB_TIMEOUT_S = 600


@pytest.fixture(scope="module")
def slurm_env(tmp_path_factory):
  """The environment for sbatch/squeue/scontrol against a running one-node cluster."""
  env = dict(os.environ, MTX_SLURM_DIR=os.environ.get("MTX_SLURM_DIR", "/tmp/mtx-slurm"))
  env["SLURM_CONF"] = f"{env['MTX_SLURM_DIR']}/slurm.conf"
  already_up = subprocess.run([CLUSTER, "status"], env=env, capture_output=True).returncode == 0
  if not already_up:
    started = subprocess.run(
      [CLUSTER, "start"], env=env, capture_output=True, text=True, timeout=900
    )
    if started.returncode != 0:
      pytest.skip(f"no SLURM cluster here: {started.stderr.strip().splitlines()[-1:]}")
  yield env
  if not already_up:
    subprocess.run([CLUSTER, "stop"], env=env, capture_output=True, timeout=60)


def _job_env(slurm_env) -> dict:
  """What the job's tasks inherit (sbatch exports the submitter's environment): the repo
  importable, one CPU device each, the venv's mtx-train first on PATH."""
  env = cli_env(devices=1) | {"SLURM_CONF": slurm_env["SLURM_CONF"]}
  env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env["PATH"]])
  return env


def _submit(slurm_env, tmp_path, workdir, *overrides) -> tuple[str, Path]:
  script = tmp_path / "train_cpu.sbatch"
  log = tmp_path / "job-%j.out"
  filled = subprocess.run(
    [
      sys.executable, "-m", "mtx.cli.launch", "slurm", "--template=train_cpu",
      f"--config={CONFIG_FILE}", f"--workdir={workdir}", "--tasks=2", "--time=10",
      "--signal_seconds=60", "--mem_per_cpu=4G", f"--log={log}", f"--output={script}",
      "--", *overrides,
    ],
    cwd=REPO, env=_job_env(slurm_env), capture_output=True, text=True, timeout=120,
  )  # fmt: skip
  assert filled.returncode == 0, filled.stderr
  submitted = subprocess.run(
    ["sbatch", "--parsable", str(script)],
    cwd=tmp_path, env=_job_env(slurm_env), capture_output=True, text=True, timeout=60,
  )  # fmt: skip
  assert submitted.returncode == 0, submitted.stderr
  job = submitted.stdout.strip().split(";")[0]
  return job, Path(str(log).replace("%j", job))


def _job(slurm_env, job) -> dict[str, str]:
  shown = subprocess.run(
    ["scontrol", "show", "job", "-o", job], env=slurm_env, capture_output=True, text=True
  )
  return dict(re.findall(r"(\w+)=(\S*)", shown.stdout))


def _wait(slurm_env, job, until, log) -> dict[str, str]:
  deadline = time.monotonic() + JOB_TIMEOUT_S
  while time.monotonic() < deadline:
    info = _job(slurm_env, job)
    output = log.read_text() if log.exists() else ""
    if until(info, output):
      return info
    if _finished(info, output) or not info:
      pytest.fail(f"job {job} ended first: {info.get('JobState')}\n{output[-3000:]}")
    time.sleep(1)
  subprocess.run(["scancel", job], env=slurm_env)
  pytest.fail(f"job {job} did not get there in {JOB_TIMEOUT_S} s: {_job(slurm_env, job)}")


def _finished(info, _log) -> bool:
  return info.get("JobState") in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL")


def _losses(output: str, index: int) -> dict[int, float]:
  return {
    int(step): float(loss)
    for step, loss in re.findall(rf"\[process {index}\] step (\d+)/\d+ \| loss ([0-9.]+)", output)
  }


def test_a_two_task_sbatch_job_joins_through_slurm_and_matches_one_process(
  slurm_env, prepared_dir, tmp_path
):
  common = (
    f"--config.data.data_dir={prepared_dir}",
    "--config.train.log_every=1",
    "--config.train.checkpoint_every=2",
    "--config.train.eval_every=2",
    "--config.train.num_steps=4",
  )
  workdir = tmp_path / "run"
  job, log = _submit(slurm_env, tmp_path, workdir, *common)
  info = _wait(slurm_env, job, _finished, log)
  output = log.read_text()
  assert info["JobState"] == "COMPLETED" and info["ExitCode"] == "0:0", output[-3000:]
  for index in range(2):
    assert f"[process {index}] devices: 2 x cpu on 2 process(es)" in output
  losses = [_losses(output, index) for index in range(2)]
  assert sorted(losses[0]) == [1, 2, 3, 4] and losses[0] == losses[1]
  assert (workdir / "checkpoints" / "4").is_dir()

  from mtx.sample.restore import load_run

  assert load_run(workdir).step == 4

  single = subprocess.run(
    train_command(CONFIG_FILE, tmp_path / "single", *common),
    cwd=REPO, env=cli_env(devices=2), capture_output=True, text=True, timeout=JOB_TIMEOUT_S,
  )  # fmt: skip
  assert single.returncode == 0, single.stderr[-3000:]
  alone = {
    int(step): float(loss)
    for step, loss in re.findall(r"^step (\d+)/\d+ \| loss ([0-9.]+)", single.stdout, re.M)
  }
  assert sorted(alone) == [1, 2, 3, 4]
  for step, loss in alone.items():
    assert abs(losses[0][step] - loss) <= LOSS_TOLERANCE * loss, (step, losses[0], alone)


def test_the_time_limit_signal_saves_requeues_and_resumes(slurm_env, prepared_dir, tmp_path):
  workdir = tmp_path / "run"
  job, log = _submit(
    slurm_env,
    tmp_path,
    workdir,
    f"--config.data.data_dir={prepared_dir}",
    "--config.train.log_every=1",
    "--config.train.checkpoint_every=1000",
    "--config.train.eval_every=1000",
    "--config.train.num_steps=1000",
  )
  _wait(slurm_env, job, lambda info, out: "[process 1] step 2/" in out, log)
  # What SLURM sends --signal_seconds before the time limit: USR1 to the batch script only.
  subprocess.run(["scancel", "--batch", "--signal=USR1", job], env=slurm_env, check=True)
  info = _wait(slurm_env, job, lambda info, out: "restart 1" in out, log)
  output = log.read_text()
  assert "time limit near" in output and int(info.get("Restarts", "0")) >= 1, output[-3000:]
  _wait(slurm_env, job, lambda info, out: "resumed from" in out, log)
  subprocess.run(["scancel", job], env=slurm_env)
  output = log.read_text()
  step = re.search(r"\[process 0\] resumed from \S+ at step ([\d,]+)", output)
  # Saved where the signal stopped it (checkpoint_every is 1000), not at the end.
  assert step and 2 <= int(step.group(1).replace(",", "")) < 1000, output[-3000:]
