#!/usr/bin/env bash
# Device check for rs-llama's GPU backend, for a machine with an NVIDIA GPU, CUDA 13 and no Rust.
# It runs prebuilt binaries (built elsewhere with `--features cuda`, stripped) and writes ONE
# results file, $OUT/device-check.txt (or ./device-check.txt when OUT is unset). Every step has a
# timeout, a failing step does not stop the next one, and the results file is always written.
# A binary or model that is missing is a failed step, not a skipped one: the exit status is 0 only
# when every step ran and passed (FAILED = 0), 1 otherwise.
#
# Usage: bash scripts/device-check.sh [BIN_DIR]      (default BIN_DIR: .device/bin, then target/release)
# Tunables (environment): STEP_TIMEOUT (s, default 240), DEADLINE (s after the start by which every
#   step must end, default 540: keep it under the device call's timeout), MODEL_DIR (default /tmp/rs-llama-models),
#   VOCAB (a tokenizer GGUF for synth, default .device/ggml-vocab-llama-spm.gguf),
#   SYNTH_DENSE_ARGS / SYNTH_MOE_ARGS (shape arguments of `rs-llama-gguf synth`),
#   GEN_TOKENS (default 32), PROMPT.
set -u -o pipefail

OUT_DIR=${OUT:-.}
RESULTS="$OUT_DIR/device-check.txt"
mkdir -p "$OUT_DIR"
: > "$RESULTS"
exec > >(tee -a "$RESULTS") 2>&1
TEE_PID=$!
# At exit: the last line, then close our end of the pipe and let tee finish writing the results
# file before the script's status is returned.
# shellcheck disable=SC2317  # run by the trap
on_exit() {
    echo "== device-check ended $(date -u +%FT%TZ), failed steps: ${FAILED:-?}"
    exec >&- 2>&-
    wait "$TEE_PID" 2>/dev/null || true
}
trap on_exit EXIT

BIN_DIR=${1:-}
for d in "$BIN_DIR" .device/bin target/release; do
    if [ -n "$d" ] && [ -x "$d/rs-llama-gpu-check" ]; then BIN_DIR=$d; break; fi
done
BIN_DIR=${BIN_DIR:-.device/bin}
STEP_TIMEOUT=${STEP_TIMEOUT:-240}
DEADLINE=${DEADLINE:-540}
MODEL_DIR=${MODEL_DIR:-/tmp/rs-llama-models}
VOCAB=${VOCAB:-.device/ggml-vocab-llama-spm.gguf}
GEN_TOKENS=${GEN_TOKENS:-32}
PROMPT=${PROMPT:-"The quick brown fox"}
FAILED=0

# missing NAME WHAT: a step that cannot run because WHAT is not there counts as failed.
missing() {
    echo "== step: $1 FAILED (missing: $2)"
    FAILED=$((FAILED + 1))
}

# step NAME TIMEOUT CMD...: run one step, log it, never abort the script. The timeout is cut so
# that the step ends by DEADLINE; a step with under 10 s left is skipped.
step() {
    local name=$1 limit=$2; shift 2
    local left=$((DEADLINE - SECONDS))
    if [ "$left" -lt 10 ]; then
        echo "== step: $name SKIPPED (deadline)"; FAILED=$((FAILED + 1)); return 0
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    echo
    echo "== step: $name (timeout ${limit}s) $(date -u +%T)"
    echo "+ $*"
    local t0=$SECONDS rc=0
    timeout --kill-after=10 "$limit" "$@" || rc=$?
    echo "== step: $name rc=$rc in $((SECONDS - t0))s"
    if [ "$rc" != 0 ]; then FAILED=$((FAILED + 1)); fi
    return 0
}

echo "== rs-llama device check $(date -u +%FT%TZ) on $(hostname)"
echo "BIN_DIR=$BIN_DIR"
# shellcheck disable=SC2012  # a listing for the reader
ls -l "$BIN_DIR" 2>&1 | head -20
uname -a
step nvidia-smi 60 nvidia-smi
step nvidia-smi-L 30 nvidia-smi -L
nvcc --version 2>&1 | tail -2

# CUDA 13 libraries: the toolkit first (its NVRTC matches the driver's PTX version), then the
# cu13 pip wheels' folder. Never the toolkit's stubs/ (its libcuda.so would win over the driver's).
NV=$(python3 -c "import nvidia,os;print(os.path.join(list(nvidia.__path__)[0],'cu13'))" 2>/dev/null || true)
if [ ! -f "$NV/lib/libnvrtc.so.13" ]; then
    NV=$(dirname "$(dirname "$(timeout 60 find / -xdev -name libnvrtc.so.13 -path '*cu13*' 2>/dev/null | head -1)")" 2>/dev/null || true)
fi
echo "cu13 wheel folder: ${NV:-none}"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64${NV:+:$NV/lib}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
ldconfig -p 2>/dev/null | grep -E 'libcuda\.so|libcublas\.so|libcublasLt\.so|libnvrtc\.so' | head -20
# shellcheck disable=SC2010  # a listing for the reader
ls /usr/local/cuda/lib64 2>/dev/null | grep -E '^lib(cublas|cublasLt|nvrtc)' | head -20
# shellcheck disable=SC2010
ls /usr/local/nvidia/lib64 2>/dev/null | grep -E '^libcuda' | head

# 1. Kernels and GEMMs against the CPU, bandwidth, throughput, loaded libraries.
GPU_CHECK="$BIN_DIR/rs-llama-gpu-check"
if [ -x "$GPU_CHECK" ]; then
    step gpu-check 180 "$GPU_CHECK" --seed "$(date +%s)"
else
    missing gpu-check "$GPU_CHECK"
fi

# 2. Seeded synthetic models, made here: GPU greedy tokens must equal CPU greedy tokens.
GGUF_TOOL="$BIN_DIR/rs-llama-gguf"
LLAMA="$BIN_DIR/rs-llama"
mkdir -p "$MODEL_DIR"
DENSE="$MODEL_DIR/synth-dense.gguf"
MOE="$MODEL_DIR/synth-mixtral.gguf"
if [ -x "$GGUF_TOOL" ]; then
    # A small dense llama (~0.8 GB f16), and a Mixtral-shaped MoE: Mixtral-8x7B's layer (4096
    # wide, 32/8 heads, 8 experts of 14336, top 2) with 3 layers, ~9 GB f16.
    # shellcheck disable=SC2086
    step synth-dense 120 "$GGUF_TOOL" synth --kind dense --vocab "$VOCAB" --seed 1 --dtype f16 \
        ${SYNTH_DENSE_ARGS:---n-embd 2048 --n-layer 8 --n-head 16 --n-head-kv 4 --n-ff 5632} -o "$DENSE"
    # shellcheck disable=SC2086
    step synth-mixtral-9gb 240 "$GGUF_TOOL" synth --kind moe --vocab "$VOCAB" --seed 2 --dtype f16 \
        ${SYNTH_MOE_ARGS:---n-embd 4096 --n-layer 3 --n-head 32 --n-head-kv 8 --n-ff 14336 --n-expert 8 --n-expert-used 2} -o "$MOE"
    ls -l "$MODEL_DIR"
else
    missing synth-dense "$GGUF_TOOL"
    missing synth-mixtral-9gb "$GGUF_TOOL"
fi

# GPU against the CPU engine on each model: greedy from a seeded random prompt, teacher forced.
MODELS=()
for model in "$DENSE" "$MOE"; do
    if [ -f "$model" ]; then MODELS+=(--model "$model"); else missing "gpu-vs-cpu $(basename "$model")" "$model"; fi
done
if [ ! -x "$GPU_CHECK" ]; then
    missing gpu-vs-cpu-models "$GPU_CHECK"
elif [ ${#MODELS[@]} -gt 0 ]; then
    step gpu-vs-cpu-models 300 "$GPU_CHECK" --models-only --seed 7 "${MODELS[@]}"
fi

# The CLI (when it drives the GPU with -ngl): greedy text on the GPU must equal the CPU's.
greedy() { # model ngl out
    local model=$1 ngl=$2 out=$3
    step "greedy $(basename "$model") -ngl $ngl" 120 \
        bash -c "'$LLAMA' -m '$model' -p '$PROMPT' -n $GEN_TOKENS --temp 0 -no-cnv -ngl $ngl --seed 1 > '$out' 2> '$out.log'; rc=\$?; tail -5 '$out.log'; exit \$rc"
}
if [ -x "$LLAMA" ] && [ -f "$DENSE" ]; then
    greedy "$DENSE" 0 /tmp/cpu.txt
    greedy "$DENSE" 999 /tmp/gpu.txt
    # The GPU run must say it started the GPU (gpu::start_or_fall_back logs "gpu: <device>").
    if ! grep -q '^gpu: ' /tmp/gpu.txt.log || grep -q 'running on the CPU' /tmp/gpu.txt.log; then
        echo "[FAIL] CLI run with -ngl 999 did not use the GPU"; FAILED=$((FAILED + 1))
    elif cmp -s /tmp/cpu.txt /tmp/gpu.txt && [ -s /tmp/cpu.txt ]; then
        echo "[PASS] CLI greedy text GPU == CPU on $(basename "$DENSE")"
    else
        echo "[FAIL] CLI greedy text GPU != CPU on $(basename "$DENSE")"; FAILED=$((FAILED + 1))
        echo "--- cpu:"; head -c 2000 /tmp/cpu.txt; echo; echo "--- gpu:"; head -c 2000 /tmp/gpu.txt; echo
    fi
else
    [ -x "$LLAMA" ] || missing "CLI greedy GPU == CPU" "$LLAMA"
    [ -f "$DENSE" ] || missing "CLI greedy GPU == CPU" "$DENSE"
fi

# 2b. The hybrid executor on the card (-dev cuda0): the Mixtral-shaped model (~9 GB) under a budget
# of a third of it, each policy teacher-forced against the CPU's logits: rs-llama-perplexity's
# KL-divergence mode over the CPU's base file; its "Same top p" is the top-1 agreement (random
# weights have near-ties, so it is held to >= 98%, and the figure is printed).
PPL="$BIN_DIR/rs-llama-perplexity"
HYB_MEM=${HYB_MEM:-3G}
HYB_TEXT="$MODEL_DIR/hybrid-text.txt"
for i in $(seq 1 60); do printf 'Line %d: the quick brown fox jumps over the lazy dog near the river bank. ' "$i"; done > "$HYB_TEXT"
if [ -x "$PPL" ] && [ -f "$MOE" ]; then
    step "kld-base cpu" 240 "$PPL" -m "$MOE" -f "$HYB_TEXT" -c 128 --chunks 2 -dev none \
        --kl-divergence-base "$MODEL_DIR/hybrid.kld"
    for policy in auto layers fiddler; do
        log="$MODEL_DIR/kld-$policy.log"
        step "kld cuda0 --policy $policy" 240 bash -c "'$PPL' -m '$MOE' -c 128 --chunks 2 -dev cuda0 --sim-hw h100-pcie5 --policy $policy \
            --gpu-mem $HYB_MEM --kl-divergence-base '$MODEL_DIR/hybrid.kld' --kl-divergence > '$log' 2>&1; rc=\$?; tail -25 '$log'; exit \$rc"
        same=$(grep -E 'Same top p' "$log" 2>/dev/null | grep -oE '[0-9]+\.[0-9]+' | head -1)
        if grep -q 'running on the CPU' "$log" 2>/dev/null; then
            echo "[FAIL] -dev cuda0 --policy $policy did not run on the GPU"; FAILED=$((FAILED + 1))
        elif [ -n "$same" ] && awk -v s="$same" 'BEGIN { exit !(s >= 98.0) }'; then
            echo "[PASS] -dev cuda0 --policy $policy: same top-1 as the CPU on $same% of tokens"
        else
            echo "[FAIL] -dev cuda0 --policy $policy: same top-1 ${same:-unknown}% (want >= 98%)"; FAILED=$((FAILED + 1))
        fi
    done
else
    [ -x "$PPL" ] || missing "hybrid cuda0 checks" "$PPL"
    [ -f "$MOE" ] || missing "hybrid cuda0 checks" "$MOE"
fi

# 3. Benchmarks. rs-llama-bench has no -ngl/--policy yet (src/bench/args.rs): these runs are on the
# CPU, one per model, with the bench's own defaults.
# the bench gains -dev/--policy with the hybrid executor
BENCH="$BIN_DIR/rs-llama-bench"
for model in "$DENSE" "$MOE"; do
    name="bench $(basename "$model")"
    if [ ! -x "$BENCH" ]; then
        missing "$name" "$BENCH"
    elif [ ! -f "$model" ]; then
        missing "$name" "$model"
    else
        step "$name" 120 "$BENCH" -m "$model"
    fi
done

echo
grep -E '^\[(PASS|FAIL)\]|^bench |^== [0-9]+ passed|^== step: .*(FAILED|SKIPPED)|^== step: .* rc=[1-9]' "$RESULTS" |
    sed 's/^/summary: /'
echo "summary: $FAILED failed step(s)"
if [ "$FAILED" -gt 0 ]; then
    exit 1
fi
exit 0
