#!/usr/bin/env python3
"""Summarize an ab.sh run directory: per (model, test) the t/s of each engine per round, and the
ratio rs-llama / llama.cpp per round (paired, since the runs were interleaved), with their
geometric mean. With llama.cpp's AVX2 build in the run (ab.sh -L), rs-llama's AVX2 path is set
against that build, and rs-llama's default path also against the faster llama.cpp build of each
round. Writes summary.md and chart.svg (bars of the mean ratio, one per pairing)."""
import glob
import json
import math
import os
import re
import sys
from collections import defaultdict


def load(out_dir):
    # runs[(model, test)][engine] = [avg_ts of round 1, round 2, ...]
    runs = defaultdict(lambda: defaultdict(dict))
    pat = re.compile(r"r(\d+)-(.+)-(p\d+n\d+)-(llamacpp_avx2|llamacpp|rsllama_avx2|rsllama)\.jsonl$")
    for path in glob.glob(os.path.join(out_dir, "r*.jsonl")):
        m = pat.search(os.path.basename(path))
        if not m:
            continue
        rnd, model, _, engine = int(m.group(1)), m.group(2), m.group(3), m.group(4)
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line.startswith("{"):
                    continue
                rec = json.loads(line)
                p, g = int(rec["n_prompt"]), int(rec["n_gen"])
                test = f"pp{p}" if g == 0 else (f"tg{g}" if p == 0 else f"pp{p}+tg{g}")
                runs[(model, test)][engine][rnd] = float(rec["avg_ts"])
    return runs


def geomean(xs):
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else float("nan")


# (label, rs-llama variant, llama.cpp baseline): "best" is the faster llama.cpp build per round.
PAIRINGS = [
    ("rs-llama / llama.cpp", "rsllama", "llamacpp"),
    ("rs-llama avx2 / llama.cpp", "rsllama_avx2", "llamacpp"),
    ("rs-llama avx2 / llama.cpp avx2", "rsllama_avx2", "llamacpp_avx2"),
    ("rs-llama / faster llama.cpp", "rsllama", "best"),
]


def baseline(eng, name):
    if name != "best":
        return eng.get(name, {})
    a, b = eng.get("llamacpp", {}), eng.get("llamacpp_avx2", {})
    if not b:
        return {}
    return {r: max(a[r], b[r]) for r in a if r in b}


def main():
    out_dir = sys.argv[1]
    runs = load(out_dir)
    engines = [e for e in ("llamacpp", "llamacpp_avx2", "rsllama", "rsllama_avx2")
               if any(e in eng for eng in runs.values())]
    pairings = [p for p in PAIRINGS if p[1] in engines and (p[2] in engines or
                (p[2] == "best" and "llamacpp_avx2" in engines))]
    names = {"llamacpp": "llama.cpp", "llamacpp_avx2": "llama.cpp avx2", "rsllama": "rs-llama",
             "rsllama_avx2": "rs-llama avx2"}
    head = ["model", "test"] + [f"{names[e]} t/s" for e in engines] + [p[0] for p in pairings] + ["rounds"]
    lines = ["| " + " | ".join(head) + " |", "| :--- | :--- |" + " ---: |" * (len(head) - 2)]
    bars = []
    for (model, test), eng in sorted(runs.items()):
        cells = [model, test]
        for e in engines:
            v = eng.get(e, {})
            cells.append(" / ".join(f"{v[r]:.1f}" for r in sorted(v)) or "-")
        for label, ours, base in pairings:
            b, a = eng.get(ours, {}), baseline(eng, base)
            paired = [b[r] / a[r] for r in sorted(b) if r in a and a[r] > 0]
            if paired:
                ratio = geomean(paired)
                cells.append(f"**{ratio:.2f}x** ({min(paired):.2f}–{max(paired):.2f})")
                bars.append((f"{model} {test}", label, ratio))
            else:
                cells.append("-")
        cells.append(str(len(eng.get("llamacpp", {}))))
        lines.append("| " + " | ".join(cells) + " |")
    meta = ""
    meta_path = os.path.join(out_dir, "meta.txt")
    if os.path.exists(meta_path):
        meta = open(meta_path).read()
    with open(os.path.join(out_dir, "summary.md"), "w") as f:
        f.write("# rs-llama vs llama.cpp, interleaved A/B\n\n")
        f.write("Ratio = rs-llama t/s / llama.cpp t/s per round (paired), geometric mean (min–max).\n\n")
        f.write("\n".join(lines) + "\n\n```\n" + meta + "```\n")
    write_svg(os.path.join(out_dir, "chart.svg"), bars)
    print("\n".join(lines))


def write_svg(path, bars):
    w, row, left = 900, 22, 440
    h = 40 + row * len(bars) + 30
    top = max([b[2] for b in bars] + [1.5])
    scale = (w - left - 60) / top
    colors = {p[0]: c for p, c in zip(PAIRINGS, ["#2b7bb9", "#9ecae1", "#74c476", "#fd8d3c"])}
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
           f'<text x="10" y="20" font-size="14">rs-llama / llama.cpp (t/s ratio, interleaved A/B)</text>']
    for i, (label, variant, ratio) in enumerate(bars):
        y = 35 + i * row
        name = f"{label}: {variant}"
        out.append(f'<text x="{left - 6}" y="{y + 14}" text-anchor="end">{name}</text>')
        out.append(f'<rect x="{left}" y="{y + 2}" width="{ratio * scale:.1f}" height="{row - 6}" fill="{colors[variant]}"/>')
        out.append(f'<text x="{left + ratio * scale + 4:.1f}" y="{y + 14}">{ratio:.2f}x</text>')
    x1 = left + scale
    out.append(f'<line x1="{x1:.1f}" y1="30" x2="{x1:.1f}" y2="{h - 20}" stroke="#c00" stroke-dasharray="4 3"/>')
    out.append(f'<text x="{x1:.1f}" y="{h - 6}" text-anchor="middle" fill="#c00">1.00x</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
