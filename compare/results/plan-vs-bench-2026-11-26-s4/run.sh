#!/bin/bash
# rs-llama-plan's CPU-only predictions against rs-llama-bench, measured back to back (nothing else
# running), 2 threads, on SmolLM2-135M f16 and bf16 and the Mixtral-shaped 1.3 GB f16 model.
# Run from the repo root after `cargo build --release`; OUT defaults to this folder.
set -u
R=${OUT:-compare/results/plan-vs-bench-2026-11-26-s4}
M=~/.cache/rs-llama/models
B=./target/release
MODELS="smollm2-135m-f16 smollm2-135m-bf16 mixtral-shape-1.3g.f16"
uptime > $R/uptime-before.txt
$B/rs-llama-plan --profile > $R/host-profile.json 2> $R/profile.stderr
for m in $MODELS; do
  # rs-llama-bench's pp512 starts from an empty cache and its tg128 too (mean context 64), so the
  # decode figure is planned with no prompt: --prompt 512 would put it at a context of 576.
  $B/rs-llama-plan -m $M/$m.gguf --hw $R/host-profile.json --gpu-mem 0 --prompt 512 --gen 128 --json \
    > $R/plan-$m-pp512.json 2> $R/plan-$m-pp512.stderr
  $B/rs-llama-plan -m $M/$m.gguf --hw $R/host-profile.json --gpu-mem 0 --prompt 0 --gen 128 --json \
    > $R/plan-$m-tg128.json 2> $R/plan-$m-tg128.stderr
  $B/rs-llama-bench -m $M/$m.gguf -p 512 -n 128 -t 2 -r 3 -o md > $R/bench-$m.md 2> $R/bench-$m.stderr
done
uptime > $R/uptime-after.txt
python3 - "$R" $MODELS <<'PY' | tee $R/summary.txt
import json, re, sys
r = sys.argv[1]
for m in sys.argv[2:]:
    rows = {}
    for line in open(f"{r}/bench-{m}.md"):
        hit = re.search(r"\|\s*(pp512|tg128)\s*\|\s*([\d.]+) ± ([\d.]+)", line)
        if hit:
            rows[hit.group(1)] = (float(hit.group(2)), float(hit.group(3)))
    for key, test in [("prefill_tps", "pp512"), ("decode_tps", "tg128")]:
        plan = json.load(open(f"{r}/plan-{m}-{test}.json"))
        pred, (meas, sd) = plan[key], rows[test]
        print(f"{m} {test}: predicted {pred:.1f} t/s, measured {meas:.1f} ± {sd:.1f} t/s, ratio {pred / meas:.2f}")
PY
