// CUDA XLA FFI handlers of the tiled family (opt-in: JAXSHIFT_CUDA_KERNEL=tiled):
// checks and the dtype dispatch (ffi/common.h), then the dtype's translation
// unit (cuda/tiled/units.cuh), which runs cuda/tiled/launch.h.
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/runtime.cuh"
#include "cuda/tiled/units.cuh"
#include "ffi/common.h"

namespace jaxshift {
namespace {

ffi::Error ForwardImpl(cudaStream_t stream, ffi::AnyBuffer x, ffi::AnyBuffer m, ffi::AnyBuffer f,
                       ffi::Result<ffi::AnyBuffer> y, int64_t padding, bool channels_last,
                       ffi::Span<const int64_t> strides, ffi::Span<const int64_t> present,
                       bool move) {
  return forward_call(x, m, f, *y, padding, channels_last, strides, present, move,
                      [&](const Options& opt, const Geometry& geo) -> ffi::Error {
    gpu::CudaLauncher l(stream, nullptr);
    return with_dtype(x.element_type(), [&](auto t) {
      using T = decltype(t);
      return gpu::tiled_forward_as<T>(l, opt.padding, geo, forward_buffers<T>(x, m, f, *y),
                                      channels_last, move);
    });
  });
}

ffi::Error BackwardImpl(cudaStream_t stream, ffi::ScratchAllocator scratch, ffi::AnyBuffer x,
                        ffi::AnyBuffer g, ffi::AnyBuffer m_r, ffi::AnyBuffer f_r,
                        ffi::AnyBuffer m_u, ffi::AnyBuffer f_u, ffi::Result<ffi::AnyBuffer> dx,
                        ffi::Result<ffi::AnyBuffer> ds, int64_t padding, bool channels_last,
                        ffi::Span<const int64_t> strides, ffi::Span<const int64_t> present,
                        bool shift_grad) {
  return backward_call(x, g, m_r, f_r, m_u, f_u, *dx, *ds, padding, channels_last, strides,
                       present, [&](const Options& opt, const Geometry& geo) -> ffi::Error {
    gpu::CudaLauncher l(stream, &scratch);
    return with_dtype(x.element_type(), [&](auto t) {
      using T = decltype(t);
      return gpu::tiled_backward_as<T>(
          l, opt.padding, geo, backward_buffers<T>(x, g, m_r, f_r, m_u, f_u, *dx, *ds),
          channels_last, shift_grad);
    });
  });
}

}  // namespace
}  // namespace jaxshift

JAXSHIFT_CUDA_HANDLERS(cuda_tiled)
