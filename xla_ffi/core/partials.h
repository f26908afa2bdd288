// The shift gradient's last step, the same in every family: each kernel
// leaves per-sample partial sums (N, parts, C, 3) (core/geometry.h,
// partial_index) in a fixed order of its own; ds[n, c, a] adds sample n's
// parts in order. The same inputs so give bitwise the same gradient
// whatever the threads, and no atomics are needed.
#pragma once

#include <cstdint>

#include "core/device.h"
#include "core/float16.h"
#include "core/geometry.h"
#include "core/stencils.h"

namespace jaxshift {

// Element i of ds (N, C, 3): the parts in order; a channel whose shift is
// NaN gets NaN (core/stencils.h, the NaN rule). `f` are the exact tables.
template <typename A>
JS_HD void finish_shift_grad(const Geometry& geo, const A* partial, int64_t parts, const A* f,
                             A* ds, int64_t i) {
  const int64_t k = i % 3, c = (i / 3) % geo.C, n = i / (3 * geo.C);
  A acc = A(0);
  for (int64_t t = 0; t < parts; ++t) acc += load<A>(partial + partial_index(geo, n, t, parts, c) + k);
  const A* fr = f + table_row(geo, n, c) * 3;
  const A fv[3] = {load<A>(fr), load<A>(fr + 1), load<A>(fr + 2)};
  if (nan_shift(fv)) acc = nan_value(fv);
  store(ds + i, acc);
}

}  // namespace jaxshift
