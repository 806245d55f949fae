#!/usr/bin/env bash
# Benchmark of `mlyexport exif` (issue 4), not a timed test: embeds EXIF into
# N realistic JPEGs (1600x1200, about 200 KB) and times, in the same run and on
# the same files, `cp -r` of the folder, `mlyexport exif` (release build) and
# exiftool geotagging every file in one process (`-@ argfile`).
# Targets: mlyexport >= 0.5x the throughput of cp and >= 20x exiftool's.
#
# Usage: scripts/bench-exif.sh [N]   (default 5000; WORK=dir keeps the files, ROUNDS=3)
# Needs: cargo, exiftool, awk. Writes only under $WORK (a new temp dir by default).
set -euo pipefail

N=${1:-5000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
WORK=${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/mlyexport-bench-exif.XXXXXX")}
mkdir -p "$WORK"
echo "work folder: $WORK"

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

echo "building mlyexport (release)…"
(cd "$ROOT" && cargo build --release --quiet --bin mlyexport)
BIN=$TARGET/release/mlyexport

echo "making seed JPEGs with the image crate…"
(cd "$ROOT" && MLYEXPORT_BENCH_SEED_DIR="$WORK/seed" \
  cargo test --quiet --test it exif::bench_seed_jpegs -- --ignored --exact >/dev/null)

echo "writing $N JPEG + JSON pairs and the exiftool argfile…"
SET=$WORK/set
ARGS=$WORK/exiftool.args
rm -rf "$SET"
for ((g = 0; g < 10; g++)); do mkdir -p "$SET/g$g"; done
for ((i = 1; i <= N; i++)); do
  cp "$WORK/seed/seed$((i % 4)).jpg" "$SET/g$((i % 10))/$((1000000 + i)).jpg"
done
# One JSON per image, positions spread over the world so the time zone lookup
# does real work, every 50th a panorama; and the same values for exiftool,
# which tags the copy in $WORK/et.
awk -v n="$N" -v set="$SET" -v et="$WORK/et" -v args="$ARGS" 'BEGIN {
  printf "" > args
  for (i = 1; i <= n; i++) {
    id = 1000000 + i; g = i % 10
    lon = sprintf("%.7f", -179.9 + (i * 7.3137) % 359.8)
    lat = sprintf("%.7f", -60 + (i * 3.7771) % 130)
    t = 1600000000 + i * 60; dir = (i % 360) + 0.25; alt = (i % 900) + 0.1
    pano = (i % 50 == 0) ? "true" : "false"
    f = set "/g" g "/" id ".json"
    printf "{\"id\":\"%d\",\"captured_at\":%d123,", id, t > f
    printf "\"geometry\":{\"type\":\"Point\",\"coordinates\":[%s,%s]},", lon, lat > f
    printf "\"computed_geometry\":{\"type\":\"Point\",\"coordinates\":[%s,%s]},", lon, lat > f
    printf "\"compass_angle\":%s,\"computed_compass_angle\":%s,", dir, dir > f
    printf "\"altitude\":%s,\"computed_altitude\":%s,\"is_pano\":%s,", alt, alt, pano > f
    printf "\"make\":\"GoPro\",\"model\":\"HERO7\",\"creator\":{\"username\":\"user%d\",\"id\":\"%d\"},", i % 97, i % 97 > f
    printf "\"width\":4000,\"height\":3000,\"mlyexport\":{\"schema_version\":1,\"grid\":\"g%d\",", g > f
    printf "\"size\":\"original\",\"file\":\"%d.jpg\",\"bytes\":0,\"sha256\":\"\",", id > f
    printf "\"pixel_width\":1600,\"pixel_height\":1200,\"downloaded_at\":\"2024-05-01T12:00:00Z\",\"tool_version\":\"0.1.0\"}}\n" > f
    close(f)
    printf "-GPSVersionID=2 3 0 0\n-GPSLatitude=%s\n-GPSLatitudeRef=%s\n", (lat < 0 ? -lat : lat), (lat < 0 ? "S" : "N") > args
    printf "-GPSLongitude=%s\n-GPSLongitudeRef=%s\n", (lon < 0 ? -lon : lon), (lon < 0 ? "W" : "E") > args
    printf "-GPSAltitude=%s\n-GPSAltitudeRef=0\n-GPSImgDirection=%s\n-GPSImgDirectionRef=T\n", alt, dir > args
    printf "-GPSDateStamp=%s\n-GPSTimeStamp=%s.123\n", strftime("%Y:%m:%d", t, 1), strftime("%H:%M:%S", t, 1) > args
    printf "-DateTimeOriginal=%s\n-ImageUniqueID=%d\n-Artist=user%d\n", strftime("%Y:%m:%d %H:%M:%S", t, 1), id, i % 97 > args
    printf "-Copyright=CC BY-SA 4.0, Mapillary contributors\n-overwrite_original\n%s/g%d/%d.jpg\n-execute\n", et, g, id > args
  }
}'
bytes=$(du -sb "$SET" | cut -f1)
jpeg_bytes=$(find "$SET" -name '*.jpg' -printf '%s\n' | awk '{ s += $1 } END { print s }')
echo "set: $N JPEGs, $((jpeg_bytes / N / 1024)) KB each on average, $((bytes / 1048576)) MB with the JSON"

. "$ROOT/scripts/bench-lib.sh"

# cp and mlyexport are timed ROUNDS times each, alternating, on fresh copies
# made untimed; the median counts. exiftool, 50x slower, runs once.
ROUNDS=${ROUNDS:-3}
echo "load average before timing: $(cut -d' ' -f1-3 /proc/loadavg)"
cp_times=()
mly_times=()
for ((r = 1; r <= ROUNDS; r++)); do
  rm -rf "$WORK/mly" "$WORK/cp-copy"
  cp -r "$SET" "$WORK/mly"
  cat "$SET"/*/*.jpg >/dev/null
  sync
  echo "round $r/$ROUNDS: cp -r…"
  t0=$(now)
  cp -r "$SET" "$WORK/cp-copy"
  t1=$(now)
  cp_times+=("$(elapsed "$t0" "$t1")")
  sync
  echo "round $r/$ROUNDS: mlyexport exif…"
  t0=$(now)
  "$BIN" exif --input "$WORK/mly" --quiet
  t1=$(now)
  mly_times+=("$(elapsed "$t0" "$t1")")
done
cp_s=$(printf '%s\n' "${cp_times[@]}" | median)
mly_s=$(printf '%s\n' "${mly_times[@]}" | median)
echo "cp -r runs: ${cp_times[*]} s; mlyexport runs: ${mly_times[*]} s"
# Under a drifting load the ratio within a round (cp and mlyexport back to
# back) is steadier than the ratio of the medians.
round_ratio=$(for ((r = 0; r < ROUNDS; r++)); do
  awk -v c="${cp_times[r]}" -v m="${mly_times[r]}" 'BEGIN { print c / m }'
done | median)
if [[ $(exiftool -q -q -fast -p '$GPSLatitude' "$WORK/mly/g1/$((1000000 + 1)).jpg" 2>/dev/null) == "" ]]; then
  echo "error: mlyexport wrote no GPS tags" >&2
  exit 1
fi

rm -rf "$WORK/et"
cp -r "$SET" "$WORK/et"
cat "$SET"/*/*.jpg >/dev/null
sync
echo "timing exiftool -@ argfile (one process; this takes a while)…"
t0=$(now)
exiftool -q -q -@ "$ARGS" >/dev/null
t1=$(now)
et_s=$(elapsed "$t0" "$t1")

awk -v n="$N" -v mb="$(awk -v b="$jpeg_bytes" 'BEGIN { print b / 1048576 }')" \
  -v cp="$cp_s" -v mly="$mly_s" -v et="$et_s" -v rr="$round_ratio" -v cores="$(nproc)" 'BEGIN {
  printf "\n%d JPEGs, %.0f MB, %d cores\n", n, mb, cores
  printf "%-22s %9s %11s %9s\n", "", "seconds", "files/s", "MB/s"
  printf "%-22s %9.2f %11.0f %9.1f\n", "cp -r", cp, n / cp, mb / cp
  printf "%-22s %9.2f %11.0f %9.1f\n", "mlyexport exif", mly, n / mly, mb / mly
  printf "%-22s %9.2f %11.1f %9.1f\n", "exiftool -@ argfile", et, n / et, mb / et
  printf "\nmlyexport / cp:       %.2fx  (target >= 0.5x; median of the per-round ratios %.2fx)\n", cp / mly, rr
  printf "mlyexport / exiftool: %.1fx  (target >= 20x)\n", et / mly
}'
echo "load average after timing: $(cut -d' ' -f1-3 /proc/loadavg)"
