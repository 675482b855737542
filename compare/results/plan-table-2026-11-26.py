#!/usr/bin/env python3
"""Makes plan-table-2026-11-26.md: predicted prefill (512) and decode t/s of the best `layers`,
`fiddler` and `auto` plans, f16, 24 GB budget, on the RTX 3090 / RTX 4090 presets, with the simple
decode bound (bytes read per token / bandwidth of each lane).

Run from the repository root after `cargo build --release --bin rs-llama-plan`:
    python3 compare/results/plan-table-2026-11-26.py > compare/results/plan-table-2026-11-26.md
"""
import json
import subprocess
import sys

BIN = "target/release/rs-llama-plan"
MODELS = ["mixtral-8x7b", "phi-3.5-moe", "qwen1.5-moe-a2.7b", "qwen2-57b-a14b", "qwen3-30b-a3b", "llama-2-13b"]
HWS = ["rtx3090-ddr4", "rtx3090-ddr5", "rtx4090-ddr4", "rtx4090-ddr5"]
POLICIES = ["layers", "fiddler", "auto"]
COMMON = ["--gpu-mem", "24GB", "--prompt", "512", "--gen", "128", "--dtype", "f16", "--json"]
# Achievable GPU bandwidth fraction used by the cost model (src/plan/cost.rs GPU_BW_EFFICIENCY).
GPU_BW_EFF = 0.85


def run(model, hw, policy):
    cmd = [BIN, "--shape", model, "--hw", hw, "--policy", policy] + COMMON
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


KE = {"mixtral-8x7b": 2 / 8, "phi-3.5-moe": 2 / 16, "qwen1.5-moe-a2.7b": 4 / 60, "qwen2-57b-a14b": 8 / 64,
      "qwen3-30b-a3b": 8 / 128, "llama-2-13b": 1.0}
HWJ = {"rtx3090-ddr4": {"dram": 44, "gpu_bw": 936}, "rtx3090-ddr5": {"dram": 64, "gpu_bw": 936},
       "rtx4090-ddr4": {"dram": 44, "gpu_bw": 1008}, "rtx4090-ddr5": {"dram": 64, "gpu_bw": 1008}}


def main():
    rows = []
    for hw in HWS:
        for model in MODELS:
            reps = {p: run(model, hw, p) for p in POLICIES}
            bounds = {}
            for p, rep in reps.items():
                bounds[p] = bound_for(rep, model, hw)
            rows.append((hw, model, reps, bounds))
    print("# Predicted speed of the three policies: f16, 24 GB GPU budget, prompt 512, gen 128\n")
    print("Produced by `python3 compare/results/plan-table-2026-11-26.py > compare/results/plan-table-2026-11-26.md`")
    print("(each cell is `target/release/rs-llama-plan --shape MODEL --hw HW --policy P " + " ".join(COMMON) + "`).")
    print("Uniform expert popularity (no skew). `layers` = best `-ngl`/`--n-cpu-moe` that fits, chosen by simulation.")
    print("Decode bound = 1 / max(host bytes per token / DRAM bandwidth, GPU bytes per token / achievable GPU bandwidth),")
    print("for the auto plan's placement (overlap: lanes in parallel; serial: 1 / (host/DRAM + GPU/GPU-bw)); host GB/token is what the CPU must read from DRAM per token.\n")
    print("| HW | model | layers pp512 | fiddler pp512 | auto pp512 | auto/best pp | auto pp lanes cpu/gpu/pcie % | layers tg | fiddler tg | auto tg | auto/best tg | tg bound overlap | tg bound serial | host GB/tok | GPU GB/tok | layers choice | auto choice |")
    print("|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
    for hw, model, reps, bounds in rows:
        L, F, A = reps["layers"], reps["fiddler"], reps["auto"]
        best_pp = max(L["prefill_tps"], F["prefill_tps"])
        best_tg = max(L["decode_tps"], F["decode_tps"])
        b, host_gb, gpu_gb, b_serial = bounds["auto"]
        u = A["prediction"]["prefill_util"]
        lanes = "/".join(f"{100 * x:.0f}" for x in u)
        print(f"| {hw} | {model} | {L['prefill_tps']:.1f} | {F['prefill_tps']:.1f} | {A['prefill_tps']:.1f} | "
              f"{A['prefill_tps'] / best_pp:.2f}x | {lanes} | {L['decode_tps']:.2f} | {F['decode_tps']:.2f} | {A['decode_tps']:.2f} | "
              f"{A['decode_tps'] / best_tg:.2f}x | {b:.2f} | {b_serial:.2f} | {host_gb:.2f} | {gpu_gb:.2f} | {L['summary'].split(' (')[0]} | {A['summary'].split(';')[0]} |")
    ok = all(r[2]["auto"]["prefill_tps"] >= max(r[2]["layers"]["prefill_tps"], r[2]["fiddler"]["prefill_tps"]) * 0.9999
             and r[2]["auto"]["decode_tps"] >= max(r[2]["layers"]["decode_tps"], r[2]["fiddler"]["decode_tps"]) * 0.9999
             for r in rows)
    print(f"\nauto >= both baselines in every row: {'yes' if ok else 'NO'}")


def bound_for(rep, model, hw):
    ke = KE[model]
    host = gpu = 0.0
    for p in rep["plan"]["placements"]:
        frac = ke if ".exp" in p["name"] else 1.0
        if p["gpu_resident"]:
            gpu += p["bytes"] * frac
        else:
            host += p["bytes"] * frac
    h = HWJ[hw]
    th, tg = host / (h["dram"] * 1e9), gpu / (h["gpu_bw"] * 1e9 * GPU_BW_EFF)
    return 1.0 / max(th, tg), host / 1e9, gpu / 1e9, 1.0 / (th + tg)


if __name__ == "__main__":
    sys.exit(main())
