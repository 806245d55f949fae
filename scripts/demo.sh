#!/usr/bin/env bash
# The offline demo: installs what is needed, builds, starts the Mapillary simulator on loopback,
# fetches every image of a small town (beyond the API's 2,000-result cap) into demo/downloads,
# then writes the GIS layers, embeds GPS EXIF and a coverage summary into demo/downloads/layers.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --workspace --bins --quiet

out=demo/downloads
rm -rf demo && mkdir -p demo
sim_log=demo/mlysim.out
./target/release/mlysim --world demo --latency-ms 20 >"$sim_log" 2>demo/mlysim.err &
sim_pid=$!
trap 'kill "$sim_pid" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do grep -q '^cdn_url=' "$sim_log" 2>/dev/null && break; sleep 0.1; done
graph_url=$(sed -n 's/^graph_url=//p' "$sim_log")
[ -n "$graph_url" ] || { echo "demo: the simulator did not start" >&2; cat demo/mlysim.err >&2; exit 1; }

# The simulator's fake token; with a real one, use MAPILLARY_TOKEN or --token-file instead.
export MAPILLARY_TOKEN='MLY|4242|0123456789abcdef0123456789abcdef'
export MLYEXPORT_API_URL="$graph_url"
export MLYEXPORT_TILES_URL=$(sed -n 's/^tiles_url=//p' "$sim_log")
./target/release/mlyexport fetch --bbox 8.50,47.35,8.56,47.39 --grid 3x1 --size 1024 --output "$out"
./target/release/mlyexport layers --input "$out" --format gpkg,geojson,csv,html

# The same engine from Python: scripts/python-setup.sh installs the module `mlyexport` into .venv.
bash scripts/python-setup.sh
MLYEXPORT_TILES_URL=$(sed -n 's/^tiles_url=//p' "$sim_log") .venv/bin/python python/examples/demo.py "$out"

echo
echo "demo: images in $out/<grid>/<id>.jpg with <id>.json; provenance in $out/mlyexport-run.json"
echo "demo: open $out/layers/mapillary.gpkg in QGIS (layers images, sequences, grid_cells, styled);"
echo "demo: coverage per grid in $out/layers/coverage.md; the map, charts and table in $out/layers/report.html"
