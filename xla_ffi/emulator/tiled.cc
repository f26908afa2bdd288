// The tiled family's CPU FFI targets on the emulator,
// jaxshift_{forward,backward}_cuda_emulated_tiled: cuda/tiled/launch.h with the
// emulator's launcher (emulator/launcher.h), as the GPU handlers run it.
#include <cstdint>

#include "cuda/tiled/launch.h"
#include "emulator/launcher.h"
#include "ffi/common.h"

namespace jaxshift {
namespace {

struct Family {
  template <typename T, int P>
  static ffi::Error forward(emu::EmuLauncher& l, const Geometry& geo,
                            const ForwardBuffers<T>& b, bool last, bool move, bool index64) {
    return tiled::forward<T, P>(l, geo, b, last, move, index64);
  }
  template <typename T, int P>
  static ffi::Error backward(emu::EmuLauncher& l, const Geometry& geo,
                             const BackwardBuffers<T>& b, bool last, bool shift_grad,
                             bool index64) {
    return tiled::backward<T, P>(l, geo, b, last, shift_grad, index64);
  }
};

}  // namespace
}  // namespace jaxshift

namespace ffi = xla::ffi;

XLA_FFI_DEFINE_HANDLER_SYMBOL(jaxshift_forward_cuda_emulated_tiled,
                              jaxshift::emu::ForwardImpl<jaxshift::Family>,
                              jaxshift::forward_signature(ffi::Ffi::Bind()));
XLA_FFI_DEFINE_HANDLER_SYMBOL(jaxshift_backward_cuda_emulated_tiled,
                              jaxshift::emu::BackwardImpl<jaxshift::Family>,
                              jaxshift::backward_signature(ffi::Ffi::Bind()));

JAXSHIFT_EXPORT_HANDLER(cuda_emulated_tiled, forward)
JAXSHIFT_EXPORT_HANDLER(cuda_emulated_tiled, backward)
