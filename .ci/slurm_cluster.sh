#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for the tests that submit real jobs (tests/slurm_cluster.py).
#
#   .ci/slurm_cluster.sh install      Debian's slurm-wlm and munge (root; nothing to do when present)
#   .ci/slurm_cluster.sh start DIR    munged, slurmctld and slurmd with their state under DIR; prints SLURM_CONF=DIR/slurm.conf
#   .ci/slurm_cluster.sh stop DIR     cancels the cluster's jobs, stops its three daemons, kills what is left of its jobs
#
# The node is this machine as `slurmd -C` sees it (its CPUs and memory), one partition `debug`, jobs run as the
# user who started the daemons (root on CI). The daemons talk to each other through 127.0.0.1, on two free ports,
# but listen on every address of the machine, as SLURM's daemons do (slurm.conf has no listen address): the
# cluster's munge key (DIR/munge, readable by root only) is what keeps others out. ClusterName=meps-test marks
# the cluster as one of these (tests/slurm_cluster.py reuses no other). No accounting database:
# `squeue` and `scontrol show job` say what a job does, `sacct` does not work. A requeued job is held by
# SLURM for a while before it starts again; `scontrol update JobId=N StartTime=now` lets it go at once.
set -euo pipefail

command=${1:-}
dir=${2:-}

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

wait_for() {  # wait_for SECONDS WHAT COMMAND...: until COMMAND succeeds, or one line and exit 1
    local seconds=$1 what=$2
    shift 2
    for _ in $(seq $((seconds * 10))); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "slurm_cluster: $what did not come up within ${seconds} s (logs: $dir/log)" >&2
    return 1
}

case "$command" in
install)
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null; then
        exit 0
    fi
    if [ "$(id -u)" != 0 ]; then
        echo "slurm_cluster: installing slurm-wlm and munge needs root" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=120 update -qq
    apt-get -o DPkg::Lock::Timeout=120 install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
    ;;
start)
    [ -n "$dir" ] || { echo "usage: $0 start DIR" >&2; exit 2; }
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    mkdir -p "$dir/state" "$dir/spool" "$dir/log" "$dir/munge"
    chmod 0700 "$dir/munge"
    head -c 1024 /dev/urandom >"$dir/munge/munge.key"
    chmod 0400 "$dir/munge/munge.key"
    node=$(hostname -s)
    # this machine's CPUs and memory, as slurmd itself reads them (a node that claims more is drained)
    hardware=$(slurmd -C | head -1 | tr ' ' '\n' | grep -E '^(CPUs|Boards|SocketsPerBoard|CoresPerSocket|ThreadsPerCore|RealMemory)=' | tr '\n' ' ')
    user=$(id -un)
    cat >"$dir/slurm.conf" <<EOF
ClusterName=meps-test
SlurmctldHost=$node(127.0.0.1)
SlurmUser=$user
SlurmdUser=$user
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
MpiDefault=none
ReturnToService=2
JobRequeue=1
KillWait=30
MinJobAge=3600
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
NodeName=$node NodeAddr=127.0.0.1 $hardware State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
    munged --force --socket="$dir/munge/munge.socket" --key-file="$dir/munge/munge.key" \
        --pid-file="$dir/munge/munged.pid" --log-file="$dir/log/munged.log" --seed-file="$dir/munge/seed" ||
        { echo "slurm_cluster: munged did not start (logs: $dir/log)" >&2; exit 1; }
    export SLURM_CONF=$dir/slurm.conf
    slurmctld || { echo "slurm_cluster: slurmctld did not start (logs: $dir/log)" >&2; exit 1; }
    wait_for 20 slurmctld scontrol ping
    slurmd || { echo "slurm_cluster: slurmd did not start (logs: $dir/log)" >&2; exit 1; }
    wait_for 30 "the node" bash -c 'sinfo -h -o %T | grep -qx idle'
    echo "SLURM_CONF=$dir/slurm.conf"
    ;;
stop)
    [ -n "$dir" ] || { echo "usage: $0 stop DIR" >&2; exit 2; }
    dir=$(cd "$dir" 2>/dev/null && pwd || echo "$dir")
    conf=$dir/slurm.conf
    export SLURM_CONF=$conf
    # 1. its jobs: cancelled, and gone from the queue once their steps ended (SIGKILL after KillWait)
    if [ -f "$conf" ] && timeout 10 scontrol ping >/dev/null 2>&1; then
        kill_wait=$(sed -n 's/^KillWait=//p' "$conf")
        timeout 10 scancel --full --user="$(id -un)" >/dev/null 2>&1 || true
        deadline=$((SECONDS + ${kill_wait:-30} + 5))
        while [ -n "$(timeout 10 squeue -h -o %i 2>/dev/null)" ] && [ "$SECONDS" -lt "$deadline" ]; do
            sleep 0.2
        done
    fi
    # 2. its daemons
    for pidfile in "$dir/slurmd.pid" "$dir/slurmctld.pid" "$dir/munge/munged.pid"; do
        if [ -s "$pidfile" ]; then
            kill "$(cat "$pidfile")" 2>/dev/null || true
        fi
    done
    for pidfile in "$dir/slurmd.pid" "$dir/slurmctld.pid" "$dir/munge/munged.pid"; do  # gone within 10 s
        for _ in $(seq 100); do
            [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null || break
            sleep 0.1
        done
    done
    # 3. what is left of its jobs: a job step's slurmstepd ignores SIGTERM and outlives slurmd, holding its
    # processes (and their CPUs); those of this cluster only (SLURM_CONF in their environment), with every descendant
    descendants() { local child; for child in $(pgrep -P "$1"); do descendants "$child"; echo "$child"; done; }
    for pid in $(pgrep -x slurmstepd); do
        if { tr '\0' '\n' <"/proc/$pid/environ"; } 2>/dev/null | grep -qxF "SLURM_CONF=$conf"; then
            kill -9 $(descendants "$pid") "$pid" 2>/dev/null || true
        fi
    done
    ;;
*)
    echo "usage: $0 install | start DIR | stop DIR" >&2
    exit 2
    ;;
esac
