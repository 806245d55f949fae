#!/usr/bin/env bash
# Benchmark (not a timed test) of the two enumerations of `mlyexport fetch` on a city-sized area of
# the simulator (issue #5, item 7): `--enumerate search` (bbox searches split at the cap) against
# `--enumerate tiles` (z14 vector tiles, then /images?image_ids= batches of 100), both as
# `--dry-run` listings against the same simulator in the same run, with latency on every answer.
# Prints API calls (search, tile, batch) and wall time side by side, and checks both listed the
# same images (less the images without geometry, which no tile holds).
# Two scenarios: (A) the simulator's defaults (cap 2,000, cut silently); (B) the same world with
# the API's density refusal ("Please reduce the amount of data") above 300 images per box, as
# reported for city centres, which makes search split much deeper.
# Usage: scripts/bench-tiles.sh [IMAGES (default 50000)] [LATENCY MS (default 50)] [GRID (default 1x1)]
set -euo pipefail
cd "$(dirname "$0")/.."
images=${1:-50000}
latency=${2:-50}
grid=${3:-1x1}
cargo build --release --workspace --bins --quiet
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
export MAPILLARY_TOKEN='MLY|4242|0123456789abcdef0123456789abcdef'

bbox=13.300,52.420,13.500,52.620 # the city world's whole area, 0.2 x 0.2 degrees
sim_stats() { curl -s "$api/__sim/stats"; }

start_sim() { # args: log, extra mlysim flags...
  local log=$1; shift
  ./target/release/mlysim --world city --images "$images" --latency-ms "$latency" "$@" >"$log" 2>"$log.err" &
  for _ in $(seq 1 600); do grep -q '^tiles_url=' "$log" 2>/dev/null && break; sleep 0.1; done
  api=$(sed -n 's/^graph_url=//p' "$log")
  tiles=$(sed -n 's/^tiles_url=//p' "$log")
}

run() { # args: name, enumeration
  local name=$1 how=$2
  sim_stats >"$work/$name.before"
  local t0 t1
  t0=$(date +%s.%N)
  ./target/release/mlyexport fetch --bbox "$bbox" --grid "$grid" --size 256 --dry-run --quiet \
    --api-url "$api" --tiles-url "$tiles" --enumerate "$how" --output "$work/$name"
  t1=$(date +%s.%N)
  sim_stats >"$work/$name.after"
  python3 -c "print($t1 - $t0)" >"$work/$name.secs"
}
compare() { # args: scenario title
python3 - "$work" "$images" "$latency" "$grid" "$1" <<'PY'
import json, sys
work, images, latency, grid, title = sys.argv[1:]
def load(name):
    rec = json.load(open(f"{work}/{name}/mlyexport-run.json"))["totals"]
    before = json.load(open(f"{work}/{name}.before"))
    after = json.load(open(f"{work}/{name}.after"))
    secs = float(open(f"{work}/{name}.secs").read())
    ids = {}
    for line in open(f"{work}/{name}/listing.jsonl"):
        v = json.loads(line)
        ids[v["id"]] = v["lon"] is not None
    sim = {k: after[k] - before[k] for k in ("search_calls", "tile_calls")}
    return rec, sim, secs, ids
s, s_sim, s_secs, s_ids = load("search")
t, t_sim, t_secs, t_ids = load("tiles")
print(f"\n{title}: city world, {images} images, {latency} ms latency on every answer, --grid {grid}, --dry-run")
print(f"{'':28}{'search':>12}{'tiles':>12}")
rows = [
    ("images listed", s["listed"], t["listed"]),
    ("search calls", s["search_calls"], t["search_calls"]),
    ("tiles (z14)", s.get("tiles", 0), t.get("tiles", 0)),
    ("tile calls", s.get("tile_calls", 0), t.get("tile_calls", 0)),
    ("image_ids batch calls", s.get("batch_calls", 0), t.get("batch_calls", 0)),
    ("API calls in all", s["search_calls"] + s.get("tile_calls", 0) + s.get("batch_calls", 0),
     t["search_calls"] + t.get("tile_calls", 0) + t.get("batch_calls", 0)),
    ("simulator: /images calls", s_sim["search_calls"], t_sim["search_calls"]),
    ("simulator: tile calls", s_sim["tile_calls"], t_sim["tile_calls"]),
]
for name, a, b in rows:
    print(f"{name:28}{a:>12}{b:>12}")
print(f"{'wall time (s)':28}{s_secs:>12.2f}{t_secs:>12.2f}")
positioned = {k for k, has in s_ids.items() if has}
same = positioned == set(t_ids)
print(f"same images (search less {len(s_ids) - len(positioned)} without geometry): {'yes' if same else 'NO'}")
if not same:
    sys.exit(1)
PY
}

start_sim "$work/simA"
run search search
run tiles tiles
compare "A (cap 2,000)"
kill %1 && wait %1 2>/dev/null || true
rm -rf "$work/search" "$work/tiles"
start_sim "$work/simB" --dense-refusal 300
run search search
run tiles tiles
compare "B (boxes over 300 images refused)"
