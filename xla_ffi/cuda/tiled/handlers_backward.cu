// CUDA XLA FFI handler of the tiled fused backward: checks (ffi/common.h),
// then the dtype's translation unit (cuda/tiled/units.cuh).
#include "cuda/runtime.cuh"
#include "cuda/tiled/units.cuh"
#include "ffi/common.h"

namespace jaxshift {
namespace {

ffi::Error BackwardTiledImpl(cudaStream_t stream, ffi::ScratchAllocator scratch, ffi::AnyBuffer x,
                             ffi::AnyBuffer g, ffi::AnyBuffer m_r, ffi::AnyBuffer f_r,
                             ffi::AnyBuffer m_u, ffi::AnyBuffer f_u,
                             ffi::Result<ffi::AnyBuffer> dx, ffi::Result<ffi::AnyBuffer> ds,
                             int64_t padding, bool channels_last, ffi::Span<const int64_t> strides,
                             ffi::Span<const int64_t> present, bool shift_grad) {
  return backward_call(x, g, m_r, f_r, m_u, f_u, *dx, *ds, padding, channels_last, strides,
                       present, [&](const Options& opt, const Geometry& geo) -> ffi::Error {
    gpu::CudaLauncher l(stream, &scratch);
    return with_dtype(x.element_type(), [&](auto t) {
      return gpu::tiled_backward_as<decltype(t)>(
          l, opt.padding, geo, x.untyped_data(), g.untyped_data(), m_r.typed_data<int32_t>(),
          f_r.untyped_data(), m_u.typed_data<int32_t>(), f_u.untyped_data(), dx->untyped_data(),
          ds->untyped_data(), channels_last, shift_grad);
    });
  });
}

}  // namespace
}  // namespace jaxshift

namespace ffi = xla::ffi;

XLA_FFI_DEFINE_HANDLER_SYMBOL(
    jaxshift_backward_cuda_tiled, jaxshift::BackwardTiledImpl,
    jaxshift::backward_signature(ffi::Ffi::Bind()
                                     .Ctx<ffi::PlatformStream<cudaStream_t>>()
                                     .Ctx<ffi::ScratchAllocator>()));

JAXSHIFT_EXPORT_HANDLER(cuda_tiled, backward)
