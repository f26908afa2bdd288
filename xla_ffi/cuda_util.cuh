// Small CUDA pieces shared by the v1 (shift_cuda.cu) and tiled
// (shift_cuda_tiled_*.cu) handlers.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "ffi_common.h"
#include "tiled.h"

namespace jaxshift {
namespace {

constexpr int kThreads = 256;

// Stage 2: ds[n, c, a] = sum over chunks in order; a NaN shift gives NaN.
template <typename A>
__global__ void shift_grad_finish(Geometry geo, const A* __restrict__ partial, int64_t chunks,
                                  const A* __restrict__ f, A* __restrict__ ds) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < geo.N * geo.C * 3) tiled::finish_shift_grad(geo, partial, chunks, f, ds, i);
}

template <typename A>
__global__ void fill_zero(A* p, int64_t n) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) p[i] = A(0);
}

inline int grid_for(int64_t total) {
  const int64_t blocks = (total + kThreads - 1) / kThreads;
  return static_cast<int>(blocks < 65535 * 32 ? blocks : 65535 * 32);
}

inline ffi::Error last_error(const char* what) {
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) {
    return ffi::Error::Internal(std::string("jaxshift: CUDA launch of ") + what +
                                " failed: " + cudaGetErrorString(err));
  }
  return ffi::Error::Success();
}

using tiled::fits_int32;

inline unsigned capped(int64_t n, int64_t cap) { return static_cast<unsigned>(n < cap ? n : cap); }

}  // namespace
}  // namespace jaxshift
