// The CPU backward: the input gradient (a gather: deterministic, no atomics)
// and the per-sample shift gradient, summed in a fixed order so that the same
// inputs give bitwise the same result on any number of threads. Staged planes
// where they apply, walks in place for far shifts and large planes, the
// element-wise functions for 3-D and strides.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "cpu/kernels.h"
#include "cpu/parallel.h"
#include "cpu/staged.h"
#include "core/partials.h"
#include "core/stencils.h"
#include "core/walks.h"

namespace jaxshift {
namespace {

// ds from the per-sample partial sums (core/partials.h).
template <typename A>
void finish(const Geometry& geo, const Tables& exact, const std::vector<A>& partial,
            int64_t parts, A* ds) {
  for (int64_t i = 0; i < geo.N * geo.C * 3; ++i) {
    finish_shift_grad(geo, partial.data(), parts, static_cast<const A*>(exact.f), ds, i);
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

// Channels [c0, c0 + nb) of sample n walked in place, row by row; their
// shift-gradient sums go to partial[n, c, 1:3] in row order.
template <typename T, int P, typename A>
void walk_channels(const Geometry& geo, const T* x, const T* g, Tables rounded, Tables exact,
                   bool shift_grad, T* dx, A* partial, int64_t n, int64_t c0, int64_t nb) {
  for (int64_t c = c0; c < c0 + nb; ++c) {
    A* acc = partial + partial_index(geo, n, 0, 1, c);
    for (int row = 0; row < geo.ax[1].L; ++row) {
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

// One staged task: sample n, channels [c0, c0 + nb), whose reads reach at
// most K <= kMaxHalo cells. It owns its channels' whole planes, so it sums
// their shift gradients itself into partial[n, c, 1:3], row by row in order.
template <typename T, int P, typename A>
void staged_task(Isa isa, const Geometry& geo, const T* x, const T* g, Tables rounded,
                 Tables exact, bool shift_grad, T* dx, A* partial, int64_t n, int64_t c0,
                 int64_t nb, int K) {
  const Planes pp = make_planes<T>(geo.ax[1].L, geo.ax[2].L, K);
  T* gs = scratch<T>(static_cast<size_t>(3 * nb * pp.pitch));
  T* xs = gs + nb * pp.pitch;
  T* dxs = xs + nb * pp.pitch;
  stage_planes<adjoint_padding(P)>(
      isa,
      Block<T>{const_cast<T*>(g) + n * geo.sy_n + c0 * geo.sy_c, geo.sy_c, geo.ax[1].sy,
               geo.ax[2].sy},
      nb, gs, pp);
  if (shift_grad) {
    stage_planes<P>(isa,
                    Block<T>{const_cast<T*>(x) + n * geo.sx_n + c0 * geo.sx_c, geo.sx_c,
                             geo.ax[1].sx, geo.ax[2].sx},
                    nb, xs, pp);
  }
  for (int64_t b = 0; b < nb; ++b) {
    const ChannelTables<A> r = channel_tables<A>(geo, rounded, n, c0 + b);
    const ChannelTables<A> u = channel_tables<A>(geo, exact, n, c0 + b);
    const T* gb = gs + b * pp.pitch;
    T* dxb = dxs + b * pp.pitch;
    if (nan_shift(r.f)) {  // (finish_shift_grad fills ds)
      fill_nan(dxb + span_begin(pp), 1, span_end(pp) - span_begin(pp), r.f);
      continue;
    }
    with_lattice(r.f[1], r.f[2], [&](auto lat_f, auto lat_w) {
      adjoint_plane(isa, gb, dxb, pp, r.m[1], r.m[2], r.f[1], r.f[2], lat_f, lat_w);
    });
    adjoint_plane_edges<P, A>(gb, dxb, pp, r);
    if (!shift_grad) continue;
    A* acc = partial + partial_index(geo, n, 0, 1, c0 + b) + 1;
    with_lattice(u.f[1], u.f[2], [&](auto lat_f, auto lat_w) {
      shift_grad_plane(isa, xs + b * pp.pitch, gb, pp, u.m[1], u.m[2], u.f[1], u.f[2], lat_f,
                       lat_w, acc);
    });
  }
  copy_planes(isa, Block<T>{dx + n * geo.sx_n + c0 * geo.sx_c, geo.sx_c, geo.ax[1].sx,
                            geo.ax[2].sx},
              nb, dxs, pp, false);
}

template <typename T, int P, typename A>
void run_staged(xla::ffi::ThreadPool& pool, const Geometry& geo, const T* x, const T* g,
                Tables rounded, Tables exact, bool shift_grad, T* dx, A* ds) {
  const Isa isa = current_isa();
  const int64_t B = staged_block<T>(geo), blocks = (geo.C + B - 1) / B;
  std::vector<A> partial(static_cast<size_t>(geo.N * geo.C * 3), A(0));
  parallel_for(pool, geo.N * blocks, [&](int64_t task) {
    const int64_t n = task / blocks, c0 = (task % blocks) * B, nb = std::min(B, geo.C - c0);
    // dx reads g at -m and -m - 1; the shift gradient reads x at m - 1 .. m + 1.
    const int K = std::max(block_halo<A>(geo, rounded, n, c0, nb, 1),
                           shift_grad ? block_halo<A>(geo, exact, n, c0, nb, 1) : 0);
    if (K > kMaxHalo) {
      walk_channels<T, P>(geo, x, g, rounded, exact, shift_grad, dx, partial.data(), n, c0, nb);
    } else {
      staged_task<T, P>(isa, geo, x, g, rounded, exact, shift_grad, dx, partial.data(), n, c0,
                        nb, K);
    }
  });
  finish(geo, exact, partial, 1, ds);
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

}  // namespace

template <typename T, int P>
void run_backward(xla::ffi::ThreadPool& pool, const Geometry& geo, const T* x, const T* g,
                  Tables rounded, Tables exact, bool shift_grad, T* dx,
                  typename Acc<T>::type* ds) {
  if (use_staging<T>(geo)) {
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
