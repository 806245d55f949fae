#!/usr/bin/env bash
# Stops the single-node cluster scripts/slurm/start-cluster.sh started: Slurm's own shutdown
# (controller and node daemon), then munged by its pid file. Run as root.
set -euo pipefail
if scontrol ping >/dev/null 2>&1; then scontrol shutdown >/dev/null 2>&1 || true; fi
pid_file=/run/munge/munged.pid
if [ -s "$pid_file" ]; then kill "$(cat "$pid_file")" 2>/dev/null || true; fi
echo "stop-cluster: Slurm and munge stopped" >&2
