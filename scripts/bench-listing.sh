#!/usr/bin/env bash
# Benchmark (not a timed test) of the three enumerations of `mlyexport fetch` (issue #9, item 7):
# `--enumerate auto` (the default, a verified listing: z14 vector tiles over the area, bbox searches
# planned from their counts, then lookups by id of whatever the tiles list and no search returned),
# `search` (bbox searches alone, split at half the cap) and `tiles` (tiles, then /images?image_ids=
# batches of 100), all as `--dry-run` listings of the world's whole bbox against one simulator per
# scenario in the same run, with latency on every answer. Prints side by side the API calls (search,
# tile, image_ids batch, entity; searches are the simulator's /images calls less the batches the run
# record counts), wall time and images listed, and checks the three listings hold the same ids (the
# tiles listing less the images without geometry, which no tile holds) and match the world's truth.
# Scenarios: (A) a dense 12,000-image hot spot, (B) a 50,000-image city; both with the fuzzy cap
# (0.94-1.00 x 2,000, stable per bbox) and the API's density refusal above 4,000 images per box.
# Targets (PASS/MISS printed): hot-spot searches of `auto` <= 1.5 x ceil(N/2000), N the images
# listed; total calls of `auto` below both other modes on both areas; (C) peak RSS of an `auto` dry
# run listing a 100,000-image city under 100 MB (`/usr/bin/time -f %M`).
# Wall times are those of a shared 2-core machine: compare them within one run only.
# Usage: scripts/bench-listing.sh [LATENCY MS (default 50)]
set -euo pipefail
cd "$(dirname "$0")/.."
latency=${1:-50}
cargo build --release --workspace --bins --quiet
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
export MAPILLARY_TOKEN='MLY|4242|0123456789abcdef0123456789abcdef'

dense_bbox=2.330,48.850,2.370,48.880 # WorldSpec::dense: 0.04 x 0.03 degrees
city_bbox=13.300,52.420,13.500,52.620 # WorldSpec::city: 0.2 x 0.2 degrees
sim_stats() { curl -sf "$api/__sim/stats"; }

start_sim() { # args: log, mlysim flags...
  local log=$1; shift
  ./target/release/mlysim --latency-ms "$latency" "$@" >"$log" 2>"$log.err" &
  sim_pid=$!
  for _ in $(seq 1 600); do grep -q '^tiles_url=' "$log" 2>/dev/null && break; sleep 0.1; done
  api=$(sed -n 's/^graph_url=//p' "$log")
  tiles=$(sed -n 's/^tiles_url=//p' "$log")
  [ -n "$api" ] && [ -n "$tiles" ] || { echo "bench-listing: the simulator did not start" >&2; cat "$log.err" >&2; exit 1; }
}
stop_sim() { kill "$sim_pid" && wait "$sim_pid" 2>/dev/null || true; }

run() { # args: scenario, enumeration, bbox
  local name=$1-$2 how=$2 bbox=$3
  sim_stats >"$work/$name.before"
  local t0 t1 rc=0
  t0=$(date +%s.%N)
  # Exit 1 (truncated or failed grids) is a result to show, not a reason to stop.
  ./target/release/mlyexport fetch --bbox "$bbox" --grid 1x1 --size 256 --dry-run --quiet \
    --api-url "$api" --tiles-url "$tiles" --enumerate "$how" --output "$work/$name" || rc=$?
  t1=$(date +%s.%N)
  [ "$rc" -le 1 ] || { echo "bench-listing: $how on $1 failed (exit $rc)" >&2; exit 1; }
  echo "$rc" >"$work/$name.rc"
  sim_stats >"$work/$name.after"
  python3 -c "print($t1 - $t0)" >"$work/$name.secs"
}

scenario() { # args: key, world, images, bbox, title
  local key=$1 world=$2 images=$3 bbox=$4 title=$5
  start_sim "$work/sim-$key" --world "$world" --images "$images" --fuzzy-cap --dense-refusal 4000
  for how in auto search tiles; do run "$key" "$how" "$bbox"; done
  stop_sim
  ./target/release/mlysim --world "$world" --images "$images" --ground-truth "$bbox" >"$work/$key.truth"
  python3 - "$work" "$key" "$images" "$latency" "$title" <<'PY'
import json, math, sys
work, key, images, latency, title = sys.argv[1:]
modes = ("auto", "search", "tiles")
def load(how):
    name = f"{work}/{key}-{how}"
    rec = json.load(open(f"{name}/mlyexport-run.json"))["totals"]
    before, after = json.load(open(f"{name}.before")), json.load(open(f"{name}.after"))
    sim = {k: after[k] - before[k] for k in ("search_calls", "tile_calls", "entity_calls")}
    ids = {}
    for line in open(f"{name}/listing.jsonl"):
        v = json.loads(line)
        ids[int(v["id"])] = v["lon"] is not None
    searches = sim["search_calls"] - rec.get("batch_calls", 0)
    row = {
        "images listed": rec["listed"],
        "  without geometry": sum(1 for has in ids.values() if not has),
        "z14 tiles": rec.get("tiles", 0),
        "search calls": searches,
        "tile calls": sim["tile_calls"],
        "image_ids batch calls": rec.get("batch_calls", 0),
        "entity calls": sim["entity_calls"],
        "looked up (reconciled)": rec.get("reconciled", 0),
        "verified grids": rec.get("verified_grids", 0),
        "truncated grids": rec.get("truncated_grids", 0),
        "failed grids": rec.get("failed_grids", 0),
        "exit code": int(open(f"{name}.rc").read()),
    }
    row["API calls in all"] = searches + sim["tile_calls"] + rec.get("batch_calls", 0) + sim["entity_calls"]
    row["  client's own count"] = (rec["search_calls"] + rec.get("tile_calls", 0)
                                   + rec.get("batch_calls", 0) + rec["entity_calls"])
    row["wall time (s)"] = float(open(f"{name}.secs").read())
    return row, ids
rows, ids = {}, {}
for how in modes:
    rows[how], ids[how] = load(how)
print(f"\n{title}: {images} images, fuzzy cap, refusal above 4,000 per box, "
      f"{latency} ms latency on every answer, --grid 1x1, --dry-run")
print(f"{'':26}" + "".join(f"{m:>12}" for m in modes))
for field in rows["auto"]:
    vals = [rows[m][field] for m in modes]
    cells = "".join(f"{v:>12.2f}" if isinstance(v, float) else f"{v:>12}" for v in vals)
    print(f"{field:26}{cells}")
truth = {int(l) for l in open(f"{work}/{key}.truth") if l.strip()}
positioned = {m: {i for i, has in ids[m].items() if has} for m in modes}
ok = True
def check(label, same, detail=""):
    global ok
    ok &= same
    print(f"{label}: {'yes' if same else '*** NO *** ' + detail}")
def diff(a, b):
    return f"({len(a - b)} only in the first, {len(b - a)} only in the second)"
check("same ids, auto and search", set(ids["auto"]) == set(ids["search"]),
      diff(set(ids["auto"]), set(ids["search"])))
check(f"same ids, tiles and auto less its {len(ids['auto']) - len(positioned['auto'])} without geometry",
      set(ids["tiles"]) == positioned["auto"], diff(set(ids["tiles"]), positioned["auto"]))
check(f"every listing's positioned ids = the world's ground truth ({len(truth)})",
      all(positioned[m] == truth for m in modes),
      " ".join(f"{m}: {len(positioned[m] - truth)} extra, {len(truth - positioned[m])} missing" for m in modes))
if not ok:
    print("!!!!!!!! THE LISTINGS DIFFER !!!!!!!!")
json.dump({m: {"searches": rows[m]["search calls"], "calls": rows[m]["API calls in all"],
               "listed": rows[m]["images listed"]} for m in modes},
          open(f"{work}/{key}.summary", "w"))
PY
  rm -rf "$work/$key-auto" "$work/$key-search" "$work/$key-tiles"
}

scenario dense dense 12000 "$dense_bbox" "A (dense hot spot)"
scenario city city 50000 "$city_bbox" "B (city)"

# C. Peak RSS of a verified (auto) listing of a 100,000-image city.
start_sim "$work/sim-big" --world city --images 100000 --fuzzy-cap --dense-refusal 4000
t0=$(date +%s.%N)
/usr/bin/time -f %M -o "$work/big.rss" ./target/release/mlyexport fetch --bbox "$city_bbox" \
  --grid 1x1 --size 256 --dry-run --quiet --api-url "$api" --tiles-url "$tiles" --enumerate auto \
  --output "$work/big" || [ $? -eq 1 ]
t1=$(date +%s.%N)
stop_sim
python3 - "$work" "$(python3 -c "print($t1 - $t0)")" <<'PY'
import json, math, sys
work, secs = sys.argv[1], float(sys.argv[2])
rec = json.load(open(f"{work}/big/mlyexport-run.json"))["totals"]
rss_mb = int(open(f"{work}/big.rss").read().split()[-1]) / 1024
print(f"\nC (RSS): auto --dry-run of a 100,000-image city: {rec['listed']} listed, "
      f"{rec['search_calls']} searches, {rec.get('tile_calls', 0)} tile calls, "
      f"{rec.get('batch_calls', 0)} batch calls, {rec['entity_calls']} entity calls, {secs:.2f} s, "
      f"peak RSS {rss_mb:.1f} MB")

print("\nTargets")
d = json.load(open(f"{work}/dense.summary"))
c = json.load(open(f"{work}/city.summary"))
def verdict(ok):
    return "PASS" if ok else "MISS"
n = d["auto"]["listed"]
bound = 1.5 * math.ceil(n / 2000)
s = d["auto"]["searches"]
print(f"  {verdict(s <= bound)}  hot-spot searches of auto: {s} <= 1.5 x ceil({n}/2000) = {bound:g}"
      + ("" if s <= bound else f" (over by {s - bound:g}, {s / bound:.2f}x the bound)"))
for name, r in (("hot spot", d), ("city", c)):
    a, se, t = r["auto"]["calls"], r["search"]["calls"], r["tiles"]["calls"]
    ok = a < se and a < t
    print(f"  {verdict(ok)}  {name}: auto's total calls {a} below search's {se} and tiles' {t}"
          + ("" if ok else f" (auto {a - min(se, t):+d} against the fewer)"))
print(f"  {verdict(rss_mb < 100)}  peak RSS of a 100,000-image auto listing: {rss_mb:.1f} MB < 100 MB")
PY
