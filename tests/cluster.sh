#!/usr/bin/env bash
# The Slurm scripts of tools/cluster/ on a real Slurm (make test-cluster): a one-node cluster on
# localhost (munged, slurmctld, slurmd; Debian's packages, installed when missing) with a throw-away
# configuration under a temporary folder. It submits tools/cluster/slurm_cache.sh as the README shows,
# checks that the merged cache is the single run's byte for byte and trains bit-identically; then
# fails the way clusters fail: a cancelled task (the merge fails at once, naming the part and the line
# that resubmits it; the resubmitted task caches only its part), a task killed mid-part and requeued
# (it resumes), resources no node has (refused at submission). Every daemon and job it started is
# stopped by its pid on every exit path. Prints SKIPPED, and passes, only where Slurm cannot be installed.
# Needs the programs built (make), the genuine weights (weights/vgg16_notop.bin: make weights) and
# ../shared/data (TL_SHARED_DATA). TL_KEEP_CLUSTER=1 keeps the temporary folder (logs) for a look.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
DATA=${TL_SHARED_DATA:-$ROOT/../shared/data}
# Absolute, resolved paths: a manifest records its dataset's path, and the submit script resolves them.
PH=$(realpath -m "$DATA/dogs-vs-cats-4k")
W=$ROOT/weights/vgg16_notop.bin
# 30 photos at 128x128, 2 per batch and shard: a part takes a few seconds on one CPU (long enough to kill it mid-part).
OPTS=(--image-size 128 --limit 30 --shard-size 2 --batch 2)
PASS=0 FAIL=0
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
started=$(date +%s)

[ -x ./tl_cache ] && [ -x ./tl_train ] || { echo "FAILED: build the programs first (make)"; exit 1; }
if ! ./tl_inspect "$W" 2>/dev/null | grep -q "known as       keras-vgg16-imagenet"; then
  echo "FAILED: the genuine weights $W are missing: make weights"
  exit 1
fi
[ -d "$PH" ] || { echo "SKIPPED: the real-Slurm test: no $PH (set TL_SHARED_DATA)"; exit 0; }

T=$(mktemp -d /tmp/tl_cluster.XXXXXX)
POLICY=""  # /usr/sbin/policy-rc.d when this script wrote it (so that installing starts no system daemon)
# Stops what this script started: its jobs (scancel, then any process of theirs left: their environment
# names this script's configuration), then slurmd, slurmctld and munged by the pids in their pid files;
# removes the folder only once they are all gone.
env_of() { cat "/proc/$1/environ" 2>/dev/null | tr '\0' '\n'; }
ours() { # the pids of the processes that this cluster's jobs started
  local d p
  for d in /proc/[0-9]*; do
    p=${d#/proc/}
    env_of "$p" | grep -qxF "SLURM_CONF=$T/slurm.conf" || continue
    if [ "$(cat "$d/comm" 2>/dev/null)" = slurmstepd ] || env_of "$p" | grep -q '^SLURM_JOB_ID='; then echo "$p"; fi
  done
}
cleanup() {
  local rc=$? p left="" daemons=""
  [ -n "$POLICY" ] && rm -f "$POLICY"
  if [ -f "$T/slurmctld.pid" ]; then
    SLURM_CONF=$T/slurm.conf timeout 10 scancel --user="$(id -un)" >/dev/null 2>&1
    for _ in $(seq 1 50); do [ -z "$(SLURM_CONF=$T/slurm.conf timeout 5 squeue -h 2>/dev/null)" ] && break; sleep 0.2; done
  fi
  for f in slurmd.pid slurmctld.pid munge/munged.pid; do
    p=$(cat "$T/$f" 2>/dev/null) && daemons="$daemons $p"
  done
  # shellcheck disable=SC2086
  [ -n "$daemons" ] && kill $daemons 2>/dev/null
  for i in $(seq 1 100); do
    left=$(ours)
    for p in $daemons; do kill -0 "$p" 2>/dev/null && left="$left $p"; done
    left=$(echo $left)
    [ -z "$left" ] && break
    # shellcheck disable=SC2086
    if [ "$i" = 1 ]; then kill $left 2>/dev/null; elif [ "$i" = 50 ]; then kill -9 $left 2>/dev/null; fi
    sleep 0.1
  done
  if [ -n "$left" ]; then
    echo "FAILED: still running after the test: pids $left (folder $T kept)"
    rc=1
  elif [ -n "${TL_KEEP_CLUSTER:-}" ]; then
    echo "kept $T (TL_KEEP_CLUSTER)"
  else
    rm -rf "$T"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== Slurm: packages, a throw-away one-node cluster on localhost"
need=()
for c in slurmctld:slurmctld slurmd:slurmd sbatch:slurm-client munged:munge; do
  command -v "${c%%:*}" >/dev/null 2>&1 || [ -x "/usr/sbin/${c%%:*}" ] || need+=("${c#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo -n"
  echo "installing ${need[*]} (apt-get)"
  if [ ! -e /usr/sbin/policy-rc.d ] && [ "$(id -u)" = 0 ]; then  # the packages' scripts start no daemon
    POLICY=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' >"$POLICY" && chmod +x "$POLICY"
  fi
  if ! { $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
         $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"; } \
       >"$T/apt.log" 2>&1; then
    echo "SKIPPED: the real-Slurm test: apt-get could not install ${need[*]} ($(tail -1 "$T/apt.log"))"
    exit 0
  fi
  [ -n "$POLICY" ] && rm -f "$POLICY" && POLICY=""
fi
export PATH=$PATH:/usr/sbin
HOST=$(hostname -s)
free_port() { # free_port FROM: the first port from FROM on that nothing listens on (and FROM+1 neither)
  local p=$1
  while (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || (exec 3<>"/dev/tcp/127.0.0.1/$((p + 1))") 2>/dev/null; do
    p=$((p + 2))
  done
  echo "$p"
}
PORT=$(free_port $((16817 + ($$ % 500) * 2)))
mkdir -p "$T/munge" "$T/state" "$T/spool"
chmod 0700 "$T/munge"
head -c 1024 /dev/urandom >"$T/munge/munge.key"
chmod 0400 "$T/munge/munge.key"
munged --force --socket="$T/munge/munge.sock" --key-file="$T/munge/munge.key" --pid-file="$T/munge/munged.pid" \
  --log-file="$T/munge/munged.log" --seed-file="$T/munge/munged.seed" || { echo "FAILED: munged did not start"; exit 1; }
MEM=$(($(awk '/MemTotal/ { print int($2 / 1024) }' /proc/meminfo) / 2))
cat >"$T/slurm.conf" <<CONF
# A throw-away one-node cluster for tests/cluster.sh (docs of the keys: ../shared/docs/SLURM.md).
ClusterName=tltest
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$T/munge/munge.sock
StateSaveLocation=$T/state
SlurmdSpoolDir=$T/spool
SlurmctldPidFile=$T/slurmctld.pid
SlurmdPidFile=$T/slurmd.pid
SlurmctldLogFile=$T/slurmctld.log
SlurmdLogFile=$T/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
KillWait=5
MailProg=/bin/true
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF=$T/slurm.conf
slurmctld -f "$SLURM_CONF" || { echo "FAILED: slurmctld did not start ($T/slurmctld.log)"; exit 1; }
slurmd -f "$SLURM_CONF" || { echo "FAILED: slurmd did not start ($T/slurmd.log)"; exit 1; }
state=""
for _ in $(seq 1 150); do
  state=$(sinfo -h -o %T 2>/dev/null)
  [ "$state" = idle ] && break
  sleep 0.2
done
if [ "$state" = idle ]; then
  ok "one node ($HOST, $(nproc) CPUs) idle: $(sinfo --version), ports $PORT-$((PORT + 1)), in $T"
else
  bad "the node is '$state', not idle, after 30 s: $(tail -2 "$T/slurmctld.log" "$T/slurmd.log" | tr '\n' ' ')"
  exit 1
fi

wait_jobs() { # wait_jobs SECONDS: until the queue is empty
  for _ in $(seq 1 $(($1 * 5))); do
    [ -z "$(squeue -h 2>/dev/null)" ] && return 0
    sleep 0.2
  done
  bad "jobs still queued after $1 s: $(squeue -h -o '%i %T %r' | tr '\n' ' ')"
  return 1
}
submit() { # submit ROOT [options]: tools/cluster/slurm_cache.sh 3 ..., sets JOB (the array) and MERGE
  local out
  out=$(tools/cluster/slurm_cache.sh "${@:2}" 3 "$PH" "$W" "$1" "${OPTS[@]}" 2>&1) || { bad "submit: $out"; return 1; }
  echo "$out" | sed 's/^/    | /'
  JOB=$(sed -n 's/.* as array job \([0-9]*\) .*/\1/p' <<<"$out")
  MERGE=$(sed -n 's/.*merge as job \([0-9]*\) .*/\1/p' <<<"$out")
}
job_state() { scontrol show job "$1" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p' | head -1; }
same_cache() { diff -r -x .tl_cache.lock "$1" "$2" >/dev/null 2>&1; }
cached_of() { awk -F'\t' '$1 ~ /^[0-9]+$/ && $8 == "ok"' "$1/manifest.tsv" | wc -l; }

echo "== the single run: tl_cache ${OPTS[*]} on one machine"
./tl_cache --data "$PH" --weights "$W" --out "$T/single" "${OPTS[@]}" --quiet
check "the single run's cache" test -s "$T/single/manifest.tsv"

echo "== the README's commands: tools/cluster/slurm_cache.sh 3 DATA WEIGHTS ROOT ${OPTS[*]}"
A=$T/a
submit "$A"
sleep 1
echo "    squeue:"; squeue | sed 's/^/    | /'
wait_jobs 120
for k in 1 2 3; do
  line=$(grep "^tl_cache_part: part $k/3 done" "$A/part-$k.log" 2>/dev/null)
  if [ -n "$line" ]; then ok "$line"; else bad "part $k: no done line in $A/part-$k.log: $(tail -2 "$A/part-$k.log" 2>&1)"; fi
done
check "task 2 read its part from Slurm with N given" grep -q "part 2 of 3 (from Slurm: SLURM_ARRAY_TASK_ID=2, N=3)" "$A/part-2.log"
line=$(grep "^tl_cache_merge: merged 3 parts" "$A/merge.log" 2>/dev/null)
if [ -n "$line" ]; then ok "$line"; else bad "merge: $(tail -3 "$A/merge.log" 2>&1)"; fi
if same_cache "$T/single" "$A/cache"; then ok "the merged cache equals the single run, byte for byte"; else bad "the merged cache differs from the single run"; fi
total=$(( $(cached_of "$A/part-1") + $(cached_of "$A/part-2") + $(cached_of "$A/part-3") ))
[ "$total" = "$(cached_of "$T/single")" ] && ok "the parts cached $total files, each once" || bad "the parts cached $total files"
# Trained from the same path (a model records its cache's folder), the models are the same bytes.
./tl_train --cache "$T/single" --out "$T/m_single" --epochs 2 --batch 8 --no-plots --quiet
mv "$T/single" "$T/single_run" && cp -r "$A/cache" "$T/single"
./tl_train --cache "$T/single" --out "$T/m_merged" --epochs 2 --batch 8 --no-plots --quiet
rm -rf "$T/single" && mv "$T/single_run" "$T/single"
check "training on the merged cache is bit-identical (model.bin)" cmp "$T/m_single/model.bin" "$T/m_merged/model.bin"

echo "== a cancelled task: the merge fails at once, naming the part; resubmitting it alone caches that part"
B=$T/b
submit "$B"
scancel "${JOB}_2"
wait_jobs 120
st=$(job_state "$MERGE")
[ "$st" = FAILED ] && ok "the merge job ended FAILED (not pending for ever)" || bad "the merge job is '$st'"
# Cancelled while pending, a task leaves no record (scontrol: not found) and no log; running, CANCELLED.
st=$(job_state "${JOB}_2")
if { [ "$st" = CANCELLED ] || [ -z "$st" ]; } && ! grep -q "^tl_cache_part: part 2/3 done" "$B/part-2.log" 2>/dev/null; then
  ok "task ${JOB}_2 was cancelled (${st:-before it started}) and did not cache its part"
else
  bad "task ${JOB}_2 is '$st'"
fi
# Cancelled before it started, part 2 holds no cache; cancelled while running, an unfinished one.
again=$(head -1 "$B/part-2/rerun.txt")
if grep -qF -- "--merge: part 2/3 " "$B/merge.log" && grep -qF -- "resubmit it: $again" "$B/merge.log"; then
  ok "merge.log names part 2 and the line that resubmits it"
else
  bad "merge.log: $(cat "$B/merge.log")"
fi
check "merge.log: the summary line, and how to merge again" bash -c "grep -q '^tl_cache_merge: FAILED' '$B/merge.log' && grep -qF -- '--merge $B/cache $B/part-1 $B/part-2 $B/part-3' '$B/merge.log'"
expect_error "a manual --merge refuses, naming part 2 and the sbatch line" "resubmit it: $again" \
  ./tl_cache --merge "$B/cache" "$B/part-1" "$B/part-2" "$B/part-3"
grep -h -- "--merge: part 2/3 " "$B/merge.log" | cut -c1-150 | sed 's/^/    | /;s/$/.../'
echo "    resubmitting: $(cut -c1-110 <<<"$again")..."
bash "$B/part-2/rerun.txt" | sed 's/^/    | /'
wait_jobs 120
check "the resubmitted task (an array of one) read part 2 of 3" grep -q "part 2 of 3 (from Slurm: SLURM_ARRAY_TASK_ID=2, N=3)" "$B/part-2.log"
[ "$(cached_of "$B/part-2")" = "$(cached_of "$A/part-2")" ] && ok "it cached exactly part 2 ($(cached_of "$B/part-2") files)" ||
  bad "it cached $(cached_of "$B/part-2") files, part 2 has $(cached_of "$A/part-2")"
check "the merge after it" ./tl_cache --merge "$B/cache" "$B/part-1" "$B/part-2" "$B/part-3"
if same_cache "$T/single" "$B/cache"; then ok "the merged cache equals the single run, byte for byte"; else bad "the merged cache differs"; fi

echo "== a task killed mid-part and requeued (scontrol requeue) resumes its part"
C=$T/c
submit "$C"
for _ in $(seq 1 1200); do  # until task 2 has written a whole shard (at most 60 s)
  ls "$C"/part-2/train-*.bin >/dev/null 2>&1 && break
  sleep 0.05
done
scontrol requeue "${JOB}_2"
# Slurm holds a requeued job for about two minutes (Reason=BeginTime); let it start now.
for _ in $(seq 1 100); do [ "$(job_state "${JOB}_2")" = PENDING ] && break; sleep 0.1; done
scontrol update jobid="${JOB}_2" StartTime=now
wait_jobs 120
check "part 2 ran twice (attempt 2 in its log)" grep -q "^tl_cache_part: part 2/3, job ${JOB}_2 on .*, attempt 2" "$C/part-2.log"
kept=$(sed -n 's/.*resuming: \([0-9]*\) complete shards kept.*/\1/p' "$C/part-2.log" | tail -1)
shards=$(ls "$A"/part-2/*-*.bin | wc -l)
if [ -n "$kept" ] && [ "$kept" -ge 1 ] && [ "$kept" -lt "$shards" ]; then
  ok "the requeued task resumed: $kept of its $shards shards kept"
else
  bad "the requeued task did not resume mid-part (kept '${kept}' of $shards shards; kill timing?)"
fi
check "the first attempt did not finish" bash -c "[ \$(grep -c '^tl_cache_part: part 2/3 done' '$C/part-2.log') = 1 ]"
line=$(grep "^tl_cache_merge: merged 3 parts" "$C/merge.log" 2>/dev/null)
if [ -n "$line" ]; then ok "the merge waited for the requeued task: $line"; else bad "merge: $(tail -3 "$C/merge.log" 2>&1)"; fi
if same_cache "$T/single" "$C/cache"; then ok "the merged cache equals the single run, byte for byte"; else bad "the merged cache differs"; fi

echo "== resources no node has are refused at submission, not left pending"
expect_error "--cpus 64 on a node of $(nproc)" "the parts could never start here (sbatch --test-only: allocation failure: Requested node configuration is not available)" \
  tools/cluster/slurm_cache.sh --cpus 64 3 "$PH" "$W" "$T/d" "${OPTS[@]}"
expect_error "--gpus 1 on a cluster without GPUs" "Invalid generic resource (gres) specification" \
  tools/cluster/slurm_cache.sh --gpus 1 3 "$PH" "$W" "$T/d" "${OPTS[@]}"
check "nothing was submitted" test -z "$(squeue -h)"

echo "cluster test: $PASS passed, $FAIL failed ($(($(date +%s) - started)) s)"
[ $FAIL -eq 0 ]
