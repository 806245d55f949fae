#!/usr/bin/env bash
# Benchmark of shards (issue #15): one `mlyexport fetch` process against N shards (`--shard K/N`)
# run at once into one folder, on a simulated city of IMAGES images with LATENCY ms on every
# answer (Graph, CDN and tiles), release build. Reports wall times, the simulator's call counts
# for each way, and checks that the shards stored exactly the single run's images, none twice.
# Usage: scripts/bench-shards.sh [IMAGES (default 50000)] [SHARDS (default 4)] [LATENCY_MS (default 100)] [SIZE (default 256)]
set -euo pipefail
cd "$(dirname "$0")/.."
images=${1:-50000}
shards=${2:-4}
latency=${3:-100}
size=${4:-256}
cargo build --release --workspace --bins --quiet
work=$(mktemp -d)
trap 'kill $(cat "$work/pids" 2>/dev/null) 2>/dev/null || true; rm -rf "$work"' EXIT
export MAPILLARY_TOKEN='MLY|4242|0123456789abcdef0123456789abcdef'
bbox=13.300,52.420,13.500,52.620 # the simulator's city

start_sim() { # prints the Graph URL; the tiles URL goes to $work/tiles_url
  local log=$work/sim.$1
  ./target/release/mlysim --world city --images "$images" --latency-ms "$latency" >"$log" 2>"$log.err" &
  echo $! >>"$work/pids"
  for _ in $(seq 1 1200); do grep -q '^tiles_url=' "$log" 2>/dev/null && break; sleep 0.1; done
  sed -n 's/^tiles_url=//p' "$log" >"$work/tiles_url"
  sed -n 's/^graph_url=//p' "$log"
}
stats() { curl -s "$1/__sim/stats"; }
now() { date +%s.%N; }

# 1. One process (its own simulator, so that the call counts are its own).
api=$(start_sim single)
t0=$(now)
./target/release/mlyexport fetch --bbox "$bbox" --size "$size" --api-url "$api" \
  --tiles-url "$(cat "$work/tiles_url")" --output "$work/single" --quiet
t1=$(now)
stats "$api" >"$work/stats.single"

# 2. N shards at once into one folder, against a fresh simulator of the same world.
api=$(start_sim shards)
t2=$(now)
pids=()
for k in $(seq 0 $((shards - 1))); do
  ./target/release/mlyexport fetch --bbox "$bbox" --size "$size" --api-url "$api" \
    --tiles-url "$(cat "$work/tiles_url")" --output "$work/shards" --shard "$k/$shards" --quiet &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
t3=$(now)
stats "$api" >"$work/stats.shards"
./target/release/mlyexport status --input "$work/shards" >"$work/status" || { cat "$work/status"; exit 1; }

ids() { find "$1" -mindepth 2 -maxdepth 2 -name '[0-9]*.json' -printf '%f\n' | sort; }
ids "$work/single" >"$work/single.ids"
ids "$work/shards" >"$work/shards.ids"
python3 - "$work" "$t0" "$t1" "$t2" "$t3" "$shards" "$images" "$latency" <<'PY'
import json, sys
work, t0, t1, t2, t3, n, images, latency = sys.argv[1:]
t_single, t_shards = float(t1) - float(t0), float(t3) - float(t2)
single = open(f"{work}/single.ids").read().split()
sharded = open(f"{work}/shards.ids").read().split()
s1, s2 = (json.load(open(f"{work}/stats.{w}")) for w in ("single", "shards"))
keys = ["search_calls", "entity_calls", "image_ids_calls", "tile_calls", "thumbs_served"]
print(f"world: city, {images} images, {latency} ms latency on every answer; release build")
print(f"| | 1 process | {n} shards at once |")
print("|---|---|---|")
print(f"| wall time | {t_single:.1f} s | {t_shards:.1f} s ({t_single / t_shards:.2f}x faster) |")
for k in keys:
    print(f"| {k} | {s1.get(k, 0):,} | {s2.get(k, 0):,} |")
print(f"| images stored | {len(single):,} | {len(sharded):,} |")
same = sorted(single) == sorted(sharded)
dups = len(sharded) - len(set(sharded))
print(f"identical image ids: {'yes' if same else 'NO'}; stored twice: {dups}")
sys.exit(0 if same and dups == 0 else 1)
PY
