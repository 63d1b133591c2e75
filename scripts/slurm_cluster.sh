#!/usr/bin/env bash
# A single-node SLURM cluster on this machine: this host is the controller and the only
# compute node. For trying launch/slurm/*.sbatch and for tests/launch/test_slurm.py.
#
#   scripts/slurm_cluster.sh start        # install if missing, start, wait until the node is idle
#   eval "$(scripts/slurm_cluster.sh env)"  # SLURM_CONF for sbatch/squeue/scancel in this shell
#   scripts/slurm_cluster.sh status
#   scripts/slurm_cluster.sh stop
#   scripts/slurm_cluster.sh foreground   # start, then stop on Ctrl-C or SIGTERM
#
# Debian's slurm-wlm and munge (apt-get, as root, where missing). The configuration is
# the least that runs jobs: no cgroups (proctrack/linuxproc, task/none), no accounting,
# select/cons_tres over the node's real CPUs and memory (`slurmd -C`), one partition
# `debug`. Everything it writes lies under MTX_SLURM_DIR (default /tmp/mtx-slurm),
# slurm.conf included; /etc/slurm is left alone, so commands need SLURM_CONF (`env`).
# The daemons run as root; munged as the munge user, on its default socket.
set -euo pipefail

STATE_DIR="${MTX_SLURM_DIR:-/tmp/mtx-slurm}"
CONF="$STATE_DIR/slurm.conf"
MUNGE_SOCKET_DIR=/run/munge
export SLURM_CONF="$CONF"

die() {
  echo "slurm_cluster.sh: $*" >&2
  exit 1
}

have_slurm() {
  command -v slurmctld >/dev/null && command -v slurmd >/dev/null &&
    command -v sbatch >/dev/null && command -v munged >/dev/null
}

install_packages() {
  have_slurm && return 0
  [[ "$(id -u)" == 0 ]] || die "slurm-wlm and munge are not installed and this is not root: apt-get install slurm-wlm munge as root"
  command -v apt-get >/dev/null || die "slurm-wlm and munge are not installed and there is no apt-get here"
  echo "installing slurm-wlm and munge (apt-get)" >&2
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends slurm-wlm munge >"$STATE_DIR/apt.log" 2>&1; then
    apt-get update >>"$STATE_DIR/apt.log" 2>&1 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends slurm-wlm munge \
      >>"$STATE_DIR/apt.log" 2>&1 || die "apt-get install slurm-wlm munge failed: see $STATE_DIR/apt.log"
  fi
}

write_conf() {
  local host node_line node_name
  host="$(hostname -s)"
  # This node as slurmd sees it (CPUs, sockets, cores, memory), so SLURM never refuses it
  # for claiming more than it has.
  node_line="$(slurmd -C | head -n 1)"
  [[ "$node_line" == NodeName=* ]] || die "slurmd -C did not describe this node: $node_line"
  node_name="${node_line%% *}"
  node_name="${node_name#NodeName=}"
  mkdir -p "$STATE_DIR/ctld" "$STATE_DIR/spool"
  cat >"$CONF" <<EOF
# Written by scripts/slurm_cluster.sh: a single-node cluster on $host.
ClusterName=mtx
SlurmctldHost=$host
SlurmUser=root
SlurmctldPort=${MTX_SLURMCTLD_PORT:-6817}
SlurmdPort=${MTX_SLURMD_PORT:-6818}
AuthType=auth/munge
StateSaveLocation=$STATE_DIR/ctld
SlurmdSpoolDir=$STATE_DIR/spool
SlurmctldPidFile=$STATE_DIR/slurmctld.pid
SlurmdPidFile=$STATE_DIR/slurmd.pid
SlurmctldLogFile=$STATE_DIR/slurmctld.log
SlurmdLogFile=$STATE_DIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
JobRequeue=1
KillWait=30
$node_line State=UNKNOWN
PartitionName=debug Nodes=$node_name Default=YES MaxTime=INFINITE State=UP
EOF
}

munge_works() {
  munge -n 2>/dev/null | unmunge >/dev/null 2>&1
}

start_munge() {
  munge_works && return 0
  mkdir -p "$MUNGE_SOCKET_DIR" /var/log/munge /var/lib/munge
  chown munge:munge "$MUNGE_SOCKET_DIR" /var/log/munge /var/lib/munge
  chmod 0755 "$MUNGE_SOCKET_DIR"
  [[ -s /etc/munge/munge.key ]] || {
    mungekey --create --keyfile=/etc/munge/munge.key
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
  }
  runuser -u munge -- /usr/sbin/munged
  for _ in $(seq 50); do
    munge_works && return 0
    sleep 0.1
  done
  die "munged started but munge -n | unmunge fails: see /var/log/munge/munged.log"
}

pid_alive() {
  [[ -s "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

node_state() {
  sinfo -h -N -o '%T' 2>/dev/null | head -n 1
}

start() {
  [[ "$(id -u)" == 0 ]] || die "start needs root (slurmd runs jobs as their users)"
  mkdir -p "$STATE_DIR"
  install_packages
  write_conf
  start_munge
  pid_alive "$STATE_DIR/slurmctld.pid" || slurmctld -f "$CONF"
  pid_alive "$STATE_DIR/slurmd.pid" || slurmd -f "$CONF"
  local state=""
  for _ in $(seq 120); do
    state="$(node_state)"
    case "$state" in
      idle | mixed | allocated) echo "SLURM up: node $(hostname -s) $state; SLURM_CONF=$CONF"; return 0 ;;
      down* | drain*) scontrol update nodename="$(hostname -s)" state=resume >/dev/null 2>&1 || true ;;
    esac
    sleep 0.5
  done
  die "the node did not become idle (state: ${state:-none}): see $STATE_DIR/slurmctld.log and $STATE_DIR/slurmd.log"
}

stop() {
  local name file pid
  # Jobs first, while slurmctld still answers: a step whose controller is gone keeps its
  # slurmstepd retrying, and slurmd waits for it.
  if pid_alive "$STATE_DIR/slurmctld.pid"; then
    scancel --full --user "$(id -un)" >/dev/null 2>&1 || true
    for _ in $(seq 100); do
      [[ -z "$(squeue -h 2>/dev/null)" ]] && break
      sleep 0.1
    done
  fi
  for name in slurmd slurmctld; do
    file="$STATE_DIR/$name.pid"
    if pid_alive "$file"; then
      pid="$(cat "$file")"
      kill "$pid"
      for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
      done
      kill -9 "$pid" 2>/dev/null || true  # still there after 10 s: it would hold its port
    fi
    rm -f "$file"
  done
  # munged stays: other SLURM or munge users on the host may share it.
  echo "SLURM stopped"
}

status() {
  if pid_alive "$STATE_DIR/slurmctld.pid" && pid_alive "$STATE_DIR/slurmd.pid"; then
    sinfo
    squeue
  else
    echo "SLURM is not running (state in $STATE_DIR)"
    return 1
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  env) echo "export SLURM_CONF=$CONF" ;;
  foreground)
    start
    trap 'stop; exit 0' INT TERM
    echo "Ctrl-C stops it"
    while pid_alive "$STATE_DIR/slurmctld.pid" && pid_alive "$STATE_DIR/slurmd.pid"; do
      sleep 2
    done
    die "a SLURM daemon exited: see $STATE_DIR/*.log"
    ;;
  *) die "usage: scripts/slurm_cluster.sh start|stop|status|env|foreground" ;;
esac
