"""mtx-launch slurm: every template fills in completely, the scripts pass shellcheck, and bad
input is one line with exit status 2."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from mtx.errors import ConfigError
from mtx.launch.common import render
from mtx.launch.slurm import time_limit_seconds
from tests.train.helpers import REPO, cli_env

TINY = str(REPO / "configs" / "jsb_tiny.py")


def _launch(*args: str) -> subprocess.CompletedProcess:
  return subprocess.run(
    [sys.executable, "-m", "mtx.cli.launch", "slurm", *args],
    cwd=REPO,
    env=cli_env(),
    capture_output=True,
    text=True,
    timeout=120,
  )


def _scripts(tmp_path) -> dict[str, list[str]]:
  run = tmp_path / "run"
  (run / "checkpoints").mkdir(parents=True)
  return {
    "train": [f"--config={TINY}", f"--workdir={run}", "--nodes=2", "--gpus_per_node=4"],
    "train_per_node": [
      f"--config={TINY}",
      f"--workdir={run}",
      "--process_per=node",
      "--image=nvcr.io/nvidia/jax:25.04-py3",
      "--partition=gpu",
    ],
    "train_cpu": ["--template=train_cpu", f"--config={TINY}", f"--workdir={run}", "--tasks=4"],
    "prepare": ["--template=prepare", "--dataset=lmd", "--manual_dir=/x", "--data_dir=/y"],
    "sample": ["--template=sample", f"--workdir={run}", f"--output_dir={tmp_path / 's'}"],
  }


@pytest.mark.parametrize("name", ["train", "train_per_node", "train_cpu", "prepare", "sample"])
def test_every_template_fills_in_and_passes_shellcheck(name, tmp_path):
  out = tmp_path / "job.sbatch"
  result = _launch(*_scripts(tmp_path)[name], f"--output={out}", "--", "--config.train.num_steps=7")
  assert result.returncode == 0, result.stderr
  script = out.read_text()
  assert "{{" not in script and "}}" not in script
  assert script.startswith("#!/usr/bin/env bash\n")
  if name.startswith("train"):
    assert "#SBATCH --requeue" in script and "#SBATCH --signal=B:USR1@120" in script
    assert "--config.train.num_steps=7" in script
  if name == "train":
    assert "#SBATCH --ntasks-per-node=4" in script and "##SBATCH --partition=" in script
  if name == "train_per_node":
    assert "#SBATCH --ntasks-per-node=1" in script and "#SBATCH --partition=gpu" in script
    assert "image=nvcr.io/nvidia/jax:25.04-py3" in script
  if shutil.which("shellcheck") is None:
    pytest.skip("shellcheck is not installed (apt-get install shellcheck): filled in, not linted")
  lint = subprocess.run(["shellcheck", str(out)], capture_output=True, text=True)
  assert lint.returncode == 0, lint.stdout


def test_dry_run_prints_and_writes_nothing(tmp_path):
  out = tmp_path / "job.sbatch"
  result = _launch(f"--config={TINY}", f"--workdir={tmp_path}", f"--output={out}", "--dry_run")
  assert result.returncode == 0, result.stderr
  assert "#SBATCH --nodes=1" in result.stdout and not out.exists()


@pytest.mark.parametrize(
  "args, names",
  [
    (["--config=configs/nope.py", "--workdir=/tmp/w"], "configs/nope.py"),
    ([f"--config={TINY}", "--workdir=/tmp/w", "--nodes=0"], "--nodes"),
    ([f"--config={TINY}", "--workdir=/tmp/w", "--gpus_per_node=0"], "--gpus_per_node"),
    ([f"--config={TINY}"], "--workdir"),
    ([f"--config={TINY}", "--workdir=/tmp/w", "--time=soon"], "--time"),
    ([f"--config={TINY}", "--workdir=/tmp/w", "--time=1:30", "--signal_seconds=120"], "120"),
    ([f"--config={TINY}", "--workdir=/tmp/w", "--partition=a b"], "--partition"),
    ([f"--config={TINY}", "--workdir=/tmp/w", "--", "num_steps=3"], "num_steps=3"),
    (["--template=sample", "--workdir=/tmp", "--output_dir=/tmp/s"], "checkpoints"),
    (["--template=prepare", "--data_dir=/tmp/d"], "--dataset"),
    (["--template=gpu", f"--config={TINY}", "--workdir=/tmp/w"], "template"),
    # 3 nodes x 8 GPUs: a mesh with fsdp=16 does not divide 24 devices.
    ([f"--config={TINY}", "--workdir=/w", "--nodes=3", "--", "--config.mesh.fsdp=16"], "--nodes"),
    # 16 chorales a batch do not split over 3 processes.
    (["--template=train_cpu", f"--config={TINY}", "--workdir=/w", "--tasks=3"], "3 processes"),
    ([f"--config={TINY}", "--workdir=/w", "--", "--config.mesh.fsdp=x"], "not a valid int"),
    ([f"--config={TINY}", "--workdir=/w", "--", "--config.mesh.nope=2"], "mesh.nope"),
  ],
)
def test_bad_input_is_one_line_and_exit_2(args, names):
  result = _launch(*args)
  assert result.returncode == 2, result.stderr
  assert len(result.stderr.strip().splitlines()) == 1 and names in result.stderr


def test_slurm_time_limits():
  assert time_limit_seconds("90") == 5400
  assert time_limit_seconds("1:30") == 90
  assert time_limit_seconds("02:00:00") == 7200
  assert time_limit_seconds("2-00:00:00") == 2 * 86400
  assert time_limit_seconds("1-12") == 86400 + 12 * 3600
  for bad in ("", "1h", "1:2:3:4", "-5"):
    with pytest.raises(ConfigError):
      time_limit_seconds(bad)


def test_an_sbatch_line_left_empty_is_commented_out():
  template = "#SBATCH --partition={{P}}\n#SBATCH --time={{T}}\necho {{P}}x\n"
  assert (
    render(template, {"P": "", "T": "5"}) == "##SBATCH --partition=\n#SBATCH --time=5\necho x\n"
  )
  with pytest.raises(ValueError, match="T"):
    render(template, {"P": ""})


def test_output_makes_its_folder_and_an_unwritable_one_is_one_line(tmp_path):
  out = tmp_path / "jobs" / "new" / "job.sbatch"
  result = _launch(f"--config={TINY}", f"--workdir={tmp_path}", f"--output={out}")
  assert result.returncode == 0, result.stderr
  assert out.read_text().startswith("#!/usr/bin/env bash\n")
  blocked = tmp_path / "a_file"
  blocked.write_text("")
  result = _launch(f"--config={TINY}", f"--workdir={tmp_path}", f"--output={blocked}/job.sbatch")
  assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
  assert "--output=" in result.stderr and "cannot be written" in result.stderr
