// The CPU forward: rows straight from the array (cpu/direct.h) for
// channels-first calls of unit strides and for strided active ones of
// column strides 1 and 2, channel lanes (cpu/lanes.h) for channels-last and
// for the other channels-first strided calls, staged planes where
// neither applies (cpu/staged.h), walks in place for far shifts and large
// planes there, the element-wise functions for the rest (fewer than 8
// channels, samples beyond 32-bit offsets).
#include <algorithm>
#include <cstdint>

#include "cpu/kernels.h"
#include "cpu/direct.h"
#include "cpu/lanes.h"
#include "cpu/parallel.h"
#include "cpu/staged.h"
#include "core/elementwise.h"
#include "core/stencils.h"
#include "core/walks.h"

namespace jaxshift {
namespace {

// One output row (index `row` of axis 1) of one (sample, channel), walked in
// place: the path for shifts beyond the staged halo and planes too large to
// stage.
template <int P, typename A, typename T>
void forward_row(const T* xc, T* yc, const Axis* ax, int row, const ChannelTables<A>& ct,
                 bool move) {
  if (nan_shift(ct.f)) return fill_nan(yc + row * ax[1].sy, ax[2].sy, ax[2].Lo, ct.f);
  forward_walk<P, A>(xc, yc, ax[1], ax[2], row, 0, ax[2].Lo, ct.m[1], ct.f[1], ct.m[2], ct.f[2],
                     move);
}

// One staged task: sample n, channels [c0, c0 + nb), output rows
// [r0, r0 + rows), whose shifts reach at most K <= kMaxHalo cells.
template <typename T, int P>
void staged_task(Isa isa, const Geometry& geo, const T* x, Tables tab, T* y, bool move,
                 int64_t n, int64_t c0, int nb, int r0, int rows, int K) {
  using A = typename Acc<T>::type;
  const int H = geo.ax[1].L, W = geo.ax[2].L;
  ChannelTables<A>* ct = scratch<ChannelTables<A>>(static_cast<size_t>(nb));
  group_tables<A>(geo, tab, n, c0, nb, ct);
  const Group<const T> xg{x + n * geo.sx_n + c0 * geo.sx_c, nb, geo.sx_c, geo.ax[1].sx,
                          geo.ax[2].sx};
  const Group<T> yg{y + n * geo.sy_n + c0 * geo.sy_c, nb, geo.sy_c, geo.ax[1].sy, geo.ax[2].sy};
  const Planes pl = make_planes<A>(rows, W, K, r0);
  A* xs = scratch<A>(static_cast<size_t>(nb * (pl.pitch + row_pitch<A>(W))));
  stage_strip(isa, std::integral_constant<int, P>{}, xg, H, xs, pl, move);
  forward_strip(isa, static_cast<const A*>(xs), pl, static_cast<const ChannelTables<A>*>(ct), move,
                RowBuffer<A>{xs + nb * pl.pitch, row_pitch<A>(W)}, yg);
}

// One lanes task: sample n, output plane d of axis 0, channels [c0, c0 +
// nb), output rows [r0, r0 + rows).
template <typename T, int P>
void lanes_task(Isa isa, const Geometry& geo, const T* x, Tables tab, T* y, bool move, int64_t n,
                int d, int64_t c0, int nb, int r0, int rows, int planes) {
  using A = typename Acc<T>::type;
  const Axis* ax = geo.ax;
  ChannelTables<A>* ct = scratch<ChannelTables<A>>(static_cast<size_t>(nb));
  group_tables<A>(geo, tab, n, c0, nb, ct);
  const int64_t xat = n * geo.sx_n + c0 * geo.sx_c;
  const int32_t last = last_from(geo, geo.sx_n, n, c0, xat);
  lanes_forward(isa, P, LaneArray<const T>{x + xat, ax[1].sx, ax[2].sx, last, geo.sx_c},
                LaneArray<T>{y + n * geo.sy_n + d * ax[0].sy + c0 * geo.sy_c, ax[1].sy, ax[2].sy,
                             -1, geo.sy_c},
                Depth{ax[0].L, ax[0].sx, d * ax[0].t}, ax[1].L, ax[2].L,
                ax[1].t, ax[2].t, ax[2].Lo, static_cast<const ChannelTables<A>*>(ct), nb, r0,
                rows, move, planes, ax[0].sy);
}

// Channels [c0, c0 + nb) of sample n, output rows [r0, r0 + rows), walked in
// place.
template <typename T, int P>
void walk_channels(const Geometry& geo, const T* x, Tables tab, T* y, bool move, int64_t n,
                   int64_t c0, int64_t nb, int r0, int rows) {
  using A = typename Acc<T>::type;
  for (int64_t c = c0; c < c0 + nb; ++c) {
    for (int row = r0; row < r0 + rows; ++row) {
      forward_row<P, A>(x + n * geo.sx_n + c * geo.sx_c, y + n * geo.sy_n + c * geo.sy_c, geo.ax,
                        row, channel_tables<A>(geo, tab, n, c), move);
    }
  }
}

}  // namespace

template <typename T, int P>
void run_forward(xla::ffi::ThreadPool& pool, const Geometry& geo, const T* x, Tables tab, T* y,
                 bool move) {
  using A = typename Acc<T>::type;
  const Axis* ax = geo.ax;
  if (use_direct_forward<T>(geo, move)) {
    const Isa isa = current_isa();
    StagedPlan plan = staged_plan<T>(geo, call_halo<A>(geo, tab, 0));
    plan.planes = ax[0].Lo;
    for_each_task(pool, plan, geo, [&](int64_t n, int d, int64_t c0, int nb, int r0, int rows) {
      const DirectScratch<T> scr = direct_scratch<T>(ax[2].L, true);
      forward_channels(isa, P, &geo, x, &tab, &scr, move, n, c0, nb, d, y, r0, rows);
    });
    return;
  }
  if constexpr (sizeof(T) <= 4) {  // (not compiled for float64)
    if (use_strided_rows<T>(geo, move)) {
      const Isa isa = current_isa();
      const StagedPlan plan = strided_plan<T>(geo, pool.num_threads());
      for_each_task(pool, plan, geo, [&](int64_t n, int d, int64_t c0, int nb, int r0, int rows) {
        strided_channels(isa, P, &geo, x, &tab, n, c0, nb, d, y, r0, rows);
      });
      return;
    }
  }
  if (use_lanes<T>(geo, false, move)) {
    const Isa isa = current_isa();
    // 3-D with unit strides on axes 0 and 1, not a move: a task takes every
    // plane of its strip (lanes_forward_impl reuses a plane's depth tap 1 as
    // the next plane's tap 0), in strips enough for every thread.
    const bool span = ax[0].Lo > 1 && ax[0].t == 1 && ax[1].t == 1 && !move;
    const StagedPlan plan = span ? lanes_span_plan<T>(geo, pool.num_threads())
                                 : lanes_plan<T>(geo, true, 4 * int64_t{pool.num_threads()});
    const int planes = span ? ax[0].Lo : 1;
    for_each_task(pool, plan, geo, [&](int64_t n, int d, int64_t c0, int nb, int r0, int rows) {
      lanes_task<T, P>(isa, geo, x, tab, y, move, n, d, c0, nb, r0, rows, planes);
    });
    return;
  }
  if (use_staging<T>(geo)) {
    const Isa isa = current_isa();
    const StagedPlan plan = staged_plan<T>(geo, call_halo<A>(geo, tab, 0));
    for_each_task(pool, plan, geo, [&](int64_t n, int, int64_t c0, int nb, int r0, int rows) {
      const int K = block_halo<A>(geo, tab, n, c0, nb, 0);
      if (K > kMaxHalo) {
        walk_channels<T, P>(geo, x, tab, y, move, n, c0, nb, r0, rows);
      } else {
        staged_task<T, P>(isa, geo, x, tab, y, move, n, c0, nb, r0, rows, K);
      }
    });
    return;
  }
  if (walkable(geo)) {  // rows of axis 1, walking axis 2
    parallel_for(pool, geo.N * ax[1].Lo, [&](int64_t task) {
      const int64_t n = task / ax[1].Lo;
      const int row = static_cast<int>(task % ax[1].Lo);
      for (int64_t c = 0; c < geo.C; ++c) {
        forward_row<P, A>(x + n * geo.sx_n + c * geo.sx_c, y + n * geo.sy_n + c * geo.sy_c, ax,
                          row, channel_tables<A>(geo, tab, n, c), move);
      }
    });
    return;
  }
  // The element-wise path: one task per (sample, row of the output's axes 0
  // and 1), every channel and position of the innermost axis.
  for_each_row_and_channel<A>(
      pool, geo, ax[0].Lo, ax[1].Lo, tab,
      [&](int64_t n, int64_t c, int* o, const ChannelTables<A>& ct) {
        const T* xc = x + n * geo.sx_n + c * geo.sx_c;
        T* yc = y + n * geo.sy_n + c * geo.sy_c + o[0] * ax[0].sy + o[1] * ax[1].sy;
        const bool copy = move && !nan_shift(ct.f);
        for (o[2] = 0; o[2] < ax[2].Lo; ++o[2]) {
          T* out = yc + o[2] * ax[2].sy;
          if (copy) {
            const T* src = move_source<P>(xc, ax, o, ct.m);
            if (src) *out = *src; else store(out, A(0));
          } else {
            store(out, forward_value<P, A>(xc, ax, o, ct.m, ct.f));
          }
        }
      });
}

#define JAXSHIFT_INSTANTIATE(T, P)                                                          \
  template void run_forward<T, P>(xla::ffi::ThreadPool&, const Geometry&, const T*, Tables, T*, \
                                  bool);
JAXSHIFT_FOR_EACH_TYPE_AND_PADDING(JAXSHIFT_INSTANTIATE)
#undef JAXSHIFT_INSTANTIATE

}  // namespace jaxshift
