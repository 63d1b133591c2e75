"""Checkpoints never restore silently wrong values: damage to any file of a real
checkpoint is refused in one line naming the step, in-process and in both binaries;
a full disk, a bad workdir and early signals end as cleanly."""

from __future__ import annotations

import collections
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mtx.errors import ConfigError
from mtx.train.checkpoint import DamagedCheckpointError
from mtx.train.config import validate
from mtx.train.digest import _shard_sums, tree_digests
from tests.train import damage
from tests.train.helpers import REPO, cli_env, read_scalars, small_config, train_command

CONFIG_FILE = str(REPO / "tests" / "train" / "cli_config.py")
STEPS = 4  # checkpoints at 2 and 4


@pytest.fixture(scope="module")
def small_run(prepared_dir, tmp_path_factory):
  """A run trained 4 steps by the loop, checkpoints at steps 2 and 4, and what reading
  it back gives undamaged."""
  from mtx.train.loop import train

  config = small_config(prepared_dir, num_steps=STEPS)
  workdir = tmp_path_factory.mktemp("integrity_run")
  train(config, workdir)
  pristine = damage.read_back(workdir, config)
  assert pristine.error is None and pristine.step == STEPS, pristine.error
  return workdir, config, pristine


def _one_line_naming_the_step(error: BaseException, step: int) -> str:
  message = str(error)
  assert isinstance(error, DamagedCheckpointError), message
  assert "\n" not in message and f"checkpoint step {step}" in message, message
  assert "<bound method" not in message and "pybind11" not in message, message
  assert "BatchIterator.get_state" not in message, message
  assert "other steps kept: 2" in message, message  # the steps to fall back to
  return message


def test_every_damage_to_every_file_kind_is_refused_or_changes_nothing(small_run, tmp_path):
  """Bit flips at several positions of every file of the latest step, its truncation
  and its deletion: each is refused with one line naming the step, or (a byte nothing
  reads: an unreferenced data file, a timestamp digit) reads back exactly the saved
  params, optimizer state, input position, run record and metrics. None is read
  silently wrong. JSON files (every byte read) and the largest data file (the issue's
  case) must be refused outright."""
  workdir, config, pristine = small_run
  files = damage.step_files(workdir / "checkpoints" / str(STEPS))
  largest = max(
    (rel for rel in files if damage.kind_of(rel) == "data"),
    key=lambda rel: files[rel].stat().st_size,
  )
  outcomes = collections.Counter()
  refused_outright = {"iterator state", "run record", "metrics", "digest"}
  for index, (rel, path) in enumerate(files.items()):
    kind = damage.kind_of(rel)
    assert kind is not None, rel
    flips = 12 if rel == largest else 3
    variants = [("flip", p) for p in damage.flip_positions(path.stat().st_size, flips, index)]
    variants += [("truncate", None), ("delete", None)]
    for how, position in variants:
      work = damage.copy_workdir(workdir, tmp_path / "work")
      target = work / "checkpoints" / str(STEPS) / rel
      if how == "flip":
        damage.flip_bit(target, position, position % 8)
      elif how == "truncate":
        damage.truncate(target)
      else:
        target.unlink()
      got = damage.read_back(work, config)
      case = f"{kind} {rel} {how} {position}"
      if got.error is not None:
        message = _one_line_naming_the_step(got.error, STEPS)
        if kind == "iterator state":
          assert "data/process_0-of-1.json" in message, message
        outcomes[kind, "refused"] += 1
        continue
      assert got.same_as(pristine), f"read silently wrong: {case}"
      assert kind not in refused_outright, f"not refused: {case}"
      assert not (rel == largest and how != "flip"), f"not refused: {case}"
      outcomes[kind, "unchanged"] += 1
  for kind in damage.FILE_KINDS:
    assert outcomes[kind, "refused"], (kind, outcomes)
  # The case: flips in the largest data file restored silently 14 times in 15.
  assert outcomes["data", "refused"] >= 9, outcomes


def test_a_damaged_latest_checkpoint_is_one_line_in_both_binaries_and_fallback_resumes(
  small_run, prepared_dir, tmp_path
):
  """A truncated metrics file of the latest step (Orbax parses it on opening the
  directory: a 65-line traceback before) in mtx-train and mtx-sample; then mtx-train
  with --fallback_to_intact_checkpoint sets the step aside and resumes from step 2."""
  workdir, _, _ = small_run
  work = damage.copy_workdir(workdir, tmp_path / "work")
  damage.truncate(work / "checkpoints" / str(STEPS) / "metrics" / "metrics")
  data = f"--config.data.data_dir={prepared_dir}"
  trained = _run(train_command(CONFIG_FILE, work, data, "--config.train.num_steps=6"))
  line = _one_error_line(trained)
  assert f"checkpoint step {STEPS}" in line and "metrics" in line and "fallback" in line
  sampled = _run(
    [
      sys.executable,
      "-m",
      "mtx.cli.sample",
      f"--workdir={work}",
      f"--output_dir={tmp_path / 'samples'}",
      "--num_samples=1",
    ]
  )
  line = _one_error_line(sampled)
  assert f"checkpoint step {STEPS}" in line and "--step" in line
  # mtx-sample's fallback reads step 2 and says which step it skipped.
  sampled = _run(
    [
      sys.executable,
      "-m",
      "mtx.cli.sample",
      f"--workdir={work}",
      f"--output_dir={tmp_path / 'fallback'}",
      "--num_samples=1",
      "--max_length=24",
      "--fallback_to_intact_checkpoint",
    ]
  )
  assert sampled.returncode == 0, sampled.stderr[-3000:]
  assert f"checkpoint step {STEPS} is damaged" in sampled.stderr
  assert "reading step 2 instead" in sampled.stderr
  assert len(list((tmp_path / "fallback").glob("*.mid"))) == 1
  resumed = _run(
    train_command(
      CONFIG_FILE,
      work,
      data,
      "--config.train.num_steps=6",
      "--fallback_to_intact_checkpoint",
      "--config.train.eval_every=0",
    )
  )
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert f"resumed from {work / 'checkpoints'} at step 2" in resumed.stdout
  assert (work / "damaged_checkpoints" / str(STEPS) / "metrics").is_dir()
  assert "trained to step 6" in resumed.stdout and "Traceback" not in resumed.stderr


def test_digests_add_up_over_any_split_and_see_one_bit(tmp_path):
  """The digest of an array is the same from its blocks (as shards on any mesh, or
  processes, hold it) as whole; one flipped bit, two swapped rows change it."""
  rng = np.random.default_rng(0)
  array = rng.standard_normal((6, 10, 4)).astype(np.float32)
  whole = _shard_sums(array, (), array.shape)
  for cut in ((3, 5, 2), (2, 10, 4), (6, 1, 4)):
    total0 = total1 = 0
    for i in range(0, 6, cut[0]):
      for j in range(0, 10, cut[1]):
        for k in range(0, 4, cut[2]):
          index = (slice(i, i + cut[0]), slice(j, j + cut[1]), slice(k, k + cut[2]))
          a, b = _shard_sums(array[index], index, array.shape)
          total0, total1 = (total0 + a) % 2**64, (total1 + b) % 2**64
    assert (total0, total1) == whole, cut
  digest = tree_digests({"x": array})["x"]
  flipped = array.copy()
  flipped.view(np.uint32)[4, 7, 1] ^= 1 << 3
  swapped = array.copy()
  swapped[[1, 2]] = swapped[[2, 1]]
  assert tree_digests({"x": flipped})["x"] != digest
  assert tree_digests({"x": swapped})["x"] != digest
  bf16 = np.asarray(array.astype("bfloat16"))
  assert tree_digests({"x": bf16})["x"] != tree_digests({"x": array})["x"]


@pytest.mark.parametrize(
  "key, value",
  [
    ("train.learning_rate", math.nan),
    ("train.adam_b1", math.nan),
    ("train.adam_b2", 1.0),
    ("train.weight_decay", math.inf),
    ("train.grad_clip_norm", -math.inf),
    ("train.adam_eps", math.nan),
  ],
)
def test_non_finite_and_out_of_range_numbers_are_refused_by_name(prepared_dir, key, value):
  config = small_config(prepared_dir)
  section, name = key.split(".")
  config[section][name] = value
  with pytest.raises(ConfigError, match=re.escape(key)):
    validate(config, device_count=1)


def test_a_file_or_read_only_workdir_is_one_line(tmp_path):
  a_file = tmp_path / "a_file"
  a_file.write_text("x")
  line = _one_error_line(_run(train_command(CONFIG_FILE, a_file)))
  assert "--workdir" in line and str(a_file) in line
  read_only = tmp_path / "read_only"
  read_only.mkdir()
  with _mounted(
    ["--bind", str(read_only), str(read_only)], read_only, remount="remount,ro,bind"
  ) as ok:
    if not ok:
      pytest.skip("a read-only bind mount needs root (mount --bind): not set up here")
    line = _one_error_line(_run(train_command(CONFIG_FILE, read_only / "run")))
    assert "--workdir" in line and "Read-only" in line


def test_a_full_disk_stops_training_at_the_failed_save_in_one_line(prepared_dir, tmp_path):
  """The workdir on a 2.5 MiB tmpfs: checkpoints of about 1 MiB, one every 2 steps,
  all kept. The save that finds the disk full ends the run in one line naming the
  disk, no step is trained past the next one, and the previous checkpoint restores."""
  disk = tmp_path / "disk"
  disk.mkdir()
  with _mounted(["-t", "tmpfs", "-o", "size=2560k", "tmpfs", str(disk)], disk) as ok:
    if not ok:
      pytest.skip("a small tmpfs needs root (mount -t tmpfs): not set up here")
    completed = _run(
      train_command(
        CONFIG_FILE,
        disk / "run",
        f"--config.data.data_dir={prepared_dir}",
        "--config.train.num_steps=40",
        "--config.train.log_every=1",
        "--config.train.checkpoint_every=2",
        "--config.train.keep_checkpoints=40",
        "--config.train.eval_every=0",
      )
    )
    line = _one_error_line(completed)
    assert "is full" in line and str(disk) in line, line
    failed = int(re.search(r"checkpoint of step (\d+)", line).group(1))
    latest = int(re.search(r"latest complete checkpoint is step (\d+)", line).group(1))
    assert latest == failed - 2
    trained = [int(s) for s in re.findall(r"step (\d+)/40", completed.stdout)]
    assert max(trained) <= failed + 1, completed.stdout  # stopped at the failed save
    steps = sorted(
      int(p.name) for p in (disk / "run" / "checkpoints").iterdir() if p.name.isdigit()
    )
    assert steps[-1] == latest
    config = small_config(prepared_dir)
    back = damage.read_back(disk / "run", config)
    assert back.error is None and back.step == latest, back.error


def test_sigterm_before_the_first_step_exits_0_saying_nothing_was_trained(prepared_dir, tmp_path):
  """SIGTERM as soon as mtx-train has its handler (before JAX has started): exit 0 and
  a line saying nothing was trained (it was a silent exit 143)."""
  process = subprocess.Popen(
    train_command(CONFIG_FILE, tmp_path, f"--config.data.data_dir={prepared_dir}"),
    cwd=REPO,
    env=cli_env(),
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
  )
  deadline = time.time() + 60
  while time.time() < deadline and not _catches_sigterm(process.pid):
    time.sleep(0.01)
  process.send_signal(signal.SIGTERM)
  out, err = process.communicate(timeout=300)
  assert process.returncode == 0, err[-3000:]
  assert "nothing was trained yet" in out and "Traceback" not in err
  assert not any(p.name.isdigit() for p in (tmp_path / "checkpoints").glob("*"))


def test_a_resume_shows_each_step_once_in_tensorboard_without_orbax_noise(prepared_dir, tmp_path):
  """A run that logged past its last checkpoint (killed before saving step 4: the
  checkpoint removed here) resumes from step 2 and logs steps 3.. again: TensorBoard
  must show what the resumed run logged, not the interrupted run's values too (its
  eval at step 4 is hidden). A healthy run prints no Orbax warning per save and one
  closing line."""
  import shutil

  data = f"--config.data.data_dir={prepared_dir}"
  first = _run(
    train_command(
      CONFIG_FILE,
      tmp_path,
      data,
      "--config.train.num_steps=4",
      "--config.train.log_every=1",
      "--config.train.eval_every=4",
    )
  )
  assert first.returncode == 0, first.stderr[-3000:]
  assert "tracked_metric" not in first.stderr  # step 2 is saved without an evaluation
  shutil.rmtree(tmp_path / "checkpoints" / "4")
  second = _run(
    train_command(
      CONFIG_FILE,
      tmp_path,
      data,
      "--config.train.num_steps=5",
      "--config.train.log_every=1",
      "--config.train.eval_every=0",
    )
  )
  assert second.returncode == 0, second.stderr[-3000:]
  assert second.stdout.count("trained to step 5") == 1
  shown = read_scalars(tmp_path / "tensorboard")
  assert sorted(shown["train/loss"]) == [1, 2, 3, 4, 5]
  assert sorted(shown["eval/loss"]) == [5]  # the interrupted run's eval at 4 is purged
  assert sorted(read_scalars(tmp_path / "tensorboard", purge=False)["eval/loss"]) == [4, 5]


def test_kill_9_takes_the_data_workers_with_it(prepared_dir, tmp_path):
  """kill -9 of mtx-train with data.worker_count=2: its worker processes (and
  multiprocessing's resource tracker) must not outlive it."""
  process = subprocess.Popen(
    train_command(
      CONFIG_FILE,
      tmp_path,
      f"--config.data.data_dir={prepared_dir}",
      "--config.data.worker_count=2",
      "--config.train.num_steps=100000",
      "--config.train.log_every=1",
      "--config.train.eval_every=0",
      "--config.train.checkpoint_every=100000",
    ),
    cwd=REPO,
    env=cli_env(),
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
  )
  deadline = time.time() + 300
  while time.time() < deadline:
    line = process.stdout.readline()
    if not line or re.search(r"step 2/", line):
      break
  children = _descendants(process.pid)
  assert len(children) >= 2, children  # the workers (and the tracker) are running
  process.kill()
  process.communicate(timeout=60)
  deadline = time.time() + 30
  while time.time() < deadline and any(_alive(pid) for pid in children):
    time.sleep(0.5)
  assert not [pid for pid in children if _alive(pid)]


# Helpers.


def _run(command, timeout=600):
  return subprocess.run(
    command, cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=timeout
  )


def _one_error_line(completed) -> str:
  assert completed.returncode == 2, completed.stderr[-3000:]
  lines = [l for l in completed.stderr.strip().splitlines() if l.startswith("error:")]
  assert len(lines) == 1 and "Traceback" not in completed.stderr, completed.stderr[-3000:]
  return lines[0]


class _mounted:
  """`mount ARGS` for the block (and, given `remount`, `mount -o REMOUNT TARGET`);
  yields whether it could be set up; unmounts after."""

  def __init__(self, args, target: Path, remount: str | None = None):
    self.args, self.target, self.remount, self.ok = args, target, remount, False

  def __enter__(self):
    try:
      done = subprocess.run(["mount", *self.args], capture_output=True, timeout=30)
      self.ok = done.returncode == 0
      if self.ok and self.remount:
        self.ok = (
          subprocess.run(
            ["mount", "-o", self.remount, str(self.target)], capture_output=True, timeout=30
          ).returncode
          == 0
        )
    except (OSError, subprocess.TimeoutExpired):
      self.ok = False
    return self.ok

  def __exit__(self, *exc):
    if self.ok or os.path.ismount(self.target):  # a bind mount is no ismount()
      subprocess.run(["umount", "-l", str(self.target)], capture_output=True, timeout=30)


def _catches_sigterm(pid: int) -> bool:
  try:
    status = Path(f"/proc/{pid}/status").read_text()
  except OSError:
    return False
  caught = int(re.search(r"SigCgt:\s*([0-9a-f]+)", status).group(1), 16)
  return bool(caught & (1 << (signal.SIGTERM - 1)))


def _descendants(pid: int) -> list[int]:
  found, frontier = [], [pid]
  while frontier:
    parent = frontier.pop()
    for child in Path(f"/proc/{parent}/task").glob("*/children"):
      for text in child.read_text().split():
        found.append(int(text))
        frontier.append(int(text))
  return found


def _alive(pid: int) -> bool:
  try:
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
  except OSError:
    return False
  return state != "Z"
