#!/usr/bin/env bash
# A single-node Slurm for the slow tests (tests/slurm_cluster.py): munged, slurmctld and slurmd of
# Debian's slurm-wlm + munge, started as root, with a generated slurm.conf: one node "localhost"
# with this machine's CPUs and memory, one partition "debug", no GPUs, no accounting database
# (sacct answers "accounting storage is disabled", as on a small cluster). Idempotent: a running
# cluster is left as it is. Exits non-zero with the reason, and the daemons' last log lines, when
# it cannot start one.
#
# Its state, spool, logs and pid files live in directories named after its ClusterName: slurmctld
# refuses to start ("CLUSTER NAME MISMATCH") on a StateSaveLocation another cluster left behind,
# so a shared default such as /var/spool/slurmctld could keep it down. A fresh start also begins
# with an empty state: jobs of an earlier run of this cluster do not come back.
set -euo pipefail
cluster=mbmt-ci
state=/var/spool/slurm-$cluster
logs=/var/log/slurm-$cluster
daemon_logs=("$logs/slurmctld.log" "$logs/slurmd.log" /var/log/munge/munged.log)

why() {  # the reason, then the end of each daemon's log, on stderr; exit 1
    echo "slurm-up: $1" >&2
    for log in "${daemon_logs[@]}"; do
        if [ -s "$log" ]; then echo "--- last lines of $log:" >&2; tail -n 15 "$log" >&2; fi
    done
    exit 1
}

[ "$(id -u)" = 0 ] || why "not root: cannot start Slurm's daemons"
for binary in munged slurmctld slurmd sinfo; do
    command -v "$binary" >/dev/null || [ -x "/usr/sbin/$binary" ] \
        || why "$binary is not installed (apt-get install slurm-wlm munge)"
done
PATH="$PATH:/usr/sbin"
node_up() { timeout 5 sinfo -h -N -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; }
if node_up; then
    echo "slurm-up: already running: $(sinfo -h -N -o '%N %T %c CPUs %m MB')"
    exit 0
fi

if ! pgrep -x slurmctld >/dev/null; then
    # A new cluster: nothing of an earlier one's jobs or node states, and logs of this start alone.
    rm -rf "$state" "$logs"
fi
conf=/etc/slurm/slurm.conf
mkdir -p /etc/slurm "$state/ctld" "$state/d" "$logs" /run/munge /var/lib/munge /var/log/munge
cpus=$(nproc)
memory=$(( $(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024 * 95 / 100 ))  # MB, a margin below the total
cat > "$conf" <<CONF
# Written by .ci/slurm-up.sh: one node, no GPUs, no accounting storage.
ClusterName=$cluster
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/d
SlurmctldPidFile=/run/slurmctld-$cluster.pid
SlurmdPidFile=/run/slurmd-$cluster.pid
SlurmctldLogFile=$logs/slurmctld.log
SlurmdLogFile=$logs/slurmd.log
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
    if [ "$owner" = munge ]; then
        runuser -u munge -- munged || why "munged did not start"
    else
        munged --force || why "munged did not start"
    fi
fi

if ! pgrep -x slurmctld >/dev/null; then slurmctld || why "slurmctld did not start"; fi
if ! pgrep -x slurmd >/dev/null; then slurmd -N localhost || why "slurmd did not start"; fi
for _ in $(seq 60); do
    if node_up; then
        echo "slurm-up: $(sinfo -h -N -o '%N %T %c CPUs %m MB')"
        exit 0
    fi
    sleep 0.5
done
reason="the node did not come up in 30 s"
pgrep -x slurmctld >/dev/null || reason="$reason (slurmctld is not running)"
pgrep -x slurmd >/dev/null || reason="$reason (slurmd is not running)"
answer=$(timeout 5 sinfo -h -N -o '%N %T %E' 2>&1 || true)
why "$reason; sinfo: ${answer:-no answer}"
