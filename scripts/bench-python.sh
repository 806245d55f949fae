#!/usr/bin/env bash
# Benchmark (not a timed test) of the Python module against the CLI (issue #14, item 6): the
# verified listing of the simulator's city world (100,000 images by default) through
# `mlyexport.Client().images_in_bbox` (conversion to Python objects included) against
# `mlyexport fetch --dry-run`, on the same simulator in the same run, each timed twice in
# alternation (the best of two counts). Target: the Python call within 1.2x of the CLI's wall time.
# Usage: scripts/bench-python.sh [IMAGES (default 100000)] [LATENCY MS (default 20)] [PROFILE]
# PROFILE is release (default, what users get) or debug (a quick check on a busy machine: both
# sides unoptimised).
set -euo pipefail
cd "$(dirname "$0")/.."
images=${1:-100000}
latency=${2:-20}
profile=${3:-release}
if [ "$profile" = debug ]; then
  cargo build --workspace --bins --quiet
  bash scripts/python-setup.sh --debug
else
  cargo build --release --workspace --bins --quiet
  bash scripts/python-setup.sh
fi
bin=target/$profile
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
export MAPILLARY_TOKEN='MLY|4242|0123456789abcdef0123456789abcdef'
bbox=13.300,52.420,13.500,52.620 # the city world's whole area

"$bin/mlysim" --world city --images "$images" --latency-ms "$latency" >"$work/sim" 2>"$work/sim.err" &
for _ in $(seq 1 600); do grep -q '^tiles_url=' "$work/sim" 2>/dev/null && break; sleep 0.1; done
MLYEXPORT_API_URL=$(sed -n 's/^graph_url=//p' "$work/sim")
MLYEXPORT_TILES_URL=$(sed -n 's/^tiles_url=//p' "$work/sim")
export MLYEXPORT_API_URL MLYEXPORT_TILES_URL

cli() { # args: run number; prints seconds and listed
  local t0 t1
  t0=$(date +%s.%N)
  "$bin/mlyexport" fetch --bbox "$bbox" --dry-run --quiet --output "$work/cli$1"
  t1=$(date +%s.%N)
  echo "cli seconds=$(python3 -c "print(round($t1 - $t0, 2))") listed=$(wc -l <"$work/cli$1/listing.jsonl")"
}
py() {
  .venv/bin/python - "$bbox" <<'PY'
import sys, time
import mlyexport as mly
t0 = time.monotonic()
images = mly.Client().images_in_bbox(sys.argv[1], progress=False)
print(f"python seconds={time.monotonic() - t0:.2f} listed={len(images)}")
PY
}
{ cli 1; py; cli 2; py; } | tee "$work/results"
python3 - "$work/results" <<'PY'
import sys
best = {}
for line in open(sys.argv[1]):
    kind, secs, listed = line.split()
    s = float(secs.split("=")[1])
    best[kind] = min(best.get(kind, s), s)
ratio = best["python"] / best["cli"]
print(f"best cli {best['cli']:.2f} s, best python {best['python']:.2f} s: python/cli = {ratio:.2f} (target <= 1.2)")
PY
