// One dtype's tiled kernels (every padding, layout and index width), for
// JAXSHIFT_TILED_T (the storage type) and JAXSHIFT_TILED_FORWARD (1 forward,
// 0 backward). CMakeLists.txt generates a translation unit per (direction,
// dtype) that includes this file once; a CHECK build (2 cores: fewer units
// parse faster) includes it eight times from one unit, so the part above the
// instantiation is included once.
#ifndef JAXSHIFT_CUDA_TILED_INSTANCE_ONCE
#define JAXSHIFT_CUDA_TILED_INSTANCE_ONCE
#include "cuda/runtime.cuh"
#include "cuda/tiled/launch.h"
#include "cuda/tiled/units.cuh"

namespace jaxshift {
namespace gpu {

template <typename T>
ffi::Error tiled_forward_as(CudaLauncher& l, int padding, const Geometry& geo,
                            const ForwardBuffers<T>& b, bool channels_last, bool move) {
  return with_padding(padding, [&](auto p) {
    return tiled::forward<T, decltype(p)::value>(l, geo, b, channels_last, move, false);
  });
}

template <typename T>
ffi::Error tiled_backward_as(CudaLauncher& l, int padding, const Geometry& geo,
                             const BackwardBuffers<T>& b, bool channels_last, bool shift_grad) {
  return with_padding(padding, [&](auto p) {
    return tiled::backward<T, decltype(p)::value>(l, geo, b, channels_last, shift_grad, false);
  });
}

}  // namespace gpu
}  // namespace jaxshift
#endif  // JAXSHIFT_CUDA_TILED_INSTANCE_ONCE

namespace jaxshift {
namespace gpu {
#if JAXSHIFT_TILED_FORWARD
template ffi::Error tiled_forward_as<JAXSHIFT_TILED_T>(CudaLauncher&, int, const Geometry&,
                                                       const ForwardBuffers<JAXSHIFT_TILED_T>&,
                                                       bool, bool);
#else
template ffi::Error tiled_backward_as<JAXSHIFT_TILED_T>(CudaLauncher&, int, const Geometry&,
                                                        const BackwardBuffers<JAXSHIFT_TILED_T>&,
                                                        bool, bool);
#endif
}  // namespace gpu
}  // namespace jaxshift
