#!/usr/bin/env bash
# Stop the test cluster that tests/slurm/setup_cluster.sh started: slurmctld, slurmd and
# munged, each by the pid in its pid file. Leaves packages, config and state in place, so
# setup_cluster.sh can start it again. Safe to run when nothing is running.
set -uo pipefail

say() { echo "teardown_cluster: $*"; }
[[ $(id -u) -eq 0 ]] || { echo "teardown_cluster: FAIL: must run as root" >&2; exit 1; }

alive() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

stop() {  # stop <name> <pidfile>: SIGTERM, wait up to 10 s, then SIGKILL
  local name=$1 pidfile=$2 pid
  if ! alive "$pidfile"; then say "$name not running"; rm -f "$pidfile"; return 0; fi
  pid="$(cat "$pidfile")"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
  rm -f "$pidfile"
  say "$name stopped (pid $pid)"
}

# Cancel what is left in the queue, so a later setup does not resume old jobs.
if alive /run/slurm/slurmctld.pid && command -v scancel >/dev/null; then
  scancel --full --quiet --state=PENDING,RUNNING --user=root 2>/dev/null || true
fi
stop slurmd /run/slurm/slurmd.pid
stop slurmctld /run/slurm/slurmctld.pid
stop munged /run/munge/munged.pid
