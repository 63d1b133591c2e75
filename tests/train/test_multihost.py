"""A real two-process job on this machine: jax.distributed with gloo CPU collectives.

Each process runs `mtx-train` with its own process id, reads its own shard of
the data and holds one CPU device; the mesh spans both. Both must report the
same loss at every step (the loss is a global quantity), and a checkpoint the
pair wrote must restore: the pair run again resumes from it and goes on.
"""

from __future__ import annotations

import re
import socket
import subprocess

from tests.train.helpers import REPO, cli_env, train_command

CONFIG_FILE = str(REPO / "tests" / "train" / "cli_config.py")


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _run_pair(workdir, *overrides) -> list[str]:
  port = _free_port()
  processes = [
    subprocess.Popen(
      train_command(
        CONFIG_FILE,
        workdir,
        *overrides,
        f"--coordinator_address=127.0.0.1:{port}",
        "--num_processes=2",
        f"--process_id={index}",
      ),
      cwd=REPO,
      env=cli_env(devices=1),
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
    )
    for index in range(2)
  ]
  outputs = []
  for process in processes:
    try:
      out, err = process.communicate(timeout=600)
    finally:
      for other in processes:
        if other.poll() is None and process.returncode not in (None, 0):
          other.kill()
    assert process.returncode == 0, err[-3000:]
    outputs.append(out)
  return outputs


def _losses(output: str, index: int) -> dict[int, str]:
  return {
    int(step): loss
    for step, loss in re.findall(rf"\[process {index}\] step (\d+)/\d+ \| loss ([0-9.]+)", output)
  }


def test_two_processes_agree_on_the_loss_and_resume_from_their_checkpoint(prepared_dir, tmp_path):
  common = (
    f"--config.data.data_dir={prepared_dir}",
    "--config.train.log_every=1",
    "--config.train.checkpoint_every=2",
    "--config.train.eval_every=2",
  )
  first = _run_pair(tmp_path, *common, "--config.train.num_steps=4")
  assert "2 process(es)" in first[0]
  losses = [_losses(out, i) for i, out in enumerate(first)]
  assert sorted(losses[0]) == [1, 2, 3, 4]
  assert losses[0] == losses[1]
  evals = [re.findall(r"eval at step 4: loss ([0-9.]+)", out) for out in first]
  assert evals[0] and evals[0] == evals[1]
  assert (tmp_path / "checkpoints" / "4").is_dir()

  second = _run_pair(tmp_path, *common, "--config.train.num_steps=6")
  for index, out in enumerate(second):
    assert f"[process {index}] resumed from {tmp_path / 'checkpoints'} at step 4" in out
  resumed = [_losses(out, i) for i, out in enumerate(second)]
  assert sorted(resumed[0]) == [5, 6] and resumed[0] == resumed[1]
