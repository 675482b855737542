#!/usr/bin/env bash
# The hybrid executor on the simulated GPU, A/B of the three policies on one model and budget:
# every run's stdout must equal the CPU run's byte for byte (the simulated GPU runs the same
# kernels), and each prints its virtual prefill/decode t/s (the cost model of --sim-hw for the
# schedule that ran) and the lanes' busy fractions. Writes everything under OUT.
#
# Usage: compare/sim-ab.sh OUT MODEL GPU_MEM [SIM_HW]      e.g.
#   compare/sim-ab.sh compare/results/sim-ab-2026-12-01 ~/.cache/rs-llama/models/mixtral-shape-1.3g.f16.gguf 450M
# Tunables: PROMPT_FILE (default: a generated text of about 500 tokens), N_GEN (default 32),
#   EXTRA (more rs-llama arguments for every run, e.g. "-ub 128").
set -euo pipefail
out=${1:?OUT}; model=${2:?MODEL}; mem=${3:?GPU_MEM}; hw=${4:-rtx4090-ddr5}
bin=${BIN:-target/release/rs-llama}
n_gen=${N_GEN:-32}
mkdir -p "$out"
prompt="$out/prompt.txt"
if [ -n "${PROMPT_FILE:-}" ]; then cp "$PROMPT_FILE" "$prompt"; else
    for i in $(seq 1 40); do printf 'Line %d of the test: the quick brown fox jumps over the lazy dog. ' "$i"; done > "$prompt"
fi
# shellcheck disable=SC2206
common=(-m "$model" -f "$prompt" -n "$n_gen" --temp 0 -no-cnv --no-warmup -c 1024 ${EXTRA:-})
{
    echo "# sim A/B $(date -u +%FT%TZ) on $(hostname), $(nproc) cores; model $(basename "$model"), --gpu-mem $mem, --sim-hw $hw ${EXTRA:-}"
    echo "# commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
} > "$out/summary.txt"
"$bin" "${common[@]}" -dev none > "$out/cpu.stdout" 2> "$out/cpu.stderr"
for policy in auto layers fiddler; do
    "$bin" "${common[@]}" -dev sim --sim-hw "$hw" --gpu-mem "$mem" --policy "$policy" \
        --trace "$out/trace-$policy.json" > "$out/$policy.stdout" 2> "$out/$policy.stderr"
    if cmp -s "$out/cpu.stdout" "$out/$policy.stdout"; then same="stdout identical to the CPU run"; else same="STDOUT DIFFERS from the CPU run"; fi
    { grep -E "^sim( \(|: plan)" "$out/$policy.stderr"; echo "  $same"; } >> "$out/summary.txt"
done
cat "$out/summary.txt"
