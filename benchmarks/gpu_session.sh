#!/usr/bin/env bash
# Everything a lent GPU machine is for, in one command (fits one 10-minute
# device call on an H100): build against the oldest FFI headers, run the GPU
# tests, both sanitizers, and the benchmark. Logs go to $OUT (or ./gpu-out).
#
# Before the call, on the development machine (no GPU needed):
#   mkdir -p .ffi_headers && cp -r "$(python -c 'import jax; print(jax.ffi.include_dir())')/xla" .ffi_headers/
#   echo /.ffi_headers/ >> .git/info/exclude
# and carry .ffi_headers with the call. STAGES selects what runs
# (default "build test memcheck racecheck bench").
set -uo pipefail
OUT="${OUT:-gpu-out}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
STAGES="${STAGES:-build test memcheck racecheck bench}"
headers=()
[ -d .ffi_headers/xla ] && headers=(-Ccmake.define.XLA_FFI_INCLUDE_DIR="$PWD/.ffi_headers")
has() { [[ " $STAGES " == *" $1 "* ]]; }
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv,noheader | tee "$OUT/device.txt"
if has build; then
  JAXSHIFT_CUDA=ON python3 -m pip install --no-build-isolation --no-deps -e . -Cbuild-dir=build/gpu \
    -Ccmake.define.CMAKE_CUDA_ARCHITECTURES=90-real "${headers[@]}" > "$OUT/build.log" 2>&1 \
    || { tail -40 "$OUT/build.log"; exit 1; }
  echo "build: ok"
fi
if has test; then
  # -n 0: one process (each xdist worker would preallocate GPU memory).
  timeout 260 python3 -m pytest -q -n 0 -p no:cacheprovider tests/test_ffi.py tests/test_cuda.py \
    tests/test_shift.py -k "not random" 2>&1 | tee "$OUT/pytest.log" | tail -4
fi
# XLA's CUDA-graph command buffers make racecheck crash at start: turn them off.
san() {
  XLA_FLAGS=--xla_gpu_enable_command_buffer= timeout "$2" compute-sanitizer --tool "$1" \
    --kernel-name kns=jaxshift python3 tests/kernel_sweep.py > "$OUT/$1.log" 2>&1
  echo "$1 rc=$?: $(grep -hE 'ERROR SUMMARY|RACECHECK SUMMARY|mismatches' "$OUT/$1.log" | tr '\n' ' ')"
}
has memcheck && san memcheck 150
has racecheck && san racecheck 150
if has bench; then
  timeout 200 python3 benchmarks/bench.py --gpu --samples 9 --out "$OUT/bench_gpu.md" | tail -20
fi
