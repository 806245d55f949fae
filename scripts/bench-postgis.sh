#!/usr/bin/env bash
# Benchmark (not a timed test): `mlyexport layers --format postgis --no-exif`
# (release build) against `ogr2ogr` copying our own GeoPackage's four layers
# into the same PostgreSQL 15 + PostGIS 3 database, at 100,000 and 1,000,000
# synthetic images. `layers` starts from the metadata JSONs (reading them is
# part of its time); ogr2ogr from the finished GeoPackage (made first).
# Both write the same tables, columns, SRID and GiST indexes, each into its own
# schema, replacing the previous round's tables. A third timing, `layers
# --format csv` on the same folder, is what reading the JSONs and the coverage
# cost alone; `pg_part` = layers_pg - that, the PostGIS writing's own share.
# `via_gpkg` is the two-step way the sink replaces: one timed `layers --format
# gpkg` (the GeoPackage ogr2ogr starts from) plus ogr2ogr's median. A throwaway
# cluster is started (scripts/pg-up.sh, fsync off) and stopped at the end.
#
# usage: scripts/bench-postgis.sh [N ...]        (default: 100000 1000000)
# env:   ROUNDS     alternating rounds of both tools per size (default 3)
#        BENCH_DIR  where the synthetic folders go, shared with bench-layers.sh
#                   (default /tmp/mlyexport-bench; 1,000,000 images take ~4 GB)
#        MLYEXPORT_BIN  use this release binary instead of building one
# needs: python3, ogr2ogr (gdal-bin), psql, /usr/bin/time, postgresql-15-postgis-3.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SIZES=("$@")
[ ${#SIZES[@]} -eq 0 ] && SIZES=(100000 1000000)
WORK=${BENCH_DIR:-/tmp/mlyexport-bench}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
ROUNDS=${ROUNDS:-3}
mkdir -p "$WORK"

for tool in ogr2ogr psql /usr/bin/time python3; do
  command -v "$tool" >/dev/null || { echo "bench-postgis: $tool is missing (scripts/setup.sh installs it)" >&2; exit 2; }
done

if [ -n "${MLYEXPORT_BIN:-}" ]; then
  BIN=$MLYEXPORT_BIN # a release binary built already (the build is slow on a loaded machine)
else
  echo "building mlyexport (release)..." >&2
  cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" --bin mlyexport
  BIN=$TARGET/release/mlyexport
fi

pg_env=$(bash "$ROOT/scripts/pg-up.sh")
eval "$pg_env"
trap 'bash "$ROOT/scripts/pg-down.sh" "$MLYEXPORT_TEST_PGDIR"' EXIT
export PGPASSWORD=$MLYEXPORT_TEST_PGPASSWORD
CONN=$MLYEXPORT_TEST_PG
psql -X -q -d "$CONN" -c "CREATE SCHEMA IF NOT EXISTS bench_ogr" >/dev/null

. "$ROOT/scripts/bench-lib.sh"
count() { psql -X -At -d "$CONN" -c "SELECT count(*) FROM $1"; }
# CPU seconds the server's ended processes used so far: the postmaster's
# children's time (cutime + cstime), which grows when a backend exits. The
# difference over one tool's run is its backend's CPU (plus any autovacuum
# worker that ended meanwhile: noise, the same for both tools).
PM=$(head -1 "$MLYEXPORT_TEST_PGDIR/data/postmaster.pid")
TCK=$(getconf CLK_TCK)
server_cpu() { awk -v t="$TCK" '{printf "%.2f", ($16 + $17) / t}' "/proc/$PM/stat"; }
minus() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a - b}'; }

printf '\n%10s %12s %12s %8s %12s %12s %10s %12s %12s %14s %12s %13s %11s %10s %10s\n' images layers_pg_s ogr2ogr_s ratio round_ratio read_only_s pg_part_s part_ratio via_gpkg_s layers_cpu_s ogr_cpu_s layers_srv_cpu ogr_srv_cpu layers_MB ogr_MB
notes=()
for n in "${SIZES[@]}"; do
  dir=$WORK/n$n
  synth_folder "$dir" "$n"
  echo "$n images: writing the GeoPackage ogr2ogr starts from (timed once) ..." >&2
  rm -rf "$dir/pg-gpkg"
  find "$dir/downloads" -name '*.json' -print0 | xargs -0 cat > /dev/null
  /usr/bin/time -v "$BIN" layers --input "$dir/downloads" --output "$dir/pg-gpkg" --format gpkg --no-exif --quiet \
      2> "$dir/pg-gpkg.time" || { cat "$dir/pg-gpkg.time" >&2; exit 1; }
  gt=$(wall "$dir/pg-gpkg.time")

  lts=(); ots=(); rrs=(); lcs=(); ocs=(); lms=(); oms=(); bts=(); lss=(); oss=()
  for ((r = 1; r <= ROUNDS; r++)); do
    echo "$n images, round $r/$ROUNDS ..." >&2
    s0=$(server_cpu)
    /usr/bin/time -v "$BIN" layers --input "$dir/downloads" --output "$dir/pg-out" --format postgis \
        --pg "PG:$CONN schema=bench_mly" --no-exif --quiet 2> "$dir/pg-layers.time" \
        || { cat "$dir/pg-layers.time" >&2; exit 1; }
    s1=$(server_cpu)
    /usr/bin/time -v ogr2ogr -f PostgreSQL "PG:$CONN" "$dir/pg-gpkg/mapillary.gpkg" \
        images sequences grid_cells runs \
        -lco SCHEMA=bench_ogr -lco OVERWRITE=YES -lco GEOMETRY_NAME=geom -lco FID=fid \
        -lco SPATIAL_INDEX=GIST 2> "$dir/pg-ogr.time" || { cat "$dir/pg-ogr.time" >&2; exit 1; }
    s2=$(server_cpu)
    lss+=("$(minus "$s1" "$s0")"); oss+=("$(minus "$s2" "$s1")")
    /usr/bin/time -v "$BIN" layers --input "$dir/downloads" --output "$dir/pg-csv" --format csv \
        --no-exif --quiet 2> "$dir/pg-csv.time" || { cat "$dir/pg-csv.time" >&2; exit 1; }
    bts+=("$(wall "$dir/pg-csv.time")")
    lt=$(wall "$dir/pg-layers.time"); ot=$(wall "$dir/pg-ogr.time")
    lts+=("$lt"); ots+=("$ot")
    rrs+=("$(awk -v a="$lt" -v b="$ot" 'BEGIN{printf "%.2f", (b>0)?a/b:0}')")
    lcs+=("$(cpu "$dir/pg-layers.time")"); ocs+=("$(cpu "$dir/pg-ogr.time")")
    lms+=("$(rss_mb "$dir/pg-layers.time")"); oms+=("$(rss_mb "$dir/pg-ogr.time")")
  done
  for t in images sequences grid_cells runs; do
    a=$(count "bench_mly.$t"); b=$(count "bench_ogr.$t")
    [ "$a" = "$b" ] || { echo "bench-postgis: $t has $a rows from layers but $b from ogr2ogr" >&2; exit 1; }
  done
  lt=$(printf '%s\n' "${lts[@]}" | median); ot=$(printf '%s\n' "${ots[@]}" | median)
  rr=$(printf '%s\n' "${rrs[@]}" | median)
  lc=$(printf '%s\n' "${lcs[@]}" | median); oc=$(printf '%s\n' "${ocs[@]}" | median)
  ls_=$(printf '%s\n' "${lss[@]}" | median); os_=$(printf '%s\n' "${oss[@]}" | median)
  lm=$(printf '%s\n' "${lms[@]}" | sort -g | tail -1); om=$(printf '%s\n' "${oms[@]}" | sort -g | tail -1)
  ratio=$(awk -v a="$lt" -v b="$ot" 'BEGIN{printf "%.2f", (b>0)?a/b:0}')
  bt=$(printf '%s\n' "${bts[@]}" | median)
  part=$(awk -v a="$lt" -v b="$bt" 'BEGIN{printf "%.2f", a-b}')
  part_ratio=$(awk -v a="$part" -v b="$ot" 'BEGIN{printf "%.2f", (b>0)?a/b:0}')
  via=$(awk -v a="$gt" -v b="$ot" 'BEGIN{printf "%.2f", a+b}')
  printf '%10s %12s %12s %8s %12s %12s %10s %12s %12s %14s %12s %13s %11s %10s %10s\n' "$n" "$lt" "$ot" "$ratio" "$rr" "$bt" "$part" "$part_ratio" "$via" "$lc" "$oc" "$ls_" "$os_" "$lm" "$om"
  notes+=("$n images: layers runs ${lts[*]} s; ogr2ogr runs ${ots[*]} s; read-only runs ${bts[*]} s; per-round ratios ${rrs[*]}; rows equal in all four tables")
  rm -rf "$dir/pg-out" "$dir/pg-gpkg" "$dir/pg-csv"
done
printf '\n'; printf '%s\n' "${notes[@]}"
echo "(medians of $ROUNDS alternating rounds; ratio = median layers / median ogr2ogr (target: <= 1); part_ratio = pg_part / ogr2ogr,"
echo " the PostGIS writing alone; *_srv_cpu = the PostgreSQL backend's CPU seconds for that tool's run (client + server CPU over the"
echo " core count is a floor under the wall time when both are busy); via_gpkg_s = one \`layers --format gpkg\` + ogr2ogr, the two-step way the sink replaces. $(nproc) cores; load: $(cut -d' ' -f1-3 /proc/loadavg))"
