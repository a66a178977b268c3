#!/usr/bin/env bash
# Caches a dataset on N Slurm nodes (one job-array task per part), then merges the parts into one
# cache, as a job that starts when every part has succeeded. Run from the checkout (built with make):
#   tools/cluster/slurm_cache.sh N DATA WEIGHTS ROOT [tl_cache options...]
# -> ROOT/part-K (one cache per part, each resumable: resubmit a failed task as is) and ROOT/cache.
# Site settings (partition, account, GPUs, time) go in SBATCH_* variables or the #SBATCH lines of
# tools/cluster/slurm_part.sbatch.
set -euo pipefail
if [ $# -lt 4 ]; then
  echo "usage: $0 N DATA WEIGHTS ROOT [tl_cache options...]" >&2
  exit 2
fi
N=$1 DATA=$2 WEIGHTS=$3 ROOT=$4
shift 4
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$ROOT"
# Every task gets SLURM_ARRAY_TASK_ID (1..N), _MIN and _COUNT: tl_cache --part auto reads them.
jid=$(sbatch --parsable --array=1-"$N" --job-name=tl_cache_part --output="$ROOT/part-%a.log" \
  "$here/slurm_part.sbatch" "$DATA" "$WEIGHTS" "$ROOT" "$@")
parts=()
for k in $(seq 1 "$N"); do parts+=("$ROOT/part-$k"); done
mid=$(sbatch --parsable --dependency=afterok:"$jid" --job-name=tl_cache_merge --output="$ROOT/merge.log" \
  --wrap "$(printf '%q ' ./tl_cache --merge "$ROOT/cache" "${parts[@]}")")
echo "submitted parts as job $jid (array 1-$N) and the merge as job $mid; the cache will be $ROOT/cache"
