#!/usr/bin/env bash
# Builds, here on the development machine (no GPU needed), the three kernel
# libraries a GPU session loads (CPU, CUDA for sm_90, the CUDA emulator)
# against the oldest supported FFI headers, and packs them into .gpu_build/
# (xz: the CUDA library is ~50 MB, over half the 64 MiB a device call may
# carry). benchmarks/gpu_session.sh unpacks and loads them instead of
# building on the lent machine: there, `pip install -e .` ran past 330 s on
# 2026-12-04 (two calls of a 15-minute lease), while this build takes ~6.5
# minutes on 2 cores and no device time.
#
#   bash benchmarks/gpu_prebuild.sh            # -> .gpu_build/libs.tar.xz
#   run(command="bash benchmarks/gpu_session.sh", carry=[".gpu_build"], ...)
#
# The headers: .ffi_headers/xla if present (gpu_session.sh's comment says how
# to make it), else those of the jax installed here.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-/tmp/jaxshift-gpu-build}
headers=()
[ -d .ffi_headers/xla ] && headers=(-DXLA_FFI_INCLUDE_DIR="$PWD/.ffi_headers")
cmake -G Ninja -S xla_ffi -B "$build" -DCMAKE_BUILD_TYPE=Release -DJAXSHIFT_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES=90-real -DJAXSHIFT_EMULATOR=ON "${headers[@]}" > /dev/null
ninja -C "$build" jaxshift_cpu jaxshift_cuda jaxshift_cuda_emulated
mkdir -p .gpu_build
grep -qx '/.gpu_build/' .git/info/exclude 2>/dev/null || echo /.gpu_build/ >> .git/info/exclude
cp "$build/build_info.txt" "$build/_build_info.txt"
tar -C "$build" -cJf .gpu_build/libs.tar.xz libjaxshift_cpu.so libjaxshift_cuda.so \
  libjaxshift_cuda_emulated.so _build_info.txt
git rev-parse HEAD > .gpu_build/commit.txt
ls -la .gpu_build
