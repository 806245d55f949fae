# Shared by the benchmark scripts (sourced, not run): reading /usr/bin/time -v
# output, medians, and the synthetic downloads folders bench-layers.sh and
# bench-postgis.sh share. Needs ROOT (the checkout) set by the caller.

# Seconds from /usr/bin/time's "Elapsed (wall clock) time (h:mm:ss or m:ss): ..."
wall() { awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; printf "%.2f", s}' "$1"; }
# CPU seconds (user + system): steadier than wall time on a shared machine.
cpu() { awk -F': ' '/User time|System time/ {s+=$2} END {printf "%.2f", s}' "$1"; }
# Peak resident set size in MB.
rss_mb() { awk -F': ' '/Maximum resident set size/ {printf "%.0f", $2/1024}' "$1"; }
# The median of the numbers on stdin, one a line.
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# synth_folder DIR N: DIR/downloads with N synthetic images in 64 grids and
# DIR/points.csv, made once and kept (DIR/.complete marks a finished one).
synth_folder() {
  local dir=$1 n=$2
  [ -f "$dir/.complete" ] && return 0
  echo "generating $n synthetic images in $dir ..." >&2
  rm -rf "$dir"; mkdir -p "$dir"
  python3 "$ROOT/scripts/synth-downloads.py" "$dir/downloads" "$n" --grids 64 --csv "$dir/points.csv"
  touch "$dir/.complete"
}
