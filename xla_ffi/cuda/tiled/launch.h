// What a call of the tiled family launches, written once for the GPU
// (cuda/tiled/instance.cuh, gpu::CudaLauncher) and the emulator
// (emulator/handlers.cc): the plan, the kernel for the layout and index
// width, the scratch for the shift gradient's partial sums and the finish. A
// launcher `L` provides launch<K>(args) and scratch(bytes) (cuda/runtime.cuh).
#pragma once

#include <cstdint>

#include "cuda/phased.h"
#include "cuda/tiled/kernels.h"
#include "cuda/tiled/plan.h"
#include "ffi/common.h"

namespace jaxshift {
namespace tiled {

inline bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

template <typename T, int P, class L>
ffi::Error forward(L& l, const Geometry& geo, const ForwardBuffers<T>& b, bool channels_last,
                   bool move, bool force_index64) {
  using A = typename Acc<T>::type;
  const Plan plan = make_plan(geo, channels_last, false, sizeof(T), sizeof(A),
                              aligned16(b.x), force_index64);
  if (channels_last) {
    return plan.index64 ? l.template launch<Forward<T, P, true, int64_t>>({geo, plan, b, move})
                        : l.template launch<Forward<T, P, true, int32_t>>({geo, plan, b, move});
  }
  return plan.index64 ? l.template launch<Forward<T, P, false, int64_t>>({geo, plan, b, move})
                      : l.template launch<Forward<T, P, false, int32_t>>({geo, plan, b, move});
}

template <typename T, int P, class L>
ffi::Error backward(L& l, const Geometry& geo, const BackwardBuffers<T>& b, bool channels_last,
                    bool shift_grad, bool force_index64) {
  using A = typename Acc<T>::type;
  const Plan plan = make_plan(geo, channels_last, true, sizeof(T), sizeof(A),
                              aligned16(b.x) && aligned16(b.g), force_index64);
  const bool unit = geo.ax[0].t == 1 && geo.ax[1].t == 1 && geo.ax[2].t == 1;
  A* partial = nullptr;
  if (shift_grad) {
    partial = static_cast<A*>(
        l.scratch(static_cast<size_t>(geo.N * plan.tiles * geo.C * 3) * sizeof(A)));
    if (!partial) return ffi::Error::Internal("jaxshift: scratch allocation failed");
  }
  const auto run = [&](auto k) {
    using K = typename decltype(k)::type;
    return l.template launch<K>({geo, plan, b, partial, shift_grad, unit});
  };
  ffi::Error e = ffi::Error::Success();
  if (channels_last) {
    e = plan.index64 ? run(KernelTag<Backward<T, P, true, int64_t>>{})
                     : run(KernelTag<Backward<T, P, true, int32_t>>{});
  } else {
    e = plan.index64 ? run(KernelTag<Backward<T, P, false, int64_t>>{})
                     : run(KernelTag<Backward<T, P, false, int32_t>>{});
  }
  if (e.failure()) return e;
  return finish(l, geo, static_cast<const A*>(partial), plan.tiles, b.f_u, b.ds);
}

}  // namespace tiled
}  // namespace jaxshift
