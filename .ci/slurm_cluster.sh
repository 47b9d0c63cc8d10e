#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for the tests that submit real jobs (tests/slurm_cluster.py).
#
#   .ci/slurm_cluster.sh install      Debian's slurm-wlm and munge (root; nothing to do when present)
#   .ci/slurm_cluster.sh start DIR    munged, slurmctld and slurmd with their state under DIR; prints SLURM_CONF=DIR/slurm.conf
#   .ci/slurm_cluster.sh stop DIR     stops the three daemons started in DIR
#
# The node is this machine as `slurmd -C` sees it (its CPUs and memory), reached on 127.0.0.1 only, one
# partition `debug`, jobs run as the user who started the daemons (root on CI). No accounting database:
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
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
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
        --pid-file="$dir/munge/munged.pid" --log-file="$dir/log/munged.log" --seed-file="$dir/munge/seed"
    export SLURM_CONF=$dir/slurm.conf
    slurmctld
    wait_for 20 slurmctld scontrol ping
    slurmd
    wait_for 30 "the node" bash -c 'sinfo -h -o %T | grep -qx idle'
    echo "SLURM_CONF=$dir/slurm.conf"
    ;;
stop)
    [ -n "$dir" ] || { echo "usage: $0 stop DIR" >&2; exit 2; }
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
    ;;
*)
    echo "usage: $0 install | start DIR | stop DIR" >&2
    exit 2
    ;;
esac
