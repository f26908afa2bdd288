// The tiled forward and backward for one storage type T (every padding,
// layout and index width): declared here for the handlers
// (cuda/tiled/handlers.cu), defined and instantiated per (direction, dtype)
// in its own translation unit (cuda/tiled/instance.cuh), so that the eight
// compile in parallel (one unit took 6 minutes of nvcc).
#pragma once

#include <cstdint>

#include "core/geometry.h"
#include "cuda/runtime.cuh"
#include "ffi/common.h"

namespace jaxshift {
namespace gpu {

template <typename T>
ffi::Error tiled_forward_as(CudaLauncher& l, int padding, const Geometry& geo,
                            const ForwardBuffers<T>& b, bool channels_last, bool move);
template <typename T>
ffi::Error tiled_backward_as(CudaLauncher& l, int padding, const Geometry& geo,
                             const BackwardBuffers<T>& b, bool channels_last, bool shift_grad);

}  // namespace gpu
}  // namespace jaxshift
