#!/usr/bin/env bash
# Benchmark of `mlyexport fetch` against the simulator with 100 ms latency on every response
# (issue #2): images/s against the old tool's sequential way measured in the same run, search calls
# against the lower bound ceil(N/2000), and peak RSS with 100,000 images listed.
# Targets: >= 40x the sequential rate; search calls <= 3x the lower bound; peak RSS < 100 MB.
# Usage: scripts/bench-fetch.sh [IMAGES (default 6000)] [SEQUENTIAL SAMPLE (default 150)]
set -euo pipefail
cd "$(dirname "$0")/.."
images=${1:-6000}
sample=${2:-150}
cargo build --release --workspace --bins --quiet
work=$(mktemp -d)
# start_sim runs inside $(...), a subshell whose jobs this shell cannot see: the pids go to a file.
trap 'kill $(cat "$work/pids" 2>/dev/null) 2>/dev/null || true; rm -rf "$work"' EXIT
export MAPILLARY_TOKEN='MLY|4242|0123456789abcdef0123456789abcdef'

start_sim() { # args: log, mlysim flags...
  local log=$1; shift
  ./target/release/mlysim "$@" >"$log" 2>"$log.err" &
  echo $! >>"$work/pids"
  for _ in $(seq 1 600); do grep -q '^cdn_url=' "$log" 2>/dev/null && break; sleep 0.1; done
  local url
  url=$(sed -n 's/^graph_url=//p' "$log")
  [ -n "$url" ] || { echo "bench-fetch: the simulator did not start" >&2; cat "$log.err" >&2; exit 1; }
  echo "$url"
}
peak_rss_mb() { awk '/Maximum resident set size/ {printf "%.1f", $6/1024}' "$1"; }

# 1. A dense area, 100 ms on every response.
api=$(start_sim "$work/sim1" --world dense --images "$images" --latency-ms 100) || exit 1
bbox=2.330,48.850,2.370,48.880
t0=$(date +%s.%N)
/usr/bin/time -v -o "$work/time1" ./target/release/mlyexport fetch --bbox "$bbox" --size 256 \
  --api-url "$api" --output "$work/out" --quiet
t1=$(date +%s.%N)
listed=$(python3 -c "import json;print(json.load(open('$work/out/mlyexport-run.json'))['totals']['listed'])")
calls=$(python3 -c "import json;print(json.load(open('$work/out/mlyexport-run.json'))['totals']['search_calls'])")
secs=$(python3 -c "print($t1-$t0)")
rate=$(python3 -c "print($listed/($t1-$t0))")
seq_line=$(python3 scripts/bench_sequential.py --api-url "$api" --bbox "$bbox" --sample "$sample" --out "$work/seq")
seq_rate=$(sed -n 's/.*rate=\([0-9.]*\).*/\1/p' <<<"$seq_line")
lower=$(( (listed + 1999) / 2000 ))

# 2. Peak RSS with 100,000 images listed (a city, no latency, listing only).
api2=$(start_sim "$work/sim2" --world city --images 100000) || exit 1
/usr/bin/time -v -o "$work/time2" ./target/release/mlyexport fetch --bbox 13.300,52.420,13.500,52.620 \
  --api-url "$api2" --output "$work/out2" --dry-run --quiet
listed2=$(python3 -c "import json;print(json.load(open('$work/out2/mlyexport-run.json'))['totals']['listed'])")

python3 - "$listed" "$secs" "$rate" "$seq_rate" "$calls" "$lower" "$(peak_rss_mb "$work/time1")" "$listed2" "$(peak_rss_mb "$work/time2")" "$seq_line" <<'PY'
import sys
listed, secs, rate, seq, calls, lower, rss1, listed2, rss2, seq_line = sys.argv[1:]
listed, secs, rate, seq, calls, lower = int(listed), float(secs), float(rate), float(seq), int(calls), int(lower)
ratio = rate / seq
print(f"fetch: {listed} images in {secs:.1f} s = {rate:.1f} images/s (100 ms latency per response), peak RSS {rss1} MB")
print(f"baseline ({seq_line})")
print(f"speed-up: {ratio:.1f}x the sequential way (target >= 40x) {'OK' if ratio >= 40 else 'MISSED'}")
print(f"search calls: {calls} against a lower bound of {lower} = {calls/lower:.2f}x (target <= 3x) {'OK' if calls <= 3*lower else 'MISSED'}")
print(f"peak RSS listing {listed2} images: {rss2} MB (target < 100 MB) {'OK' if float(rss2) < 100 else 'MISSED'}")
PY
