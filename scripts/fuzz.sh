#!/usr/bin/env bash
# Coverage-guided fuzzing with afl.rs on the stable toolchain (see fuzz/README.md).
#   scripts/fuzz.sh [SECONDS] [TARGET...]   SECONDS per target (default 60); targets: gguf tokenizer chat
# Needs `cargo install cargo-afl` (builds AFL++ once). Findings land in fuzz/out/<target>/; crashing
# inputs are listed at the end: copy them to fuzz/crashes/<target>/ so tests/fuzz_corpus.rs replays them.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
secs=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(gguf tokenizer chat)

# A target dir of its own: afl's instrumentation flags would otherwise rebuild the main one.
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-$root/target/afl}
(cd fuzz && cargo afl build --release)

export AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_UI=1
export AFL_SKIP_CRASHES=1 AFL_IGNORE_SEED_PROBLEMS=1
# Several fuzzers at once (or a busy machine) would otherwise be refused a free core.
export AFL_NO_AFFINITY=${AFL_NO_AFFINITY:-1}
# A second run goes on from the queue of the first (rm -r fuzz/out/TARGET to start over).
export AFL_AUTORESUME=1
export RS_LLAMA_VOCAB_DIR=$root/tests/fixtures/vocab
status=0
for t in "${targets[@]}"; do
    out=fuzz/out/$t
    mkdir -p "$out"
    echo "== fuzz $t for ${secs}s -> $out"
    # -t: per-input timeout (ms); a slower input counts as a hang, not a crash.
    cargo afl fuzz -V "$secs" -t 2000 -i "fuzz/corpus/$t" -o "$out" "$CARGO_TARGET_DIR/release/$t" \
        > "$out/afl.log" 2>&1 || echo "afl-fuzz $t exited with $? (see $out/afl.log)"
    stats=$out/default/fuzzer_stats
    if [ -f "$stats" ]; then
        grep -E '^(execs_done|execs_per_sec|corpus_count|saved_crashes|saved_hangs|bitmap_cvg) ' "$stats" | sed 's/^/   /'
    fi
    crashes=$(find "$out/default/crashes" -type f -name 'id:*' 2>/dev/null | sort || true)
    if [ -n "$crashes" ]; then
        status=1
        echo "   CRASHES in $t:"
        echo "$crashes" | sed 's/^/     /'
    fi
    hangs=$(find "$out/default/hangs" -type f -name 'id:*' 2>/dev/null | wc -l)
    if [ "$hangs" -gt 0 ]; then echo "   $hangs hang(s) in $out/default/hangs"; fi
done
exit $status
