"""The Beam options of mtx-prepare on a cluster runner (data_pipeline/beam_options.py): the
option sets docs/data.md gives for Dataflow, Flink and Spark parse into Beam's own
PipelineOptions with the values the runners read, and a bad set fails before any work with one
line naming the option. None of these runners runs here (Flink and Spark need their job-server
jars, Dataflow a Google Cloud project); the DirectRunner path runs for real in test_prepare.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from data_pipeline.beam_options import check_runner_installed, checked_beam_options
from mtx.errors import ConfigError

pytestmark = pytest.mark.beam

REPO = Path(__file__).resolve().parents[2]
SETUP = str(REPO / "setup.py")
IMAGE = "us-central1-docker.pkg.dev/my-project/mtx/mtx:cpu"
DATAFLOW = [
  "project=my-project",
  "region=us-central1",
  "temp_location=gs://my-bucket/tmp",
  f"sdk_container_image={IMAGE}",
  "num_workers=4",
  "max_num_workers=32",
]
FLINK = [
  "flink_master=flink-jobmanager:8081",
  "environment_type=DOCKER",
  f"environment_config={IMAGE}",
  "parallelism=16",
]
SPARK = [
  "spark_master_url=spark://spark-master:7077",
  "environment_type=DOCKER",
  f"environment_options=docker_container_image={IMAGE}",
]


@pytest.fixture(scope="module")
def beam():
  return pytest.importorskip(
    "apache_beam.options.pipeline_options",
    reason="Apache Beam is not installed: pip install -e '.[beam]' (scripts/test.sh's .venv-beam)",
  )


def _error(runner, items, data_dir="gs://my-bucket/data") -> str:
  with pytest.raises(ConfigError) as raised:
    checked_beam_options(runner, items, data_dir=data_dir)
  message = str(raised.value)
  assert "\n" not in message
  return message


def test_dataflow_options_parse_into_the_views_dataflow_reads(beam):
  options = checked_beam_options("DataflowRunner", DATAFLOW, data_dir="gs://my-bucket/data")
  cloud = options.view_as(beam.GoogleCloudOptions)
  assert (cloud.project, cloud.region, cloud.temp_location) == (
    "my-project",
    "us-central1",
    "gs://my-bucket/tmp",
  )
  assert options.view_as(beam.WorkerOptions).sdk_container_image == IMAGE
  assert options.view_as(beam.WorkerOptions).num_workers == 4  # Beam's int, not "4"
  assert options.view_as(beam.StandardOptions).runner == "DataflowRunner"
  # Beam's own spelling of the runner, a bucket's root as the data_dir, and a setup_file.
  options = checked_beam_options(
    "dataflow", [*DATAFLOW, f"setup_file={SETUP}"], data_dir="gs://my-bucket"
  )
  assert options.view_as(beam.SetupOptions).setup_file == SETUP


def test_flink_options_parse_into_the_views_flink_reads(beam):
  options = checked_beam_options("FlinkRunner", FLINK, data_dir="/shared/data")
  assert options.view_as(beam.FlinkRunnerOptions).flink_master == "flink-jobmanager:8081"
  assert options.view_as(beam.FlinkRunnerOptions).parallelism == 16
  portable = options.view_as(beam.PortableOptions)
  assert (portable.environment_type, portable.environment_config) == ("DOCKER", IMAGE)
  # An embedded Flink runs the workers in this process: nothing more is needed.
  local = checked_beam_options("FlinkRunner", ["flink_master=[local]"], data_dir="/tmp/d")
  assert local.view_as(beam.FlinkRunnerOptions).flink_master == "[local]"


def test_spark_options_parse_into_the_views_spark_reads(beam):
  options = checked_beam_options("SparkRunner", SPARK, data_dir="/shared/data")
  spark = options.view_as(beam.SparkRunnerOptions)
  assert spark.spark_master_url == "spark://spark-master:7077"
  portable = options.view_as(beam.PortableOptions)
  assert portable.lookup_environment_option("docker_container_image") == IMAGE
  uber = [*SPARK, "spark_submit_uber_jar", "spark_rest_url=http://spark-master:6066"]
  options = checked_beam_options("SparkRunner", uber, data_dir="/shared/data")
  assert options.view_as(beam.SparkRunnerOptions).spark_submit_uber_jar is True


def test_local_runners_take_their_own_options(beam):
  items = ["direct_num_workers=4", "direct_running_mode=multi_processing"]
  options = checked_beam_options("DirectRunner", items, data_dir="/tmp/d")
  assert options.view_as(beam.DirectOptions).direct_num_workers == 4
  options = checked_beam_options("PrismRunner", ["prism_log_level=debug"], data_dir="/tmp/d")
  assert options.view_as(beam.PrismRunnerOptions).prism_log_level == "debug"


def _without(items: list[str], name: str) -> list[str]:
  return [item for item in items if not item.startswith(f"{name}=")]


@pytest.mark.parametrize(
  "runner, items, data_dir, names",
  [
    ("FastRunner", [], "/tmp/d", ["--beam_runner=FastRunner"]),
    ("DirectRunner", ["runner=DataflowRunner"], "/tmp/d", ["runner=DataflowRunner"]),
    (
      "DataflowRunner",
      [*DATAFLOW, "temp_locaton=gs://x/t"],
      None,
      ["temp_locaton", "temp_location"],
    ),
    ("DataflowRunner", [*DATAFLOW, "num_workers=four"], None, ["num_workers", "'four'"]),
    ("DataflowRunner", [*DATAFLOW, "region"], None, ["region", "expected one argument"]),
    ("DataflowRunner", _without(DATAFLOW, "project"), None, ["project=PROJECT_ID"]),
    ("DataflowRunner", [*DATAFLOW, "project=123456"], None, ["project=123456"]),
    ("DataflowRunner", _without(DATAFLOW, "region"), None, ["region=REGION"]),
    ("DataflowRunner", _without(DATAFLOW, "temp_location"), None, ["temp_location=gs://"]),
    ("DataflowRunner", [*DATAFLOW, "temp_location=/tmp/t"], None, ["temp_location", "/tmp/t"]),
    ("DataflowRunner", [*DATAFLOW, "staging_location=/s"], None, ["staging_location"]),
    ("DataflowRunner", DATAFLOW, "/local/data", ["--data_dir=/local/data", "gs://"]),
    ("DataflowRunner", _without(DATAFLOW, "sdk_container_image"), None, ["sdk_container_image"]),
    ("DataflowRunner", [*DATAFLOW, "setup_file=/no/setup.py"], None, ["setup_file=/no/setup.py"]),
    ("DataflowRunner", [*DATAFLOW, f"setup_file={REPO / 'README.md'}"], None, ["setup.py"]),
    ("DataflowRunner", [*DATAFLOW, "requirements_file=/no/r.txt"], None, ["requirements_file"]),
    ("FlinkRunner", _without(FLINK, "flink_master"), "/d", ["flink_master=HOST:PORT"]),
    ("FlinkRunner", [*FLINK, "flink_version=1.0"], "/d", ["flink_version", "'1.0'"]),
    ("FlinkRunner", FLINK[:1], "/d", ["environment_config=IMAGE", "corpus"]),
    ("FlinkRunner", [*FLINK[:1], f"setup_file={SETUP}"], "/d", ["environment_config=IMAGE"]),
    ("FlinkRunner", [*FLINK[:1], f"sdk_container_image={IMAGE}"], "/d", ["sdk_container_image"]),
    ("FlinkRunner", [*FLINK[:1], "environment_type=PROCESS"], "/d", ["process_command"]),
    ("FlinkRunner", ["flink_master=[auto]", "flink_submit_uber_jar"], "/d", ["flink_master="]),
    ("SparkRunner", SPARK[1:], "/d", ["spark_master_url=spark://"]),
    ("SparkRunner", SPARK[:1], "/d", ["environment_config=IMAGE"]),
    ("SparkRunner", [*SPARK, "spark_submit_uber_jar"], "/d", ["spark_rest_url"]),
    ("PortableRunner", [], "/d", ["job_endpoint=HOST:PORT"]),
  ],
)
def test_a_bad_option_set_fails_with_one_line_naming_the_option(
  beam, runner, items, data_dir, names
):
  message = _error(runner, items, data_dir or "gs://my-bucket/data")
  for name in names:
    assert name in message, message


def test_dataflow_needs_the_gcp_extra_installed(beam):
  options = checked_beam_options("DataflowRunner", DATAFLOW, data_dir="gs://my-bucket/data")
  try:
    import apache_beam.runners.dataflow.internal.apiclient  # noqa: F401
  except ImportError:
    with pytest.raises(ConfigError, match=r"apache-beam\[gcp\]"):
      check_runner_installed(options)
  else:
    check_runner_installed(options)
  direct = checked_beam_options("DirectRunner", [], data_dir="/tmp/d")
  check_runner_installed(direct)  # nothing to install for a local runner


def test_mtx_prepare_refuses_a_bad_dataflow_set_in_one_line_writing_nothing(beam, tmp_path):
  corpus = tmp_path / "corpus"
  corpus.mkdir()
  data_dir = tmp_path / "data"
  # temp_location is checked before --data_dir (local too, and never made).
  items = ",".join(_without(DATAFLOW, "temp_location") + ["temp_location=/tmp/beam"])
  result = subprocess.run(
    [sys.executable, "-m", "mtx.cli.prepare", "--dataset=midi_folder"]
    + [f"--manual_dir={corpus}", f"--data_dir={data_dir}"]
    + ["--beam_runner=DataflowRunner", f"--beam_options={items}"],
    capture_output=True,
    text=True,
    timeout=300,
    cwd=REPO,
  )
  assert result.returncode == 2, result.stderr
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and "temp_location=gs://" in lines[0] and "/tmp/beam" in lines[0], lines
  assert not data_dir.exists() and list(tmp_path.iterdir()) == [corpus]
