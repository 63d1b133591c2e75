"""The Beam options of `mtx-prepare --beam_runner=... --beam_options=...`, checked before any
work: on a cluster a wrong option shows only after the job was submitted and its workers
started (minutes, and on Dataflow money), and Beam itself drops an option it does not know with
a warning, or ends the process with argparse's usage text on a bad value.

`checked_beam_options` parses the `key=value` items into Beam's `PipelineOptions` the way TFDS
receives them (`DownloadConfig(beam_runner=..., beam_options=...)`) and raises `ConfigError`,
one line naming the option and what to do, for:

- a runner Beam does not know, or `runner=` in the options saying another one;
- an option no Beam options class defines (a typo: `temp_locaton`), or a value Beam's parser
  refuses (`direct_num_workers=two`, `flink_version=9`);
- DataflowRunner: no `project`, `region` or `temp_location` on gs://, a `--data_dir` that is not
  on gs:// (the workers cannot write this machine's disk), or no `sdk_container_image`: the
  workers open each MIDI file at its path under --manual_dir, so they need an image with mtx
  and the corpus at that same path (launch/container.md's, with the corpus copied in);
- FlinkRunner without `flink_master`, SparkRunner without `spark_master_url` (or
  `spark_submit_uber_jar` without `spark_rest_url`), PortableRunner without `job_endpoint`;
- on a Flink, Spark or portable cluster, workers without mtx or the corpus: Beam's default
  SDK container has neither, so the environment must bring them (`environment_type=DOCKER`
  with `environment_config=IMAGE`, or PROCESS, EXTERNAL or LOOPBACK), and
  `sdk_container_image` (read by Dataflow only) is refused there;
- a `setup_file` or `requirements_file` that is not there.

Beam is imported here only: mtx-prepare without --beam_runner never needs it.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import os
import re

from data_pipeline.beam import beam_pipeline_options
from mtx.errors import ConfigError

GCS_URL = re.compile(r"^gs://[^/\s]+/")  # a bucket and a path in it (Beam checks the name)
# Beam's own patterns (pipeline_options_validator.py): a project id, not its number.
PROJECT_ID = re.compile(r"^[a-z][-a-z0-9:.]+[a-z0-9]$")
# The runner classes told apart, subclasses before PortableRunner (Prism's runner is one, and
# starts its own job server).
CHECKED_RUNNERS = (
  "DataflowRunner",
  "FlinkRunner",
  "SparkRunner",
  "PrismRunner",
  "KafkaStreamsRunner",
  "PortableRunner",
)
PORTABLE_WORKERS_WITH_MTX = (
  "environment_type=DOCKER with environment_config=IMAGE (mtx's image, launch/container.md, "
  "with the corpus copied in at its --manual_dir path), or environment_type=PROCESS with mtx "
  "installed on every node and the corpus on a file system they share, at the same path"
)


def checked_beam_options(runner: str | None, items: list[str], *, data_dir: str | os.PathLike):
  """Beam `PipelineOptions` from `key=value` items, once they hold what `runner` needs to run
  mtx's prepare writing into `data_dir`; ConfigError naming the option otherwise."""
  named = [item.split("=", 1)[1] for item in items if item.lstrip("-").startswith("runner=")]
  if runner and any(name != runner for name in named):
    raise ConfigError(
      f"--beam_runner={runner} and --beam_options runner={named[0]} disagree: pass the "
      "runner once, as --beam_runner"
    )
  options, given = _parsed(runner, items)
  runner_name = _runner_class(options)
  _check_files(options)
  if runner_name == "DataflowRunner":
    _check_dataflow(options, os.fspath(data_dir))
  elif runner_name in ("FlinkRunner", "SparkRunner", "PortableRunner"):
    _check_portable(options, runner_name, given)
  return options


def check_runner_installed(options) -> None:
  """ConfigError when the runner needs what this Beam lacks: DataflowRunner needs Beam's GCP
  extra, which it imports only when the job is submitted, after the local work."""
  if _runner_class(options) != "DataflowRunner":
    return
  try:  # what DataflowRunner.run_pipeline imports first
    with _quiet_beam():
      importlib.import_module("apache_beam.runners.dataflow.internal.apiclient")
  except ImportError:
    raise ConfigError(
      "--beam_runner=DataflowRunner needs Beam's Google Cloud extra: "
      "pip install 'apache-beam[gcp]' in this venv (mtx's .[beam] leaves it out)"
    ) from None


def prepare_beam_options(runner: str | None, items: list[str], *, data_dir):
  """What `prepare` passes to TFDS: the checked options, with the runner installed."""
  options = checked_beam_options(runner, items, data_dir=data_dir)
  check_runner_installed(options)
  return options


@contextlib.contextmanager
def _quiet_beam():
  """Beam's warnings while the options are checked: what they say ("Discarding unparseable
  args", "apitools not found" on the first import of apache_beam) a ConfigError here says in
  one line where it matters, and a second line would break mtx's one-line contract."""
  loggers = [logging.getLogger(), logging.getLogger("apache_beam")]
  levels = [logger.level for logger in loggers]
  for logger in loggers:
    logger.setLevel(logging.ERROR)
  try:
    yield
  finally:
    for logger, level in zip(loggers, levels):
      logger.setLevel(level)


def _parsed(runner: str | None, items: list[str]):
  """(PipelineOptions, the option names given), once every option is one Beam knows with a
  value its parser takes. Beam's parser prints its usage and exits on a bad value and only
  warns on an unknown option: both become a ConfigError naming the option."""
  given = set()
  for item in filter(None, items):
    name = item.split("=", 1)[0].strip().lstrip("-")
    if not name:
      raise ConfigError(f"--beam_options: {item!r} is not key=value")
    given.add(name)
  with _quiet_beam():  # the first import of apache_beam warns of BigQuery's missing client
    options = beam_pipeline_options(runner, items)
  usage = io.StringIO()
  try:
    with _quiet_beam(), contextlib.redirect_stderr(usage):
      known = options.get_all_options()
      every = options.get_all_options(retain_unknown_options=True)
  except SystemExit:
    error = usage.getvalue().strip().splitlines()[-1].split("error: ", 1)[-1]
    match = re.match(r"argument --?([\w-]+)(?:/[^:]*)?: (.*)", error)
    name, why = match.groups() if match else ("?", error)
    raise ConfigError(f"--beam_options {name}: {why}") from None
  unknown = sorted(set(every) - set(known))
  if unknown:
    import difflib  # pylint: disable=import-outside-toplevel

    near = difflib.get_close_matches(unknown[0], list(known), n=1)
    hint = f"did you mean {near[0]}? " if near else ""
    raise ConfigError(
      f"--beam_options {unknown[0]}: no Beam pipeline option has this name; {hint}"
      "see apache_beam.options.pipeline_options for the options there are"
    )
  return options, given


def _runner_class(options) -> str:
  """The name of the runner class the pipeline would get (Beam's own lookup: `dataflow`,
  `DataflowRunner` and a module path all work), or ConfigError for a runner Beam lacks."""
  from apache_beam.options.pipeline_options import (  # pylint: disable=import-outside-toplevel
    StandardOptions,
  )
  from apache_beam.runners.runner import create_runner  # pylint: disable=import-outside-toplevel

  name = options.view_as(StandardOptions).runner or StandardOptions.DEFAULT_RUNNER
  try:
    with _quiet_beam():
      runner_type = type(create_runner(name))
  except (ValueError, ImportError, AttributeError) as e:
    known = ", ".join(sorted(set(StandardOptions.KNOWN_RUNNER_NAMES)))
    reason = str(e).split(". Valid values")[0]
    raise ConfigError(
      f"--beam_runner={name}: {reason}; pass one of {known} or a PipelineRunner's module path"
    ) from None
  for cls in runner_type.__mro__:  # TestDataflowRunner is a DataflowRunner, and so on
    if cls.__name__ in CHECKED_RUNNERS:
      return cls.__name__
  return runner_type.__name__


def _check_files(options) -> None:
  """The setup_file and requirements_file Beam stages when it submits the job."""
  from apache_beam.options.pipeline_options import (  # pylint: disable=import-outside-toplevel
    SetupOptions,
  )

  setup = options.view_as(SetupOptions)
  if setup.setup_file is not None:
    if not os.path.isfile(setup.setup_file):
      raise ConfigError(
        f"--beam_options setup_file={setup.setup_file}: no such file; pass the path of mtx's "
        "setup.py (the checkout's root)"
      )
    if os.path.basename(setup.setup_file) != "setup.py":
      raise ConfigError(
        f"--beam_options setup_file={setup.setup_file}: Beam takes a file named setup.py; "
        "pass the path of mtx's setup.py"
      )
  if setup.requirements_file is not None and not os.path.isfile(setup.requirements_file):
    raise ConfigError(f"--beam_options requirements_file={setup.requirements_file}: no such file")


def _check_dataflow(options, data_dir: str) -> None:
  from apache_beam.options.pipeline_options import (  # pylint: disable=import-outside-toplevel
    GoogleCloudOptions,
    WorkerOptions,
  )

  cloud = options.view_as(GoogleCloudOptions)
  if not cloud.project:
    raise ConfigError(
      "--beam_runner=DataflowRunner needs --beam_options project=PROJECT_ID (the Google "
      "Cloud project the job runs in)"
    )
  if not PROJECT_ID.match(cloud.project):
    raise ConfigError(
      f"--beam_options project={cloud.project}: not a Google Cloud project id (lower case, "
      "starting with a letter; the id, not the project's number or name)"
    )
  if not cloud.region:
    raise ConfigError(
      "--beam_runner=DataflowRunner needs --beam_options region=REGION (e.g. us-central1, "
      "where the workers run: near the bucket)"
    )
  for name in ("temp_location", "staging_location"):
    value = getattr(cloud, name)
    if value is None and name == "staging_location":
      continue
    if value is None or not GCS_URL.match(value):
      raise ConfigError(
        f"--beam_runner=DataflowRunner needs --beam_options {name}=gs://BUCKET/tmp"
        + (f", not {value}" if value else "")
        + ": Dataflow keeps its files in a bucket"
      )
  if not GCS_URL.match(data_dir.rstrip("/") + "/"):
    raise ConfigError(
      f"--data_dir={data_dir}: Dataflow's workers write the records and cannot reach this "
      "machine's disk; pass --data_dir=gs://BUCKET/PATH"
    )
  worker = options.view_as(WorkerOptions)
  if not (worker.sdk_container_image or worker.worker_harness_container_image):
    raise ConfigError(
      "--beam_runner=DataflowRunner: the workers open each MIDI file at its path under "
      "--manual_dir, which only this machine has, and need mtx: pass --beam_options "
      "sdk_container_image=IMAGE, mtx's image (launch/container.md) with the corpus copied in "
      "at that same path (setup_file alone brings mtx, not the files)"
    )


def _check_portable(options, runner_name: str, given: set[str]) -> None:
  """Flink, Spark and a job server of one's own: where the job goes, and workers that have
  mtx and see the corpus (a Docker worker sees only its image's files). A local master
  ([local], [auto], local[N]) runs the workers in this process (Beam's LOOPBACK) unless told
  otherwise: nothing more is needed there."""
  # pylint: disable=import-outside-toplevel
  from apache_beam.options.pipeline_options import (
    FlinkRunnerOptions,
    PortableOptions,
    SparkRunnerOptions,
    WorkerOptions,
  )
  from apache_beam.options.pipeline_options_validator import PipelineOptionsValidator

  local = False
  if runner_name == "FlinkRunner":
    if "flink_master" not in given:
      raise ConfigError(
        "--beam_runner=FlinkRunner needs --beam_options flink_master=HOST:PORT (the Flink "
        "JobManager's REST address, usually port 8081; [local] for one in this process)"
      )
    flink = options.view_as(FlinkRunnerOptions)
    local = flink.flink_master in ("[local]", "[auto]")
    if flink.flink_submit_uber_jar and local:
      raise ConfigError(
        "--beam_options flink_submit_uber_jar needs flink_master=http://HOST:PORT, the "
        f"cluster to submit to, not {flink.flink_master}"
      )
  elif runner_name == "SparkRunner":
    if "spark_master_url" not in given:
      raise ConfigError(
        "--beam_runner=SparkRunner needs --beam_options spark_master_url=spark://HOST:7077 "
        "(local[N] for one in this process)"
      )
    spark = options.view_as(SparkRunnerOptions)
    local = re.match(r"^local(\[.+\])?$", spark.spark_master_url) is not None
    if spark.spark_submit_uber_jar and not spark.spark_rest_url:
      raise ConfigError(
        "--beam_options spark_submit_uber_jar needs spark_rest_url=http://HOST:6066 (the "
        "Spark master's REST endpoint)"
      )
  elif not options.view_as(PortableOptions).job_endpoint:
    raise ConfigError(
      "--beam_runner=PortableRunner needs --beam_options job_endpoint=HOST:PORT (the job "
      "server's address), or pass FlinkRunner or SparkRunner"
    )
  portable = options.view_as(PortableOptions)
  # Beam's own check of the environment options (PROCESS needs process_command, ...).
  errors = PipelineOptionsValidator(options, None).validate_environment_options(portable)
  if errors:
    raise ConfigError(f"--beam_options: {errors[0]}")
  if options.view_as(WorkerOptions).sdk_container_image and not portable.environment_config:
    raise ConfigError(
      f"--beam_options sdk_container_image is read by Dataflow only; {runner_name}'s "
      "workers take environment_type=DOCKER with environment_config=IMAGE"
    )
  kind = (portable.environment_type or ("LOOPBACK" if local else "DOCKER")).upper()
  image = portable.environment_config or portable.lookup_environment_option(
    "docker_container_image"
  )
  if kind == "DOCKER" and not image:
    raise ConfigError(
      f"--beam_runner={runner_name}: the workers would run Beam's default SDK container, "
      f"which has neither mtx nor the corpus; pass --beam_options {PORTABLE_WORKERS_WITH_MTX}"
    )
