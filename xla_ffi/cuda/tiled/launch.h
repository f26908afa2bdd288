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

template <typename T, int P, bool kLast, typename I, class L>
ffi::Error forward_as(L& l, const Plan& plan, const Geometry& geo, const T* x, const int32_t* m,
                      const typename Acc<T>::type* f, T* y, bool move) {
  using K = Forward<T, P, kLast, I>;
  const typename K::Args a{geo, plan, x, m, f, y, move};
  return l.template launch<K>(a);
}

template <typename T, int P, class L>
ffi::Error forward(L& l, const Geometry& geo, const T* x, const int32_t* m,
                   const typename Acc<T>::type* f, T* y, bool channels_last, bool move,
                   bool force_index64) {
  using A = typename Acc<T>::type;
  const Plan plan = make_plan(geo, channels_last, false, sizeof(T), sizeof(A),
                              aligned16(x), force_index64);
  if (channels_last) {
    return plan.index64 ? forward_as<T, P, true, int64_t>(l, plan, geo, x, m, f, y, move)
                        : forward_as<T, P, true, int32_t>(l, plan, geo, x, m, f, y, move);
  }
  return plan.index64 ? forward_as<T, P, false, int64_t>(l, plan, geo, x, m, f, y, move)
                      : forward_as<T, P, false, int32_t>(l, plan, geo, x, m, f, y, move);
}

template <typename T, int P, bool kLast, typename I, class L, class Args>
ffi::Error backward_as(L& l, const Args& args) {
  using K = Backward<T, P, kLast, I>;
  const typename K::Args a{args.geo, args.plan, args.x, args.g, args.m_r, args.f_r,
                           args.m_u, args.f_u, args.dx, args.partial, args.shift_grad,
                           args.unit};
  return l.template launch<K>(a);
}

template <typename T, int P, class L>
ffi::Error backward(L& l, const Geometry& geo, const T* x, const T* g, const int32_t* m_r,
                    const typename Acc<T>::type* f_r, const int32_t* m_u,
                    const typename Acc<T>::type* f_u, T* dx, typename Acc<T>::type* ds,
                    bool channels_last, bool shift_grad, bool force_index64) {
  using A = typename Acc<T>::type;
  typename Backward<T, P, true, int32_t>::Args args;
  args.geo = geo;
  args.plan = make_plan(geo, channels_last, true, sizeof(T), sizeof(A),
                        aligned16(x) && aligned16(g), force_index64);
  args.x = x;
  args.g = g;
  args.m_r = m_r;
  args.f_r = f_r;
  args.m_u = m_u;
  args.f_u = f_u;
  args.dx = dx;
  args.shift_grad = shift_grad;
  args.unit = geo.ax[0].t == 1 && geo.ax[1].t == 1 && geo.ax[2].t == 1;
  args.partial = nullptr;
  if (shift_grad) {
    args.partial = static_cast<A*>(
        l.scratch(static_cast<size_t>(geo.N * args.plan.tiles * geo.C * 3) * sizeof(A)));
    if (!args.partial) return ffi::Error::Internal("jaxshift: scratch allocation failed");
  }
  ffi::Error e = ffi::Error::Success();
  if (channels_last) {
    e = args.plan.index64 ? backward_as<T, P, true, int64_t>(l, args)
                          : backward_as<T, P, true, int32_t>(l, args);
  } else {
    e = args.plan.index64 ? backward_as<T, P, false, int64_t>(l, args)
                          : backward_as<T, P, false, int32_t>(l, args);
  }
  if (e.failure()) return e;
  return finish(l, geo, static_cast<const A*>(args.partial), args.plan.tiles, f_u, ds);
}

}  // namespace tiled
}  // namespace jaxshift
