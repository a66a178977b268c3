#!/usr/bin/env bash
# Runs fuzz harnesses (built by `make fuzz`) for SECONDS each on their corpus (build/fuzz/corpus/<t>,
# kept between runs) and seeds (build/fuzz/seeds/<t>); prints executions per target; exits non-zero
# on the first finding (the crashing input is left in build/fuzz/findings/).
#   bash tests/fuzz/run.sh BUILD_DIR SECONDS TARGET...     (FUZZ_RUNS=N: stop after N executions, or SECONDS;
#   FUZZ_SEED=S: libFuzzer's random seed, so that a run from the same corpus repeats exactly: CI's smoke run)
set -uo pipefail
cd "$(dirname "$0")/../.."
B=$1 S=$2
shift 2
mkdir -p "$B/findings"
status=0
for t in "$@"; do
  mkdir -p "$B/corpus/$t" "$B/seeds/$t"
  log="$B/findings/$t.log"
  # Limits: 2 GB resident, no single allocation over 512 MB, 10 s per input.
  "$B/fuzz_$t" -max_total_time="$S" ${FUZZ_RUNS:+-runs=$FUZZ_RUNS} ${FUZZ_SEED:+-seed=$FUZZ_SEED} -rss_limit_mb=2048 -malloc_limit_mb=512 -timeout=10 -print_final_stats=1 \
    -artifact_prefix="$B/findings/$t-" "$B/corpus/$t" "$B/seeds/$t" >"$log" 2>&1
  rc=$?
  runs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo "?")
  if [ $rc -eq 0 ]; then
    printf '  fuzz %-14s %10s executions in %s s, no finding\n' "$t" "$runs" "$(grep -oE 'Done [0-9]+ runs in [0-9]+ second' "$log" | grep -oE '[0-9]+ second' | grep -oE '[0-9]+' || echo "$S")"
  else
    printf '  fuzz %-14s FINDING (exit %d); see %s\n' "$t" "$rc" "$log"
    grep -E "ERROR|SUMMARY|runtime error|==ERROR|deadly signal|Test unit written" "$log" | head -8
    status=1
  fi
done
exit $status
