"""A run on a bucket (gs://...): mtx-train writes, resumes and mtx-sample reads it through the
same clients a cloud run uses (etils.epath over gcsfs for mtx's own files, TensorStore for
Orbax's arrays), against Google Cloud Storage's JSON API on localhost (gcp-storage-emulator, a
test dependency, with the download headers Cloud Storage sends: tests/train/gcs_server.py).

Checked: a run trained 2 steps on the bucket and resumed there to 4 has the parameters of a
straight local 4-step run, bit for bit; its checkpoints, config.json and TensorBoard events
are in the bucket and nothing lands in the current directory (a local path library made a
folder named `gs:` there before); a bucket that does not exist is one line and exit 2.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from mtx.errors import ConfigError
from tests.train.helpers import REPO, cli_env, train_command

BUCKET = "mtx-test"
SERVER = REPO / "tests" / "train" / "gcs_server.py"
CONFIG_FILE = str(REPO / "tests" / "train" / "cli_config.py")
JSB_TINY = REPO / "configs" / "jsb_tiny.py"


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.fixture(scope="module")
def emulator():
  """The emulator's address, serving one bucket, in memory."""
  try:
    import gcp_storage_emulator  # noqa: F401
  except ImportError:
    pytest.skip("gcp-storage-emulator is not installed (the test extra has it)")
  port = _free_port()
  server = subprocess.Popen(
    [sys.executable, str(SERVER), str(port), BUCKET],
    stdout=subprocess.DEVNULL,
    stderr=subprocess.DEVNULL,
  )
  deadline = time.monotonic() + 30
  while time.monotonic() < deadline:
    with socket.socket() as s:
      if s.connect_ex(("127.0.0.1", port)) == 0:
        break
    time.sleep(0.2)
  else:
    server.kill()
    pytest.fail("the storage emulator did not start in 30 s")
  yield f"http://127.0.0.1:{port}"
  server.kill()
  server.wait()


@pytest.fixture
def bucket_env(emulator, monkeypatch):
  env = {
    "STORAGE_EMULATOR_HOST": emulator,  # gcsfs and google-cloud-storage
    "GOOGLE_CLOUD_PROJECT": "mtx-test",
    "TENSORSTORE_GCS_HTTP_URL": emulator,  # TensorStore, and a token it sends unchecked
    "GOOGLE_AUTH_TOKEN_FOR_TESTING": "test",
    "CLOUD_STORAGE_EMULATOR_ENDPOINT": emulator,  # array_record's reader (google-cloud-cpp)
  }
  for name, value in env.items():
    monkeypatch.setenv(name, value)
  return env


def _objects(emulator: str, prefix: str) -> list[str]:
  from google.auth.credentials import AnonymousCredentials
  from google.cloud import storage

  client = storage.Client(
    project="mtx-test",
    credentials=AnonymousCredentials(),
    client_options={"api_endpoint": emulator},
  )
  return sorted(blob.name for blob in client.list_blobs(BUCKET, prefix=prefix))


def test_a_bucket_workdir_takes_the_run_record(bucket_env, emulator, tmp_path, monkeypatch):
  from mtx.cli.paths import check_output_dir
  from mtx.train.loop import RUN_CONFIG_FILE, _write_run_config

  monkeypatch.chdir(tmp_path)
  workdir = f"gs://{BUCKET}/runs/one"
  assert check_output_dir(workdir, "workdir", bucket_ok=True) == workdir
  record = {"config": {"model": {"embed_dim": 8}}, "codec": {"name": "mmt"}}
  _write_run_config(workdir, record)

  names = _objects(emulator, "runs/one/")
  assert f"runs/one/{RUN_CONFIG_FILE}" in names
  assert not any(n.endswith(".tmp") or ".mtx-write-check" in n for n in names), names
  from etils import epath

  assert json.loads((epath.Path(workdir) / RUN_CONFIG_FILE).read_text()) == record
  assert list(tmp_path.iterdir()) == []  # nothing local, no folder named "gs:"


def test_a_bucket_that_does_not_exist_is_one_line_before_training(bucket_env, tmp_path):
  with pytest.raises(ConfigError, match="--workdir gs://no-such-bucket/run: cannot write"):
    from mtx.cli.paths import check_output_dir

    check_output_dir("gs://no-such-bucket/run", "workdir", bucket_ok=True)
  result = subprocess.run(
    [sys.executable, "-m", "mtx.cli.train", f"--config={REPO / 'configs' / 'jsb_tiny.py'}",
     "--workdir=gs://no-such-bucket/run"],
    cwd=tmp_path, env=cli_env() | bucket_env, capture_output=True, text=True, timeout=300,
  )  # fmt: skip
  assert result.returncode == 2, result.stderr[-2000:]
  lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
  assert len(lines) == 1 and "gs://no-such-bucket/run" in lines[0], result.stderr[-2000:]
  assert list(tmp_path.iterdir()) == []


def test_a_bucket_is_refused_where_only_a_local_folder_works(tmp_path, monkeypatch):
  from mtx.cli.paths import check_output_dir

  monkeypatch.chdir(tmp_path)
  with pytest.raises(ConfigError, match="--output_dir gs://b/x: must be a local folder"):
    check_output_dir("gs://b/x", "output_dir")
  assert list(tmp_path.iterdir()) == []


def _train(workdir, steps: int, data_dir, env, cwd) -> str:
  result = subprocess.run(
    train_command(
      CONFIG_FILE, workdir, f"--config.data.data_dir={data_dir}",
      f"--config.train.num_steps={steps}", "--config.train.checkpoint_every=2",
      "--config.train.eval_every=2", "--config.train.log_every=1",
    ),
    cwd=cwd, env=cli_env() | env, capture_output=True, text=True, timeout=600,
  )  # fmt: skip
  assert result.returncode == 0, result.stderr[-3000:]
  return result.stdout


def test_a_run_resumed_on_a_bucket_equals_a_straight_local_run(
  bucket_env, emulator, prepared_dir, tmp_path, monkeypatch
):
  from mtx.sample.restore import load_run
  from tests.train.helpers import flat_params

  workdir = f"gs://{BUCKET}/runs/resumed"
  cwd = tmp_path / "cwd"
  cwd.mkdir()
  _train(workdir, 2, prepared_dir, bucket_env, cwd)
  second = _train(workdir, 4, prepared_dir, bucket_env, cwd)
  assert f"resumed from {workdir}/checkpoints at step 2" in second
  _train(tmp_path / "straight", 4, prepared_dir, bucket_env, cwd)
  assert list(cwd.iterdir()) == []  # nothing local, no folder named "gs:"

  names = _objects(emulator, "runs/resumed/")
  assert "runs/resumed/config.json" in names
  assert any(n.startswith("runs/resumed/checkpoints/4/state/") for n in names), names
  assert any(n.startswith("runs/resumed/tensorboard/events.out.tfevents") for n in names)

  resumed, straight = load_run(workdir), load_run(tmp_path / "straight")
  assert resumed.step == straight.step == 4
  a, b = flat_params(straight), flat_params(resumed)
  assert a.keys() == b.keys()
  for name in a:
    np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def _prepare(data_dir, corpus, env, cwd, *more) -> subprocess.CompletedProcess:
  return subprocess.run(
    [sys.executable, "-m", "mtx.cli.prepare", "--dataset=midi_folder", f"--manual_dir={corpus}",
     f"--data_dir={data_dir}", "--representation=mmt", "--num_workers=1", *more],
    cwd=cwd, env=cli_env() | env, capture_output=True, text=True, timeout=600,
  )  # fmt: skip


def test_a_dataset_prepared_into_a_bucket_reads_as_the_local_one(
  bucket_env, music21_chorales, tmp_path, monkeypatch
):
  """ArrayRecord's writer is local only: mtx-prepare stages the dataset and uploads it;
  array_record's own reader then reads it from the bucket."""
  import shutil

  from mtx.train.data import PreparedData
  from tests.train.helpers import small_config

  corpus, cwd = tmp_path / "corpus", tmp_path / "cwd"
  corpus.mkdir()
  cwd.mkdir()
  for path in music21_chorales[:8]:
    shutil.copy(path, corpus / path.name)
  remote = f"gs://{BUCKET}/data"
  results = [_prepare(d, corpus, bucket_env, cwd) for d in (remote, tmp_path / "local")]
  for result in results:
    assert result.returncode == 0, result.stderr[-3000:]
  assert f"tokens in {remote}/midi_folder/mmt/" in results[0].stdout, results[0].stdout
  again = _prepare(remote, corpus, bucket_env, cwd)
  assert again.returncode == 2 and "already holds midi_folder/mmt" in again.stderr, again.stderr
  # gcsfs warns that it finds no credentials (the emulator needs none); mtx says one line.
  assert [line for line in again.stderr.splitlines() if not line.startswith("W")] == [
    again.stderr.strip().splitlines()[-1]
  ] and again.stderr.strip().splitlines()[-1].startswith("error:")
  assert list(cwd.iterdir()) == []

  config = small_config(remote).data
  config.dataset = "midi_folder"
  from_bucket = PreparedData(config)
  config.data_dir = str(tmp_path / "local")
  local = PreparedData(config)
  assert from_bucket.location.startswith(remote) and from_bucket.splits == local.splits
  for split, count in local.splits.items():
    a, b = from_bucket.source(split), local.source(split)
    for index in range(count):
      np.testing.assert_array_equal(a[index]["tokens"], b[index]["tokens"])


@pytest.mark.parametrize(
  "module, args, names",
  [
    ("mtx.cli.train", [f"--config={JSB_TINY}", "--workdir=gs://b/r"], "--workdir gs://b/r"),
    (
      "mtx.cli.train",
      [f"--config={JSB_TINY}", "--workdir=run", "--config.data.data_dir=gs://b/d"],
      "data.data_dir gs://b/d",
    ),
    ("mtx.cli.sample", ["--workdir=gs://b/r", "--output_dir=out"], "--workdir gs://b/r"),
    ("mtx.cli.prepare", ["--dataset=jsb_chorales", "--data_dir=gs://b/d"], "--data_dir gs://b/d"),
  ],
)
def test_a_bucket_without_its_client_installed_is_one_line(module, args, names, tmp_path):
  """The base install has no gcsfs (the gcs extra does): etils raises ImportError, which
  each binary names in one line; gcsfs is hidden from the subprocess to stand for that."""
  code = (
    "import runpy, sys; sys.modules['gcsfs'] = None; "
    f"sys.argv = [{module!r}, *{args!r}]; runpy.run_module({module!r}, run_name='__main__')"
  )
  result = subprocess.run(
    [sys.executable, "-c", code], cwd=tmp_path, env=cli_env(),
    capture_output=True, text=True, timeout=300,
  )  # fmt: skip
  assert result.returncode == 2, result.stderr[-2000:]
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and names in lines[0] and "pip install '.[gcs]'" in lines[0], lines
