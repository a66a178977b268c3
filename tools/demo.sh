#!/usr/bin/env bash
# make demo: the whole pipeline on ../shared/data/dogs-vs-cats-4k (4,000 real photos) with
# SYNTHETIC weights, in a few minutes on the CPU. It shows every step working; the accuracy it
# prints means nothing, because synthetic weights are not ImageNet weights.
#   DEMO_DATA (default ../shared/data/dogs-vs-cats-4k), DEMO_SIZE (default 128), DEMO_OUT (default demo)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DEMO_DATA:-../shared/data/dogs-vs-cats-4k}
SIZE=${DEMO_SIZE:-128}
OUT=${DEMO_OUT:-demo}
if [ ! -d "$DATA" ]; then
  echo "demo: $DATA not found; set DEMO_DATA to a folder of cat/ and dog/ photos (train/ and valid/ inside also work)" >&2
  exit 1
fi
banner() { printf '\n==== %s\n' "$*"; }
banner "SYNTHETIC weights: every accuracy below is meaningless; this only shows the pipeline working"
mkdir -p "$OUT"
./tl_convert --synthetic "$OUT/vgg16_synthetic.bin" --seed 1
banner "1. cache $DATA through the frozen VGG16 base (${SIZE}x${SIZE}; the tutorial's 45-minute step)"
./tl_cache --data "$DATA" --weights "$OUT/vgg16_synthetic.bin" --out "$OUT/cache" --image-size "$SIZE"
./tl_inspect "$OUT/cache" | head -3
banner "2. train the head on the cache"
./tl_train --cache "$OUT/cache" --out "$OUT/model" --epochs 5
banner "3. predict a few validation photos"
find "$DATA" -path '*valid*' -name '*.jpg' | sort | head -6 | xargs ./tl_predict --model "$OUT/model/best.bin"
banner "4. the uncached path: frozen base in the loop, with augmentation (1 epoch on 200 photos)"
./tl_train --images "$DATA" --limit 200 --weights "$OUT/vgg16_synthetic.bin" --image-size "$SIZE" --augment \
  --save-augmented 4 --epochs 1 --out "$OUT/uncached"
banner "outputs in $OUT/: cache/, model/ (curves.png, report.txt), uncached/augmented/*.png"
banner "SYNTHETIC weights: the accuracies above say nothing about transfer learning"
