#!/usr/bin/env bash
# Caches a dataset on a Slurm cluster, one job-array task per part, then merges the parts into one cache:
#   tools/cluster/slurm_cache.sh [--cpus C] [--gpus G] [--sbatch OPTION]... N DATA WEIGHTS ROOT [tl_cache options...]
# -> ROOT/part-K (task K's cache, log ROOT/part-K.log) and ROOT/cache (the merge job's, log ROOT/merge.log).
# Run it from anywhere; the programs are this checkout's (built with make).
# Resources: each task gets the site's default (one CPU) unless told: --cpus C (C CPUs, C threads),
# --gpus G (--gres=gpu:G; several GPUs: tl_cache --device cuda:all), --sbatch OPTION (any sbatch option,
# e.g. --sbatch --partition=gpu --sbatch --time=02:00:00; or SBATCH_PARTITION etc. in the environment).
# A failed or cancelled task: ROOT/part-K/rerun.txt has the line that resubmits it alone (sbatch --array=K
# ...: it caches part K of N and resumes from its whole shards); the merge job then fails at once, naming
# the part, instead of pending for ever; merge again once the part has run (ROOT/merge.log says how).
set -euo pipefail
usage() {
  echo "usage: $0 [--cpus C] [--gpus G] [--sbatch OPTION]... [--no-check] N DATA WEIGHTS ROOT [tl_cache options...]" >&2
  exit 2
}
site=() part_site=() extra=() check=1
while [ $# -gt 0 ]; do
  case "$1" in
    --cpus) [ $# -ge 2 ] || usage; part_site+=("--cpus-per-task=$2"); shift 2 ;;
    --gpus) [ $# -ge 2 ] || usage; part_site+=("--gres=gpu:$2"); [ "$2" -gt 1 ] && extra+=(--device cuda:all); shift 2 ;;
    --sbatch) [ $# -ge 2 ] || usage; site+=("$2"); shift 2 ;;
    --no-check) check=0; shift ;;
    --help|-h) usage ;;
    -*) echo "$0: unknown option $1" >&2; usage ;;
    *) break ;;
  esac
done
[ $# -ge 4 ] || usage
N=$1
[[ "$N" =~ ^[1-9][0-9]*$ ]] || { echo "$0: N must be a number of parts (1 or more), got '$N'" >&2; exit 2; }
# Absolute paths, so that the tasks (which start in the checkout) and the rerun lines work from anywhere.
DATA=$(realpath -m "$2") WEIGHTS=$(realpath -m "$3") ROOT=$(realpath -m "$4")
shift 4
checkout=$(cd "$(dirname "$0")/../.." && pwd)
[ -x "$checkout/tl_cache" ] || { echo "$0: $checkout/tl_cache is missing; build it first (make)" >&2; exit 1; }
here=$checkout/tools/cluster
# sbatch's options for a part (the array's range goes first), then the script and its arguments.
part_cmd=(--chdir="$checkout" --output="$ROOT/part-%a.log" ${site[@]+"${site[@]}"} ${part_site[@]+"${part_site[@]}"}
  "$here/slurm_part.sbatch" "$N" "$DATA" "$WEIGHTS" "$ROOT" ${extra[@]+"${extra[@]}"} "$@")
# A task that asks for more than any node has is accepted by sbatch and then pends for ever
# (Reason=PartitionConfig): ask the scheduler first whether the tasks could ever start.
if [ $check = 1 ] && ! why=$(sbatch --test-only --array=1-"$N" "${part_cmd[@]}" 2>&1); then
  echo "$0: the parts could never start here (sbatch --test-only: $(tail -1 <<<"$why" | sed 's/^sbatch: error: //')):" \
    "ask for less (fewer --cpus; no --gpus on a cluster without GPUs); nothing submitted (--no-check submits anyway)" >&2
  exit 1
fi
mkdir -p "$ROOT"
for k in $(seq 1 "$N"); do
  mkdir -p "$ROOT/part-$k"
  printf '%q ' sbatch --array="$k" "${part_cmd[@]}" | sed 's/ $//' >"$ROOT/part-$k/rerun.txt"
  echo >>"$ROOT/part-$k/rerun.txt"
done
jid=$(sbatch --parsable --array=1-"$N" "${part_cmd[@]}")
jid=${jid%%;*}
mid=$(sbatch --parsable --dependency=afterany:"$jid" --chdir="$checkout" --output="$ROOT/merge.log" \
  ${site[@]+"${site[@]}"} "$here/slurm_merge.sbatch" "$ROOT" "$N")
mid=${mid%%;*}
echo "submitted: parts 1-$N as array job $jid (logs $ROOT/part-K.log), merge as job $mid (log $ROOT/merge.log)"
echo "the cache will be $ROOT/cache; watch: squeue -j $jid,$mid; a failed part K: bash $ROOT/part-K/rerun.txt"
