#!/usr/bin/env bash
# Fine-tuning block5, ours against PyTorch, side by side in one run on one machine: the same cached
# block4_pool activations, the same genuine weights, the same recipe (--warmup epochs of the head
# alone, then block5 + head at RMSprop --fine-tune-lr (default 1e-5, the book's; ours defaults to 3e-5), batch 32, dropout 0.2), per seed. Prints each epoch's
# validation loss and accuracy and seconds for both, the frozen result (the last warm-up epoch) and
# the fine-tuned best epoch, and the ratio of the fine-tune epochs' times.
#
#   bash bench/finetune_peers.sh [--data DIR] [--cache DIR] [--seeds 0,1,2] [--epochs 3] [--warmup 2]
#        [--limit N] [--threads 2] [--fine-tune-lr 1e-5]
# --limit N caches a sample of N photos only (a timing run; the accuracy then means little).
# Needs weights/vgg16_notop.bin (make weights) and /usr/bin/python3 with torch and numpy (Debian's
# python3-torch). The cut cache is made when --cache does not exist yet.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=../shared/data/dogs-vs-cats-4k CACHE=${TMPDIR:-/tmp}/tl_finetune_cache SEEDS=0 EPOCHS=3 WARMUP=2 LIMIT=0 THREADS=2 FTLR=1e-5
while [ $# -gt 0 ]; do
  case "$1" in
    --data) DATA=$2; shift 2 ;;
    --cache) CACHE=$2; shift 2 ;;
    --seeds) SEEDS=$2; shift 2 ;;
    --epochs) EPOCHS=$2; shift 2 ;;
    --warmup) WARMUP=$2; shift 2 ;;
    --limit) LIMIT=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --fine-tune-lr) FTLR=$2; shift 2 ;;
    -h|--help) sed -n 2,12p "$0"; exit 0 ;;
    *) echo "finetune_peers.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
W=weights/vgg16_notop.bin
[ -f "$W" ] || { echo "finetune_peers.sh: $W not found: run make weights" >&2; exit 1; }
/usr/bin/python3 -c "import torch, numpy" 2>/dev/null || { echo "finetune_peers.sh: /usr/bin/python3 lacks torch (apt-get install python3-torch)" >&2; exit 1; }
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores; threads $THREADS"
[ "$LIMIT" -gt 0 ] && CACHE=${CACHE}_limit$LIMIT
if [ ! -d "$CACHE" ]; then
  ./tl_cache --data "$DATA" --weights "$W" --until block4_pool --dtype fp16 --out "$CACHE" --threads "$THREADS" \
    --limit "$LIMIT" --quiet
fi
NPY=$CACHE.npy/act
if [ ! -f "${NPY}_train_features.npy" ]; then
  mkdir -p "$(dirname "$NPY")"
  ./tl_inspect --export-npy "$CACHE" "$NPY" >/dev/null
fi
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
for s in ${SEEDS//,/ }; do
  echo "== seed $s: ours (tl_train --fine-tune block5 --warmup $WARMUP --epochs $EPOCHS)"
  ./tl_train --cache "$CACHE" --fine-tune block5 --warmup "$WARMUP" --epochs "$EPOCHS" --seed "$s" --threads "$THREADS" \
    --fine-tune-lr "$FTLR" --out "$TMP/ours_$s" --no-plots --quiet
  awk -F, -v w="$WARMUP" 'NR > 1 { printf "ours  epoch %d (%s): loss %.4f val_loss %.4f val_accuracy %.4f  %.1f s\n", $1,
    ($1 > w ? "block5 + head" : "head alone"), $2, $4, $5, $6 }' "$TMP/ours_$s/history.csv"
  echo "== seed $s: PyTorch $(/usr/bin/python3 -c 'import torch; print(torch.__version__)')"
  /usr/bin/python3 bench/torch_finetune.py "$NPY" "$W" --epochs "$EPOCHS" --warmup "$WARMUP" --seed "$s" \
    --fine-tune-lr "$FTLR" --threads "$THREADS" 2>/dev/null | tee "$TMP/torch_$s.txt"
  ours_t=$(awk -F, -v w="$WARMUP" 'NR > 1 && $1 > w { t += $6; k++ } END { if (k) printf "%.2f", t / k }' "$TMP/ours_$s/history.csv")
  torch_t=$(awk -v w="$WARMUP" '/^torch epoch/ && $3 + 0 > w { for (i = 1; i <= NF; i++) if ($(i + 1) == "s") t += $i; k++ }
    END { if (k) printf "%.2f", t / k }' "$TMP/torch_$s.txt")
  echo "seed $s: a fine-tune epoch takes ours $ours_t s, PyTorch $torch_t s (ratio $(awk -v a="$ours_t" -v b="$torch_t" 'BEGIN { if (b > 0) printf "%.2f", a / b }'))"
done
