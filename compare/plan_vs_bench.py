"""Summarises compare/plan-vs-bench.sh: predicted / measured t/s per round and test.

Each bench is predicted from the profiles taken right before and right after it (geometric mean);
`drift` is the larger of those two predictions over the smaller, a measure of how much the machine
moved while the bench ran.
"""

import json
import math
import re
import statistics
import sys
from pathlib import Path

TESTS = [("pp512", "prefill_tps", "a", "b"), ("tg128", "decode_tps", "b", "c")]


def measured(bench_md: Path, test: str) -> float:
    for line in bench_md.read_text().splitlines():
        hit = re.search(rf"\|\s*{test}\s*\|\s*([\d.]+) ± ([\d.]+)", line)
        if hit:
            return float(hit.group(1))
    raise SystemExit(f"{bench_md}: no {test} row")


def main(out: Path) -> None:
    rows: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    for round_dir in sorted(out.glob("round*"), key=lambda p: int(p.name[5:])):
        for model_dir in sorted(p for p in round_dir.iterdir() if p.is_dir()):
            for test, key, before, after in TESTS:
                preds = [json.loads((model_dir / f"plan-{test}-{p}.json").read_text())[key] for p in (before, after)]
                pred = math.sqrt(preds[0] * preds[1])
                meas = measured(model_dir / f"bench-{test}.md", test)
                rows.setdefault((model_dir.name, test), []).append((pred, meas, max(preds) / min(preds)))
    print("| model | test | predicted / measured t/s per round | ratios | drift per round | median ratio | geo-mean |")
    print("|---|---|---|---|---|---:|---:|")
    for (model, test), runs in rows.items():
        ratios = [p / m for p, m, _ in runs]
        cells = " ".join(f"{p:.1f}/{m:.1f}" for p, m, _ in runs)
        drift = " ".join(f"{d:.2f}" for _, _, d in runs)
        geo = math.exp(statistics.mean(math.log(r) for r in ratios))
        print(
            f"| {model} | {test} | {cells} | {' '.join(f'{r:.2f}' for r in ratios)} | {drift} "
            f"| {statistics.median(ratios):.2f} | {geo:.2f} |"
        )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
