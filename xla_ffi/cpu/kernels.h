// The CPU kernels' entry points, one per direction, for every storage type T
// and padding P: each chooses a path (staged planes, walks, or the
// element-wise functions) and runs it on XLA's thread pool. Explicitly
// instantiated in cpu/forward.cc and cpu/backward.cc (compiled in parallel);
// cpu/handlers.cc holds the handlers that call them.
#pragma once

#include <cstdint>

#include "cpu/parallel.h"
#include "cpu/tables.h"
#include "core/float16.h"
#include "core/geometry.h"
#include "core/padding.h"
#include "xla/ffi/api/ffi.h"

namespace jaxshift {

// y = shift(x) on the output grid. `move`: sparse/integer (a pure copy).
template <typename T, int P>
void run_forward(xla::ffi::ThreadPool& pool, const Geometry& geo, const T* x, Tables tab, T* y,
                 bool move);

// dx (input grid, rounded tables) and the per-sample shift gradient ds
// (N, C, 3) in the accumulation type (exact tables), zero if !shift_grad.
template <typename T, int P>
void run_backward(xla::ffi::ThreadPool& pool, const Geometry& geo, const T* x, const T* g,
                  Tables rounded, Tables exact, bool shift_grad, T* dx,
                  typename Acc<T>::type* ds);

// The element-wise paths' loop: one task per (sample n, row (i0, i1) of a
// len0 x len1 grid), calling fn(n, c, i, tables of (n, c)) for every channel
// c with i = {i0, i1, 0}; fn walks the innermost axis in i[2].
template <typename A, typename Fn>
void for_each_row_and_channel(xla::ffi::ThreadPool& pool, const Geometry& geo, int64_t len0,
                              int64_t len1, const Tables& tab, const Fn& fn) {
  const int64_t rows = len0 * len1;
  parallel_for(pool, geo.N * rows, [&](int64_t task) {
    const int64_t n = task / rows, r = task % rows;
    int i[3] = {static_cast<int>(r / len1), static_cast<int>(r % len1), 0};
    for (int64_t c = 0; c < geo.C; ++c) fn(n, c, i, channel_tables<A>(geo, tab, n, c));
  });
}

// Calls M(T, P) for every padding of storage type T.
#define JAXSHIFT_FOR_EACH_PADDING(M, T) \
  M(T, kZeros) M(T, kBorder) M(T, kPeriodic) M(T, kReflect) M(T, kSymmetric)

// Calls M(T, P) for every storage type and padding, or, in a unit the build
// generates per storage type (JAXSHIFT_CPU_UNIT_TYPE defined: CMakeLists.txt,
// the CPU library), for that type's paddings only: cpu/forward.cc and
// cpu/backward.cc are each compiled as four units, which build in parallel
// (one backward unit took 5 of CI's 6-minute install).
#if defined(JAXSHIFT_CPU_UNIT_TYPE)
#define JAXSHIFT_FOR_EACH_TYPE_AND_PADDING(M) JAXSHIFT_FOR_EACH_PADDING(M, JAXSHIFT_CPU_UNIT_TYPE)
#else
#define JAXSHIFT_FOR_EACH_TYPE_AND_PADDING(M)                                  \
  JAXSHIFT_FOR_EACH_PADDING(M, float) JAXSHIFT_FOR_EACH_PADDING(M, double)     \
  JAXSHIFT_FOR_EACH_PADDING(M, Half) JAXSHIFT_FOR_EACH_PADDING(M, BFloat16)
#endif

}  // namespace jaxshift
