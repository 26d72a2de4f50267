#!/usr/bin/env bash
# A single-node Slurm for the slow tests (tests/slurm_cluster.py): munged, slurmctld and slurmd of
# Debian's slurm-wlm + munge, started as root, with a generated slurm.conf: one node "localhost"
# with this machine's CPUs and memory, one partition "debug", no GPUs, no accounting database
# (sacct answers "accounting storage is disabled", as on a small cluster). Idempotent: a running
# cluster is left as it is. Exits non-zero with the reason when it cannot start one.
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "slurm-up: not root: cannot start Slurm's daemons" >&2; exit 1; }
for binary in munged slurmctld slurmd sinfo; do
    command -v "$binary" >/dev/null || [ -x "/usr/sbin/$binary" ] \
        || { echo "slurm-up: $binary is not installed (apt-get install slurm-wlm munge)" >&2; exit 1; }
done
PATH="$PATH:/usr/sbin"
if timeout 5 sinfo -h -N -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
    echo "slurm-up: already running: $(sinfo -h -N -o '%N %T %c CPUs %m MB')"
    exit 0
fi

conf=/etc/slurm/slurm.conf
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge /var/lib/munge /var/log/munge
cpus=$(nproc)
memory=$(( $(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024 * 95 / 100 ))  # MB, a margin below the total
cat > "$conf" <<CONF
# Written by .ci/slurm-up.sh: one node, no GPUs, no accounting storage.
ClusterName=ci
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
MinJobAge=300
SchedulerType=sched/backfill
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF

# munge: a key of its own if the package left none; the daemon as the munge user where it exists.
if [ ! -s /etc/munge/munge.key ]; then
    mkdir -p /etc/munge
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
fi
owner=root; id munge >/dev/null 2>&1 && owner=munge
chown "$owner" /etc/munge /etc/munge/munge.key /run/munge /var/lib/munge /var/log/munge
chmod 700 /etc/munge; chmod 400 /etc/munge/munge.key
if ! pgrep -x munged >/dev/null; then
    if [ "$owner" = munge ]; then runuser -u munge -- munged; else munged --force; fi
fi

pgrep -x slurmctld >/dev/null || slurmctld
pgrep -x slurmd >/dev/null || slurmd -N localhost
for _ in $(seq 60); do
    if timeout 5 sinfo -h -N -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
        echo "slurm-up: $(sinfo -h -N -o '%N %T %c CPUs %m MB')"
        exit 0
    fi
    sleep 0.5
done
echo "slurm-up: the node did not come up:" >&2
tail -n 5 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
exit 1
