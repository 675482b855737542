#!/usr/bin/env bash
# rs-llama-server's slots through the hybrid executor on the simulated GPU: N concurrent clients
# (1 and 4 by default) each generating greedily, and the executor's virtual prefill/decode t/s
# (the cost model of --sim-hw for the schedule that ran) as the server logs them at exit. Several
# sequences decoded in one step give every expert more tokens, so the same plan decodes more per
# virtual second. Each client's text is checked against the one-client run's (batching must not
# change it). Writes everything under OUT.
#
# Usage: compare/server-sim.sh OUT MODEL GPU_MEM [CLIENTS...]      e.g.
#   compare/server-sim.sh compare/results/server-sim-2026-12-01 ~/.cache/rs-llama/models/synth-mixtral-shape-s7.f16.gguf 128M 1 4
# Tunables: N_GEN (default 32), ROUNDS (default 2), EXTRA (more server arguments).
set -euo pipefail
out=${1:?OUT}; model=${2:?MODEL}; mem=${3:?GPU_MEM}; shift 3
clients=("$@"); [ ${#clients[@]} -gt 0 ] || clients=(1 4)
bin=${BIN:-target/release/rs-llama-server}
n_gen=${N_GEN:-32}; rounds=${ROUNDS:-2}
mkdir -p "$out"
{
    echo "# server sim $(date -u +%FT%TZ) on $(hostname), $(nproc) cores; model $(basename "$model"), --gpu-mem $mem ${EXTRA:-}"
    echo "# commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown); $rounds rounds of N clients x $n_gen tokens"
} > "$out/summary.txt"
for n in "${clients[@]}"; do
    port=$((18300 + n))
    # shellcheck disable=SC2086
    "$bin" -m "$model" --port "$port" -np 4 -c 2048 -dev sim --gpu-mem "$mem" ${EXTRA:-} \
        > "$out/server-$n.stdout" 2> "$out/server-$n.stderr" &
    pid=$!
    for _ in $(seq 1 100); do curl -sf "127.0.0.1:$port/health" > /dev/null && break; sleep 0.2; done
    for r in $(seq 1 "$rounds"); do
        pids=()
        for c in $(seq 1 "$n"); do
            body="{\"prompt\":[$((c * 11)),$((c * 13 + 1)),$((c * 7 + 2)),5,6,7,8,9],\"n_predict\":$n_gen,\"temperature\":0,\"ignore_eos\":true,\"cache_prompt\":false}"
            curl -s --max-time 300 "127.0.0.1:$port/completion" -d "$body" > "$out/n$n-r$r-c$c.json" &
            pids+=($!)
        done
        wait "${pids[@]}"
    done
    kill -TERM "$pid"; wait "$pid" || true
    echo "clients $n: $(grep -E 'virtual' "$out/server-$n.stderr")" >> "$out/summary.txt"
done
# Client 1's text must not depend on how many others were busy.
first=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["content"])' "$out/n${clients[0]}-r1-c1.json")
for n in "${clients[@]}"; do
    got=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["content"])' "$out/n$n-r1-c1.json")
    if [ "$got" == "$first" ]; then echo "clients $n: client 1's text equals the ${clients[0]}-client run's" >> "$out/summary.txt"
    else echo "clients $n: client 1's text DIFFERS from the ${clients[0]}-client run's" >> "$out/summary.txt"; fi
done
cat "$out/summary.txt"
