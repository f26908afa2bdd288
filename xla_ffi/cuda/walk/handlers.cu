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
  return forward_call(x, m, f, *y, padding, channels_last, strides, present,
                      [&](const Options& opt, const Geometry& geo) -> ffi::Error {
    gpu::CudaLauncher l(stream, nullptr);
    return dispatch(x.element_type(), opt.padding, [&](auto t, auto p) {
      using T = decltype(t);
      using A = typename Acc<T>::type;
      return walk::forward<T, decltype(p)::value>(
          l, geo, static_cast<const T*>(x.untyped_data()), m.typed_data<int32_t>(),
          static_cast<const A*>(f.untyped_data()), static_cast<T*>(y->untyped_data()),
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
      using A = typename Acc<T>::type;
      return walk::backward<T, decltype(p)::value>(
          l, geo, static_cast<const T*>(x.untyped_data()),
          static_cast<const T*>(g.untyped_data()), m_r.typed_data<int32_t>(),
          static_cast<const A*>(f_r.untyped_data()), m_u.typed_data<int32_t>(),
          static_cast<const A*>(f_u.untyped_data()), static_cast<T*>(dx->untyped_data()),
          static_cast<A*>(ds->untyped_data()), channels_last, shift_grad, false);
    });
  });
}

}  // namespace
}  // namespace jaxshift

namespace ffi = xla::ffi;

XLA_FFI_DEFINE_HANDLER_SYMBOL(
    jaxshift_forward_cuda, jaxshift::ForwardImpl,
    jaxshift::forward_signature(ffi::Ffi::Bind().Ctx<ffi::PlatformStream<cudaStream_t>>()),
    {ffi::Traits::kCmdBufferCompatible});
// Not command-buffer compatible: it asks XLA's scratch allocator for memory.
XLA_FFI_DEFINE_HANDLER_SYMBOL(
    jaxshift_backward_cuda, jaxshift::BackwardImpl,
    jaxshift::backward_signature(ffi::Ffi::Bind()
                                     .Ctx<ffi::PlatformStream<cudaStream_t>>()
                                     .Ctx<ffi::ScratchAllocator>()));

JAXSHIFT_EXPORT_HANDLER(cuda, forward)
JAXSHIFT_EXPORT_HANDLER(cuda, backward)
JAXSHIFT_EXPORT_CONTRACT(cuda)
