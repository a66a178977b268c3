#!/usr/bin/env bash
# Every benchmark of the project, ours and PyTorch's side by side in one run on this machine,
# with the log under bench/logs/ (or $OUT when set, as on a lent GPU machine). Takes ~40 minutes
# on a 2-core CPU. What each step measures is in bench/RESULTS.md.
#   bash bench/run_all.sh [ops] [cache] [rss] [train] [uncached]      (default: all)
# TORCH_PYTHONS: space-separated Python interpreters with torch (default: /usr/bin/python3, and
# /tmp/tv/bin/python when present: a PyPI build of torch in a venv).
set -uo pipefail
cd "$(dirname "$0")/.."
DATA=${TL_SHARED_DATA:-../shared/data}/dogs-vs-cats-4k
LOGDIR=${OUT:-bench/logs}
mkdir -p "$LOGDIR"
LOG=$LOGDIR/run_all_$(date +%Y%m%d_%H%M%S).log
TMP=$(mktemp -d /tmp/tl_bench.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
STEPS=${*:-ops cache rss train uncached}
THREADS=$(nproc)
TORCH_PYTHONS=${TORCH_PYTHONS:-/usr/bin/python3 $( [ -x /tmp/tv/bin/python ] && echo /tmp/tv/bin/python)}
log() { echo "$*" | tee -a "$LOG"; }
run() { log "\$ $*"; "$@" 2>&1 | tee -a "$LOG"; }
peak_rss() { # peak_rss CMD...: runs it under GNU time, logs its output and "peak RSS N MB"
  log "\$ $*"
  /usr/bin/time -f "TIME %e s, peak RSS %M KB" "$@" 2>&1 | tr '\r' '\n' | grep -v "images (" | tee -a "$LOG"
}

log "== $(date -u +%Y-%m-%dT%H:%MZ) on $(hostname): $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $THREADS cores"
make -s all >/dev/null
./tl_convert --synthetic "$TMP/w.bin" --seed 1 >/dev/null

for step in $STEPS; do
  case $step in
  ops)
    log "== ops: every op on the VGG16 shapes (batch 8 and 32) and the head's"
    run ./build/bench_ops --batch 8,32 --reps 3
    ;;
  cache)
    log "== cache pass: all of $DATA (4,000 photos) at 224x224 through VGG16 (synthetic weights), ours vs PyTorch"
    peak_rss ./tl_cache --data "$DATA" --weights "$TMP/w.bin" --out "$TMP/cache" --threads "$THREADS"
    for py in $TORCH_PYTHONS; do
      peak_rss "$py" bench/torch_cache.py --data "$DATA" --weights "$TMP/w.bin" --out "$TMP/torch_cache" --threads "$THREADS"
      rm -rf "$TMP/torch_cache"
    done
    ;;
  rss)
    log "== memory is bounded: peak RSS caching 1,000 vs 25,000 images (a zip of the 4,000 photos repeated, 64x64)"
    /usr/bin/python3 - "$DATA" "$TMP/big.zip" <<'PY'
import os, sys, zipfile
src, out = sys.argv[1], sys.argv[2]
files = sorted(os.path.join(r, n) for r, _, ns in os.walk(src) for n in ns if n.endswith(".jpg"))
with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
    for i in range(25000):
        f = files[i % len(files)]
        z.write(f, f"train/{'dog' if '/dog/' in f else 'cat'}.{i}.jpg")
PY
    peak_rss ./tl_cache --data "$TMP/big.zip" --weights "$TMP/w.bin" --out "$TMP/rss1k" --image-size 64 --limit 1000 --quiet
    peak_rss ./tl_cache --data "$TMP/big.zip" --weights "$TMP/w.bin" --out "$TMP/rss25k" --image-size 64 --quiet
    rm -rf "$TMP/rss1k" "$TMP/rss25k" "$TMP/big.zip"
    ;;
  train)
    log "== one training epoch over 23,076 cached samples (random 7x7x512 features), batch 32 and 128"
    for round in 1 2 3; do  # interleaved rounds: the VM's noise hits every side alike
      run ./build/bench_train --samples 23076 --batch 32,128 --threads "$THREADS" --update all
      for py in $TORCH_PYTHONS; do run "$py" bench/torch_train.py --samples 23076 --batch 32,128 --threads "$THREADS"; done
    done
    ;;
  uncached)
    log "== uncached epochs (frozen base in the loop) vs the cached epoch: 1,000 photos at 224x224"
    for aug in "" "--augment"; do
      peak_rss ./tl_train --images "$DATA" --limit 1000 --weights "$TMP/w.bin" --epochs 1 --out "$TMP/unc" --no-plots $aug
    done
    peak_rss ./tl_cache --data "$DATA" --weights "$TMP/w.bin" --out "$TMP/c1000" --limit 1000 --quiet
    peak_rss ./tl_train --cache "$TMP/c1000" --epochs 1 --out "$TMP/cached" --no-plots
    ;;
  *) log "unknown step $step" ;;
  esac
done
log "== log: $LOG"
