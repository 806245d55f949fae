#!/usr/bin/env bash
# Runs the Slurm scripts for real: starts a single-node Slurm cluster (start-cluster.sh), the
# Mapillary simulator, fetches the demo town once in one process and once as a 3-task array job
# with the dependent layers job (submit.sh), then checks that the shards' images are exactly the
# single run's (same ids, none twice), that `mlyexport status` says done and that the merged
# GeoPackage holds every image and one `runs` row per shard. Needs root (Slurm's daemons); from
# scripts/test.sh. Stops the cluster afterwards when it started it.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
if [ "$(id -u)" -ne 0 ]; then
  echo "test-slurm: skipped: starting Slurm needs root (CI runs this as root)" >&2
  exit 0
fi
cargo build --workspace --bins --quiet
started=0
scontrol ping 2>/dev/null | grep -q 'is UP' || started=1
bash scripts/slurm/start-cluster.sh
work=$(mktemp -d /tmp/mlyexport-slurm-test.XXXXXX)
cleanup() {
  [ -s "$work/sim.pid" ] && kill "$(cat "$work/sim.pid")" 2>/dev/null || true
  [ "$started" -eq 1 ] && bash "$root/scripts/slurm/stop-cluster.sh" || true
  rm -rf "$work"
}
trap cleanup EXIT

./target/debug/mlysim --world demo >"$work/sim.out" 2>"$work/sim.err" &
echo $! >"$work/sim.pid"
for _ in $(seq 1 300); do grep -q '^tiles_url=' "$work/sim.out" 2>/dev/null && break; sleep 0.1; done
export MLYEXPORT_API_URL=$(sed -n 's/^graph_url=//p' "$work/sim.out")
export MLYEXPORT_TILES_URL=$(sed -n 's/^tiles_url=//p' "$work/sim.out")
[ -n "$MLYEXPORT_TILES_URL" ] || { echo "test-slurm: the simulator did not start" >&2; cat "$work/sim.err" >&2; exit 1; }
export MAPILLARY_TOKEN='MLY|4242|0123456789abcdef0123456789abcdef' # the simulator's fake token
export MLYEXPORT=$PWD/target/debug/mlyexport
area=(--bbox 8.50,47.35,8.56,47.39 --size 256)

"$MLYEXPORT" fetch "${area[@]}" --output "$work/single" --quiet
"$MLYEXPORT" layers --input "$work/single" --format gpkg --no-exif --quiet
cd "$work"
read -r fetch_id layers_id < <(bash "$root/scripts/slurm/submit.sh" 3 "$work/sharded" "${area[@]}" \
  -- --format gpkg,csv --no-exif)
state() { scontrol show job "$1" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p' | sort -u | tr '\n' ' '; }
for _ in $(seq 1 600); do
  s=$(state "$layers_id")
  case "$s" in *PENDING*|*RUNNING*|*CONFIGURING*|*COMPLETING*|"") sleep 1 ;; *) break ;; esac
done
fail() { echo "test-slurm: FAILED: $*" >&2; cat "$work"/mlyexport-*.out >&2 2>/dev/null || true; exit 1; }
[ "$(state "$fetch_id")" = "COMPLETED " ] || fail "the array job ended $(state "$fetch_id")"
[ "$(state "$layers_id")" = "COMPLETED " ] || fail "the layers job ended $(state "$layers_id")"

ids() { find "$1" -mindepth 2 -maxdepth 2 -name '[0-9]*.json' -printf '%f\n' | sort; }
ids "$work/single" >single.ids
ids "$work/sharded" >sharded.ids
[ -s single.ids ] || fail "the single run stored no image"
cmp -s single.ids sharded.ids || fail "the shards' ids differ from the single run's: $(diff single.ids sharded.ids | head -5)"
[ "$(sort -u sharded.ids | wc -l)" -eq "$(wc -l <sharded.ids)" ] || fail "an image is stored twice"
for k in 0 1 2; do [ -s "sharded/mlyexport-run.shard-$k-of-3.json" ] || fail "no record of shard $k"; done
"$MLYEXPORT" status --input "$work/sharded" >status.out || fail "status says not done: $(cat status.out)"
python3 - "$work/sharded/layers/mapillary.gpkg" "$work/single/layers/mapillary.gpkg" <<'PY' || fail "the merged GeoPackage"
import sqlite3, sys
count = "select count(*), count(distinct id) from images"
got = sqlite3.connect(sys.argv[1]).execute(count).fetchone()
want = sqlite3.connect(sys.argv[2]).execute(count).fetchone()
assert got == want and got[0] == got[1], f"images {got}, the single run's {want}"
runs = sqlite3.connect(sys.argv[1]).execute("select shard from runs order by shard").fetchall()
assert runs == [("0/3",), ("1/3",), ("2/3",)], f"runs rows {runs}, want one per shard"
PY
echo "test-slurm: OK: 3 Slurm shards stored the single run's $(wc -l <single.ids) images, none twice; layers merged them" >&2
