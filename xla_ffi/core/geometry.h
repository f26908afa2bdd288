// The canonical problem every kernel sees (jaxshift/_src/layout.py reshapes
// every call into it; ffi/common.h builds it from the buffers):
//   x   : N samples, C channels, three spatial axes (A, B, W): channels-last
//         (N, A, B, W, C) or channels-first (N, C, A, B, W), any element
//         strides. An axis that x does not have is absent (Axis::present is
//         false): length 1, stride 1, zero shift.
//   m, f: per (group, channel, axis) integer offset and fraction with
//         -shift == m + f, 0 <= f < 1 (f == 0 exactly on the lattice),
//         reduced so that |m| <= 2 L + 2 (jaxshift/_src/spec.py,
//         shift_tables); sample n uses group n / samples_per_group.
//   ds  : the shift gradient, summed by every family into per-sample partial
//         sums (N, parts, C, 3) in a fixed order, then over the parts
//         (core/partials.h).
#pragma once

#include <cstdint>

#include "core/device.h"
#include "core/float16.h"

namespace jaxshift {

// One spatial axis: input length, output length, stride, element strides of
// x (sx) and y (sy), and whether x has it.
struct Axis {
  int L, Lo, t;
  int64_t sx, sy;
  bool present;
};

// Geometry of one call (see the top of this file).
struct Geometry {
  int64_t N, C;
  int64_t per_group;       // samples per shift group
  int64_t sx_n, sx_c;      // element strides of x (and dx)
  int64_t sy_n, sy_c;      // element strides of y (and g)
  Axis ax[3];
};

// The row of the (G, C, 3) shift tables that sample n, channel c uses.
JS_HD int64_t table_row(const Geometry& geo, int64_t n, int64_t c) {
  return (n / geo.per_group) * geo.C + c;
}

// Where part `part` of sample n, channel c keeps its three shift-gradient
// sums in a (N, parts, C, 3) array of partial sums.
JS_HD int64_t partial_index(const Geometry& geo, int64_t n, int64_t part, int64_t parts,
                            int64_t c) {
  return ((n * parts + part) * geo.C + c) * 3;
}

// A call's buffers, typed: storage T, tables and sums in the accumulation
// type A. The CUDA families' kernels and launch code take them whole.
template <typename T>
struct ForwardBuffers {
  using A = typename Acc<T>::type;
  const T* x;
  const int32_t* m;  // (G, C, 3) offsets (rounded in sparse/integer mode)
  const A* f;        // (G, C, 3) fractions
  T* y;
};

template <typename T>
struct BackwardBuffers {
  using A = typename Acc<T>::type;
  const T* x;
  const T* g;          // the output cotangent
  const int32_t* m_r;  // rounded tables: the input gradient
  const A* f_r;
  const int32_t* m_u;  // exact tables: the shift gradient
  const A* f_u;
  T* dx;
  A* ds;               // (N, C, 3) per-sample shift gradient
};

}  // namespace jaxshift
