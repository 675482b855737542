#!/bin/bash
# rs-llama-plan's CPU-only predictions against what rs-llama-bench measures, on a machine whose
# speed drifts: every bench is bracketed by two fresh profiles (`rs-llama-plan --profile`, ~16 s),
# a test is predicted from each and the two predictions' geometric mean is set against the bench,
# and rounds repeat so that the median ratio and its spread can be reported. The spread of the two
# bracketing predictions says how much the machine moved during the bench.
#
#   compare/plan-vs-bench.sh OUT_DIR MODEL.gguf...        (from the repo root, after a release build)
#   ROUNDS (default 5), THREADS (default 2), REPS (rs-llama-bench -r, default 3)
set -eu
OUT=$1
shift
ROUNDS=${ROUNDS:-5}
THREADS=${THREADS:-2}
REPS=${REPS:-3}
B=./target/release
mkdir -p "$OUT"
{
  echo "command: ROUNDS=$ROUNDS THREADS=$THREADS REPS=$REPS $0 $OUT $*"
  echo "commit: $(git rev-parse HEAD 2>/dev/null)$(git diff --quiet 2>/dev/null || echo ' (with uncommitted changes)')"
  echo "started: $(date -u '+%F %T UTC')"
  uname -srm
  grep -m1 'model name' /proc/cpuinfo
} > "$OUT/meta.txt"
# The profile measures 1 thread and all cores; the plan uses all cores, so THREADS should be them.
profile() { $B/rs-llama-plan --profile > "$1" 2> "$1.stderr"; }
plan() { # profile model prompt tag
  $B/rs-llama-plan -m "$2" --hw "$1" --gpu-mem 0 --prompt "$3" --gen 128 --json > "$4" 2> "$4.stderr"
}
for k in $(seq "$ROUNDS"); do
  for model in "$@"; do
    name=$(basename "$model" .gguf)
    d=$OUT/round$k/$name
    mkdir -p "$d"
    uptime > "$d/uptime.txt"
    profile "$d/profile-a.json"
    $B/rs-llama-bench -m "$model" -p 512 -n 0 -t "$THREADS" -r "$REPS" -o md > "$d/bench-pp512.md" 2> "$d/bench-pp512.stderr"
    profile "$d/profile-b.json"
    # rs-llama-bench's tg128 starts from an empty cache (mean context 64): plan it with no prompt.
    $B/rs-llama-bench -m "$model" -p 0 -n 128 -t "$THREADS" -r "$REPS" -o md > "$d/bench-tg128.md" 2> "$d/bench-tg128.stderr"
    profile "$d/profile-c.json"
    for p in a b c; do
      plan "$d/profile-$p.json" "$model" 512 "$d/plan-pp512-$p.json"
      plan "$d/profile-$p.json" "$model" 0 "$d/plan-tg128-$p.json"
    done
    echo "round $k $name done" >&2
  done
done
python3 "$(dirname "$0")/plan_vs_bench.py" "$OUT" | tee "$OUT/summary.md"
