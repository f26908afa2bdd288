// What a call of the walk family launches, written once for the GPU
// (cuda/walk/handlers.cu, gpu::CudaLauncher) and the emulator
// (emulator/handlers.cc): the kernel for the call's shape and layout, the
// scratch for the shift gradient's partial sums, and the finish. A launcher
// `L` provides launch<K>(args) and scratch(bytes) (cuda/runtime.cuh).
#pragma once

#include <cstdint>

#include "cuda/phased.h"
#include "cuda/walk/kernels.h"
#include "ffi/common.h"

namespace jaxshift {
namespace walk {

template <typename T, int P, int kOp, class L>
ffi::Error elementwise(L& l, const Geometry& geo, const T* src, const int32_t* m,
                       const typename Acc<T>::type* f, T* dst, int64_t total, bool last,
                       bool force_index64) {
  const Launch plan = launch_of((total + kThreads - 1) / kThreads, 0);
  if (fits_int32(total) && !force_index64) {
    using K = Elementwise<T, P, kOp, int32_t>;
    return l.template launch<K>(
        typename K::Args{plan, geo, src, m, f, dst, static_cast<int32_t>(total), last});
  }
  using K = Elementwise<T, P, kOp, int64_t>;
  return l.template launch<K>(typename K::Args{plan, geo, src, m, f, dst, total, last});
}

template <typename T, int P, class L>
ffi::Error forward(L& l, const Geometry& geo, const ForwardBuffers<T>& b, bool last, bool move,
                   bool force_index64) {
  if (walkable(geo)) {
    const Plan plan = walk_plan(geo, last, true, 0);
    if (last) return l.template launch<Forward<T, P, true>>({plan, geo, b, move});
    return l.template launch<Forward<T, P, false>>({plan, geo, b, move});
  }
  const int64_t total = geo.N * geo.C * geo.ax[0].Lo * static_cast<int64_t>(geo.ax[1].Lo) *
                        geo.ax[2].Lo;
  if (move) return elementwise<T, P, kMove>(l, geo, b.x, b.m, b.f, b.y, total, last, force_index64);
  return elementwise<T, P, kInterpolate>(l, geo, b.x, b.m, b.f, b.y, total, last, force_index64);
}

template <typename T, int P, class L>
ffi::Error backward(L& l, const Geometry& geo, const BackwardBuffers<T>& b, bool last,
                    bool shift_grad, bool force_index64) {
  using A = typename Acc<T>::type;
  // Partial sums per (sample, part, channel): parts are the walk's blocks
  // along its fixed axis, or the element-wise call's chunks.
  const int64_t parts = walkable(geo) ? walk_parts(geo, last) : chunks_of(geo);
  A* partial = nullptr;
  if (shift_grad) {
    partial = static_cast<A*>(l.scratch(static_cast<size_t>(geo.N * parts * geo.C * 3) * sizeof(A)));
    if (!partial) return ffi::Error::Internal("jaxshift: scratch allocation failed");
  }
  ffi::Error e = ffi::Error::Success();
  if (walkable(geo)) {
    const Plan plan = walk_plan(geo, last, false, Backward<T, P, true>::kSmem);
    e = last ? l.template launch<Backward<T, P, true>>({plan, geo, b, partial, parts, shift_grad})
             : l.template launch<Backward<T, P, false>>({plan, geo, b, partial, parts, shift_grad});
  } else {
    const int64_t total = geo.N * geo.C * geo.ax[0].L * static_cast<int64_t>(geo.ax[1].L) *
                          geo.ax[2].L;
    e = elementwise<T, P, kAdjoint>(l, geo, b.g, b.m_r, b.f_r, b.dx, total, last, force_index64);
    if (!e.failure() && shift_grad) {
      const Plan plan = grad_plan(geo, last, sizeof(A));
      e = last ? l.template launch<ShiftGrad<T, P, true>>({plan, geo, b, partial})
               : l.template launch<ShiftGrad<T, P, false>>({plan, geo, b, partial});
    }
  }
  if (e.failure()) return e;
  return finish(l, geo, partial, parts, b.f_u, b.ds);
}

}  // namespace walk
}  // namespace jaxshift
