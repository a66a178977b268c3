#!/usr/bin/env bash
# The unit suite and the end-to-end script with the programs built under ASan+UBSan
# (-fno-sanitize-recover: the first report fails the run). `make sanitize` builds them into
# SAN_BUILD (build/asan) and calls this. The end-to-end script runs from SAN_BUILD/root, a folder
# that links to this checkout's files but holds the sanitized programs.
# The [cuda] cases are not run here: the CUDA emulator switches stacks by hand (fibers), which
# AddressSanitizer cannot follow.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
B=${1:-build/asan}
export TL_SHARED_DATA=${TL_SHARED_DATA:-$ROOT/../shared/data}
# Leaks are reported too (nothing a program allocates may outlive it unfreed, except at exit on error).
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:detect_stack_use_after_return=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

for f in "$ROOT"/* "$ROOT"/.ci; do
  n=$(basename "$f")
  case "$n" in tl_cache|tl_train|tl_predict|tl_inspect|tl_convert|build) continue ;; esac
  ln -sfn "$f" "$B/root/$n"
done

echo "== sanitized unit suite (ASan+UBSan)"
"$B/test_tl"
echo "== sanitized end-to-end script (ASan+UBSan)"
bash "$B/root/tests/e2e.sh"
