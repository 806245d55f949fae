#!/usr/bin/env bash
# Starts a single-node Slurm cluster on this machine (Debian 12's slurm-wlm 22.05 and munge), for
# tests and trying the array job out: one node named after `hostname` with every CPU, one
# partition `debug`, no accounting. Run as root. Safe to run again: what already runs is kept.
# Stop it with scripts/slurm/stop-cluster.sh.
set -euo pipefail
[ "$(id -u)" -eq 0 ] || { echo "start-cluster: run as root (it writes /etc/slurm and starts daemons)" >&2; exit 1; }
for bin in munged slurmctld slurmd sinfo; do
  command -v "$bin" >/dev/null || { echo "start-cluster: $bin not found; run scripts/setup.sh (installs slurm-wlm and munge)" >&2; exit 1; }
done
host=$(hostname -s)
cpus=$(nproc)

# 1. munge: a key only root and munge can read, then the daemon as the munge user.
install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
install -d -o munge -g munge -m 0755 /run/munge
if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
if ! munge -n >/dev/null 2>&1; then
  runuser -u munge -- /usr/sbin/munged
  for _ in $(seq 1 50); do munge -n >/dev/null 2>&1 && break; sleep 0.1; done
fi
munge -n | unmunge >/dev/null || { echo "start-cluster: munge does not work (see /var/log/munge)" >&2; exit 1; }

# 2. slurm.conf: one node, one partition, no accounting.
install -d /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
conf=/etc/slurm/slurm.conf
new=$(mktemp)
cat >"$new" <<CONF
# Written by mlyexport's scripts/slurm/start-cluster.sh: a single-node test cluster.
ClusterName=mlyexport
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=3600
NodeName=$host CPUs=$cpus State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
if ! cmp -s "$new" "$conf" 2>/dev/null; then
  mv "$new" "$conf"
  chmod 0644 "$conf"
  if scontrol ping >/dev/null 2>&1; then scontrol reconfigure; fi
else
  rm -f "$new"
fi

# 3. The daemons, then wait until the node takes jobs.
scontrol ping 2>/dev/null | grep -q 'is UP' || slurmctld
for _ in $(seq 1 100); do scontrol ping 2>/dev/null | grep -q 'is UP' && break; sleep 0.2; done
[ -s /run/slurmd.pid ] && kill -0 "$(cat /run/slurmd.pid)" 2>/dev/null || slurmd
for _ in $(seq 1 150); do
  state=$(sinfo -h -n "$host" -o '%T' 2>/dev/null | head -1)
  case "$state" in idle*|mix*|alloc*) break ;; esac
  sleep 0.2
done
case "$state" in
  idle*|mix*|alloc*) echo "start-cluster: Slurm is up on $host ($cpus CPUs, partition debug)" >&2 ;;
  *) echo "start-cluster: the node is '$state', not idle; see /var/log/slurm/" >&2; exit 1 ;;
esac
