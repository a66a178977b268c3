#!/usr/bin/env bash
# gpu_check.sh: the project's one prepared check for a machine with a GPU (H100/H200), in under 8
# minutes: the [cuda] test cases on the real device (TL_REQUIRE_GPU=1, counted), compute-sanitizer
# (memcheck on small tl_cache/tl_train/tl_predict runs; racecheck and synccheck on the conv cases),
# every numbered conv kernel (1 fp32 FFMA, 2 fp32 FFMA 8x8, 3 tf32 and 4 bf16 tensor cores) per
# layer and whole against PyTorch/cuDNN (fp32, channels-last, TF32, bf16) at batch 32/64/128, and
# the whole test suite. Results under $OUT (default ./gpu_check_out):
# summary.txt (read it first), tests.log, sanitizer.log, bench.log.
#
#   bash bench/gpu_check.sh --prepare   # HERE (no GPU needed): build, then copy stripped binaries to .gpu_bin/
#   bash bench/gpu_check.sh             # THERE: run the checks with .gpu_bin/ (carry it: run's carry [".gpu_bin"])
#
# Why prepare here: the GPU machines have nvcc, cuBLAS, PyTorch, compute-sanitizer and ncu but none of
# the Debian -dev packages (stb, doctest, libjpeg, libpng, zlib headers). The binaries are built here
# for sm_90 (plus PTX) with the CUDA runtime linked statically and libjpeg/libpng/zlib linked
# statically (STATIC_IMAGE_LIBS=1), so they need only the driver and libcublas there. Without
# .gpu_bin/ the script uses ./build and the programs at the top of the checkout (a build made there).
# On a machine without a GPU it reports that and stops cleanly after the checks that need none.
set -u -o pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
T0=$(date +%s)
BUDGET=${GPU_CHECK_BUDGET_S:-450}
left() { echo $((BUDGET - ($(date +%s) - T0))); }

if [ "${1:-}" = "--prepare" ]; then
  rm -f tl_cache tl_train tl_predict tl_inspect tl_convert build/test_tl build/bench_ops  # relink them statically
  make -j"$(nproc)" STATIC_IMAGE_LIBS=1 tl_cache tl_train tl_predict tl_inspect tl_convert build/test_tl build/bench_ops || exit 1
  rm -rf .gpu_bin && mkdir -p .gpu_bin
  for f in tl_cache tl_train tl_predict tl_inspect tl_convert build/test_tl build/bench_ops; do
    strip -o ".gpu_bin/$(basename "$f")" "$f" || exit 1
  done
  grep -qx '/.gpu_bin/' .git/info/exclude 2>/dev/null || echo '/.gpu_bin/' >>.git/info/exclude
  du -sh .gpu_bin
  ldd .gpu_bin/test_tl | grep -vE 'linux-vdso|ld-linux|libc\.so|libm\.so|libgcc|libstdc|libpthread|libdl|librt' || true
  echo "prepared .gpu_bin/; on the GPU machine: bash bench/gpu_check.sh (carry .gpu_bin)"
  exit 0
fi

OUT=${OUT:-$ROOT/gpu_check_out}
mkdir -p "$OUT"
SUM=$OUT/summary.txt TST=$OUT/tests.log SAN=$OUT/sanitizer.log BEN=$OUT/bench.log
: >"$SUM"; : >"$TST"; : >"$SAN"; : >"$BEN"
FAILS=0
say() { echo "$*" | tee -a "$SUM"; }
result() {  # result PASS|FAIL|SKIP|INFO NAME DETAIL
  [ "$1" = FAIL ] && FAILS=$((FAILS + 1))
  printf '%-5s %-40s %s\n' "$1" "$2" "$3" | tee -a "$SUM"
}
run_to() {  # run_to LOG SECONDS CMD...: output into LOG; returns the command's status (124: timed out)
  local log=$1 t=$2 s
  shift 2
  s=$(date +%s)
  echo "### $*" >>"$log"
  timeout --kill-after=10 "$t" "$@" >>"$log" 2>&1
  local rc=$?
  echo "### rc=$rc in $(($(date +%s) - s)) s" >>"$log"
  return $rc
}

if [ -d .gpu_bin ]; then
  BIN=$ROOT/.gpu_bin P=$ROOT/.gpu_bin
else
  BIN=$ROOT/build P=$ROOT
fi
say "gpu_check.sh at $(date -u '+%Y-%m-%d %H:%M UTC') on $(hostname); binaries from $BIN; budget ${BUDGET}s"
for f in "$BIN/test_tl" "$BIN/bench_ops" "$P/tl_cache" "$P/tl_train" "$P/tl_predict" "$P/tl_convert"; do
  [ -x "$f" ] || { result FAIL "binaries" "$f missing: run 'bash bench/gpu_check.sh --prepare' (here) or make (there)"; exit 1; }
done

# 1. The machine.
GPU=$(nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)
if [ -z "$GPU" ]; then
  result INFO "gpu" "no GPU visible (nvidia-smi finds none): the checks below need one"
  "$BIN/test_tl" --test-case='[cuda]*' >"$TST" 2>&1
  if grep -q 'SKIPPED: \[cuda\]' "$TST"; then result PASS "dry run" "binaries start; [cuda] cases skip as expected without a GPU"; else result FAIL "dry run" "see tests.log"; fi
  if TL_REQUIRE_GPU=1 "$BIN/test_tl" --test-case='[cuda]*' >>"$TST" 2>&1; then
    result FAIL "TL_REQUIRE_GPU=1" "passed without a GPU"
  else
    result PASS "TL_REQUIRE_GPU=1" "fails without a GPU, as it must"
  fi
  say "no GPU: stopped after the dry run ($FAILS failures)"
  exit $((FAILS > 0 ? 1 : 0))
fi
result INFO "gpu" "$GPU"
nvidia-smi >>"$BEN" 2>&1

# 2. Every [cuda] case on the device, none skipped.
WANT=$(cat tests/*.cpp | grep -c '^CUDA_CASE(')
run_to "$TST" 240 env TL_REQUIRE_GPU=1 "$BIN/test_tl" --test-case='[cuda]*' -d
rc=$?
RAN=$(grep -E '^\[doctest\] test cases:' "$TST" | tail -1 | awk '{print $4}')
if [ $rc = 0 ] && [ "${RAN:-0}" = "$WANT" ]; then
  result PASS "[cuda] cases on the GPU" "$RAN of $WANT ran and passed"
else
  result FAIL "[cuda] cases on the GPU" "rc=$rc, ran ${RAN:-0} of $WANT (tests.log)"
fi

# 3. compute-sanitizer on small real runs and on the conv case.
CS=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null | head -1)
W=$OUT/work
rm -rf "$W" && mkdir -p "$W/data/cat" "$W/data/dog"
"$P/tl_convert" --synthetic "$W/w.bin" --seed 3 >/dev/null
python3 - "$W/data" <<'EOF' >>"$SAN" 2>&1 || for i in $(seq 1 8); do cp tests/fixtures/img_noise_61x47.png "$W/data/cat/c$i.png"; cp tests/fixtures/img_smooth_200x150.png "$W/data/dog/d$i.png"; done
import sys, numpy as np
from PIL import Image
rng = np.random.default_rng(0)
for c in ("cat", "dog"):
    for i in range(8):
        Image.fromarray((rng.random((80 + i, 96, 3)) * 255).astype(np.uint8)).save(f"{sys.argv[1]}/{c}/{c}{i}.jpg", quality=90)
EOF
sanitize() {  # sanitize NAME TOOL SECONDS CMD...
  local name=$1 tool=$2 t=$3
  shift 3
  if [ -z "$CS" ]; then result SKIP "$name" "compute-sanitizer not found"; return; fi
  if [ "$(left)" -lt $((t / 2)) ]; then result SKIP "$name" "budget spent"; return; fi
  run_to "$SAN" "$t" "$CS" --tool "$tool" --error-exitcode 99 "$@"
  local rc=$?
  local errs
  errs=$(tail -40 "$SAN" | grep -oE 'ERROR SUMMARY: [0-9]+ error' | tail -1)
  case $rc in
    0) result PASS "$name" "${errs:-no errors}" ;;
    99) result FAIL "$name" "${errs:-errors} (sanitizer.log)" ;;
    *) result FAIL "$name" "rc=$rc: the tool or the run failed (sanitizer.log; some virtualised GPUs refuse the tool)" ;;
  esac
}
sanitize "memcheck tl_cache" memcheck 90 "$P/tl_cache" --data "$W/data" --weights "$W/w.bin" --out "$W/cache" \
  --image-size 64 --batch 4 --device cuda --valid-fraction 0.25 --quiet
sanitize "memcheck tl_train" memcheck 90 "$P/tl_train" --cache "$W/cache" --out "$W/model" --epochs 2 --batch 4 \
  --device cuda --quiet --no-plots
sanitize "memcheck tl_predict" memcheck 60 "$P/tl_predict" --model "$W/model/best.bin" --device cuda "$W/data"
sanitize "racecheck conv3x3" racecheck 90 "$BIN/test_tl" --test-case='*conv3x3 matches*'
sanitize "synccheck conv3x3" synccheck 60 "$BIN/test_tl" --test-case='*conv3x3 matches*'
sanitize "racecheck conv kernels 2-4" racecheck 90 "$BIN/test_tl" --test-case='*conv3x3 kernels 2*'

# 4. Speed: ours per layer and whole (bench_ops), PyTorch/cuDNN beside it.
if [ "$(left)" -gt 60 ]; then
  # Every numbered conv kernel (1 fp32 FFMA, 2 fp32 FFMA 8x8, 3 tf32 and 4 bf16 tensor cores), per layer.
  run_to "$BEN" 170 "$BIN/bench_ops" --device cuda --batch 32,64,128 --only conv,pool --reps 10 --kernels 1,2,3,4
  grep -q 'VGG16 conv total k' "$BEN" && result PASS "ours: conv kernels 1-4 timed" "$(grep -c 'VGG16 conv total k' "$BEN") kernel x batch totals (bench.log)" ||
    result FAIL "ours: conv kernels 1-4 timed" "bench.log"
fi
if [ "$(left)" -gt 60 ] && python3 -c 'import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  run_to "$BEN" $(( $(left) > 200 ? 180 : $(left) - 20 )) env BUDGET_S=150 PYTHONUNBUFFERED=1 python3 bench/torch_vgg_gpu.py 32 64 128
  result INFO "PyTorch/cuDNN timed" "$(grep -c '^RESULT torch' "$BEN") cases (bench.log)"
fi

# 5. The whole suite on the GPU machine.
if [ "$(left)" -gt 40 ]; then
  run_to "$TST" $(( $(left) - 10 )) "$BIN/test_tl"
  rc=$?
  line=$(grep -E '^\[doctest\] test cases:' "$TST" | tail -1)
  [ $rc = 0 ] && result PASS "whole doctest suite" "$line" || result FAIL "whole doctest suite" "rc=$rc $line"
fi

# 6. The tables: the whole base per kernel/mode and batch, then each layer (ms) per kernel against cuDNN.
say ""
say "VGG16 conv base, 224x224, images/s (median); ours kN = conv kernel N (1 fp32 FFMA, 2 fp32 FFMA 8x8, 3 tf32, 4 bf16):"
python3 - "$BEN" <<'EOF' | tee -a "$SUM"
import re, sys
t = open(sys.argv[1]).read()
rows, layers = {}, {}
for m in re.finditer(r"^cuda\s+VGG16 conv total k(\d)\s+(\d+)x224x224x3\s+[\d.]+ ms\s+-> ([\d.]+) images/s", t, re.M):
    rows.setdefault("ours k" + m.group(1), {})[int(m.group(2))] = float(m.group(3))
for m in re.finditer(r"^RESULT torch (\S+) batch (\d+): [\d.]+ ms ([\d.]+) images/s", t, re.M):
    rows.setdefault("torch " + m.group(1), {})[int(m.group(2))] = float(m.group(3))
for m in re.finditer(r"^cuda\s+conv3x3\+relu k(\d) (\S+)\s+(\d+)x\S+\s+([\d.]+) ms", t, re.M):
    layers.setdefault((int(m.group(3)), m.group(2)), {})["k" + m.group(1)] = float(m.group(4))
for m in re.finditer(r"^LAYER torch (\S+) (\S+) batch (\d+): ([\d.]+) ms", t, re.M):
    layers.setdefault((int(m.group(3)), m.group(2)), {})[m.group(1)] = float(m.group(4))
bs = sorted({b for r in rows.values() for b in r})
print("%-20s" % "" + "".join("%12s" % f"batch {b}" for b in bs))
for k, r in rows.items():
    print("%-20s" % k + "".join("%12s" % (f"{r[b]:.0f}" if b in r else "-") for b in bs))
cols = ["k1", "k2", "k3", "k4", "fp32", "fp32-cl", "tf32", "bf16"]
def best(d, ks):
    v = [d[k] for k in ks if k in d]
    return min(v) if v else None
order = lambda name: [int(x) for x in re.findall(r"\d+", name)]
for b in sorted({b for b, _ in layers}):
    print(f"\nper layer, batch {b}, ms (torch = cuDNN); ratios: cuDNN's time / our best kernel's at fp32, tf32, bf16 (>1: ours faster)")
    print("%-14s" % "layer" + "".join("%9s" % c for c in cols) + "%8s%8s%8s" % ("fp32", "tf32", "bf16"))
    for (bb, name), d in sorted(layers.items(), key=lambda kv: (kv[0][0], order(kv[0][1]))):
        if bb != b:
            continue
        def ratio(theirs, ours):
            t, o = best(d, theirs), best(d, ours)
            return f"{t / o:.2f}" if t and o else "-"
        print("%-14s" % name + "".join("%9s" % (f"{d[c]:.3f}" if c in d else "-") for c in cols) +
              "%8s%8s%8s" % (ratio(["fp32", "fp32-cl"], ["k1", "k2"]), ratio(["tf32"], ["k3"]), ratio(["bf16"], ["k4"])))
EOF
say "done in $(($(date +%s) - T0)) s: $FAILS failed; logs in $OUT"
exit $((FAILS > 0 ? 1 : 0))
