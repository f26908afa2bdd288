// The tiled forward and backward for one storage type T (every padding,
// layout and index width): declared here for the handlers
// (cuda/tiled/handlers_*.cu), defined and instantiated per (direction, dtype)
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
ffi::Error tiled_forward_as(CudaLauncher& l, int padding, const Geometry& geo, const void* x,
                            const int32_t* m, const void* f, void* y, bool channels_last,
                            bool move);
template <typename T>
ffi::Error tiled_backward_as(CudaLauncher& l, int padding, const Geometry& geo, const void* x,
                             const void* g, const int32_t* m_r, const void* f_r,
                             const int32_t* m_u, const void* f_u, void* dx, void* ds,
                             bool channels_last, bool shift_grad);

}  // namespace gpu
}  // namespace jaxshift
