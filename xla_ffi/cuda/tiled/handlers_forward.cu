// CUDA XLA FFI handler of the tiled forward: checks (ffi/common.h), then the
// dtype's translation unit (cuda/tiled/units.cuh).
#include "cuda/runtime.cuh"
#include "cuda/tiled/units.cuh"
#include "ffi/common.h"

namespace jaxshift {
namespace {

ffi::Error ForwardTiledImpl(cudaStream_t stream, ffi::AnyBuffer x, ffi::AnyBuffer m,
                            ffi::AnyBuffer f, ffi::Result<ffi::AnyBuffer> y, int64_t padding,
                            bool channels_last, ffi::Span<const int64_t> strides,
                            ffi::Span<const int64_t> present, bool move) {
  return forward_call(x, m, f, *y, padding, channels_last, strides, present,
                      [&](const Options& opt, const Geometry& geo) -> ffi::Error {
    gpu::CudaLauncher l(stream, nullptr);
    return with_dtype(x.element_type(), [&](auto t) {
      return gpu::tiled_forward_as<decltype(t)>(l, opt.padding, geo, x.untyped_data(),
                                                m.typed_data<int32_t>(), f.untyped_data(),
                                                y->untyped_data(), channels_last, move);
    });
  });
}

}  // namespace
}  // namespace jaxshift

namespace ffi = xla::ffi;

XLA_FFI_DEFINE_HANDLER_SYMBOL(
    jaxshift_forward_cuda_tiled, jaxshift::ForwardTiledImpl,
    jaxshift::forward_signature(ffi::Ffi::Bind().Ctx<ffi::PlatformStream<cudaStream_t>>()),
    {ffi::Traits::kCmdBufferCompatible});

JAXSHIFT_EXPORT_HANDLER(cuda_tiled, forward)
