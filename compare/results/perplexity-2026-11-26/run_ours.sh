#!/bin/bash
# rs-llama against llama.cpp's f16 base file (40 chunks of c=512 of genesis-kjv.txt); run from the repo root.
P=${P:-./target/release/rs-llama-perplexity}
M=~/.cache/rs-llama/models
R=compare/results/perplexity-2026-11-26
D=/tmp/ppltext
for ty in f16 bf16; do
  $P -m $M/smollm2-135m-$ty.llamacpp.gguf -c 512 -t 2 --kl-divergence-base $D/llamacpp-f16.kld --kl-divergence \
    >$R/rsllama-$ty-vs-llamacpp-f16.stdout 2>$R/rsllama-$ty-vs-llamacpp-f16.stderr &
done
wait
