#!/usr/bin/env bash
# Stops a cluster started by scripts/pg-up.sh and removes its folder.
# usage: bash scripts/pg-down.sh DIR     (DIR = MLYEXPORT_TEST_PGDIR)
set -euo pipefail
dir=${1:?usage: pg-down.sh DIR (the MLYEXPORT_TEST_PGDIR printed by pg-up.sh)}
case "$(basename "$dir")" in
  mlyexport-pg.*) ;;
  *) echo "pg-down: '$dir' is not a folder made by pg-up.sh; not touching it" >&2; exit 2 ;;
esac
[ -d "$dir" ] || exit 0
as_owner=()
[ "$(id -u)" -eq 0 ] && as_owner=(runuser -u postgres --)
for v in 15 16 17 14; do
  ctl=/usr/lib/postgresql/$v/bin/pg_ctl
  if [ -x "$ctl" ] && [ -f "$dir/data/postmaster.pid" ]; then
    "${as_owner[@]}" "$ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
    break
  fi
done
rm -rf "$dir"
