"""A workdir on a bucket (gs://...): mtx's own files go through etils.epath, not a local path
library, against a real Google Cloud Storage JSON API on localhost (gcp-storage-emulator, a
test dependency), reached through the client a cloud run uses (gcsfs under etils.epath).

Not covered: Orbax's checkpoint arrays on a bucket (TensorStore's conditional writes of an
OCDBT manifest fail on this emulator with "Malformed StorageGeneration"), and TensorBoard's
events (tensorboardX's GCS writer uploads its file again when it is collected, after the
emulator has stopped, and retries for two minutes); launch/README.md lists what was not run.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from mtx.errors import ConfigError
from tests.train.helpers import REPO, cli_env

BUCKET = "mtx-test"


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.fixture(scope="module")
def emulator():
  """The emulator's address, serving one bucket, in memory."""
  binary = os.path.join(os.path.dirname(sys.executable), "gcp-storage-emulator")
  if not os.path.exists(binary):
    pytest.skip("gcp-storage-emulator is not installed (the test extra has it)")
  port = _free_port()
  server = subprocess.Popen(
    [binary, "start", "--host=127.0.0.1", f"--port={port}", f"--default-bucket={BUCKET}",
     "--in-memory"],
    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
  )  # fmt: skip
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
    "STORAGE_EMULATOR_HOST": emulator,
    "GOOGLE_CLOUD_PROJECT": "mtx-test",
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
