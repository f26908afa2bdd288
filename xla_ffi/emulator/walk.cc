// The walk family's CPU FFI targets on the emulator,
// jaxshift_{forward,backward}_cuda_emulated_walk: cuda/walk/launch.h with the
// emulator's launcher (emulator/launcher.h), as the GPU handlers run it.
#include <cstdint>

#include "cuda/walk/launch.h"
#include "emulator/launcher.h"
#include "ffi/common.h"

namespace jaxshift {
namespace {

struct Family {
  template <typename T, int P>
  static ffi::Error forward(emu::EmuLauncher& l, const Geometry& geo,
                            const ForwardBuffers<T>& b, bool last, bool move, bool index64) {
    return walk::forward<T, P>(l, geo, b, last, move, index64);
  }
  template <typename T, int P>
  static ffi::Error backward(emu::EmuLauncher& l, const Geometry& geo,
                             const BackwardBuffers<T>& b, bool last, bool shift_grad,
                             bool index64) {
    return walk::backward<T, P>(l, geo, b, last, shift_grad, index64);
  }
};

}  // namespace
}  // namespace jaxshift

namespace ffi = xla::ffi;

XLA_FFI_DEFINE_HANDLER_SYMBOL(jaxshift_forward_cuda_emulated_walk,
                              jaxshift::emu::ForwardImpl<jaxshift::Family>,
                              jaxshift::forward_signature(ffi::Ffi::Bind()));
XLA_FFI_DEFINE_HANDLER_SYMBOL(jaxshift_backward_cuda_emulated_walk,
                              jaxshift::emu::BackwardImpl<jaxshift::Family>,
                              jaxshift::backward_signature(ffi::Ffi::Bind()));

JAXSHIFT_EXPORT_HANDLER(cuda_emulated_walk, forward)
JAXSHIFT_EXPORT_HANDLER(cuda_emulated_walk, backward)
