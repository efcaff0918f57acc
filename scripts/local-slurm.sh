#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine (Debian slurm-wlm + munge), to test the workflow's
# cluster profile (profiles/slurm-local) for real. Needs root.
#   scripts/local-slurm.sh start   install if missing, configure, start munged/slurmctld/slurmd, wait for sinfo
#   scripts/local-slurm.sh stop    stop the daemons this script started (by their pid files)
set -euo pipefail
STATE=/var/run/local-slurm
action=${1:-start}

start() {
    if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq slurm-wlm munge >/dev/null
    fi
    mkdir -p "$STATE" /run/munge /var/log/munge /var/lib/munge /var/log/slurm /var/spool/slurmctld /var/spool/slurmd
    [ -s /etc/munge/munge.key ] || { dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none; }
    chown munge:munge /run/munge /var/log/munge /var/lib/munge /etc/munge /etc/munge/munge.key
    chmod 700 /etc/munge
    chmod 400 /etc/munge/munge.key
    if ! pgrep -x munged >/dev/null; then
        su -s /bin/sh munge -c munged  # as root munged refuses ("Logfile is insecure")
    fi
    local host cpus mem
    host=$(hostname)
    cpus=$(nproc)
    mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
    mkdir -p /etc/slurm
    cat > /etc/slurm/slurm.conf <<CONF
ClusterName=local
SlurmctldHost=$host
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=main Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
    pgrep -x slurmctld >/dev/null || slurmctld
    pgrep -x slurmd >/dev/null || slurmd
    for _ in $(seq 60); do
        if sinfo -h -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
            sinfo
            return 0
        fi
        sleep 1
    done
    echo "local-slurm: the node did not come up; see /var/log/slurm/" >&2
    return 1
}

stop() {
    for daemon in slurmd slurmctld; do
        [ -f "$STATE/$daemon.pid" ] && kill "$(cat "$STATE/$daemon.pid")" 2>/dev/null || true
    done
}

case "$action" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
