#!/usr/bin/env bash
# End-to-end checks of the programs as a user runs them: --help and bad flags, the first-run
# guidance, converting synthetic weights, caching real photos from ../shared/data (resume after
# kill -9 gives identical bytes; a stale cache is refused), training, inspecting, exporting, and
# predicting (bad files, Kaggle format), and the uncached path with augmentation.
# Needs the programs built (make). Uses TL_SHARED_DATA (default ../shared/data); the photo steps
# are skipped, visibly, without it.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
DATA=${TL_SHARED_DATA:-$ROOT/../shared/data}
TMP=$(mktemp -d /tmp/tl_e2e.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
PASS=0
FAIL=0
ok() { PASS=$((PASS + 1)); echo "  ok: $1"; }
bad() { FAIL=$((FAIL + 1)); echo "  FAILED: $1"; }
check() { # check "description" command...
  local d=$1; shift
  if "$@" >/dev/null 2>&1; then ok "$d"; else bad "$d"; fi
}
expect_error() { # expect_error "description" "text in stderr" command...
  local d=$1 text=$2; shift 2
  local out rc
  out=$("$@" 2>&1 >/dev/null); rc=$?
  if [ $rc -ne 0 ] && grep -qF -- "$text" <<<"$out"; then ok "$d"; else bad "$d (rc=$rc, said: $out)"; fi
}

echo "== every program: --help, and one-line errors for bad flags"
for p in tl_cache tl_train tl_predict tl_inspect tl_convert; do
  check "$p --help" bash -c "./$p --help | grep -q '^usage: $p'"
  expect_error "$p --bogus" "$p: error: unknown option --bogus; see $p --help" ./$p --bogus
done
expect_error "tl_train --epochs abc" "--epochs: expected an integer, got 'abc'" ./tl_train --epochs abc
expect_error "tl_cache --batch (no value)" "--batch needs a value" ./tl_cache --batch
expect_error "tl_cache --dtype fp8" "--dtype: expected fp32 or fp16" ./tl_cache --dtype fp8 --weights /dev/null --data .
expect_error "tl_convert without arguments" "expected IN and OUT" ./tl_convert
expect_error "tl_predict without images" "no images given" ./tl_predict
expect_error "tl_train on several GPUs is refused" "only tl_cache runs on several GPUs" ./tl_train --device cuda:0,1
expect_error "tl_cache --precision fp8" "--precision: expected fp32, tf32 or bf16, got 'fp8'" ./tl_cache --precision fp8 --weights /dev/null --data .
expect_error "tl_cache --precision bf16 on a CPU without AMX or AVX512_BF16" "--precision bf16 on the CPU needs AMX or AVX512_BF16, which this CPU lacks" \
  env TL_CPU_BF16=0 TL_CPU_AMX=0 ./tl_cache --precision bf16 --device cpu --weights tests/fixtures/weights_keras1.h5 --data . --out "$TMP/bfc"
expect_error "tl_cache --precision tf32 on the CPU" "--precision tf32 runs on the GPU's tensor cores only; the CPU computes in fp32 or bf16" \
  ./tl_cache --precision tf32 --device cpu --weights tests/fixtures/weights_keras1.h5 --data . --out "$TMP/bfc"
expect_error "tl_train --precision with a cache" "--precision needs --images" ./tl_train --cache "$TMP" --precision tf32
expect_error "tl_cache --decode-memory -5" "--decode-memory must be between 0 (no limit) and 1073741824 MB, got -5" \
  ./tl_cache --decode-memory -5 --weights /dev/null --data .

echo "== the README's examples use flags the programs have"
nflags=0; nbad=0
while read -r prog rest; do
  # The help captured first: `--help | grep -q` under pipefail fails when grep exits before the
  # program has written everything (SIGPIPE), which a slow (sanitized) build makes likely.
  help=$(./"$prog" --help)
  for f in $(grep -oE -- '--[a-z][a-z0-9-]*' <<<"$rest"); do
    nflags=$((nflags + 1))
    if ! grep -qE -- "^  $f( |$)" <<<"$help"; then nbad=$((nbad + 1)); echo "    README: $prog $f is not in $prog --help"; fi
  done
done < <(grep -oE '\./tl_(cache|train|predict|inspect|convert)( [^`|#]*)?' README.md | sed 's|^\./||')
if [ $nflags -ge 15 ] && [ $nbad -eq 0 ]; then ok "README examples: $nflags flags, all in --help"; else bad "README examples: $nbad of $nflags flags unknown"; fi
for t in run demo weights test bench fixtures; do
  check "README's make $t is a Makefile target" grep -q "^$t:" Makefile
done

echo "== a fresh checkout: tl_cache says what is missing and how to get it"
mkdir -p "$TMP/fresh"
out=$(cd "$TMP/fresh" && "$ROOT/tl_cache" 2>&1); rc=$?
if [ $rc -ne 0 ] && grep -q "weights/vgg16_notop.bin is missing" <<<"$out" && grep -q "tl_convert --synthetic" <<<"$out" &&
   grep -q "data/train is missing" <<<"$out" && grep -q "kagglecatsanddogs_5340.zip" <<<"$out"; then
  ok "no-argument tl_cache explains weights and data"
else
  bad "no-argument tl_cache: $out"
fi
expect_error "tl_train without a cache" "no such cache folder; run ./tl_cache first" ./tl_train --cache "$TMP/none"
expect_error "a misspelt flag gets a suggestion" "unknown option --epoch, did you mean --epochs?" ./tl_train --epoch 3
if [ -d "$DATA/dogs-vs-cats-4k" ]; then
  expect_error "tl_train --cache on a folder of photos" "holds photos, not a cache: make a cache of them with ./tl_cache --data" \
    ./tl_train --cache "$DATA/dogs-vs-cats-4k"
fi
out=$(./tl_cache --data /nonexistent --weights /nonexistent 2>&1)
if grep -q "no usable GPU" <<<"$out"; then bad "no GPU notice before argument errors: $out"; else ok "no GPU notice before argument errors"; fi
out=$(cd "$TMP/fresh" && mkdir -p tools && cp "$ROOT/tools/run.sh" "$ROOT/tools/get_weights.sh" tools/ && for p in tl_cache tl_train tl_convert tl_inspect; do ln -sf "$ROOT/$p" .; done &&
      TL_OFFLINE=1 bash tools/run.sh 2>&1); rc=$?
if [ $rc -ne 0 ] && grep -q "cannot download the VGG16 weights" <<<"$out" && grep -q "md5 6d6bbae143d832006294945121d1f1fc" <<<"$out" &&
   grep -q "WEIGHTS=... DATA=... make run" <<<"$out"; then
  ok "make run without internet gives the manual steps"
else
  bad "make run offline: $out"
fi
# With the weights already there and no photos, only the photos' steps (issue 24, goal 5).
out=$(cd "$TMP/fresh" && mkdir -p weights && cp "$ROOT/tests/fixtures/weights_plain.npz" weights/vgg16_notop.bin &&
      TL_OFFLINE=1 TL_NO_BUILD=1 bash tools/run.sh 2>&1); rc=$?
rm -rf "$TMP/fresh/weights"
if [ $rc -ne 0 ] && grep -q "cannot download the Dogs vs. Cats photos (no internet" <<<"$out" && ! grep -q "md5\|weights" <<<"$out" &&
   grep -q "and run:   DATA=... make run" <<<"$out"; then
  ok "make run offline with the weights there lists only the photos"
else
  bad "make run offline with the weights there: $out"
fi

echo "== weights"
W=$TMP/vgg16_synth.bin
check "tl_convert --synthetic" ./tl_convert --synthetic "$W" --seed 3
check "tl_convert --synthetic again is a no-op" ./tl_convert --synthetic "$W" --seed 3
expect_error "tl_convert refuses to overwrite other content" "exists; pass --force" ./tl_convert --synthetic "$W" --seed 4
check "tl_inspect verifies the weights" bash -c "./tl_inspect '$W' | grep -q 'crc32.*(verified)'"
check "convert a Keras .h5" ./tl_convert tests/fixtures/weights_keras1.h5 "$TMP/k.bin"
check "convert a torch legacy .pth" ./tl_convert tests/fixtures/weights_torch_legacy.pth "$TMP/t.bin"
check "convert an .npz" ./tl_convert tests/fixtures/weights_compressed.npz "$TMP/n.bin"
check "same tensors, same preprocessing: identical files" bash -c "
  ./tl_convert --preprocess caffe tests/fixtures/weights_torch_zip.pth '$TMP/t2.bin' >/dev/null &&
  ./tl_convert --preprocess caffe tests/fixtures/weights_plain.npz '$TMP/n2.bin' >/dev/null && cmp -s '$TMP/k.bin' '$TMP/t2.bin' && cmp -s '$TMP/k.bin' '$TMP/n2.bin'"
head -c 1000 "$W" >"$TMP/trunc.bin"
expect_error "a truncated weights file" "truncated" ./tl_inspect "$TMP/trunc.bin"

if [ ! -d "$DATA/dogs-vs-cats-4k" ]; then
  echo "SKIPPED: the photo steps: no $DATA/dogs-vs-cats-4k (set TL_SHARED_DATA)"
else
  PH=$DATA/dogs-vs-cats-4k
  echo "== make run with WEIGHTS and DATA given"
  check "tools/run.sh (caches, trains)" env WEIGHTS="$W" DATA="$PH" CACHE_DIR="$TMP/run_cache" \
    MODEL_DIR="$TMP/run_model" CACHE_ARGS="--limit 40 --image-size 32 --quiet" TRAIN_ARGS="--epochs 1 --quiet" bash tools/run.sh
  check "make run wrote a model" test -s "$TMP/run_model/best.bin"

  echo "== caching real photos (synthetic weights, 64x64 images)"
  C=$TMP/cache
  check "tl_cache 48 photos" ./tl_cache --data "$PH" --weights "$W" --out "$C" --image-size 64 --limit 48 --shard-size 10 --quiet
  check "tl_inspect the cache" bash -c "./tl_inspect '$C' | grep -q 'every crc32 verified'"
  check "tl_inspect a shard" bash -c "./tl_inspect '$C/train-00000.bin' | grep -q 'features       2x2x512 fp32'"
  check "the manifest lists 48 files" bash -c "[ \$(grep -vc '^#' '$C/manifest.tsv') -eq 49 ]"
  expect_error "a stale cache is refused" "holds a cache made with other settings (feature_shape: 2x2x512 -> 1x1x512; image_size: 64 -> 32)" \
    ./tl_cache --data "$PH" --weights "$W" --out "$C" --image-size 32 --limit 48 --shard-size 10 --quiet
  check "--export-npy" ./tl_inspect --export-npy "$C" "$TMP/exp"
  n=$(grep -vc '^#' "$C/manifest.tsv"); n=$((n - 1))
  bytes=$(( $(stat -c %s "$TMP/exp_train_features.npy") + $(stat -c %s "$TMP/exp_valid_features.npy") - 256 ))
  if [ "$bytes" -eq $((n * 2048 * 4)) ]; then ok "exported features: $n x 2x2x512 float32"; else bad "export size $bytes"; fi

  echo "== resume after kill -9 gives the same bytes as an uninterrupted run"
  R1=$TMP/r_full R2=$TMP/r_killed
  ./tl_cache --data "$PH" --weights "$W" --out "$R1" --image-size 96 --limit 160 --shard-size 16 --quiet --threads 1
  ./tl_cache --data "$PH" --weights "$W" --out "$R2" --image-size 96 --limit 160 --shard-size 16 --quiet --threads 1 &
  pid=$!
  for _ in $(seq 1 600); do
    [ "$(ls "$R2"/train-*.bin 2>/dev/null | wc -l)" -ge 2 ] && break
    sleep 0.05
  done
  kill -9 $pid 2>/dev/null
  wait $pid 2>/dev/null
  have=$(ls "$R2"/train-*.bin 2>/dev/null | wc -l)
  total=$(ls "$R1"/*.bin | wc -l)
  if [ "$have" -ge 1 ] && [ "$have" -lt "$total" ]; then ok "killed with $have of $total shards on disk"; else bad "kill timing: $have of $total shards"; fi
  check "rerun resumes" ./tl_cache --data "$PH" --weights "$W" --out "$R2" --image-size 96 --limit 160 --shard-size 16 --quiet
  same=1
  for f in "$R1"/*.bin "$R1"/manifest.tsv; do cmp -s "$f" "$R2/$(basename "$f")" || same=0; done
  [ $same -eq 1 ] && ok "resumed cache is byte-identical ($total shards + manifest)" || bad "resumed cache differs"

  echo "== partitioned caching: the Slurm script (sbatch and srun replaced by loops), merge = one run"
  FB=$TMP/fakebin
  mkdir -p "$FB"
  # sbatch: an array job runs its tasks as separate processes at once, with Slurm's variables;
  # --dependency=afterany waits for them (they have ended when it runs); --test-only accepts.
  # (tests/cluster.sh runs the same scripts on a real Slurm.)
  cat >"$FB/sbatch" <<'SBEOF'
#!/usr/bin/env bash
state=${FAKE_SLURM_STATE:?}
array="" out="" dir=.
while [ $# -gt 0 ]; do
  case "$1" in
    --test-only) exit 0 ;;
    --array=*) array=${1#--array=} ;;
    --output=*) out=${1#--output=} ;;
    --chdir=*) dir=${1#--chdir=} ;;
    --parsable|--dependency=afterany:*) ;;
    -*) echo "fake sbatch: unexpected option $1" >&2; exit 2 ;;
    *) break ;;
  esac
  shift
done
cd "$dir" || exit 1
id=$(( $(cat "$state/next" 2>/dev/null || echo 100) + 1 )); echo $id >"$state/next"
if [ -n "$array" ]; then
  lo=${array%-*} hi=${array#*-} pids=()
  for i in $(seq "$lo" "$hi"); do
    SLURM_ARRAY_TASK_ID=$i SLURM_ARRAY_TASK_MIN=$lo SLURM_ARRAY_TASK_COUNT=$((hi - lo + 1)) SLURM_ARRAY_JOB_ID=$id \
      bash "$@" >>"${out//%a/$i}" 2>&1 &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
else
  bash "$@" >>"$out" 2>&1
fi
echo $id
SBEOF
  printf '#!/usr/bin/env bash\nexec "$@"\n' >"$FB/srun"
  chmod +x "$FB/sbatch" "$FB/srun"
  mkdir -p "$TMP/slurm_state"
  S=$TMP/slurm
  check "tools/cluster/slurm_cache.sh: 3 parts and the merge" env PATH="$FB:$PATH" FAKE_SLURM_STATE="$TMP/slurm_state" \
    tools/cluster/slurm_cache.sh 3 "$(realpath "$PH")" "$W" "$S" --image-size 32 --limit 60 --shard-size 7
  check "every part ran as its own process, with --part auto/N" bash -c "grep -q 'part 3 of 3 (from Slurm: SLURM_ARRAY_TASK_ID=3, N=3)' '$S/part-3.log'"
  ./tl_cache --data "$(realpath "$PH")" --weights "$W" --out "$TMP/single" --image-size 32 --limit 60 --shard-size 7 --quiet
  check "the merged cache equals one run over all files, byte for byte" diff -r -x .tl_cache.lock "$TMP/single" "$S/cache"
  # Trained from the same path (model files record the cache's folder), the models are the same bytes.
  ./tl_train --cache "$TMP/single" --out "$TMP/single_model" --epochs 2 --batch 8 --no-plots --quiet
  mv "$TMP/single" "$TMP/single_run" && mv "$S/cache" "$TMP/single"
  ./tl_train --cache "$TMP/single" --out "$TMP/merged_model" --epochs 2 --batch 8 --no-plots --quiet
  check "training on the merged cache is bit-identical" cmp "$TMP/single_model/model.bin" "$TMP/merged_model/model.bin"
  expect_error "--merge with a part missing" "--merge: part 2/3 missing" ./tl_cache --merge "$TMP/m2" "$S/part-1" "$S/part-3"

  echo "== bad files are skipped, counted and listed"
  B=$TMP/bad_data
  mkdir -p "$B/cat" "$B/dog"
  ls "$PH/train/cat" | head -8 | while read -r f; do cp "$PH/train/cat/$f" "$B/cat/"; done
  ls "$PH/train/dog" | head -8 | while read -r f; do cp "$PH/train/dog/$f" "$B/dog/"; done
  : >"$B/cat/empty.jpg"
  head -c 3000 "$PH/train/dog/$(ls "$PH/train/dog" | head -1)" >"$B/dog/truncated.jpg"
  cp "$DATA/odd/webp-bytes-named-png_cat_800x450.png" "$B/cat/"
  out=$(./tl_cache --data "$B" --weights "$W" --out "$TMP/bc" --image-size 32 --max-bad 0.2 2>&1); rc=$?
  if [ $rc -eq 0 ] && grep -q "skipped 3" <<<"$out" && grep -q "skipped: empty file" "$TMP/bc/manifest.tsv" &&
     grep -q "skipped: truncated JPEG" "$TMP/bc/manifest.tsv" && grep -q "skipped: WebP" "$TMP/bc/manifest.tsv"; then
    ok "3 bad files skipped and listed with reasons"
  else
    bad "bad files: $out"
  fi
  expect_error "over --max-bad fails" "over --max-bad" ./tl_cache --data "$B" --weights "$W" --out "$TMP/bc2" --image-size 32 --max-bad 0.1 --quiet

  echo "== training and prediction"
  M=$TMP/model
  check "tl_train 3 epochs" ./tl_train --cache "$C" --out "$M" --epochs 3 --quiet
  for f in model.bin best.bin history.csv curves.png mistakes.png report.txt; do check "tl_train wrote $f" test -s "$M/$f"; done
  check "report.txt lists the most confidently wrong validation photos" grep -q "most confidently wrong" "$M/report.txt"
  check "history.csv has 3 epochs" bash -c "[ \$(wc -l <'$M/history.csv') -eq 4 ]"
  check "tl_inspect the model" bash -c "./tl_inspect '$M/best.bin' | grep -q 'preprocess     caffe'"
  check "--resume to 4 epochs" ./tl_train --cache "$C" --out "$M" --epochs 4 --resume --quiet
  expect_error "an earlier run in --out is refused" "already holds a training run (model.bin, history.csv with 4 epochs, best.bin); pass --resume to continue it, --force to replace it" \
    ./tl_train --cache "$C" --out "$M" --epochs 1 --quiet
  check "report.txt says how the best epoch was chosen" grep -q "by validation loss, --monitor" "$M/report.txt"
  check "--monitor val_accuracy with --force" ./tl_train --cache "$C" --out "$TMP/mon" --epochs 2 --monitor val_accuracy --quiet
  check "report.txt: by validation accuracy" grep -q "by validation accuracy, --monitor" "$TMP/mon/report.txt"
  expect_error "--model DIR" "is a directory; give the model file inside it" ./tl_predict --model "$M" "$TMP"
  expect_error "tl_predict --precision other than the model's" "--precision bf16: $M/best.bin was trained on features computed in fp32" \
    ./tl_predict --model "$M/best.bin" --precision bf16 "$TMP"
  check "tl_inspect of a cache shows its precision" bash -c "./tl_inspect '$C' | grep -q 'precision.*fp32'"
  check "tl_inspect of a cache names the classes once" bash -c "[ \$(./tl_inspect '$C' | grep -c classes) -eq 1 ]"
  check "history.csv has 4 epochs after resume" bash -c "[ \$(wc -l <'$M/history.csv') -eq 5 ]"
  P=$TMP/pred
  mkdir -p "$P"
  cp "$PH/valid/cat/$(ls "$PH/valid/cat" | head -1)" "$P/1.jpg"
  cp "$PH/valid/dog/$(ls "$PH/valid/dog" | head -1)" "$P/10.jpg"
  cp "$PH/valid/dog/$(ls "$PH/valid/dog" | sed -n 2p)" "$P/2.jpg"
  printf 'not an image' >"$P/3.jpg"
  out=$(./tl_predict --model "$M/best.bin" --kaggle "$TMP/sub.csv" --clip 0.01 --csv "$TMP/pred.csv" "$P" 2>"$TMP/pred.err"); rc=$?
  if [ $rc -eq 1 ] && [ "$(grep -c $'\t' <<<"$out")" -eq 4 ] && grep -q $'3.jpg\t-\terror: not a supported image' <<<"$out"; then
    ok "tl_predict: 3 predictions and a line for the bad file (exit 1)"
  else
    bad "tl_predict: rc=$rc $out"
  fi
  if [ "$(head -1 "$TMP/sub.csv")" = "id,label" ] && [ "$(cut -d, -f1 "$TMP/sub.csv" | tail -n +2 | tr '\n' ' ')" = "1 2 3 10 " ] &&
     grep -qx '3,0.5' "$TMP/sub.csv" && grep -q "3.jpg could not be read (not a supported image.*): its submission row says 0.5" "$TMP/pred.err"; then
    ok "--kaggle: a row for every id, sorted; the unreadable one 0.5, said on stderr"
  else
    bad "--kaggle: $(cat "$TMP/sub.csv") / $(cat "$TMP/pred.err")"
  fi
  # A zip of photos with one entry whose sizes lie (4 GiB compressed): one error line, not a failed run.
  if command -v python3 >/dev/null; then
    python3 - "$P" "$TMP/lying.zip" <<'PYEOF'
import struct, sys, zipfile
src, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(out, "w") as z:
    for n in ("1.jpg", "2.jpg", "10.jpg"):
        z.write(f"{src}/{n}", n)
    z.writestr("4.jpg", b"x" * 100)
b = bytearray(open(out, "rb").read())
cd = b.rfind(b"PK\x01\x02")  # the last central record: 4.jpg
struct.pack_into("<I", b, cd + 20, 0xFFFFFFF0)
open(out, "wb").write(bytes(b))
PYEOF
    out=$(./tl_predict --model "$M/best.bin" "$TMP/lying.zip" 2>&1); rc=$?
    if [ $rc -eq 1 ] && [ "$(grep -c $'\t[01]\.[0-9]' <<<"$out")" -eq 3 ] && grep -q $'4.jpg\t-\terror: .*run past the end of the archive' <<<"$out"; then
      ok "tl_predict on a zip with a lying entry: 3 predictions and one error line"
    else
      bad "tl_predict lying zip: rc=$rc $out"
    fi
  fi
  echo "== ONNX export (tl_predict --export-onnx), run in ONNX Runtime against tl_predict"
  if python3 -c "import onnxruntime, PIL, numpy" 2>/dev/null; then
    mapfile -t OP < <(ls "$PH"/valid/cat/*.jpg | head -3; ls "$PH"/valid/dog/*.jpg | head -3)
    onnx_case() {  # onnx_case NAME MODEL
      ./tl_predict --model "$2" --export-onnx "$TMP/$1.onnx" --csv "$TMP/$1.csv" --quiet "${OP[@]}" >/dev/null &&
        python3 tests/onnx_check.py "$TMP/$1.onnx" "$TMP/$1.csv" >"$TMP/$1.onnx.log" 2>&1
      local rc=$?
      if [ $rc -eq 0 ]; then ok "ONNX, $1: $(cat "$TMP/$1.onnx.log")"; else bad "ONNX, $1: $(cat "$TMP/$1.onnx.log")"; fi
    }
    onnx_case "caffe convention, synthetic weights, 64x64" "$M/best.bin"
    ./tl_convert --synthetic "$TMP/w_torch.bin" --preprocess torch --seed 5 >/dev/null
    ./tl_cache --data "$PH" --weights "$TMP/w_torch.bin" --out "$TMP/c_torch" --image-size 32 --limit 40 --quiet
    ./tl_train --cache "$TMP/c_torch" --out "$TMP/m_torch" --epochs 1 --no-plots --quiet
    onnx_case "torch convention, synthetic weights, 32x32" "$TMP/m_torch/best.bin"
    if ./tl_inspect weights/vgg16_notop.bin 2>/dev/null | grep -q "known as       keras-vgg16-imagenet"; then
      ./tl_cache --data "$PH" --weights weights/vgg16_notop.bin --out "$TMP/c_real" --limit 24 --quiet
      ./tl_train --cache "$TMP/c_real" --out "$TMP/m_real" --epochs 1 --no-plots --quiet
      onnx_case "genuine ImageNet weights, 224x224" "$TMP/m_real/best.bin"
    fi
    ./tl_cache --data "$PH" --weights "$W" --out "$TMP/c_cut" --image-size 64 --limit 24 --until block4_pool --quiet
    ./tl_train --cache "$TMP/c_cut" --fine-tune block5 --warmup 1 --epochs 2 --out "$TMP/m_ft" --no-plots --quiet
    onnx_case "fine-tuned block5 (synthetic weights, 64x64)" "$TMP/m_ft/model.bin"
  elif [ "${TL_REQUIRE_ONNX:-0}" = 1 ]; then
    bad "ONNX export check: python3 lacks onnxruntime, PIL or numpy (pip install onnxruntime pillow numpy)"
  else
    echo "SKIPPED: ONNX export check: python3 lacks onnxruntime, PIL or numpy (pip install onnxruntime pillow numpy)"
  fi

  L=$TMP/labelled
  mkdir -p "$L/cat" "$L/dog"
  cp "$PH"/valid/cat/*.jpg "$L/cat/" 2>/dev/null; cp "$PH"/valid/dog/*.jpg "$L/dog/" 2>/dev/null
  out=$(./tl_predict --model "$M/best.bin" --report "$TMP/pred_report.txt" --csv "$TMP/lab.csv" "$L" 2>&1 >/dev/null); rc=$?
  n=$(find "$L" -name '*.jpg' | wc -l)
  if [ $rc -eq 0 ] && grep -q "$n of the images carry a label" "$TMP/pred_report.txt" && grep -q "^accuracy" <<<"$out" &&
     grep -q "log loss, clipped" "$TMP/pred_report.txt"; then
    ok "tl_predict on class folders reports accuracy, log loss and the confusion matrix (--report)"
  else
    bad "tl_predict labelled: rc=$rc $out"
  fi
  # The CSV's probabilities are exact: the log loss computed from it equals the report's.
  ll=$(awk -F, 'NR>1 {p=$2; y=($1 ~ /\/dog\//); s += (y ? -log(p) : -log(1-p)); n++} END {printf "%.5f", s/n}' "$TMP/lab.csv")
  check "tl_predict --sheet draws the mistakes" bash -c "./tl_predict --model '$M/best.bin' --sheet '$TMP/sheet.png' --quiet '$L' >/dev/null && test -s '$TMP/sheet.png'"
  rm -rf "$TMP/explained" "$TMP/ex_in"
  mkdir -p "$TMP/ex_in/cat" "$TMP/ex_in/dog"  # a few photos: each costs a forward and a backward pass
  ls "$L"/cat/*.jpg | head -2 | xargs -I{} cp {} "$TMP/ex_in/cat/"
  ls "$L"/dog/*.jpg | head -2 | xargs -I{} cp {} "$TMP/ex_in/dog/"
  check "tl_predict --explain writes one heatmap PNG per photo, named after its path" bash -c "
    ./tl_predict --model '$M/best.bin' --explain '$TMP/explained' --quiet '$TMP/ex_in' >/dev/null &&
    [ \$(ls '$TMP/explained' | wc -l) -eq 4 ] &&
    f=\$(ls '$TMP/explained'/*_cat_*.png | head -1) && [ \"\$(head -c 8 \"\$f\" | od -An -tx1 | tr -d ' ')\" = 89504e470d0a1a0a ]"
  expect_error "tl_predict --explain-layer names the layers there are" "--explain-layer block5_pool: no such conv layer; choose one of block1_conv1," \
    ./tl_predict --model "$M/best.bin" --explain "$TMP/explained" --explain-layer block5_pool "$TMP/ex_in"
  check "log loss from the CSV equals the report's ($ll)" grep -q "^log loss            $ll" "$TMP/pred_report.txt"
  check "--csv written" grep -q '^path,p_dog,label,error$' "$TMP/pred.csv"
  check "tl_predict --tta" ./tl_predict --model "$M/best.bin" --tta --quiet "$P/1.jpg"
  # Temporary files (issue 26, finding 10): a failed rename or a write past ulimit -f leaves no .tmp.
  mkdir -p "$TMP/onto_dir.onnx"
  expect_error "--export-onnx onto a directory: a one-line error" "it is a directory: give a file name" \
    ./tl_predict --model "$M/best.bin" --export-onnx "$TMP/onto_dir.onnx"
  check "... and no .tmp left behind" test ! -e "$TMP/onto_dir.onnx.tmp"
  expect_error "a write past ulimit -f: an error, not SIGXFSZ" "write failed (File too large)" \
    bash -c "ulimit -f 200; ./tl_predict --model '$M/best.bin' --export-onnx '$TMP/limited.onnx'"
  check "... and no .tmp left behind" bash -c "! ls '$TMP'/limited.onnx* 2>/dev/null"
  # CSV quoting (RFC 4180): names with a quote, a comma and a newline read back the same in Python's csv.
  Q=$TMP/quoted
  mkdir -p "$Q"
  cp "$P/1.jpg" "$Q/we,ird \"one\".jpg"
  cp "$P/1.jpg" "$Q/new"$'\n'"line.jpg"
  printf 'not an image' >"$Q/bad \"file\".jpg"
  ./tl_predict --model "$M/best.bin" --csv "$TMP/quoted.csv" --quiet "$Q" >/dev/null 2>&1
  check "--csv quotes names and errors as RFC 4180 says (Python's csv reads them back)" python3 -c "
import csv, os, sys
rows = list(csv.reader(open(sys.argv[1], newline='')))
names = sorted(r[0] for r in rows[1:])
want = sorted(os.path.join(sys.argv[2], f) for f in os.listdir(sys.argv[2]))
assert rows[0] == ['path', 'p_dog', 'label', 'error'], rows[0]
assert names == want, (names, want)
assert all(len(r) == 4 for r in rows), rows
assert any(r[3] and r[0].endswith('bad \"file\".jpg') for r in rows), rows
" "$TMP/quoted.csv" "$Q"

  echo "== the uncached path with augmentation"
  U=$TMP/uncached
  check "tl_train --images --augment --save-augmented 2" ./tl_train --images "$PH" --limit 24 --weights "$W" --image-size 64 \
    --augment --save-augmented 2 --epochs 1 --batch 8 --out "$U" --quiet
  check "augmented samples written" bash -c "[ \$(ls '$U'/augmented/*.png | wc -l) -eq 2 ]"
  check "uncached model predicts" ./tl_predict --model "$U/model.bin" --quiet "$P/1.jpg"

  echo "== fine-tuning block5 on a cache cut at block4_pool"
  FT=$TMP/ft
  check "tl_cache --until block4_pool" ./tl_cache --data "$PH" --limit 24 --weights "$W" --image-size 64 --until block4_pool \
    --out "$FT/cache" --quiet
  check "tl_train --fine-tune block5 (1 warm-up epoch, then 1 with the block)" ./tl_train --cache "$FT/cache" \
    --fine-tune block5 --warmup 1 --epochs 2 --batch 8 --out "$FT/m2" --no-plots --quiet
  check "--fine-tune: resumed after epoch 1, the same bytes as the uninterrupted run" bash -c "
    ./tl_train --cache '$FT/cache' --fine-tune block5 --warmup 1 --epochs 1 --batch 8 --out '$FT/r' --no-plots --quiet &&
    ./tl_train --cache '$FT/cache' --fine-tune block5 --warmup 1 --epochs 2 --batch 8 --out '$FT/r' --no-plots --quiet --resume &&
    cmp '$FT/m2/model.bin' '$FT/r/model.bin'"
  check "tl_predict runs the fine-tuned block" bash -c "./tl_predict --model '$FT/m2/model.bin' '$P/1.jpg' 2>&1 >/dev/null |
    grep -q 'with fine-tuned block5_conv1,block5_conv2,block5_conv3'"
  check "tl_train --images --fine-tune block5 --augment (blocks 1-4 frozen in the loop)" ./tl_train --images "$PH" --limit 16 \
    --weights "$W" --image-size 64 --fine-tune block5 --warmup 1 --epochs 2 --augment --batch 8 --out "$FT/img" --no-plots --quiet
  check "tl_predict --explain on a fine-tuned classifier" ./tl_predict --model "$FT/m2/model.bin" --explain "$FT/expl" --quiet "$P/1.jpg"
  expect_error "--fine-tune on a whole-base cache names the cut it needs" "needs them cut at block4_pool: make the cache with tl_cache --until block4_pool" \
    ./tl_train --cache "$C" --fine-tune block5 --out "$FT/bad"
  expect_error "a cut cache without --fine-tune says what to do" "or fine-tune the blocks above the cut (--fine-tune)" \
    ./tl_train --cache "$FT/cache" --out "$FT/bad2"
fi

echo "e2e: $PASS passed, $FAIL failed"
[ $FAIL -eq 0 ]
