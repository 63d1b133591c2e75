"""Joining a multi-host job: `jax.distributed.initialize` from flags or the environment.

Where the processes learn who they are, in order:
1. flags: --coordinator_address=HOST:PORT --num_processes=N --process_id=I;
2. MTX_COORDINATOR_ADDRESS, MTX_NUM_PROCESSES and MTX_PROCESS_ID: what the
   manifests in launch/k8s set. A pod of a Kubernetes indexed Job has no
   MTX_PROCESS_ID but JOB_COMPLETION_INDEX (set by Kubernetes); a pod of a
   JobSet with several Jobs (TPU slices) adds MTX_JOB_INDEX (its Job's index,
   from the label jobset.sigs.k8s.io/job-index) and MTX_PROCESSES_PER_JOB, so
   its id is MTX_JOB_INDEX * MTX_PROCESSES_PER_JOB + JOB_COMPLETION_INDEX;
3. a cluster jax detects itself: SLURM (srun with more than one task), Cloud
   TPU pods, MPI; `jax.distributed.initialize()` reads their variables.
   MTX_DISTRIBUTED=auto (set by launch/tpu's worker script) asks for that
   detection where mtx sees no variable of its own (a Cloud TPU VM's workers
   learn their peers from the VM's metadata server).
Otherwise the run is a single process. On CPU, cross-process collectives go
through gloo (`jax_cpu_collectives_implementation`), so a multi-process job
runs on one machine without accelerators, as the tests do.
"""

from __future__ import annotations

import os

from mtx.errors import ConfigError


def _cluster_detected() -> bool:
  if int(os.environ.get("SLURM_NTASKS", "1") or 1) > 1 and "SLURM_JOB_ID" in os.environ:
    return True
  if os.environ.get("TPU_WORKER_HOSTNAMES", "").count(",") >= 1:
    return True
  return int(os.environ.get("OMPI_COMM_WORLD_SIZE", "1") or 1) > 1


def settings_from(
  coordinator_address: str | None,
  num_processes: int | None,
  process_id: int | None,
  environ=os.environ,
) -> dict | None:
  """The explicit settings (flags first, then MTX_* variables), or None."""
  address = coordinator_address or environ.get("MTX_COORDINATOR_ADDRESS")
  if not address:
    if num_processes or process_id is not None:
      raise ConfigError("--num_processes/--process_id need --coordinator_address=HOST:PORT")
    return None
  count = num_processes or environ.get("MTX_NUM_PROCESSES")
  index = process_id if process_id is not None else environ.get("MTX_PROCESS_ID")
  try:
    if index is None and "JOB_COMPLETION_INDEX" in environ:
      index = _pod_index(environ)
    count, index = int(count), int(index)
  except (TypeError, ValueError):
    raise ConfigError(
      f"a multi-process run at {address} needs the process count and this "
      f"process's id (--num_processes and --process_id, or MTX_NUM_PROCESSES "
      f"and MTX_PROCESS_ID); got {count!r} and {index!r}"
    ) from None
  if count < 1 or not 0 <= index < count:
    raise ConfigError(f"process id {index} is not in 0..{count - 1}")
  if ":" not in address:
    raise ConfigError(f"the coordinator address {address!r} must be HOST:PORT")
  return {"coordinator_address": address, "num_processes": count, "process_id": index}


def _pod_index(environ) -> int:
  """A Kubernetes pod's process id: its index in its Job, after the pods of the Jobs before
  (a JobSet's replicated Job, one Job per TPU slice)."""
  job_index = environ.get("MTX_JOB_INDEX")
  if job_index is None:
    return int(environ["JOB_COMPLETION_INDEX"])
  per_job = environ.get("MTX_PROCESSES_PER_JOB")
  if per_job is None:
    raise ConfigError("MTX_JOB_INDEX is set without MTX_PROCESSES_PER_JOB (pods in each Job)")
  return int(job_index) * int(per_job) + int(environ["JOB_COMPLETION_INDEX"])


def auto_requested(environ=os.environ) -> bool:
  """MTX_DISTRIBUTED=auto: let jax detect the cluster (a Cloud TPU VM's metadata)."""
  value = environ.get("MTX_DISTRIBUTED", "")
  if value not in ("", "auto"):
    raise ConfigError(f"MTX_DISTRIBUTED={value!r}: the only value is 'auto' (or unset it)")
  return value == "auto"


def initialize(
  coordinator_address: str | None = None,
  num_processes: int | None = None,
  process_id: int | None = None,
) -> bool:
  """Joins the job if there is one; returns whether jax.distributed was initialized."""
  import jax

  settings = settings_from(coordinator_address, num_processes, process_id)
  if settings is None and not (_cluster_detected() or auto_requested()):
    return False
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  # JAX's preemption service takes SIGTERM for itself (its C++ handler replaces mtx-train's),
  # so a requeue or scancel signal would be swallowed; the loop agrees on a stop itself.
  jax.config.update("jax_enable_preemption_service", False)
  if settings is None:
    jax.distributed.initialize()
  elif settings["num_processes"] == 1:
    return False
  else:
    jax.distributed.initialize(**settings)
  return True
