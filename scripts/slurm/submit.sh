#!/usr/bin/env bash
# Submits a sharded fetch to Slurm: an array of N tasks (fetch.sbatch, shard K of N each) and a
# job that merges them into one set of layers once every task succeeded (layers.sbatch,
# --dependency=afterok). Prints the two job ids, "ARRAY_ID LAYERS_ID", on stdout.
#
# Usage: scripts/slurm/submit.sh N OUTPUT_DIR [fetch flags...] [-- layers flags...]
#   e.g. scripts/slurm/submit.sh 8 /shared/berlin --bbox 13.08,52.33,13.76,52.68 --cell-size 2km \
#          --size 1024 --token-file ~/.mapillary-token -- --format gpkg,html
# Environment:
#   MLYEXPORT     the mlyexport binary, on a path every node sees (default: mlyexport on PATH)
#   PARALLEL      at most this many shards at once (sbatch --array=0-(N-1)%PARALLEL); default all
#   SBATCH_*      sbatch's own variables (SBATCH_PARTITION, SBATCH_TIMELIMIT, SBATCH_ACCOUNT...)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[ $# -ge 2 ] || { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
n=$1 out=$2
shift 2
[[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "submit: N \`$n\` must be a whole number of shards, at least 1" >&2; exit 2; }
fetch_flags=() layers_flags=()
while [ $# -gt 0 ]; do
  if [ "$1" = "--" ]; then shift; layers_flags=("$@"); break; fi
  fetch_flags+=("$1"); shift
done
mkdir -p "$out"
out=$(cd "$out" && pwd)
array="0-$((n - 1))${PARALLEL:+%$PARALLEL}"
fetch_id=$(sbatch --parsable --array="$array" "$here/fetch.sbatch" \
  --shards "$n" --output "$out" --quiet "${fetch_flags[@]}")
fetch_id=${fetch_id%%;*}
layers_id=$(sbatch --parsable --dependency="afterok:$fetch_id" --kill-on-invalid-dep=yes \
  "$here/layers.sbatch" --input "$out" --quiet "${layers_flags[@]}")
layers_id=${layers_id%%;*}
echo "submit: shards are job $fetch_id (array $array), layers job $layers_id after all succeed" >&2
echo "submit: watch with squeue -j $fetch_id,$layers_id or mlyexport status --input $out" >&2
echo "$fetch_id $layers_id"
