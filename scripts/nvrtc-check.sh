#!/usr/bin/env bash
# CI step: compile every kernel of cuda/ with NVRTC for CUDA 13, on a machine with no GPU, no
# driver and no CUDA toolkit. NVRTC comes from PyPI (the `nvidia-cuda-nvrtc` wheel puts
# libnvrtc.so.13 and libnvrtc-builtins.so.13.0 in nvidia/cu13/lib). The kernels include no
# header, so nothing else is needed. The wheel is installed once into a cache folder.
set -euo pipefail
cd "$(dirname "$0")/.."
NVRTC_VERSION=${NVRTC_VERSION:-13.0.88}
DIR=${NVRTC_DIR:-$HOME/.cache/rs-llama/nvrtc-$NVRTC_VERSION}
if [ ! -f "$DIR/nvidia/cu13/lib/libnvrtc.so.13" ]; then
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps --target "$DIR" \
        "nvidia-cuda-nvrtc==$NVRTC_VERSION"
fi
export LD_LIBRARY_PATH="$DIR/nvidia/cu13/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
RS_LLAMA_REQUIRE_NVRTC=1 cargo test --features cuda --test gpu_nvrtc -- --nocapture
