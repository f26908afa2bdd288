// The CUDA runtime side of both kernel families: the kernel template that
// runs a phased kernel (cuda/phased.h) and the launcher that the families'
// launch code (cuda/walk/launch.h, cuda/tiled/launch.h) calls on a GPU; the
// emulator's launcher (emulator/handlers.cc) has the same two functions.
//   launch<K>(args)          one launch of phased kernel K
//   scratch(bytes) -> void*  memory for the call (null if none)
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "cuda/phased.h"
#include "ffi/common.h"

namespace jaxshift {
namespace gpu {
namespace {

// One block runs items blockIdx.x, + gridDim.x, ...; each item's phases with
// a barrier after each (cuda/phased.h).
template <class K>
__global__ void __launch_bounds__(phased::kThreads) phased_kernel(const typename K::Args a) {
  extern __shared__ __align__(16) unsigned char smem[];
  for (int64_t item = blockIdx.x; item < a.plan.items; item += gridDim.x) {
#pragma unroll
    for (int ph = 0; ph < K::kPhases; ++ph) {
      K::phase(ph, a, item, static_cast<int>(threadIdx.x), smem);
      __syncthreads();
    }
  }
}

inline ffi::Error last_error(const char* what) {
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) {
    return ffi::Error::Internal(std::string("jaxshift: CUDA launch of ") + what +
                                " failed: " + cudaGetErrorString(err));
  }
  return ffi::Error::Success();
}

}  // namespace

// The launcher on a stream.
class CudaLauncher {
 public:
  CudaLauncher(cudaStream_t stream, ffi::ScratchAllocator* alloc) : stream_(stream), alloc_(alloc) {}

  template <class K>
  ffi::Error launch(const typename K::Args& a) {
    const size_t smem = a.plan.smem;
    if (smem > 48 * 1024) {
      const cudaError_t e = cudaFuncSetAttribute(
          phased_kernel<K>, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
      if (e != cudaSuccess) {
        return ffi::Error::Internal(std::string("jaxshift: shared memory for ") + K::kName +
                                    ": " + cudaGetErrorString(e));
      }
    }
    phased_kernel<K><<<static_cast<unsigned>(a.plan.grid), phased::kThreads, smem, stream_>>>(a);
    return last_error(K::kName);
  }

  void* scratch(size_t bytes) {
    if (!alloc_) return nullptr;
    auto mem = alloc_->Allocate(bytes);
    return mem.has_value() ? mem.value() : nullptr;
  }

 private:
  cudaStream_t stream_;
  ffi::ScratchAllocator* alloc_;
};

}  // namespace gpu
}  // namespace jaxshift

// Defines and exports a CUDA family's two handlers, jaxshift_forward_<family>
// and jaxshift_backward_<family>, from jaxshift::ForwardImpl(stream, ...) and
// jaxshift::BackwardImpl(stream, scratch, ...) of the including file.
// The forward is command-buffer compatible (CUDA graphs); the backward is
// not: it asks XLA's scratch allocator for memory.
#define JAXSHIFT_CUDA_HANDLERS(family)                                                    \
  XLA_FFI_DEFINE_HANDLER_SYMBOL(                                                          \
      jaxshift_forward_##family, jaxshift::ForwardImpl,                                   \
      jaxshift::forward_signature(                                                        \
          xla::ffi::Ffi::Bind().Ctx<xla::ffi::PlatformStream<cudaStream_t>>()),           \
      {xla::ffi::Traits::kCmdBufferCompatible});                                          \
  XLA_FFI_DEFINE_HANDLER_SYMBOL(                                                          \
      jaxshift_backward_##family, jaxshift::BackwardImpl,                                 \
      jaxshift::backward_signature(xla::ffi::Ffi::Bind()                                  \
                                       .Ctx<xla::ffi::PlatformStream<cudaStream_t>>()     \
                                       .Ctx<xla::ffi::ScratchAllocator>()));              \
  JAXSHIFT_EXPORT_HANDLER(family, forward)                                                \
  JAXSHIFT_EXPORT_HANDLER(family, backward)
