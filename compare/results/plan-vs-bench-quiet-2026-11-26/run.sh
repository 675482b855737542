#!/bin/bash
# rs-llama-plan's CPU-only predictions against rs-llama-bench, measured back to back on a quiet
# machine (nothing else running), 2 threads. Run from the repo root after `cargo build --release`.
set -u
R=compare/results/plan-vs-bench-quiet-2026-11-26
M=~/.cache/rs-llama/models
B=./target/release
uptime > $R/uptime-before.txt
$B/rs-llama-plan --profile > $R/host-profile.json 2> $R/profile.stderr
for ty in f16 bf16; do
  $B/rs-llama-plan -m $M/smollm2-135m-$ty.gguf --hw $R/host-profile.json --gpu-mem 0 --prompt 512 --gen 128 --json \
    > $R/plan-smollm2-$ty.json 2> $R/plan-smollm2-$ty.stderr
  $B/rs-llama-bench -m $M/smollm2-135m-$ty.gguf -p 512 -n 128 -t 2 -r 3 -o md \
    > $R/bench-smollm2-$ty.md 2> $R/bench-smollm2-$ty.stderr
done
uptime > $R/uptime-after.txt
python3 - "$R" <<'PY'
import json, re, sys
r = sys.argv[1]
for ty in ["f16", "bf16"]:
    plan = json.load(open(f"{r}/plan-smollm2-{ty}.json"))
    rows = {}
    for line in open(f"{r}/bench-smollm2-{ty}.md"):
        m = re.search(r"\|\s*(pp512|tg128)\s*\|\s*([\d.]+) ± ([\d.]+)", line)
        if m:
            rows[m.group(1)] = (float(m.group(2)), float(m.group(3)))
    for key, test in [("prefill_tps", "pp512"), ("decode_tps", "tg128")]:
        pred, (meas, sd) = plan[key], rows[test]
        print(f"{ty} {test}: predicted {pred:.1f} t/s, measured {meas:.1f} ± {sd:.1f} t/s, ratio {pred / meas:.2f}")
PY
