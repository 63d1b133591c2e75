"""`mtx-train` as a user runs it: bad input, preemption (SIGTERM), kill -9 mid-save."""

from __future__ import annotations

import re
import signal
import subprocess
import time

import pytest

from tests.train.helpers import REPO, cli_env, train_command

CONFIG_FILE = str(REPO / "tests" / "train" / "cli_config.py")


def _run(workdir, *overrides, timeout=600):
  return subprocess.run(
    train_command(CONFIG_FILE, workdir, *overrides),
    cwd=REPO,
    env=cli_env(),
    capture_output=True,
    text=True,
    timeout=timeout,
  )


def _start(workdir, *overrides):
  return subprocess.Popen(
    train_command(CONFIG_FILE, workdir, *overrides),
    cwd=REPO,
    env=cli_env(),
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
  )


def _one_error_line(completed) -> str:
  assert completed.returncode == 2, completed.stderr[-2000:]
  lines = [l for l in completed.stderr.strip().splitlines() if l.startswith("error:")]
  assert len(lines) == 1 and "Traceback" not in completed.stderr, completed.stderr[-2000:]
  return lines[0]


@pytest.mark.parametrize(
  "override, named",
  [
    ("--config.train.batch_size=0", "train.batch_size"),
    ("--config.train.schedule=cosine", "train.schedule"),
    ("--config.mesh.tensor=3", "mesh"),
    ("--config.model.num_heads=3", "model.num_heads"),
    ("--config.data.representation=abc", "data.representation"),
    ("--config.data.seq_len=-4", "data.seq_len"),
  ],
)
def test_a_bad_config_value_is_one_line_naming_the_field(prepared_dir, tmp_path, override, named):
  line = _one_error_line(_run(tmp_path, f"--config.data.data_dir={prepared_dir}", override))
  assert named in line


def test_an_unknown_key_and_a_missing_dataset_are_clear(tmp_path):
  completed = _run(tmp_path, "--config.train.not_a_key=1")
  assert completed.returncode == 2 and "not_a_key" in completed.stderr
  assert "Traceback" not in completed.stderr
  line = _one_error_line(_run(tmp_path / "w", f"--config.data.data_dir={tmp_path}"))
  assert "mtx-prepare" in line and str(tmp_path) in line
  missing = subprocess.run(
    train_command(str(tmp_path / "nope.py"), tmp_path),
    cwd=REPO,
    env=cli_env(),
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert "nope.py" in _one_error_line(missing)


def _wait_for(process, pattern: str, timeout: float = 300) -> str:
  seen = []
  deadline = time.time() + timeout
  while time.time() < deadline:
    line = process.stdout.readline()
    if not line:
      break
    seen.append(line)
    if re.search(pattern, line):
      return "".join(seen)
  process.kill()
  raise AssertionError(
    f"never saw {pattern!r}; output: {''.join(seen)[-2000:]} {process.stderr.read()[-2000:]}"
  )


def test_sigterm_saves_a_checkpoint_and_the_rerun_resumes(prepared_dir, tmp_path):
  data = f"--config.data.data_dir={prepared_dir}"
  process = _start(
    tmp_path,
    data,
    "--config.train.num_steps=100000",
    "--config.train.log_every=1",
    "--config.train.checkpoint_every=100000",
    "--config.train.eval_every=0",
  )
  _wait_for(process, r"step 3/")
  process.send_signal(signal.SIGTERM)
  out, err = process.communicate(timeout=300)
  assert process.returncode == 0, err[-2000:]
  stopped = int(re.search(r"stopped at step (\d+)", out).group(1))
  assert stopped >= 3
  assert (tmp_path / "checkpoints" / str(stopped)).is_dir()
  resumed = _run(
    tmp_path, data, f"--config.train.num_steps={stopped + 2}", "--config.train.eval_every=0"
  )
  assert resumed.returncode == 0, resumed.stderr[-2000:]
  assert f"resumed from {tmp_path / 'checkpoints'} at step {stopped}" in resumed.stdout
  assert f"trained to step {stopped + 2}" in resumed.stdout


def test_kill_9_during_saves_leaves_the_last_complete_checkpoint_to_resume(prepared_dir, tmp_path):
  data = f"--config.data.data_dir={prepared_dir}"
  process = _start(
    tmp_path,
    data,
    "--config.train.num_steps=100000",
    "--config.train.log_every=1",
    "--config.train.checkpoint_every=1",
    "--config.train.keep_checkpoints=2",
    "--config.train.eval_every=0",
  )
  _wait_for(process, r"step 4/")
  time.sleep(0.3)  # a save is almost always in flight: every step writes one
  process.kill()
  process.communicate(timeout=60)
  checkpoints = tmp_path / "checkpoints"
  complete = sorted(int(p.name) for p in checkpoints.iterdir() if p.name.isdigit())
  assert complete, list(checkpoints.iterdir())
  resumed = _run(
    tmp_path, data, f"--config.train.num_steps={complete[-1] + 2}", "--config.train.eval_every=0"
  )
  assert resumed.returncode == 0, resumed.stderr[-2000:]
  latest = int(re.search(r"at step (\d+)", resumed.stdout).group(1))
  assert latest in complete
  assert f"trained to step {latest + 2}" in resumed.stdout
  assert not [p for p in checkpoints.iterdir() if "tmp" in p.name]  # cleaned up
