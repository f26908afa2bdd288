// The CPU backward: the input gradient (a gather: deterministic, no atomics)
// and the per-sample shift gradient, summed in a fixed order so that the same
// inputs give bitwise the same result on any number of threads. Rows
// straight from the array (cpu/direct.h) for channels-first float and
// double calls of unit strides (2-D and 3-D; 16-bit storage, and 2-D
// float32 rows under 8 cells, where every channel takes their one pass,
// direct_one_pass_all) and for channels-first
// strided calls of 16- and 32-bit storage (strided_adjoint: one pass over
// the input rows), channel lanes (cpu/lanes.h) for channels-last and the
// other channels-first strided calls, staged planes
// where neither applies (cpu/staged.h), walks in place for far shifts and
// large planes there, the element-wise functions for the rest (fewer than 8 channels,
// samples beyond 32-bit offsets).
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "cpu/kernels.h"
#include "cpu/direct.h"
#include "cpu/lanes.h"
#include "cpu/parallel.h"
#include "cpu/staged.h"
#include "core/geometry.h"
#include "core/stencils.h"
#include "core/walks.h"

namespace jaxshift {
namespace {

// Whether padding P folds reads back onto the array (border, reflect,
// symmetric): the input gradient's edges collect more than one output.
// 16-bit storage takes the lanes' two passes for them (use_lanes' folds).
template <int P>
constexpr bool kFolds = P != kZeros && P != kPeriodic;

// Whether a call's 2-D lanes backward takes the one pass where its tables
// allow (lanes_backward_impl): the shift gradient in its adjoint form needs
// a padding that folds nothing. Not double: its one pass measured 1.12x the
// two (its vectors of 8 are two registers each: the pass spills). 16-bit
// channels-last storage takes the lanes (use_lanes' one_pass) for it.
template <typename T, int P>
constexpr bool kOnePass = !kFolds<P> && !std::is_same_v<T, double>;

// Whether channels [c0, c0 + nb) of sample n have rounded tables that are
// bitwise their exact ones (active mode). The tables' rows of the task's
// channels are contiguous; read in place, the bits compared inline
// (memcmp's calls were a tenth of a small channel's one pass).
template <typename A>
bool same_tables(const Geometry& geo, const Tables& rounded, const Tables& exact, int64_t n,
                 int64_t c0, int nb) {
  using Bits = std::conditional_t<sizeof(A) == 4, uint32_t, uint64_t>;
  const int64_t at = table_row(geo, n, c0) * 3, count = 3 * int64_t{nb};
  const int32_t *rm = rounded.m + at, *um = exact.m + at;
  const A *rf = static_cast<const A*>(rounded.f) + at, *uf = static_cast<const A*>(exact.f) + at;
  bool same = true;
  for (int64_t k = 0; k < count; ++k) {
    Bits a, b;
    std::memcpy(&a, rf + k, sizeof a);
    std::memcpy(&b, uf + k, sizeof b);
    same = same & (rm[k] == um[k]) & (a == b);
  }
  return same;
}

// Whether channels [c0, c0 + nb) of sample n can take their input gradient
// from the moved rows of their shift gradient's tables (lanes_backward_impl):
// the same tables, bit for bit (active mode; integer shifts), or, with
// *moves set, rounded tables that are integer moves by m or m + 1 of the
// exact tables' on every axis (sparse mode), and no NaN shift.
template <typename A>
bool one_pass_tables(const Geometry& geo, const Tables& rounded, const Tables& exact, int64_t n,
                     int64_t c0, int nb, bool* moves) {
  const int64_t at = table_row(geo, n, c0) * 3, count = 3 * int64_t{nb};
  const int32_t *rm = rounded.m + at, *um = exact.m + at;
  const A *rf = static_cast<const A*>(rounded.f) + at, *uf = static_cast<const A*>(exact.f) + at;
  const bool same = same_tables<A>(geo, rounded, exact, n, c0, nb);
  bool near = true;  // moves by m or m + 1 on every axis, no NaN shift
  for (int64_t k = 0; k < count && near; k += 3) {
    near = !nan_shift(uf + k);
    for (int a = 0; a < 3; ++a) {
      const int d = rm[k + a] - um[k + a];
      near = near && rf[k + a] == A(0) && d >= 0 && d <= 1;
    }
  }
  *moves = !same;
  return same || near;
}

// ds from the per-sample partial sums: core/partials.h's finish_shift_grad
// (the parts added in order to 0, NaN channels NaN), as whole rows: a
// sample's part is C x 3 contiguous sums, so each part is one vectorised
// add over the row, and only the tables' NaN test is per channel. (Element
// by element, with its index arithmetic, it was 10 % of a 32 x 8 x 8 x 192
// backward's samples, on one thread.)
template <typename A>
void finish(const Geometry& geo, const Tables& exact, const std::vector<A>& partial,
            int64_t parts, A* ds) {
  const int64_t row = geo.C * 3;
  const A* f = static_cast<const A*>(exact.f);
  for (int64_t n = 0; n < geo.N; ++n) {
    A* out = ds + n * row;
    const A* p = partial.data() + n * parts * row;
    for (int64_t j = 0; j < row; ++j) out[j] = A(0) + p[j];  // (-0 sums to +0, as there)
    for (int64_t t = 1; t < parts; ++t) {
      for (int64_t j = 0; j < row; ++j) out[j] += p[t * row + j];
    }
    for (int64_t c = 0; c < geo.C; ++c) {
      const A* fr = f + table_row(geo, n, c) * 3;
      if (nan_shift(fr)) out[3 * c] = out[3 * c + 1] = out[3 * c + 2] = nan_value(fr);
    }
  }
}

// Backward of one row (index `row` of axis 1) of one (sample, channel),
// walked in place: dx along the row, and the shift-gradient sums d[0]
// (axis 1) and d[1] (axis 2) over the same row of the output grid.
template <int P, typename A, typename T>
void backward_row(const T* xc, const T* gc, T* dc, const Axis* ax, int row,
                  const ChannelTables<A>& r, const ChannelTables<A>& u, bool shift_grad, A* d) {
  d[0] = d[1] = A(0);
  if (nan_shift(r.f)) return fill_nan(dc + row * ax[1].sx, ax[2].sx, ax[2].L, r.f);  // (and ds)
  backward_walk<P, A>(xc, gc, dc, ax, 1, 2, row, 0, ax[2].L, r.m, r.f, u.m, u.f, shift_grad, d);
}

// Channels [c0, c0 + nb) of sample n, rows [r0, r0 + rows), walked in
// place; their shift-gradient sums go to partial[n, part, c, 1:3] in row
// order.
template <typename T, int P, typename A>
void walk_channels(const Geometry& geo, const T* x, const T* g, Tables rounded, Tables exact,
                   bool shift_grad, T* dx, A* partial, int64_t part, int64_t parts, int64_t n,
                   int64_t c0, int64_t nb, int r0, int rows) {
  for (int64_t c = c0; c < c0 + nb; ++c) {
    A* acc = partial + partial_index(geo, n, part, parts, c);
    for (int row = r0; row < r0 + rows; ++row) {
      A d[2];
      backward_row<P, A>(x + n * geo.sx_n + c * geo.sx_c, g + n * geo.sy_n + c * geo.sy_c,
                         dx + n * geo.sx_n + c * geo.sx_c, geo.ax, row,
                         channel_tables<A>(geo, rounded, n, c),
                         channel_tables<A>(geo, exact, n, c), shift_grad, d);
      acc[1] += d[0];
      acc[2] += d[1];
    }
  }
}

// Per channel of a task (tables ct, g at the task's first channel) in input
// plane `plane` of axis 0 (3-D; else 0), the input positions [row lo, row
// hi, column lo, column hi] where no read folds (`simple`; no row where the
// plane itself is folded onto; `wrapped` as simple_interval's), and
// edge(b, row, column): channel b's folded elements (adjoint_value on the
// whole array). Each axis' taps of a position are collected once a task
// and channel, at the first element that needs them (collect_adjoint_taps'
// divisions and loops, three an element, were most of a strided call's
// time where the padding folds: benchmarks/NOTES.md, v24), and summed as
// adjoint_value sums them: the same bits.
template <int P, typename A, typename T>
struct AdjointEdges {
  const Geometry& geo;
  const T* gn;
  const ChannelTables<A>* ct;
  int nb;
  int plane;
  int* simple;
  // Channel b's taps: axis 0 at the plane, then each row, then each column
  // (taps + b * per); `have` marks those collected (nullptr until the
  // first edge: most calls never ask).
  int per;
  mutable AxisTaps<A>* taps = nullptr;
  mutable uint8_t* have = nullptr;
  AdjointEdges(const Geometry& geo_, const T* gn_, const ChannelTables<A>* ct_, int nb_,
               int plane_ = 0, bool wrapped = true)
      : geo(geo_), gn(gn_), ct(ct_), nb(nb_), plane(plane_),
        simple(scratch<int>(static_cast<size_t>(4 * nb_))),
        per(1 + geo_.ax[1].L + geo_.ax[2].L) {
    // Unit strides: simple_interval's interior. Strided (the lanes' one
    // gather an input vector, exact wherever no read folds; `wrapped`
    // false): only the positions that reads fold onto (fold_free_interval;
    // 8x32x32x64 stride 2 forward + backward 0.8x the time, v24).
    auto interval = [&](const Axis& a, int m, int* lo, int* hi) {
      if (wrapped) {
        simple_interval<P>(a, m, lo, hi);
      } else {
        fold_free_interval<P>(a, m, lo, hi);
      }
    };
    for (int b = 0; b < nb; ++b) {
      interval(geo.ax[1], ct[b].m[1], &simple[4 * b], &simple[4 * b + 1]);
      interval(geo.ax[2], ct[b].m[2], &simple[4 * b + 2], &simple[4 * b + 3]);
      int lo = 0, hi = 0;
      if (geo.ax[0].present) interval(geo.ax[0], ct[b].m[0], &lo, &hi);
      if (plane < lo || plane > hi) simple[4 * b] = 1, simple[4 * b + 1] = 0;  // every row
    }
  }
  A operator()(int b, int row, int col) const {
    const A* f = ct[b].f;
    if (nan_shift(f)) return nan_value(f);
    if (taps == nullptr) {
      const size_t n = static_cast<size_t>(nb) * static_cast<size_t>(per);
      taps = scratch<AxisTaps<A>>(n);
      have = scratch<uint8_t>(n);
      std::memset(have, 0, n);
    }
    const size_t at = static_cast<size_t>(b) * static_cast<size_t>(per);
    auto axis_taps = [&](int k, int a, int i) -> const AxisTaps<A>& {
      if (!have[at + k]) {
        const Stencil<A> st = value_stencil(f[a], at_lattice(f[a]));
        taps[at + k] = collect_adjoint_taps<P>(i, geo.ax[a], ct[b].m[a], st);
        have[at + k] = 1;
      }
      return taps[at + k];
    };
    const AxisTaps<A>& t0 = axis_taps(0, 0, plane);
    const AxisTaps<A>& t1 = axis_taps(1 + row, 1, row);
    const AxisTaps<A>& t2 = axis_taps(1 + geo.ax[1].L + col, 2, col);
    if (taps_kept(t0, t1, t2)) return adjoint_of_taps(gn + b * geo.sy_c, geo.ax, t0, t1, t2);
    const int i[3] = {plane, row, col};
    return adjoint_value_outlined<P, A>(gn + b * geo.sy_c, geo.ax, i, ct[b].m, f);
  }
};

// One staged task: sample n, channels [c0, c0 + nb), rows [r0, r0 + rows)
// (of dx and of the output grid: unit strides), whose reads reach at most
// K <= kMaxHalo cells. Its channels' shift-gradient sums over its rows go to
// partial[n, part, c, 1:3], row by row in order.
template <typename T, int P, typename A>
void staged_task(Isa isa, const Geometry& geo, const T* x, const T* g, Tables rounded,
                 Tables exact, bool shift_grad, T* dx, A* partial, int64_t part, int64_t parts,
                 int64_t n, int64_t c0, int nb, int r0, int rows, int K) {
  const Axis* ax = geo.ax;
  const int H = ax[1].L, W = ax[2].L;
  ChannelTables<A>* ct = scratch<ChannelTables<A>>(static_cast<size_t>(nb));
  group_tables<A>(geo, rounded, n, c0, nb, ct);
  const T* gn = g + n * geo.sy_n + c0 * geo.sy_c;
  const Group<const T> gg{gn, nb, geo.sy_c, ax[1].sy, ax[2].sy};
  const Group<const T> xg{x + n * geo.sx_n + c0 * geo.sx_c, nb, geo.sx_c, ax[1].sx, ax[2].sx};
  const Group<T> dxg{dx + n * geo.sx_n + c0 * geo.sx_c, nb, geo.sx_c, ax[1].sx, ax[2].sx};
  const AdjointEdges<P, A, T> edge(geo, gn, ct, nb);
  const Planes pl = make_planes<A>(rows, W, K, r0);
  A* gs = scratch<A>(static_cast<size_t>(nb * (2 * pl.pitch + row_pitch<A>(W))));
  A* xs = gs + nb * pl.pitch;
  stage_strip(isa, std::integral_constant<int, adjoint_padding(P)>{}, gg, H, gs, pl, false);
  adjoint_strip(isa, static_cast<const A*>(gs), pl, static_cast<const ChannelTables<A>*>(ct),
                static_cast<const int*>(edge.simple), &edge,
                RowBuffer<A>{xs + nb * pl.pitch, row_pitch<A>(W)}, dxg);
  if (!shift_grad) return;
  stage_strip(isa, std::integral_constant<int, P>{}, xg, H, xs, pl, false);
  for (int b = 0; b < nb; ++b) {
    if (nan_shift(ct[b].f)) continue;  // (finish fills ds)
    const ChannelTables<A> u = channel_tables<A>(geo, exact, n, c0 + b);
    A* acc = partial + partial_index(geo, n, part, parts, c0 + b) + 1;
    with_lattice(u.f[1], u.f[2], [&](auto lat_f, auto lat_w) {
      shift_grad_plane(isa, static_cast<const A*>(xs + b * pl.pitch),
                       static_cast<const A*>(gs + b * pl.pitch), pl, u.m[1], u.m[2], u.f[1],
                       u.f[2], lat_f, lat_w, acc);
    });
  }
}

template <typename T, int P, typename A>
void run_staged(xla::ffi::ThreadPool& pool, const Geometry& geo, const T* x, const T* g,
                Tables rounded, Tables exact, bool shift_grad, T* dx, A* ds) {
  const Isa isa = current_isa();
  // dx reads g at -m and -m - 1; the shift gradient reads x at m - 1 .. m + 1.
  const StagedPlan plan = staged_plan<T>(
      geo, std::max(call_halo<A>(geo, rounded, 1), shift_grad ? call_halo<A>(geo, exact, 1) : 0));
  const int64_t parts = plan.strips;
  std::vector<A> partial(static_cast<size_t>(geo.N * parts * geo.C * 3), A(0));
  for_each_task(pool, plan, geo, [&](int64_t n, int, int64_t c0, int nb, int r0, int rows) {
    const int64_t part = r0 / plan.R;
    const int K = std::max(block_halo<A>(geo, rounded, n, c0, nb, 1),
                           shift_grad ? block_halo<A>(geo, exact, n, c0, nb, 1) : 0);
    if (K > kMaxHalo) {
      walk_channels<T, P>(geo, x, g, rounded, exact, shift_grad, dx, partial.data(), part, parts,
                          n, c0, nb, r0, rows);
    } else {
      staged_task<T, P>(isa, geo, x, g, rounded, exact, shift_grad, dx, partial.data(), part,
                        parts, n, c0, nb, r0, rows, K);
    }
  });
  finish(geo, exact, partial, parts, ds);
}

// Whether a channel whose tables fit one_pass_tables takes the direct rows'
// one pass: its exact shift (u) not NaN and, in 3-D, off every lattice.
template <typename A>
bool direct_one_pass_exact(const Geometry& geo, const ChannelTables<A>& u) {
  return !nan_shift(u.f) && (!geo.ax[0].present || (!at_lattice(u.f[0]) && !at_lattice(u.f[1]) &&
                                                    !at_lattice(u.f[2])));
}

// Whether fn(n, c) holds for every channel c of each table row's sample n
// (per_group samples share a row: each row once).
template <typename Fn>
bool every_channel(const Geometry& geo, const Fn& fn) {
  for (int64_t n = 0; n < geo.N; n += geo.per_group) {
    for (int64_t c = 0; c < geo.C; ++c) {
      if (!fn(n, c)) return false;
    }
  }
  return true;
}

// Whether channel c of sample n takes the direct rows' one pass
// (backward_direct, cpu/direct.h): its tables as one_pass_tables asks, and
// direct_one_pass_exact of its exact tables (*u).
template <typename A>
bool direct_one_pass(const Geometry& geo, const Tables& rounded, const Tables& exact, int64_t n,
                     int64_t c, bool* moves, ChannelTables<A>* u) {
  if (!one_pass_tables<A>(geo, rounded, exact, n, c, 1, moves)) return false;
  *u = channel_tables<A>(geo, exact, n, c);
  return direct_one_pass_exact(geo, *u);
}

// Whether a backward that only the direct rows' one pass takes
// (backward_direct) takes the direct rows: every channel of every sample
// takes the one pass. 16-bit storage (it has no other direct backward
// compiled: it takes the lanes otherwise) and 2-D float32 planes of rows
// under 8 cells and kMinShortPlane cells or more (the two passes,
// adjoint_direct and shift_grad_direct, read 8 cells a vector). The one
// pass pays per channel and row where the lanes pay per 8 channels and
// cell: forward + backward 0.67x the lanes' time on 7x7 planes (active;
// sparse 0.74-0.95), 0.69-0.94 on 14x4, within noise on 6x6 and 5x5,
// 1.1-1.5x on 3x7 and 4x4 (benchmarks/NOTES.md, v38).
constexpr int kMinShortPlane = 40;
template <typename T, int P>
bool direct_one_pass_all(const Geometry& geo, const Tables& rounded, const Tables& exact,
                         bool shift_grad) {
  using A = typename Acc<T>::type;
  const Axis* ax = geo.ax;
  const bool fits = sizeof(T) == 2 ? direct_rows_fit(geo)
                                   : sizeof(T) == 4 && !ax[0].present && !direct_rows_fit(geo) &&
                                         direct_rows_fit(geo, true) &&
                                         ax[1].L * ax[2].L >= kMinShortPlane;
  if (!fits || !kOnePass<T, P> || !shift_grad) return false;
  bool moves;
  ChannelTables<A> u;
  return every_channel(geo, [&](int64_t n, int64_t c) {
    return direct_one_pass<A>(geo, rounded, exact, n, c, &moves, &u);
  });
}

// The direct rows (cpu/direct.h): tasks as run_staged's, and per plane of
// axis 0 in 3-D; per channel the input gradient from g, then the
// shift-gradient sums from x and g into partial[n, plane x strip, c, :],
// straight from the arrays; or, where direct_one_pass, both in one pass.
template <typename T, int P, typename A>
void run_direct(xla::ffi::ThreadPool& pool, const Geometry& geo, const T* x, const T* g,
                Tables rounded, Tables exact, bool shift_grad, T* dx, A* ds) {
  const Isa isa = current_isa();
  const Axis* ax = geo.ax;
  StagedPlan plan = staged_plan<T>(
      geo, std::max(call_halo<A>(geo, rounded, 1), shift_grad ? call_halo<A>(geo, exact, 1) : 0));
  plan.planes = ax[0].L;
  const int64_t parts = plan.planes * plan.strips;
  std::vector<A> partial(static_cast<size_t>(geo.N * parts * geo.C * 3), A(0));
  const T* x_last = x + (geo.N * geo.sx_n - 1);
  const T* g_last = g + (geo.N * geo.sy_n - 1);
  for_each_task(pool, plan, geo, [&](int64_t n, int d, int64_t c0, int nb, int r0, int rows) {
    ChannelTables<A>* ct = scratch<ChannelTables<A>>(static_cast<size_t>(nb));
    group_tables<A>(geo, rounded, n, c0, nb, ct);
    const DirectScratch<T> scr = direct_scratch<T>(ax[2].L, false);
    const T* gn = g + n * geo.sy_n + c0 * geo.sy_c;
    const T* xn = x + n * geo.sx_n + c0 * geo.sx_c;
    // Where the block's rounded tables are its exact ones (active mode), one
    // test for the block, and its channels' exact tables are ct's (per
    // channel, these tests were half the time of an 8x8 plane's one pass).
    const bool same = kOnePass<T, P> && shift_grad &&
                      same_tables<A>(geo, rounded, exact, n, c0, nb);
    for (int b = 0; b < nb; ++b) {
      const Rows<T> gb{gn + b * geo.sy_c, ax[0].sy, ax[1].sy, ax[0].L, ax[1].L, ax[2].L, g_last};
      T* dxc = dx + n * geo.sx_n + (c0 + b) * geo.sx_c + d * ax[0].sx;
      A* acc = partial.data() + partial_index(geo, n, d * plan.strips + r0 / plan.R, parts, c0 + b);
      if constexpr (kOnePass<T, P>) {
        bool moves = false;
        ChannelTables<A> u = ct[b];
        if (same ? direct_one_pass_exact(geo, u)
                 : shift_grad && direct_one_pass<A>(geo, rounded, exact, n, c0 + b, &moves, &u)) {
          const int up[3] = {ct[b].m[0] > u.m[0], ct[b].m[1] > u.m[1], ct[b].m[2] > u.m[2]};
          auto one_pass = [&](auto three, auto lat_f, auto lat_w) {
            backward_direct(isa, P, &gb, xn + b * geo.sx_c + d * ax[0].sx, &u,
                            moves ? up : nullptr, &scr, three, lat_f, lat_w, d, dxc, ax[1].sx,
                            r0, rows, acc);
          };
          if (ax[0].present) {
            one_pass(std::true_type{}, std::false_type{}, std::false_type{});
          } else {
            with_lattice(u.f[1], u.f[2], [&](auto lat_f, auto lat_w) {
              one_pass(std::false_type{}, lat_f, lat_w);
            });
          }
          continue;
        }
      }
      if constexpr (sizeof(T) > 2) {  // (16-bit storage: the one pass only)
        adjoint_direct(isa, P, &gb, static_cast<const ChannelTables<A>*>(ct + b), &scr, d, dxc,
                       ax[1].sx, r0, rows);
        if (!shift_grad || nan_shift(ct[b].f)) continue;  // (finish fills ds)
        const ChannelTables<A> u = channel_tables<A>(geo, exact, n, c0 + b);
        const Rows<T> xb{xn + b * geo.sx_c, ax[0].sx, ax[1].sx, ax[0].L, ax[1].L, ax[2].L, x_last};
        auto sums = [&](auto three, auto lat_d, auto lat_f, auto lat_w) {
          shift_grad_direct(isa, P, &xb, gb.p + d * ax[0].sy, ax[1].sy, &u, &scr, three, lat_d,
                            lat_f, lat_w, d, r0, rows, acc);
        };
        if (ax[0].present) {
          with_lattice3(u.f[0], u.f[1], u.f[2], [&](auto lat_d, auto lat_f, auto lat_w) {
            sums(std::true_type{}, lat_d, lat_f, lat_w);
          });
        } else {
          with_lattice(u.f[1], u.f[2], [&](auto lat_f, auto lat_w) {
            sums(std::false_type{}, std::true_type{}, lat_f, lat_w);
          });
        }
      }
    }
  });
  finish(geo, exact, partial, parts, ds);
}

// The lanes path. With unit strides, per task (sample,
// plane of axis 0, block of channels, strip of rows) dx from g, then the
// shift-gradient sums from x and g into partial[n, plane x strip, c, :];
// with strides the input and output grids differ, so dx (tasks over the
// input grid) and the sums (over the output grid) are two passes. float32
// channels-last calls whose paddings fold nothing take both in one pass
// where their tables allow (2-D and 3-D unit strides, 2-D strides >= 2 with
// zeros padding: `fused`, `fused3`, `fused_strided`).
template <typename T, int P, typename A>
void run_lanes(xla::ffi::ThreadPool& pool, const Geometry& geo, const T* x, const T* g,
               Tables rounded, Tables exact, bool shift_grad, T* dx, A* ds) {
  const Axis* ax = geo.ax;
  const Isa isa = current_isa();
  const bool unit = ax[0].t == 1 && ax[1].t == 1 && ax[2].t == 1;
  Geometry in = geo;  // the input grid
  for (Axis& a : in.ax) a.Lo = a.L;
  // 2-D unit-stride float32 and 16-bit channels-last calls with the shift
  // gradient take the one-pass lanes (below: `fused`), and the two passes
  // (lanes_adjoint, lanes_shift_grad) the others; all tile their columns,
  // so their tasks take every channel (lanes_plan's `tiled`), in strips for
  // 16 tasks whatever the threads (the strips are the partials). 3-D:
  // float32 (`fused3`).
  constexpr bool fuses = kOnePass<T, P>;
  constexpr bool fuses3 = fuses && std::is_same_v<T, float>;
  const bool tiled = unit && !ax[0].present;
  const StagedPlan plan = lanes_plan<T>(geo, tiled, 16), in_plan = lanes_plan<T>(in);
  // A 2-D channels-last float call with strides of 2 or more on both axes,
  // zeros padding: the input gradient and the sums in one pass over the
  // input grid (lanes_backward_strided_impl) where every sample's tables
  // allow it (one_pass_tables: decided for the whole call, whose partials
  // are then per strip of the input grid; `moves`: sparse mode's).
  constexpr bool strided_fuses = P == kZeros && std::is_same_v<T, float>;
  bool strided_one = strided_fuses && shift_grad && !unit && !ax[0].present && ax[1].t > 1 &&
                     ax[2].t > 1 && geo.sx_c == 1 && geo.sy_c == 1;
  bool moves_all = false;
  for (int64_t n = 0; strided_one && n < geo.N; n += geo.per_group) {
    bool moves = false;
    strided_one = one_pass_tables<A>(geo, rounded, exact, n, 0, static_cast<int>(geo.C), &moves);
    moves_all = moves_all || moves;
  }
  const int64_t parts = strided_one ? in_plan.strips : plan.planes * plan.strips;
  std::vector<A> partial(static_cast<size_t>(geo.N * parts * geo.C * 3), A(0));
  // The input gradient of `planes` input planes from d (more than one: a
  // span, 3-D with unit strides, zeros or periodic padding; lanes_adjoint_impl
  // reuses a plane's depth tap 0 as the next plane's tap -1).
  auto input_gradient_of = [&](int64_t n, int d, int64_t c0, int nb, int r0, int rows,
                               int planes) {
    ChannelTables<A>* ct = scratch<ChannelTables<A>>(static_cast<size_t>(nb));
    group_tables<A>(geo, rounded, n, c0, nb, ct);
    const int64_t gat = n * geo.sy_n + c0 * geo.sy_c;
    const T* gn = g + gat;
    const AdjointEdges<P, A, T> edge(geo, gn, ct, nb, d, unit);
    const LaneArray<const T> ga{gn, ax[1].sy, ax[2].sy, last_from(geo, geo.sy_n, n, c0, gat),
                                geo.sy_c};
    const LaneArray<T> dxa{dx + n * geo.sx_n + c0 * geo.sx_c + d * ax[0].sx, ax[1].sx, ax[2].sx,
                           -1, geo.sx_c};
    const EdgeRef<A> eref = edge_ref<A>(edge);
    if (unit) {
      lanes_adjoint(isa, P, ga, dxa, Depth{ax[0].Lo, ax[0].sy, d}, ax[1].L, ax[2].L,
                    static_cast<const ChannelTables<A>*>(ct),
                    static_cast<const int*>(edge.simple), &eref, nb, r0, rows, planes, ax[0].sx);
    } else {
      lanes_adjoint_strided(isa, P, ga, dxa, ax, d, static_cast<const ChannelTables<A>*>(ct),
                            static_cast<const int*>(edge.simple), &eref, nb, r0, rows);
    }
  };
  auto input_gradient = [&](int64_t n, int d, int64_t c0, int nb, int r0, int rows) {
    input_gradient_of(n, d, c0, nb, r0, rows, 1);
  };
  // The shift-gradient sums of `planes` output planes from d (a span: 3-D,
  // unit strides on axes 0 and 1; lanes_shift_grad_impl reuses two of a
  // plane's three depth taps for the next), each into its own partials.
  auto shift_sums_of = [&](int64_t n, int d, int64_t c0, int nb, int r0, int rows, int planes) {
    ChannelTables<A>* ct = scratch<ChannelTables<A>>(static_cast<size_t>(nb));
    group_tables<A>(geo, exact, n, c0, nb, ct);
    const int64_t xat = n * geo.sx_n + c0 * geo.sx_c;
    lanes_shift_grad(isa, P,
                     LaneArray<const T>{x + xat, ax[1].sx, ax[2].sx,
                                        last_from(geo, geo.sx_n, n, c0, xat), geo.sx_c},
                     LaneArray<const T>{g + n * geo.sy_n + c0 * geo.sy_c + d * ax[0].sy, ax[1].sy,
                                        ax[2].sy, -1, geo.sy_c},
                     Depth{ax[0].L, ax[0].sx, d * ax[0].t}, ax[0].present, ax[1].L, ax[2].L,
                     ax[1].t, ax[2].t, ax[2].Lo, static_cast<const ChannelTables<A>*>(ct), nb,
                     r0, rows,
                     partial.data() +
                         partial_index(geo, n, d * plan.strips + r0 / plan.R, parts, c0),
                     planes, ax[0].sy, plan.strips * geo.C * 3);
  };
  auto shift_sums = [&](int64_t n, int d, int64_t c0, int nb, int r0, int rows) {
    shift_sums_of(n, d, c0, nb, r0, rows, 1);
  };
  // A 2-D task's input gradient and shift-gradient sums in one pass
  // (lanes_backward_impl: the tables of both the same; `fuses`, above).
  // A one-pass task's arguments: its exact tables (and, with `moves`, sparse
  // mode's rounded ones after them) and x, g, dx at its first channel, given
  // to run(x, g, dx, exact tables, rounded tables or null).
  auto one_pass = [&](int64_t n, int64_t c0, int nb, bool moves, const auto& run) {
    ChannelTables<A>* ct = scratch<ChannelTables<A>>(static_cast<size_t>(2 * nb));
    group_tables<A>(geo, exact, n, c0, nb, ct);
    if (moves) group_tables<A>(geo, rounded, n, c0, nb, ct + nb);
    const int64_t xat = n * geo.sx_n + c0 * geo.sx_c, gat = n * geo.sy_n + c0 * geo.sy_c;
    run(LaneArray<const T>{x + xat, ax[1].sx, ax[2].sx, -1, geo.sx_c},
        LaneArray<const T>{g + gat, ax[1].sy, ax[2].sy,
                           last_from(geo, geo.sy_n, n, c0, gat), geo.sy_c},
        LaneArray<T>{dx + xat, ax[1].sx, ax[2].sx, -1, geo.sx_c},
        static_cast<const ChannelTables<A>*>(ct),
        static_cast<const ChannelTables<A>*>(moves ? ct + nb : nullptr));
  };
  auto fused = [&](int64_t n, int64_t c0, int nb, int r0, int rows, bool moves) {
    if constexpr (fuses) {
      one_pass(n, c0, nb, moves, [&](auto xa, auto ga, auto dxa, auto ct, auto rt) {
        lanes_backward(isa, std::integral_constant<int, P>{}, xa, ga, dxa, ax[1].L, ax[2].L, ct,
                       rt, nb, r0, rows,
                       partial.data() + partial_index(geo, n, r0 / plan.R, parts, c0));
      });
    }
  };
  auto fused_strided = [&](int64_t n, int, int64_t c0, int nb, int r0, int rows) {
    if constexpr (strided_fuses) {
      one_pass(n, c0, nb, moves_all, [&](auto xa, auto ga, auto dxa, auto ct, auto rt) {
        lanes_backward_strided(isa, std::integral_constant<int, P>{}, xa, ga, dxa, ax, ct, rt,
                               nb, r0, rows,
                               partial.data() + partial_index(geo, n, r0 / in_plan.R, parts, c0));
      });
    }
  };
  // A 3-D channels-last float task spanning its planes, zeros or periodic
  // padding: its input gradient and sums in one pass (lanes_backward3_impl),
  // each plane's sums into the plane's partials as the two passes'.
  auto fused3 = [&](int64_t n, int64_t c0, int nb, int r0, int rows, bool moves, int planes) {
    if constexpr (fuses3) {
      one_pass(n, c0, nb, moves, [&](auto xa, auto ga, auto dxa, auto ct, auto rt) {
        lanes_backward3(isa, std::integral_constant<int, P>{}, xa, ga, dxa,
                        Depth{ax[0].Lo, ax[0].sy, 0}, ax[1].L, ax[2].L, ct, rt, nb, r0, rows,
                        partial.data() + partial_index(geo, n, r0 / plan.R, parts, c0), planes,
                        ax[0].sx, plan.strips * geo.C * 3);
      });
    }
  };
  // Tasks span the planes where the tasks without planes still give every
  // thread one: the shift gradient's partials are per plane and strip either
  // way, so the sums are the same bits whichever the threads. The input
  // gradient spans too where no padding folds (zeros, periodic).
  StagedPlan span_plan = plan;
  span_plan.planes = 1;
  const bool span = unit && ax[0].present && ax[0].Lo > 1 &&
                    span_plan.tasks(geo) >= pool.num_threads();
  if (span) {
    const int planes = static_cast<int>(ax[0].Lo);
    for_each_task(pool, span_plan, geo, [&](int64_t n, int, int64_t c0, int nb, int r0, int rows) {
      if constexpr (fuses3) {
        bool moves = false;
        if (shift_grad && geo.sx_c == 1 &&
            one_pass_tables<A>(geo, rounded, exact, n, c0, nb, &moves)) {
          return fused3(n, c0, nb, r0, rows, moves, planes);
        }
      }
      if constexpr (P == kZeros || P == kPeriodic) {
        input_gradient_of(n, 0, c0, nb, r0, rows, planes);
      } else {
        for (int d = 0; d < planes; ++d) input_gradient(n, d, c0, nb, r0, rows);
      }
      if (shift_grad) shift_sums_of(n, 0, c0, nb, r0, rows, planes);
    });
  } else if (unit) {
    for_each_task(pool, plan, geo, [&](int64_t n, int d, int64_t c0, int nb, int r0, int rows) {
      if constexpr (fuses) {
        bool moves = false;
        if (shift_grad && !ax[0].present &&
            one_pass_tables<A>(geo, rounded, exact, n, c0, nb, &moves)) {
          return fused(n, c0, nb, r0, rows, moves);
        }
      }
      input_gradient(n, d, c0, nb, r0, rows);
      if (shift_grad) shift_sums(n, d, c0, nb, r0, rows);
    });
  } else if (strided_one) {
    for_each_task(pool, in_plan, in, fused_strided);
  } else {
    for_each_task(pool, in_plan, in, input_gradient);
    if (shift_grad) for_each_task(pool, plan, geo, shift_sums);
  }
  finish(geo, exact, partial, parts, ds);
}

// Whether a strided call's tables let the strided rows' backward take it
// (strided_adjoint, cpu/direct.h): without the shift gradient always (the
// input gradient alone, from the rounded tables); with it, every channel's
// rounded tables its exact ones or sparse mode's moves by m or m + 1
// (one_pass_tables: the input gradient's taps among the exact stencils').
template <typename A>
bool strided_backward_tables(const Geometry& geo, const Tables& rounded, const Tables& exact,
                             bool shift_grad) {
  bool moves;
  return !shift_grad || every_channel(geo, [&](int64_t n, int64_t c) {
    return one_pass_tables<A>(geo, rounded, exact, n, c, 1, &moves);
  });
}

// The strided rows' backward (cpu/direct.h, strided_adjoint): channels-first
// strided calls (strided_rows_fit) whose tables allow
// (strided_backward_tables). Per task and channel the rows' terms, then
// the input gradient and the shift-gradient sums of its rows in one pass,
// into partial[n, plane x strip, c, :].
template <typename T, int P, typename A>
void run_strided_rows(xla::ffi::ThreadPool& pool, const Geometry& geo, const T* x, const T* g,
                      Tables rounded, Tables exact, bool shift_grad, T* dx, A* ds) {
  const Isa isa = current_isa();
  const Axis* ax = geo.ax;
  Geometry in = geo;  // the input grid
  for (Axis& a : in.ax) a.Lo = a.L;
  // tasks over the input grid, strips of about 32 KB of a channel's x
  const StagedPlan plan = strip_plan(geo, ax[1].L, int64_t{ax[2].L} * int64_t{sizeof(T)},
                                     ax[0].L, int64_t{32} << 10, pool.num_threads());
  const int64_t parts = plan.planes * plan.strips;
  std::vector<A> partial(static_cast<size_t>(geo.N * parts * geo.C * 3), A(0));
  const int W = ax[2].L, t2 = ax[2].t;
  for_each_task(pool, plan, in, [&](int64_t n, int d, int64_t c0, int nb, int r0, int rows) {
    StridedAdjointScratch<T, A>* scr = strided_adjoint_scratch<T, A>();
    StridedAdjointColumns* cache = strided_adjoint_cache();
    if (scr->buf.size() < static_cast<size_t>(W)) scr->buf.resize(static_cast<size_t>(W));
    for (int64_t c = c0; c < c0 + nb; ++c) {
      const ChannelTables<A> cr = channel_tables<A>(geo, rounded, n, c);
      const ChannelTables<A> ce = shift_grad ? channel_tables<A>(geo, exact, n, c) : cr;
      T* dxc = dx + n * geo.sx_n + c * geo.sx_c + d * ax[0].sx;
      if (nan_shift(cr.f)) {  // (and ds: finish)
        for (int r = r0; r < r0 + rows; ++r) fill_nan(dxc + r * ax[1].sx, 1, W, cr.f);
        continue;
      }
      const AxisShift<A> sh[3] = {axis_shift(ce, cr, 0), axis_shift(ce, cr, 1),
                                  axis_shift(ce, cr, 2)};
      strided_adjoint_terms(P, ax, sh, shift_grad, g + n * geo.sy_n + c * geo.sy_c, ax[0].sy,
                            ax[1].sy, d, r0, rows, scr);
      // (the lattice's slope taps with the shift gradient alone)
      const bool lattice = shift_grad && sh[2].lattice;
      const StridedAdjoint<T, A> sa{
          &strided_adjoint_columns(cache, P, W, ax[2].Lo, t2, sh[2].m,
                                   (t2 == 2 ? 1 : 2) + lattice),
          scr->terms.data(), scr->first.data(), sh[2],
          x + n * geo.sx_n + c * geo.sx_c + d * ax[0].sx, dxc, ax[1].sx, r0, rows,
          ax[0].present, scr->buf.data(),
          partial.data() + partial_index(geo, n, d * plan.strips + r0 / plan.R, parts, c)};
      using std::integral_constant;
      using Two = integral_constant<int, 2>;
      using One = integral_constant<int, 1>;
      using Three = integral_constant<int, 3>;
      using Yes = std::true_type;
      if (!shift_grad) {  // (the input gradient's taps: 0 and 1)
        if (t2 == 2) {
          strided_adjoint(isa, Two{}, One{}, std::false_type{}, &sa);
        } else {
          strided_adjoint(isa, One{}, Two{}, std::false_type{}, &sa);
        }
      } else if (t2 == 2) {  // (exact tables of NaN: rounded ones of NaN, above)
        if (lattice) {
          strided_adjoint(isa, Two{}, Two{}, Yes{}, &sa);
        } else {
          strided_adjoint(isa, Two{}, One{}, Yes{}, &sa);
        }
      } else if (lattice) {
        strided_adjoint(isa, One{}, Three{}, Yes{}, &sa);
      } else {
        strided_adjoint(isa, One{}, Two{}, Yes{}, &sa);
      }
    }
  });
  finish(geo, exact, partial, parts, ds);
}

template <typename T, int P, typename A>
void run_walks(xla::ffi::ThreadPool& pool, const Geometry& geo, const T* x, const T* g,
               Tables rounded, Tables exact, bool shift_grad, T* dx, A* ds) {
  const Axis* ax = geo.ax;
  const int64_t rows = ax[1].L;
  std::vector<A> partial(static_cast<size_t>(geo.N * rows * geo.C * 3), A(0));
  parallel_for(pool, geo.N * rows, [&](int64_t task) {
    const int64_t n = task / rows;
    const int row = static_cast<int>(task % rows);
    for (int64_t c = 0; c < geo.C; ++c) {
      A d[2];
      backward_row<P, A>(x + n * geo.sx_n + c * geo.sx_c, g + n * geo.sy_n + c * geo.sy_c,
                         dx + n * geo.sx_n + c * geo.sx_c, ax, row,
                         channel_tables<A>(geo, rounded, n, c),
                         channel_tables<A>(geo, exact, n, c), shift_grad, d);
      A* acc = partial.data() + partial_index(geo, n, row, rows, c);
      acc[1] = d[0];
      acc[2] = d[1];
    }
  });
  finish(geo, exact, partial, rows, ds);
}

// Rows of the output grid per shift-gradient chunk: fixed by the shape alone,
// so the partial sums, and their fixed-order total, do not depend on threads.
inline int64_t rows_per_chunk(const Geometry& geo) {
  const int64_t row = std::max<int64_t>(1, geo.ax[2].Lo * geo.C);
  return std::max<int64_t>(1, 16384 / row);
}

template <typename T, int P, typename A>
void run_elementwise(xla::ffi::ThreadPool& pool, const Geometry& geo, const T* x, const T* g,
                     Tables rounded, Tables exact, bool shift_grad, T* dx, A* ds) {
  const Axis* ax = geo.ax;
  // Input gradient: one task per (sample, row of the input's axes 0 and 1).
  for_each_row_and_channel<A>(
      pool, geo, ax[0].L, ax[1].L, rounded,
      [&](int64_t n, int64_t c, int* i, const ChannelTables<A>& ct) {
        const T* gc = g + n * geo.sy_n + c * geo.sy_c;
        T* dxc = dx + n * geo.sx_n + c * geo.sx_c + i[0] * ax[0].sx + i[1] * ax[1].sx;
        for (i[2] = 0; i[2] < ax[2].L; ++i[2]) {
          store(dxc + i[2] * ax[2].sx, adjoint_value<P, A>(gc, ax, i, ct.m, ct.f));
        }
      });
  if (!shift_grad) {
    std::fill(ds, ds + geo.N * geo.C * 3, A(0));
    return;
  }
  // Shift gradient: per-chunk partial sums over the output grid, then a
  // fixed-order sum of the chunks of each sample.
  const int64_t out_rows = ax[0].Lo * static_cast<int64_t>(ax[1].Lo);
  const int64_t rpc = rows_per_chunk(geo);
  const int64_t chunks = (out_rows + rpc - 1) / rpc;
  std::vector<A> partial(static_cast<size_t>(geo.N * chunks * geo.C * 3), A(0));
  parallel_for(pool, geo.N * chunks, [&](int64_t task) {
    const int64_t n = task / chunks, k = task % chunks;
    A* acc = partial.data() + partial_index(geo, n, k, chunks, 0);
    const int64_t r_end = std::min(out_rows, (k + 1) * rpc);
    for (int64_t r = k * rpc; r < r_end; ++r) {
      int o[3] = {static_cast<int>(r / ax[1].Lo), static_cast<int>(r % ax[1].Lo), 0};
      for (int64_t c = 0; c < geo.C; ++c) {
        const ChannelTables<A> ct = channel_tables<A>(geo, exact, n, c);
        const T* xc = x + n * geo.sx_n + c * geo.sx_c;
        const T* gc = g + n * geo.sy_n + c * geo.sy_c + o[0] * ax[0].sy + o[1] * ax[1].sy;
        A s[3] = {A(0), A(0), A(0)};
        for (o[2] = 0; o[2] < ax[2].Lo; ++o[2]) {
          const A gv = load<A>(gc + o[2] * ax[2].sy);
          A d[3];
          deriv_values<P, A>(xc, ax, o, ct.m, ct.f, d);
          s[0] += gv * d[0];
          s[1] += gv * d[1];
          s[2] += gv * d[2];
        }
        for (int a = 0; a < 3; ++a) acc[c * 3 + a] += s[a];
      }
    }
  });
  finish(geo, exact, partial, chunks, ds);
}

// The input gradient of an integer move (integer mode: no shift gradient)
// of unit strides in a padding that folds nothing (zeros, periodic) is
// itself a move: dx = g moved by -m through the same padding (an element of
// x is read by at most one output, at its own offset). It runs as the
// forward's move (run_forward, move): one read of g and one write of dx, the
// raw bits, where the adjoint's paths gathered moved rows and took their
// one-tap stencils (integer mode's forward + backward 0.53-0.77 the time at
// 2x56x56x1024 float32 NHWC, 0.59-0.96 at smaller shapes and in NCHW;
// benchmarks/NOTES.md, v20). Returns false (nothing done) where it does not
// apply: strides, a folding padding, or a table off the integer lattice.
template <typename T, int P>
bool run_move_adjoint(xla::ffi::ThreadPool& pool, const Geometry& geo, const T* g,
                      const Tables& rounded, T* dx) {
  using A = typename Acc<T>::type;
  if constexpr (P != kZeros && P != kPeriodic) {
    return false;
  } else {
    for (const Axis& a : geo.ax) {
      if (a.t != 1 || a.L != a.Lo) return false;
    }
    const int64_t entries = (geo.N / geo.per_group) * geo.C * 3;
    const A* f = static_cast<const A*>(rounded.f);
    for (int64_t k = 0; k < entries; k += 3) {
      // a NaN shift's channel is NaN in the move as in the adjoint
      if (!nan_shift(f + k) && (f[k] != A(0) || f[k + 1] != A(0) || f[k + 2] != A(0))) {
        return false;
      }
    }
    std::vector<int32_t> m(static_cast<size_t>(entries));
    for (int64_t k = 0; k < entries; ++k) m[k] = -rounded.m[k];
    Geometry moved = geo;  // g (the output grid) in, dx (the input grid) out
    std::swap(moved.sx_n, moved.sy_n);
    std::swap(moved.sx_c, moved.sy_c);
    for (Axis& a : moved.ax) std::swap(a.sx, a.sy);
    run_forward<T, P>(pool, moved, g, Tables{m.data(), rounded.f}, dx, true);
    return true;
  }
}

}  // namespace

template <typename T, int P>
void run_backward(xla::ffi::ThreadPool& pool, const Geometry& geo, const T* x, const T* g,
                  Tables rounded, Tables exact, bool shift_grad, T* dx,
                  typename Acc<T>::type* ds) {
  if (!shift_grad && run_move_adjoint<T, P>(pool, geo, g, rounded, dx)) {
    std::fill(ds, ds + geo.N * geo.C * 3, typename Acc<T>::type(0));
    return;
  }
  if (use_direct_backward<T>(geo) ||
      direct_one_pass_all<T, P>(geo, rounded, exact, shift_grad)) {
    if constexpr (sizeof(T) > 2 || kOnePass<T, P>) {  // (16-bit: the one pass only)
      run_direct<T, P>(pool, geo, x, g, rounded, exact, shift_grad, dx, ds);
    }
  } else if (strided_rows_fit<T>(geo) &&
             strided_backward_tables<typename Acc<T>::type>(geo, rounded, exact, shift_grad)) {
    if constexpr (sizeof(T) <= 4) {
      run_strided_rows<T, P>(pool, geo, x, g, rounded, exact, shift_grad, dx, ds);
    }
  } else if (use_lanes<T>(geo, true, false, kOnePass<T, P> && shift_grad, kFolds<P>)) {
    run_lanes<T, P>(pool, geo, x, g, rounded, exact, shift_grad, dx, ds);
  } else if (use_staging<T>(geo)) {
    run_staged<T, P>(pool, geo, x, g, rounded, exact, shift_grad, dx, ds);
  } else if (walkable(geo)) {
    run_walks<T, P>(pool, geo, x, g, rounded, exact, shift_grad, dx, ds);
  } else {
    run_elementwise<T, P>(pool, geo, x, g, rounded, exact, shift_grad, dx, ds);
  }
  if (!shift_grad) std::fill(ds, ds + geo.N * geo.C * 3, typename Acc<T>::type(0));
}

#define JAXSHIFT_INSTANTIATE(T, P)                                                          \
  template void run_backward<T, P>(xla::ffi::ThreadPool&, const Geometry&, const T*, const T*, \
                                   Tables, Tables, bool, T*, typename Acc<T>::type*);
JAXSHIFT_FOR_EACH_TYPE_AND_PADDING(JAXSHIFT_INSTANTIATE)
#undef JAXSHIFT_INSTANTIATE

}  // namespace jaxshift
