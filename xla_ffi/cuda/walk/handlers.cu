// CUDA XLA FFI handlers of the walk family (the default): forward and fused
// deterministic backward, on the stream XLA provides. Checks and the dtype
// and padding dispatch are ffi/common.h's; what runs is cuda/walk/launch.h's.
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/runtime.cuh"
#include "cuda/walk/launch.h"
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
    return dispatch(x.element_type(), opt.padding, [&](auto t, auto p) {
      using T = decltype(t);
      return walk::forward<T, decltype(p)::value>(l, geo, forward_buffers<T>(x, m, f, *y),
                                                  channels_last, move, false);
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
    return dispatch(x.element_type(), opt.padding, [&](auto t, auto p) {
      using T = decltype(t);
      return walk::backward<T, decltype(p)::value>(
          l, geo, backward_buffers<T>(x, g, m_r, f_r, m_u, f_u, *dx, *ds), channels_last,
          shift_grad, false);
    });
  });
}

}  // namespace
}  // namespace jaxshift

JAXSHIFT_CUDA_HANDLERS(cuda)
JAXSHIFT_EXPORT_CONTRACT(cuda)
