#!/usr/bin/env python3
"""Compare llama.cpp's tensors (compare/tensordump) with rs-llama's (RS_LLAMA_DUMP) pass by pass.

usage: diff.py LLAMA_DIR/<pass> RS_DIR/<pass> [--layers N]
For each rs-llama tensor, finds llama.cpp's tensor of that name with the same element count (the last
one in graph order, i.e. after reshapes and rope) and prints max |diff|, the count of elements that
differ at all, and whether the two are bit-identical.
"""
import os
import sys

import numpy as np


def load_index(d):
    out = {}
    with open(os.path.join(d, "index.txt")) as f:
        for line in f:
            if line.startswith("#"):
                continue
            parts = line.rsplit(" ", 5)
            name, k = parts[0], int(parts[1])
            ne = [int(x) for x in parts[2:]]
            out.setdefault(name, []).append((k, int(np.prod(ne))))
    return out


def main():
    ref, ours = sys.argv[1], sys.argv[2]
    max_layer = int(sys.argv[sys.argv.index("--layers") + 1]) if "--layers" in sys.argv else 10**9
    index = load_index(ref)
    files = sorted(os.listdir(ours), key=lambda f: os.path.getmtime(os.path.join(ours, f)))
    for f in files:
        name, k, _ = f.rsplit(".", 2)
        if "-" in name and name.rsplit("-", 1)[1].isdigit() and int(name.rsplit("-", 1)[1]) >= max_layer:
            continue
        a = np.fromfile(os.path.join(ours, f), dtype=np.float32)
        lookup = name if name in index else None
        if lookup is None and name.startswith("ffn_") and name.count("-") == 0:
            lookup = f"{name}-{k}" if f"{name}-{k}" in index else None
        cands = [kk for kk, n in index.get(lookup, []) if n == a.size] if lookup else []
        if not cands:
            print(f"{f:28s} (no llama.cpp tensor)")
            continue
        b = np.fromfile(os.path.join(ref, f"{lookup}.{cands[-1]}.f32"), dtype=np.float32)
        d = np.abs(a.astype(np.float64) - b)
        print(f"{f:28s} max|d| {d.max():.3e}  rel {d.max() / max(np.abs(b).max(), 1e-30):.2e}  "
              f"differ {int((a != b).sum())}/{a.size}{'  IDENTICAL' if (a == b).all() else ''}")


if __name__ == "__main__":
    main()
