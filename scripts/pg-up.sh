#!/usr/bin/env bash
# Starts a throwaway PostgreSQL 15 + PostGIS 3 cluster for the tests and
# benchmarks: data under a new temp folder, listening on a free port on
# 127.0.0.1 only, fsync off. Prints shell assignments on stdout:
#   MLYEXPORT_TEST_PG='host=127.0.0.1 port=... dbname=mlyexport user=mlyexport'
#   MLYEXPORT_TEST_PGPASSWORD=...   (the role's random password; scram-sha-256 over TCP)
#   MLYEXPORT_TEST_PGDIR=...        (pass it to scripts/pg-down.sh)
# The database has the postgis extension; the role owns the database and has
# CREATEROLE (a test gives a table to a role the user is not a member of).
#
# usage: eval "$(bash scripts/pg-up.sh [--watch PID])"
#   --watch PID  also stop and remove the cluster once process PID has ended
#                (the Rust tests use this when they start the cluster themselves).
# needs: postgresql-15-postgis-3 (scripts/debian-packages.txt). As root, the
# cluster runs as the `postgres` system user (PostgreSQL refuses root).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)

watch=""
if [ "${1:-}" = "--watch" ]; then watch=${2:?--watch needs a process id}; fi

bindir=""
for v in 15 16 17 14; do
  [ -x "/usr/lib/postgresql/$v/bin/initdb" ] && { bindir=/usr/lib/postgresql/$v/bin; break; }
done
[ -n "$bindir" ] || { echo "pg-up: no PostgreSQL server found; run scripts/setup.sh (installs postgresql-15-postgis-3)" >&2; exit 3; }

as_owner=()
if [ "$(id -u)" -eq 0 ]; then
  id postgres >/dev/null 2>&1 || { echo "pg-up: running as root needs the 'postgres' system user (made by the postgresql package)" >&2; exit 3; }
  as_owner=(runuser -u postgres --)
fi

dir=$(mktemp -d "${TMPDIR:-/tmp}/mlyexport-pg.XXXXXX")
chmod 755 "$dir"
[ ${#as_owner[@]} -eq 0 ] || chown postgres: "$dir"
fail() { echo "pg-up: $1 (log: $dir/log)" >&2; [ -f "$dir/log" ] && tail -5 "$dir/log" >&2; "${as_owner[@]}" "$bindir/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true; exit 3; }

"${as_owner[@]}" "$bindir/initdb" -D "$dir/data" -U postgres -A trust --auth-host=scram-sha-256 \
  -E UTF8 --locale=C -N >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; fail "initdb failed"; }

free_port() {
  python3 - <<'EOF' 2>/dev/null || echo $((20000 + RANDOM % 20000))
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
EOF
}

started=""
for _ in 1 2 3 4 5; do
  port=$(free_port)
  if "${as_owner[@]}" "$bindir/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 60 -o \
      "-p $port -c listen_addresses=127.0.0.1 -k $dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
      start >/dev/null 2>&1; then
    started=1; break
  fi
done
[ -n "$started" ] || fail "the server did not start"

password=$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')
"${as_owner[@]}" psql -q -X -v ON_ERROR_STOP=1 -h "$dir" -p "$port" -U postgres -d postgres >/dev/null <<EOF || fail "cannot create the role and database"
CREATE ROLE mlyexport LOGIN CREATEROLE PASSWORD '$password';
CREATE DATABASE mlyexport OWNER mlyexport;
\c mlyexport
CREATE EXTENSION postgis;
EOF

if [ -n "$watch" ]; then
  # Detached and with no inherited stdout, so the caller's read of our output ends.
  setsid bash -c "while kill -0 $watch 2>/dev/null; do sleep 1; done; bash '$HERE/pg-down.sh' '$dir'" \
    </dev/null >/dev/null 2>&1 &
fi

echo "MLYEXPORT_TEST_PG='host=127.0.0.1 port=$port dbname=mlyexport user=mlyexport'"
echo "MLYEXPORT_TEST_PGPASSWORD=$password"
echo "MLYEXPORT_TEST_PGDIR=$dir"
