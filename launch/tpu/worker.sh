#!/usr/bin/env bash
# mtx-train on one worker (host) of a Cloud TPU slice. `mtx-launch tpu run` starts it on every
# worker at once (`gcloud compute tpus tpu-vm ssh NAME --worker=all --command=...`):
#
#   bash mtx/launch/tpu/worker.sh --detach --restarts=3 --log_dir=mtx-logs -- \
#       --config=configs/NAME.py --workdir=gs://BUCKET/runs/NAME [more mtx-train flags]
#   bash mtx/launch/tpu/worker.sh --stop --log_dir=mtx-logs
#
# It runs from the checkout it lives in (so --config=configs/NAME.py resolves), in the
# virtualenv launch/tpu/setup.sh made ($MTX_VENV, default ~/mtx-venv), and appends mtx-train's
# output to LOG_DIR/worker-<id>.log. The worker id is $TPU_WORKER_ID, else $MTX_PROCESS_ID,
# else the VM's `agent-worker-number` metadata (0 where there is none).
#
# Joining the job: with no MTX_COORDINATOR_ADDRESS it sets MTX_DISTRIBUTED=auto, and mtx-train
# calls jax.distributed.initialize(), which finds the slice's workers (and the other slices'
# MEGASCALE_* settings) in the VM's metadata. Set MTX_COORDINATOR_ADDRESS, MTX_NUM_PROCESSES
# and MTX_PROCESS_ID to join some other way (tests/launch/test_tpu.py: two local processes).
#
# Restarts: mtx-train exiting non-zero (a crash, a worker lost) is restarted up to --restarts
# times, $MTX_RESTART_DELAY (10) seconds apart; it resumes from the workdir's latest checkpoint.
# Exit 0 ends the loop: training finished, or mtx-train was sent TERM (a preemption or
# maintenance event, `--stop`), saved a checkpoint and stopped. A TERM to this script is
# passed on to mtx-train and ends the loop too. $MTX_TRAIN_BIN replaces mtx-train (tests).
#
# --detach checks that no worker of this id is running, then starts the loop in its own
# session (setsid nohup) and returns. --stop sends TERM to the running loops and waits
# (--stop_wait seconds, 300) for them to save and end.
set -uo pipefail

usage="usage: worker.sh [--detach] [--restarts=N] [--log_dir=DIR] -- MTX_TRAIN_FLAGS...
       worker.sh --stop [--log_dir=DIR] [--stop_wait=SECONDS]"
restarts=3
log_dir="$HOME/mtx-logs"
detach=0
stop=0
stop_wait=300
args=("$@")
while (($#)); do
  case "$1" in
    --restarts=*) restarts="${1#*=}" ;;
    --log_dir=*) log_dir="${1#*=}" ;;
    --stop_wait=*) stop_wait="${1#*=}" ;;
    --detach) detach=1 ;;
    --stop) stop=1 ;;
    --) shift; break ;;
    *) echo "worker.sh: unknown argument '$1'; $usage" >&2; exit 2 ;;
  esac
  shift
done
for count in "$restarts" "$stop_wait"; do
  if ! [[ "$count" =~ ^[0-9]+$ ]]; then
    echo "worker.sh: '$count' is not a count; $usage" >&2
    exit 2
  fi
done
if ! mkdir -p "$log_dir" || ! log_dir="$(cd "$log_dir" && pwd)"; then
  echo "worker.sh: cannot make the log folder $log_dir" >&2
  exit 2
fi

running_pid() {  # the pid in a pid file, if that process is alive
  local pid
  pid="$(cat "$1" 2>/dev/null)" || return 1
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

if ((stop)); then
  pids=()
  for pid_file in "$log_dir"/worker-*.pid; do
    if pid="$(running_pid "$pid_file")"; then
      echo "$(hostname): stopping ${pid_file##*/} (pid $pid): mtx-train saves, then stops"
      kill -TERM "$pid"
      pids+=("$pid")
    fi
  done
  if ((${#pids[@]} == 0)); then
    echo "$(hostname): no worker running (no live pid in $log_dir)"
    exit 0
  fi
  for ((waited = 0; waited < stop_wait; waited++)); do
    alive=0
    for pid in "${pids[@]}"; do
      if kill -0 "$pid" 2>/dev/null; then alive=1; fi
    done
    if ((alive == 0)); then
      echo "$(hostname): stopped"
      exit 0
    fi
    sleep 1
  done
  echo "$(hostname): still running after ${stop_wait}s (see $log_dir); kill -9 them to force" >&2
  exit 1
fi

if [[ -n "${TPU_WORKER_ID:-}" ]]; then
  worker="$TPU_WORKER_ID"
elif [[ -n "${MTX_PROCESS_ID:-}" ]]; then
  worker="$MTX_PROCESS_ID"
else
  worker="$(curl -sf --max-time 5 -H Metadata-Flavor:Google \
    http://metadata.google.internal/computeMetadata/v1/instance/attributes/agent-worker-number \
    2>/dev/null)" || worker=0
fi
log="$log_dir/worker-$worker.log"
pid_file="$log_dir/worker-$worker.pid"

if pid="$(running_pid "$pid_file")"; then
  echo "worker.sh: worker $worker on $(hostname) is already running (pid $pid, log $log): " \
    "stop it first (mtx-launch tpu stop)" >&2
  exit 2
fi

if ((detach)); then
  # The same command without --detach, in its own session: it outlives the ssh session.
  rest=()
  for arg in "${args[@]}"; do
    if [[ "$arg" != --detach ]]; then rest+=("$arg"); fi
  done
  setsid nohup bash "${BASH_SOURCE[0]}" "${rest[@]}" >>"$log" 2>&1 </dev/null &
  echo "$(hostname): worker $worker started (pid $!); log: $log"
  exit 0
fi

echo "$$" >"$pid_file"
trap 'rm -f "$pid_file"' EXIT
exec >>"$log" 2>&1

cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 2
venv="${MTX_VENV:-$HOME/mtx-venv}"
if [[ -f "$venv/bin/activate" ]]; then
  # shellcheck disable=SC1091  # made on the worker by setup.sh
  source "$venv/bin/activate"
fi
if [[ -z "${MTX_COORDINATOR_ADDRESS:-}" ]]; then
  export MTX_DISTRIBUTED=auto
fi
train="${MTX_TRAIN_BIN:-mtx-train}"
delay="${MTX_RESTART_DELAY:-10}"

say() { echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) worker $worker ($(hostname)): $*"; }

stopping=0
child=""
# shellcheck disable=SC2317  # called by the trap
on_term() {
  stopping=1
  say "TERM: asking mtx-train to save a checkpoint and stop"
  if [[ -n "$child" ]]; then kill -TERM "$child" 2>/dev/null; fi
}
trap on_term TERM INT

attempt=0
while :; do
  attempt=$((attempt + 1))
  say "attempt $attempt of $((restarts + 1)): $train $*"
  "$train" "$@" &
  child=$!
  status=0
  # `wait` returns when a trapped signal arrives; wait again until mtx-train has ended.
  wait "$child" || status=$?
  while kill -0 "$child" 2>/dev/null; do
    status=0
    wait "$child" || status=$?
  done
  child=""
  if ((stopping)); then
    say "stopped (mtx-train exited with status $status)"
    exit "$status"
  fi
  if ((status == 0)); then
    say "mtx-train exited with status 0 (finished, or stopped by TERM after saving); done"
    exit 0
  fi
  if ((attempt > restarts)); then
    say "mtx-train failed $attempt times (last status $status); giving up"
    exit "$status"
  fi
  say "mtx-train exited with status $status; restart $attempt of $restarts in ${delay}s" \
    "(it resumes from the workdir's latest checkpoint)"
  sleep "$delay" &
  wait $! || true
  if ((stopping)); then
    say "stopped before restarting"
    exit 0
  fi
done
