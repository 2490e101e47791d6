#!/usr/bin/env bash
# cluster.sh start|stop DIR: a one-node Slurm cluster for the tests, with real munged, slurmctld and
# slurmd daemons started by hand (no systemd), all state under DIR, stopped by the PIDs in their pid
# files. `start` prints the SLURM_CONF path; exit 77 (skip) only when slurm-wlm/munge cannot be
# installed.
set -euo pipefail
action=$1
dir=$2

need_packages() {
    command -v slurmctld >/dev/null && command -v munged >/dev/null && return 0
    if [ "$(id -u)" -ne 0 ]; then
        echo "skip: slurm-wlm and munge are not installed and this is not root"
        exit 77
    fi
    (apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null 2>&1 ||
        { apt-get update -qq && apt-get install -y -qq --no-install-recommends slurm-wlm munge; }) \
        >/dev/null 2>&1 || { echo "skip: cannot install slurm-wlm munge"; exit 77; }
}

stop() {
    # Cancel this cluster's jobs first: slurmstepd and the job's processes outlive slurmd.
    if [ -f "$dir"/slurmctld.pid ] && kill -0 "$(cat "$dir"/slurmctld.pid)" 2>/dev/null; then
        export SLURM_CONF="$dir"/slurm.conf
        jobs=$(squeue -h -o %i 2>/dev/null || true)
        if [ -n "$jobs" ]; then
            # shellcheck disable=SC2086
            scancel $jobs 2>/dev/null || true
            for _ in $(seq 100); do
                [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break
                sleep 0.1
            done
        fi
    fi
    for f in "$dir"/slurmd.pid "$dir"/slurmctld.pid "$dir"/munge/munged.pid; do
        [ -f "$f" ] || continue
        pid=$(cat "$f")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
        rm -f "$f"
    done
}

start() {
    need_packages
    local host
    host=$(hostname -s)
    getent hosts "$host" >/dev/null || echo "127.0.0.1 $host" >>/etc/hosts
    mkdir -p "$dir"/munge "$dir"/spool "$dir"/state "$dir"/log
    chmod 0755 "$dir"
    rm -f "$dir"/munge/munge.key
    mungekey --create --keyfile="$dir"/munge/munge.key >/dev/null
    chown -R munge:munge "$dir"/munge
    chmod 0755 "$dir"/munge
    chmod 0400 "$dir"/munge/munge.key
    runuser -u munge -- munged --key-file="$dir"/munge/munge.key \
        --socket="$dir"/munge/munge.socket.2 --pid-file="$dir"/munge/munged.pid \
        --log-file="$dir"/munge/munged.log --seed-file="$dir"/munge/munge.seed
    local node
    node=$(slurmd -C | head -1)
    cat >"$dir"/slurm.conf <<CONF
ClusterName=qrecontest
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket.2
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldPort=$((6817 + RANDOM % 1000))
SlurmdPort=$((7817 + RANDOM % 1000))
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/log/jobcomp.txt
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=pmix
MailProg=/bin/true
ReturnToService=2
MinJobAge=3600
# Job ids name host-wide paths (PMIx's /tmp/spmix_appdir_<uid>_<job>.<step>, the scripts' exit
# files): clusters of tests running at the same time must not share them.
FirstJobId=$((1000 + (RANDOM * 32768 + RANDOM) % 60000000)) # below the default MaxJobId 67043328
SchedulerType=sched/backfill
$node
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
CONF
    export SLURM_CONF="$dir"/slurm.conf
    slurmctld -f "$SLURM_CONF"
    slurmd -f "$SLURM_CONF"
    for _ in $(seq 100); do
        state=$(sinfo -h -o %T 2>/dev/null || true)
        [ "$state" = "idle" ] && { echo "$SLURM_CONF"; return 0; }
        sleep 0.2
    done
    echo "slurm did not become idle (state '$state')" >&2
    tail -20 "$dir"/log/*.log >&2
    stop
    exit 1
}

case "$action" in
start) start ;;
stop) stop ;;
*) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
