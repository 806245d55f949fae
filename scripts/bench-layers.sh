#!/usr/bin/env bash
# Benchmark (not a timed test): `mlyexport layers --format gpkg --no-exif`
# (release build) on synthetic metadata for 100,000 and 1,000,000 images,
# against `ogr2ogr` converting a CSV of the same points into a GeoPackage, in
# the same run. Prints wall times, the ratio, time per image (linearity) and
# peak RSS from /usr/bin/time -v. The CSV baseline has 8 columns; a second
# baseline converts a CSV with every column of our `images` layer, the same
# content as the GeoPackage's main layer.
#
# usage: scripts/bench-layers.sh [N ...]        (default: 100000 1000000)
# env:   ROUNDS      alternating rounds of both tools per size (default 3)
#        BENCH_DIR   where the synthetic folders go (kept and reused between runs;
#                    default /tmp/mlyexport-bench). 1,000,000 images take ~4 GB.
#        KEEP_OUTPUT=1 keep the GeoPackages written.
# needs: python3, ogr2ogr (gdal-bin), /usr/bin/time (package `time`).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SIZES=("$@")
[ ${#SIZES[@]} -eq 0 ] && SIZES=(100000 1000000)
WORK=${BENCH_DIR:-/tmp/mlyexport-bench}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
mkdir -p "$WORK"

for tool in ogr2ogr /usr/bin/time python3; do
  command -v "$tool" >/dev/null || { echo "bench-layers: $tool is missing" >&2; exit 2; }
done

echo "building mlyexport (release)..." >&2
cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" --bin mlyexport
BIN=$TARGET/release/mlyexport

. "$ROOT/scripts/bench-lib.sh"
ROUNDS=${ROUNDS:-3}

printf '\n%10s %10s %10s %8s %12s %14s %14s %12s %12s %12s %12s\n' images layers_s ogr2ogr_s ratio round_ratio layers_us/img ogr_us/img layers_cpu_s ogr_cpu_s layers_MB ogr_MB
results=()
same_lines=()
for n in "${SIZES[@]}"; do
  dir=$WORK/n$n
  synth_folder "$dir" "$n"
  # Warm the page cache for both tools alike: read every input once.
  find "$dir/downloads" -name '*.json' -print0 | xargs -0 cat > /dev/null
  cat "$dir/points.csv" > /dev/null

  # Alternate the two, ROUNDS times: on a shared machine the speed drifts,
  # and a ratio within one round (back to back) is steadier than one run.
  lts=(); ots=(); rrs=(); lcs=(); ocs=(); lms=(); oms=()
  for ((r = 1; r <= ROUNDS; r++)); do
    echo "$n images, round $r/$ROUNDS ..." >&2
    rm -rf "$dir/out" "$dir/ogr.gpkg"
    /usr/bin/time -v "$BIN" layers --input "$dir/downloads" --output "$dir/out" \
        --format gpkg --no-exif --quiet 2> "$dir/layers.time" || { cat "$dir/layers.time" >&2; exit 1; }
    /usr/bin/time -v ogr2ogr -f GPKG "$dir/ogr.gpkg" "$dir/points.csv" -nln images \
        -oo X_POSSIBLE_NAMES=lon -oo Y_POSSIBLE_NAMES=lat -oo AUTODETECT_TYPE=YES \
        -a_srs EPSG:4326 2> "$dir/ogr.time" || { cat "$dir/ogr.time" >&2; exit 1; }
    lt=$(wall "$dir/layers.time"); ot=$(wall "$dir/ogr.time")
    lts+=("$lt"); ots+=("$ot")
    rrs+=("$(awk -v a="$lt" -v b="$ot" 'BEGIN{printf "%.2f", (b>0)?a/b:0}')")
    lcs+=("$(cpu "$dir/layers.time")"); ocs+=("$(cpu "$dir/ogr.time")")
    lms+=("$(rss_mb "$dir/layers.time")"); oms+=("$(rss_mb "$dir/ogr.time")")
    [ "${KEEP_OUTPUT:-0}" = 1 ] || rm -rf "$dir/out" "$dir/ogr.gpkg"
  done

  # A second baseline with the same content: our own images.csv (every column of the
  # `images` layer, geometry as WKT), made untimed, then converted by ogr2ogr (once).
  rm -rf "$dir/csvout" "$dir/ogr_same.gpkg"
  "$BIN" layers --input "$dir/downloads" --output "$dir/csvout" --format csv --no-exif --quiet
  /usr/bin/time -v ogr2ogr -f GPKG "$dir/ogr_same.gpkg" "$dir/csvout/images.csv" -nln images \
      -oo GEOM_POSSIBLE_NAMES=wkt -oo KEEP_GEOM_COLUMNS=NO -oo AUTODETECT_TYPE=YES \
      -a_srs EPSG:4326 2> "$dir/ogr_same.time" || { cat "$dir/ogr_same.time" >&2; exit 1; }
  same_t=$(wall "$dir/ogr_same.time")
  rm -rf "$dir/csvout" "$dir/ogr_same.gpkg"

  lt=$(printf '%s\n' "${lts[@]}" | median); ot=$(printf '%s\n' "${ots[@]}" | median)
  rr=$(printf '%s\n' "${rrs[@]}" | median)
  lc=$(printf '%s\n' "${lcs[@]}" | median); oc=$(printf '%s\n' "${ocs[@]}" | median)
  lm=$(printf '%s\n' "${lms[@]}" | sort -g | tail -1); om=$(printf '%s\n' "${oms[@]}" | sort -g | tail -1)
  same_lines+=("$n images: ogr2ogr with every column of our images layer (WKT CSV) took ${same_t} s; layers (median) / that = $(awk -v a="$lt" -v b="$same_t" 'BEGIN{printf "%.2f", (b>0)?a/b:0}')")
  same_lines+=("$n images: layers runs ${lts[*]} s; ogr2ogr runs ${ots[*]} s; per-round ratios ${rrs[*]}")
  ratio=$(awk -v a="$lt" -v b="$ot" 'BEGIN{printf "%.2f", (b>0)?a/b:0}')
  lper=$(awk -v a="$lt" -v n="$n" 'BEGIN{printf "%.2f", a*1e6/n}')
  oper=$(awk -v a="$ot" -v n="$n" 'BEGIN{printf "%.2f", a*1e6/n}')
  printf '%10s %10s %10s %8s %12s %14s %14s %12s %12s %12s %12s\n' "$n" "$lt" "$ot" "$ratio" "$rr" "$lper" "$oper" "$lc" "$oc" "$lm" "$om"
  results+=("$n $lper $(awk -v a="$lc" -v n="$n" 'BEGIN{printf "%.3f", a*1e6/n}')")
done

if [ ${#results[@]} -ge 2 ]; then
  first=(${results[0]}); last=(${results[-1]})
  awk -v a="${first[1]}" -v b="${last[1]}" -v n1="${first[0]}" -v n2="${last[0]}" \
    'BEGIN{printf "\nlinearity: wall time per image at %d is %.2fx that at %d (1.00 = linear)\n", n2, b/a, n1}'
  awk -v a="${first[2]}" -v b="${last[2]}" -v n1="${first[0]}" -v n2="${last[0]}" \
    'BEGIN{printf "linearity: CPU time per image at %d is %.2fx that at %d\n", n2, b/a, n1}'
fi
printf '\n'; printf '%s\n' "${same_lines[@]}"
echo "(wall times on a loaded machine vary; compare CPU seconds too. load: $(cut -d' ' -f1-3 /proc/loadavg))"
echo "(times are medians of $ROUNDS alternating rounds; ratio = median layers / median ogr2ogr, round_ratio = median of the per-round ratios; MB = the highest peak RSS; targets: ratio <= 1, linear, layers peak RSS < 300 MB at 1,000,000)"
