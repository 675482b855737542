#!/bin/bash
# rs-llama-plan's CPU-only predictions against rs-llama-bench, 2 threads, on SmolLM2-135M f16 and
# bf16 and the Mixtral-shaped 1.3 GB f16 model. This VM's speed drifts by ±30% within minutes (its
# neighbours), so each round measures a fresh profile right before its benches, and every round's
# ratio is reported with their median. Run from the repo root after `cargo build --release`.
#   ROUNDS (default 3), OUT (default this folder)
set -u
R=${OUT:-compare/results/plan-vs-bench-2026-11-26-s4}
M=~/.cache/rs-llama/models
B=./target/release
MODELS="smollm2-135m-f16 smollm2-135m-bf16 mixtral-shape-1.3g.f16"
for k in $(seq ${ROUNDS:-3}); do
  D=$R/round$k
  mkdir -p $D
  uptime > $D/uptime-before.txt
  $B/rs-llama-plan --profile > $D/host-profile.json 2> $D/profile.stderr
  for m in $MODELS; do
    # rs-llama-bench's pp512 and tg128 both start from an empty cache (tg128's mean context is
    # 64), so the decode figure is planned with no prompt: --prompt 512 would put it at 576.
    $B/rs-llama-plan -m $M/$m.gguf --hw $D/host-profile.json --gpu-mem 0 --prompt 512 --gen 128 --json \
      > $D/plan-$m-pp512.json 2> $D/plan-$m-pp512.stderr
    $B/rs-llama-plan -m $M/$m.gguf --hw $D/host-profile.json --gpu-mem 0 --prompt 0 --gen 128 --json \
      > $D/plan-$m-tg128.json 2> $D/plan-$m-tg128.stderr
    $B/rs-llama-bench -m $M/$m.gguf -p 512 -n 128 -t 2 -r 3 -o md > $D/bench-$m.md 2> $D/bench-$m.stderr
  done
  uptime > $D/uptime-after.txt
done
python3 - "$R" ${ROUNDS:-3} $MODELS <<'PY' | tee $R/summary.txt
import json, re, statistics, sys
r, rounds, models = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
for m in models:
    for key, test in [("prefill_tps", "pp512"), ("decode_tps", "tg128")]:
        cells, ratios = [], []
        for k in range(1, rounds + 1):
            d = f"{r}/round{k}"
            pred = json.load(open(f"{d}/plan-{m}-{test}.json"))[key]
            meas = None
            for line in open(f"{d}/bench-{m}.md"):
                hit = re.search(rf"\|\s*{test}\s*\|\s*([\d.]+) ± ([\d.]+)", line)
                if hit:
                    meas = float(hit.group(1))
            cells.append(f"{pred:.1f}/{meas:.1f}")
            ratios.append(pred / meas)
        per_round = " ".join(f"{x:.2f}" for x in ratios)
        print(f"{m} {test}: predicted/measured t/s per round {' '.join(cells)}; "
              f"ratios {per_round}; median {statistics.median(ratios):.2f}")
PY
