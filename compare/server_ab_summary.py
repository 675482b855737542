#!/usr/bin/env python3
"""summary.md of a compare/server-ab.sh directory: per -np, each round's aggregate generated t/s of
llama-server (A) and rs-llama-server (B) and their ratio B/A (geometric mean over rounds), latency
medians, the -np 4 / -np 1 scaling of each server, and the stress runs.

usage: server_ab_summary.py DIR > DIR/summary.md
"""

import glob
import json
import math
import os
import re
import statistics
import sys

NAMES = {"llama": "llama-server", "rs": "rs-llama-server"}


def load(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)["summary"]


def fmt(x, nd=1):
    return "—" if x is None else f"{x:.{nd}f}"


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def main():
    d = sys.argv[1]
    runs = {}  # (np, round) -> {engine: summary}
    for p in glob.glob(os.path.join(d, "r*-np*-*.json")):
        m = re.match(r"r(\d+)-np(\d+)-(\w+)\.json$", os.path.basename(p))
        if m:
            runs.setdefault((int(m.group(2)), int(m.group(1))), {})[m.group(3)] = load(p)
    out = ["# rs-llama-server vs llama-server under load", ""]
    meta = os.path.join(d, "meta.txt")
    if os.path.exists(meta):
        with open(meta, encoding="utf-8") as f:
            lines = [ln.rstrip() for ln in f if not ln.startswith("[")]
        out += ["```"] + lines + ["```", ""]
    out += [
        "Aggregate generated tokens/s over each run's wall time (NP streaming clients on -np NP; "
        "compare/server-load.py). ratio = rs-llama-server / llama-server; a missing server is —.",
        "",
        "| -np | round | llama-server t/s | rs-llama-server t/s | ratio | TTFT p50 ms (A / B) | ITL p50 ms (A / B) | checks (A / B) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    ratios, per_engine = {}, {}
    for (np_, rnd) in sorted(runs, key=lambda k: (-k[0], k[1])):
        r = runs[(np_, rnd)]
        a, b = r.get("llama"), r.get("rs")
        ta, tb = (a or {}).get("gen_tokens_per_s"), (b or {}).get("gen_tokens_per_s")
        ratio = tb / ta if ta and tb else None
        if ratio:
            ratios.setdefault(np_, []).append(ratio)
        for e, s in r.items():
            per_engine.setdefault((e, np_), []).append(s)
        out.append(
            f"| {np_} | {rnd} | {fmt(ta)} | {fmt(tb)} | {fmt(ratio, 2)} | "
            f"{fmt((a or {}).get('ttft_ms_p50'), 0)} / {fmt((b or {}).get('ttft_ms_p50'), 0)} | "
            f"{fmt((a or {}).get('itl_ms_p50'))} / {fmt((b or {}).get('itl_ms_p50'))} | "
            f"{(a or {}).get('verdict', '—')} / {(b or {}).get('verdict', '—')} |"
        )
    out += ["", "| -np | geomean ratio (min–max) |", "|---|---|"]
    for np_ in sorted({k[0] for k in runs}, reverse=True):
        rs = ratios.get(np_)
        if rs:
            g = math.exp(sum(map(math.log, rs)) / len(rs))
            out.append(f"| {np_} | {g:.2f}x ({min(rs):.2f}–{max(rs):.2f}) |")
        else:
            out.append(f"| {np_} | — |")
    out += ["", "Scaling: median aggregate t/s at -np 4 over median at -np 1 (issue 18 asks >= 2x for rs-llama-server).",
            "", "| server | -np 1 t/s | -np 4 t/s | np4 / np1 | per-stream t/s p50 at -np 4 |", "|---|---|---|---|---|"]
    for e in ("llama", "rs"):
        one = median(s["gen_tokens_per_s"] for s in per_engine.get((e, 1), []))
        four = median(s["gen_tokens_per_s"] for s in per_engine.get((e, 4), []))
        per = median(s.get("per_request_decode_tps_p50") for s in per_engine.get((e, 4), []))
        scale = four / one if one and four else None
        out.append(f"| {NAMES[e]} | {fmt(one)} | {fmt(four)} | {fmt(scale, 2)} | {fmt(per)} |")
    stress = sorted(glob.glob(os.path.join(d, "stress-*.json")))
    if stress:
        out += ["", "Stress (bad input and disconnects mixed in):", "",
                "| server | requests | normal ok | lost | dup ids | mixed | malformed (bad answers) | disconnected | t/s | RSS before → after KiB | healthy after | verdict |",
                "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for p in stress:
            s = load(p)
            e = os.path.basename(p).rsplit("-", 1)[1].removesuffix(".json")
            out.append(
                f"| {NAMES.get(e, e)} | {s['requests']} ({s['clients']} clients) | {s['normal_ok']}/{s['normal']} | "
                f"{s['lost_or_incomplete']} | {s['duplicate_ids']} | {s['mixed_up']} | {s['malformed']} "
                f"({s['malformed_not_4xx_or_bad_body']}) | {s['disconnected']} | {fmt(s['gen_tokens_per_s'])} | "
                f"{s['rss_kib_before']} → {s['rss_kib_after']} | {s['healthy_after']} | {s['verdict']} |"
            )
    print("\n".join(out))


if __name__ == "__main__":
    main()
