"""Who a process is in a multi-host job: flags first, then the launchers' variables."""

from __future__ import annotations

import pytest

from mtx.errors import ConfigError
from mtx.train.distributed import settings_from


def test_flags_win_over_the_environment():
  env = {"MTX_COORDINATOR_ADDRESS": "other:1", "MTX_NUM_PROCESSES": "8", "MTX_PROCESS_ID": "7"}
  assert settings_from("host:1234", 2, 1, env) == {
    "coordinator_address": "host:1234",
    "num_processes": 2,
    "process_id": 1,
  }


def test_the_environment_and_a_kubernetes_indexed_job():
  env = {
    "MTX_COORDINATOR_ADDRESS": "job-0.svc:1234",
    "MTX_NUM_PROCESSES": "4",
    "JOB_COMPLETION_INDEX": "3",
  }
  assert settings_from(None, None, None, env) == {
    "coordinator_address": "job-0.svc:1234",
    "num_processes": 4,
    "process_id": 3,
  }
  assert settings_from(None, None, None, {}) is None  # a single process


@pytest.mark.parametrize(
  "args, message",
  [
    (("host:1", None, None), "process count"),
    (("host:1", 2, 2), "not in 0..1"),
    (("host", 2, 0), "HOST:PORT"),
    ((None, 2, 0), "coordinator_address"),
  ],
)
def test_incomplete_settings_are_named(args, message):
  with pytest.raises(ConfigError, match=message):
    settings_from(*args, environ={})


def test_a_jobset_pod_counts_the_pods_of_the_jobs_before_it():
  # Slice 1 of two TPU slices with 4 hosts each, third host of its slice.
  env = {
    "MTX_COORDINATOR_ADDRESS": "run-slice-0-0.run:8476",
    "MTX_NUM_PROCESSES": "8",
    "MTX_JOB_INDEX": "1",
    "MTX_PROCESSES_PER_JOB": "4",
    "JOB_COMPLETION_INDEX": "2",
  }
  assert settings_from(None, None, None, env)["process_id"] == 6
  with pytest.raises(ConfigError, match="not in 0..7"):
    settings_from(None, None, None, env | {"MTX_JOB_INDEX": "2"})
  with pytest.raises(ConfigError, match="MTX_PROCESSES_PER_JOB"):
    settings_from(None, None, None, {k: v for k, v in env.items() if "PER_JOB" not in k})
  # An explicit id wins over the pod's index.
  assert settings_from(None, None, None, env | {"MTX_PROCESS_ID": "0"})["process_id"] == 0


def test_auto_detection_is_asked_for_by_one_value_only():
  from mtx.train.distributed import auto_requested

  assert auto_requested({"MTX_DISTRIBUTED": "auto"}) and not auto_requested({})
  with pytest.raises(ConfigError, match="MTX_DISTRIBUTED"):
    auto_requested({"MTX_DISTRIBUTED": "yes"})
