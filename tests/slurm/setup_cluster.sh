#!/usr/bin/env bash
# Start a real single-node Slurm cluster on this machine, without systemd, for
# tests/test_slurm.py: munged, slurmctld and slurmd as plain daemons, no accounting, no
# cgroups. Needs root. Idempotent: re-running it with the cluster up only re-checks it.
#
#   bash tests/slurm/setup_cluster.sh      # then: RECLAIM_SLURM=1 pytest tests/test_slurm.py
#   bash tests/slurm/teardown_cluster.sh
#
# The node is NodeName=localhost with this machine's CPUs and memory, in one default
# partition "debug". It also declares one stand-in GPU GRES backed by /dev/null (the gpu
# GRES plugin drops a GPU without a File): Slurm then accepts and records --gpus=1
# requests, so the test can check that a GPU job asks for a GPU. Such a job still runs on
# the CPU: task/none binds no device, and /dev/null is no CUDA device.
set -euo pipefail

fail() { echo "setup_cluster: FAIL: $*" >&2; exit 1; }
say() { echo "setup_cluster: $*"; }

[[ $(id -u) -eq 0 ]] || fail "must run as root (it installs packages and starts daemons)"

CONF_DIR=/etc/slurm              # jobsteps look for slurm.conf exactly here
CONF="$CONF_DIR/slurm.conf"
PARTITION="${RECLAIM_SLURM_PARTITION:-debug}"
WAIT_S="${RECLAIM_SLURM_WAIT_S:-60}"

# --- packages -----------------------------------------------------------------------------
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
    || ! command -v munged >/dev/null || ! command -v sbatch >/dev/null; then
  say "installing slurm-wlm and munge (apt)"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -q --no-install-recommends slurm-wlm munge >/tmp/reclaim-slurm-apt.log 2>&1; then
    apt-get update -q >>/tmp/reclaim-slurm-apt.log 2>&1 || fail "apt-get update failed (see /tmp/reclaim-slurm-apt.log)"
    apt-get install -y -q --no-install-recommends slurm-wlm munge >>/tmp/reclaim-slurm-apt.log 2>&1 \
      || fail "apt-get install slurm-wlm munge failed (see /tmp/reclaim-slurm-apt.log)"
  fi
fi
say "$(slurmctld -V)"

# --- munge --------------------------------------------------------------------------------
install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
install -d -o munge -g munge -m 0755 /run/munge
if [[ ! -s /etc/munge/munge.key ]]; then
  say "creating /etc/munge/munge.key"
  mungekey --create --keyfile /etc/munge/munge.key || fail "mungekey --create failed"
fi
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  say "munged already running"
else
  rm -f /run/munge/munged.pid
  runuser -u munge -- /usr/sbin/munged || fail "munged did not start (see /var/log/munge/munged.log)"
  for _ in $(seq 20); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.5; done
  munge -n | unmunge >/dev/null || fail "munge/unmunge round trip fails after starting munged"
  say "munged started (pid $(cat /run/munge/munged.pid))"
fi

# --- slurm.conf ---------------------------------------------------------------------------
# CPU topology and memory exactly as slurmd detects them, so the node is not drained for
# a mismatch (slurmd -C prints "NodeName=<host> CPUs=.. Boards=.. ... RealMemory=..").
hw="$(slurmd -C | head -1)" || fail "slurmd -C failed"
field() { sed -n "s/.*\b$1=\([0-9]*\).*/\1/p" <<<"$hw"; }
CPUS="$(field CPUs)"; SOCKETS="$(field SocketsPerBoard)"; CORES="$(field CoresPerSocket)"
THREADS="$(field ThreadsPerCore)"; MEM="$(field RealMemory)"
[[ -n $CPUS && -n $MEM && -n $SOCKETS && -n $CORES && -n $THREADS ]] \
  || fail "could not read CPUs/RealMemory from 'slurmd -C': $hw"

install -d -m 0755 "$CONF_DIR" /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/slurm
new_conf="$(cat <<CONF
# Written by reclaim tests/slurm/setup_cluster.sh: a single-node test cluster.
ClusterName=reclaim
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
# No cgroups (no systemd here), no accounting database.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
# Finished jobs stay visible to squeue for 5 minutes: snakemake's status checks use squeue.
MinJobAge=300
GresTypes=gpu
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$CPUS SocketsPerBoard=$SOCKETS CoresPerSocket=$CORES ThreadsPerCore=$THREADS RealMemory=$MEM Gres=gpu:1 State=UNKNOWN
PartitionName=$PARTITION Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
)"
new_gres="NodeName=localhost Name=gpu File=/dev/null"
changed=0
if [[ ! -f $CONF ]] || [[ "$(cat "$CONF")" != "$new_conf" ]]; then
  printf '%s\n' "$new_conf" >"$CONF.tmp" && mv "$CONF.tmp" "$CONF"; changed=1
fi
if [[ ! -f $CONF_DIR/gres.conf ]] || [[ "$(cat "$CONF_DIR/gres.conf")" != "$new_gres" ]]; then
  printf '%s\n' "$new_gres" >"$CONF_DIR/gres.conf.tmp" && mv "$CONF_DIR/gres.conf.tmp" "$CONF_DIR/gres.conf"
  changed=1
fi
say "$CONF: CPUs=$CPUS RealMemory=${MEM}MB partition=$PARTITION$([[ $changed -eq 1 ]] && echo ' (written)')"

# --- daemons ------------------------------------------------------------------------------
alive() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

if [[ $changed -eq 1 ]] && alive /run/slurm/slurmctld.pid; then
  say "config changed: restarting the running daemons"
  scontrol shutdown >/dev/null 2>&1 || true
  for _ in $(seq 40); do
    alive /run/slurm/slurmctld.pid || alive /run/slurm/slurmd.pid || break; sleep 0.5
  done
fi
if alive /run/slurm/slurmctld.pid; then
  say "slurmctld already running (pid $(cat /run/slurm/slurmctld.pid))"
else
  slurmctld || fail "slurmctld did not start (see /var/log/slurm/slurmctld.log)"
  say "slurmctld started"
fi
if alive /run/slurm/slurmd.pid; then
  say "slurmd already running (pid $(cat /run/slurm/slurmd.pid))"
else
  slurmd -N localhost || fail "slurmd did not start (see /var/log/slurm/slurmd.log)"
  say "slurmd started"
fi

# --- wait for the node --------------------------------------------------------------------
state=""
for _ in $(seq "$((WAIT_S * 2))"); do
  state="$(sinfo -h -n localhost -o %T 2>/dev/null | head -1 || true)"
  case "$state" in
    idle|mixed|allocated) break ;;
    inval*) break ;;  # a config mismatch: waiting does not help
    down*|drain*) scontrol update NodeName=localhost State=RESUME >/dev/null 2>&1 || true ;;
  esac
  sleep 0.5
done
case "$state" in
  idle|mixed|allocated) ;;
  *)
    tail -n 5 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
    fail "node localhost is '${state:-not reported}' after ${WAIT_S}s, not idle (sinfo; logs in" \
      "/var/log/slurm; a stale daemon keeps its old config: run teardown_cluster.sh first)"
    ;;
esac
say "ready: $(sinfo -h -o '%P %a %D %T %c cpus %m MB %G')"
