// The walk family's kernels (the CUDA default until the tiled family has
// passed on a GPU), as phased kernels (cuda/phased.h): one source that nvcc
// compiles (cuda/walk/handlers.cu) and the host emulator runs
// (emulator/handlers.cc). Blocks are kLanes x kRows threads (tx = tid %
// kLanes, ty = tid / kLanes, so a warp is a row of tx).
//   Forward, Backward  the walks of core/walks.h: calls with at most two
//                      spatial axes and unit strides. Channels-last: tx is a
//                      channel, ty a row, and each thread walks its row (a
//                      warp touches consecutive channels, each at the pixel
//                      its offset picks); channels-first: tx is a column, ty
//                      a channel, and each thread walks down its column.
//   Elementwise        every other call (3-D, strides): one thread per output
//                      (forward) or input (adjoint: a gather, no atomics)
//                      element in memory order, core/elementwise.h.
//   ShiftGrad          the shift gradient of those calls: per block, kChunk
//                      output positions of a block of channels.
// The shift-gradient kernels reduce in a fixed order into per-sample partial
// sums; phased::finish adds them (core/partials.h). No atomics.
#pragma once

#include <cstdint>

#include "core/elementwise.h"
#include "core/geometry.h"
#include "core/partials.h"
#include "core/stencils.h"
#include "core/walks.h"
#include "cuda/phased.h"

namespace jaxshift {
namespace walk {

using namespace ::jaxshift::phased;  // NOLINT: the family's vocabulary

// The blocks of a launch along three dimensions (g[0] fastest) and the
// shared bytes per block.
struct Plan {
  int64_t items, grid;
  size_t smem;
  int64_t g[3];
};
inline Plan make_plan(int64_t g0, int64_t g1, int64_t g2, size_t smem) {
  const Launch l = launch_of(g0 * g1 * g2, smem);
  return Plan{l.items, l.grid, l.smem, {g0, g1, g2}};
}
JS_HD void block_of(const Plan& p, int64_t item, int64_t* b) {
  b[0] = item % p.g[0];
  b[1] = (item / p.g[0]) % p.g[1];
  b[2] = item / (p.g[0] * p.g[1]);
}

// ---------------------------------------------------------------------------
// Walks: the fixed axis (af) and the walking one (aw) of a layout.
JS_HD int fixed_axis(bool last) { return last ? 1 : 2; }
JS_HD int walking_axis(bool last) { return last ? 2 : 1; }

// Blocks of a walk launch: channels-last (row blocks, channel blocks of
// kLanes, samples); channels-first (channel blocks of kRows, samples, column
// blocks). `out`: over the output grid (forward), else the input grid.
inline Plan walk_plan(const Geometry& geo, bool last, bool out, size_t smem) {
  const Axis& fa = geo.ax[fixed_axis(last)];
  const int64_t fixed = out ? fa.Lo : fa.L;
  if (last) return make_plan((fixed + kRows - 1) / kRows, (geo.C + kLanes - 1) / kLanes, geo.N, smem);
  return make_plan((geo.C + kRows - 1) / kRows, geo.N, (fixed + kLanes - 1) / kLanes, smem);
}

// The backward walk's partial sums per sample: one per row block
// (channels-last) or column block (channels-first) of the launch.
inline int64_t walk_parts(const Geometry& geo, bool last) {
  const Plan p = walk_plan(geo, last, false, 0);
  return last ? p.g[0] : p.g[2];
}

// One thread's walk: sample, channel, index on the fixed axis, the walk's
// length, and its block's part (the backward's partial sums).
struct Job {
  int64_t n, c, part;
  int fixed, count;
  bool valid;
};
JS_HD Job job(const Geometry& geo, const Plan& p, int64_t item, int tid, bool last, bool out) {
  int64_t b[3];
  block_of(p, item, b);
  const int tx = tid % kLanes, ty = tid / kLanes;
  const Axis& fa = geo.ax[fixed_axis(last)];
  const Axis& wa = geo.ax[walking_axis(last)];
  Job j;
  if (last) {
    j.n = b[2];
    j.c = b[1] * kLanes + tx;
    j.part = b[0];
    j.fixed = static_cast<int>(b[0] * kRows + ty);
  } else {
    j.n = b[1];
    j.c = b[0] * kRows + ty;
    j.part = b[2];
    j.fixed = static_cast<int>(b[2] * kLanes + tx);
  }
  j.count = out ? wa.Lo : wa.L;
  j.valid = j.c < geo.C && j.fixed < (out ? fa.Lo : fa.L);
  return j;
}

template <typename T, int P, bool kLast>
struct Forward {
  using A = typename Acc<T>::type;
  struct Args {
    Plan plan;
    Geometry geo;
    ForwardBuffers<T> b;
    bool move;
  };
  static constexpr int kPhases = 1;
  static constexpr const char* kName = kLast ? "walk_forward_nhwc" : "walk_forward_nchw";
  static constexpr bool kIndex64 = false;

  JS_HD static void phase(int, const Args& a, int64_t item, int tid, unsigned char*) {
    const Geometry& geo = a.geo;
    const Job j = job(geo, a.plan, item, tid, kLast, true);
    if (!j.valid) return;
    int mo[3];
    A fo[3];
    load_tables(geo, a.b.m, a.b.f, j.n, j.c, mo, fo);
    const int af = fixed_axis(kLast), aw = walking_axis(kLast);
    const T* xc = a.b.x + j.n * geo.sx_n + j.c * geo.sx_c;
    T* yc = a.b.y + j.n * geo.sy_n + j.c * geo.sy_c;
    if (nan_shift(fo)) return fill_nan(yc + j.fixed * geo.ax[af].sy, geo.ax[aw].sy, j.count, fo);
    forward_walk<P, A>(xc, yc, geo.ax[af], geo.ax[aw], j.fixed, 0, j.count, mo[af], fo[af],
                       mo[aw], fo[aw], a.move);
  }
};

// The fused backward walk: dx along each thread's walk (rounded tables) and,
// with the shift gradient, the sums over the same walk (exact tables),
// reduced per block in a fixed order into partial[n, part, c].
template <typename T, int P, bool kLast>
struct Backward {
  using A = typename Acc<T>::type;
  struct Args {
    Plan plan;
    Geometry geo;
    BackwardBuffers<T> b;
    A* partial;  // (N, parts, C, 3)
    int64_t parts;
    bool shift_grad;
  };
  static constexpr int kPhases = 2;
  static constexpr const char* kName = kLast ? "walk_backward_nhwc" : "walk_backward_nchw";
  static constexpr bool kIndex64 = false;
  static constexpr size_t kSmem = sizeof(A) * kThreads * 2;  // red[2][tid]

  JS_HD static void phase(int ph, const Args& a, int64_t item, int tid, unsigned char* smem) {
    const Geometry& geo = a.geo;
    A* red = reinterpret_cast<A*>(smem);
    const Job j = job(geo, a.plan, item, tid, kLast, false);
    const int af = fixed_axis(kLast), aw = walking_axis(kLast);
    if (ph == 0) {
      A d[2] = {A(0), A(0)};
      if (j.valid) {
        int mr[3], mu[3];
        A fr[3], fu[3];
        load_tables(geo, a.b.m_r, a.b.f_r, j.n, j.c, mr, fr);
        load_tables(geo, a.b.m_u, a.b.f_u, j.n, j.c, mu, fu);
        const T* xc = a.b.x + j.n * geo.sx_n + j.c * geo.sx_c;
        const T* gc = a.b.g + j.n * geo.sy_n + j.c * geo.sy_c;
        T* dc = a.b.dx + j.n * geo.sx_n + j.c * geo.sx_c;
        if (nan_shift(fr)) {  // (the finish fills ds)
          fill_nan(dc + j.fixed * geo.ax[af].sx, geo.ax[aw].sx, j.count, fr);
        } else {
          backward_walk<P, A>(xc, gc, dc, geo.ax, af, aw, j.fixed, 0, j.count, mr, fr, mu, fu,
                              a.shift_grad, d);
        }
      }
      if (!a.shift_grad) return;
      sst(red + tid, d[0]);  // [2][kThreads]: lanes store consecutive words
      sst(red + kThreads + tid, d[1]);
      return;
    }
    // Fixed-order sums: channels-last, thread (tx, 0) adds its channel's
    // rows; channels-first, thread (0, ty) adds its channel's columns.
    const int tx = tid % kLanes, ty = tid / kLanes;
    if (!a.shift_grad || (kLast ? ty : tx) != 0 || j.c >= geo.C) return;
    A t0 = A(0), t1 = A(0);
    for (int l = 0; l < (kLast ? kRows : kLanes); ++l) {
      const int k = kLast ? l * kLanes + tx : ty * kLanes + l;
      t0 += sld(red + k);
      t1 += sld(red + kThreads + k);
    }
    A* out = a.partial + partial_index(geo, j.n, j.part, a.parts, j.c);
    gst(out, A(0));
    gst(out + af, t0);
    gst(out + aw, t1);
  }
};

// ---------------------------------------------------------------------------
// The element-wise kernels: one thread per element, in memory order.
enum ElementOp { kInterpolate, kMove, kAdjoint };

// Position of element `idx` of a (N, *grid, C) or (N, C, *grid) tensor.
template <typename I>
struct Pos {
  I n, c;
  int p[3];
};

template <typename I>
JS_HD Pos<I> decompose(I idx, I C, const int* len, bool last) {
  Pos<I> r;
  if (last) {
    r.c = idx % C;
    idx /= C;
  }
  r.p[2] = static_cast<int>(idx % len[2]);
  idx /= len[2];
  r.p[1] = static_cast<int>(idx % len[1]);
  idx /= len[1];
  r.p[0] = static_cast<int>(idx % len[0]);
  idx /= len[0];
  if (!last) {
    r.c = idx % C;
    idx /= C;
  }
  r.n = idx;
  return r;
}

template <typename T, int P, int kOp, typename I>
struct Elementwise {
  using A = typename Acc<T>::type;
  struct Args {
    Launch plan;
    Geometry geo;
    const T* src;  // x (forward) or g (adjoint)
    const int32_t* m;
    const A* f;
    T* dst;        // y or dx
    I total;
    bool last;
  };
  static constexpr int kPhases = 1;
  static constexpr const char* kName =
      kOp == kAdjoint ? "elementwise_adjoint" : (kOp == kMove ? "elementwise_move"
                                                              : "elementwise_forward");
  static constexpr bool kIndex64 = sizeof(I) == 8;

  JS_HD static void phase(int, const Args& a, int64_t item, int tid, unsigned char*) {
    const Geometry& geo = a.geo;
    const I idx = static_cast<I>(item * kThreads + tid);
    if (item * kThreads + tid >= static_cast<int64_t>(a.total)) return;
    constexpr bool kOut = kOp != kAdjoint;  // iterate the output grid
    int len[3];
    for (int k = 0; k < 3; ++k) len[k] = kOut ? geo.ax[k].Lo : geo.ax[k].L;
    const Pos<I> q = decompose<I>(idx, static_cast<I>(geo.C), len, a.last);
    int mo[3];
    A fo[3];
    load_tables(geo, a.m, a.f, q.n, q.c, mo, fo);
    if (kOp == kAdjoint) {
      const T* gc = a.src + q.n * geo.sy_n + q.c * geo.sy_c;
      store(a.dst + idx, adjoint_value<P, A>(gc, geo.ax, q.p, mo, fo));
      return;
    }
    const T* xc = a.src + q.n * geo.sx_n + q.c * geo.sx_c;
    if (kOp == kMove && !nan_shift(fo)) {
      const T* from = move_source<P>(xc, geo.ax, q.p, mo);
      if (from) {
        copy_element(a.dst + idx, from);
      } else {
        store(a.dst + idx, A(0));
      }
    } else {
      store(a.dst + idx, forward_value<P, A>(xc, geo.ax, q.p, mo, fo));
    }
  }
};

// Shift gradient of the element-wise calls: block (chunk, channel block,
// sample) sums g * d out / d s over kChunk output positions of its channels
// and reduces its threads in a fixed order into partial[n, chunk, c]. Lanes
// along the contiguous axis of the layout (channels for channels-last,
// positions for channels-first) keep loads coalesced.
constexpr int kChunk = 1024;  // output positions per block

inline int64_t chunks_of(const Geometry& geo) {
  const int64_t S = static_cast<int64_t>(geo.ax[0].Lo) * geo.ax[1].Lo * geo.ax[2].Lo;
  return (S + kChunk - 1) / kChunk;
}

// Channels per block: the lanes along the channels.
JS_HD int grad_channels(bool last) { return last ? kLanes : kRows; }

inline Plan grad_plan(const Geometry& geo, bool last, size_t acc_bytes) {
  const int cpb = grad_channels(last);
  return make_plan(chunks_of(geo), (geo.C + cpb - 1) / cpb, geo.N, acc_bytes * kThreads * 3);
}

template <typename T, int P, bool kLast>
struct ShiftGrad {
  using A = typename Acc<T>::type;
  struct Args {
    Plan plan;
    Geometry geo;
    BackwardBuffers<T> b;  // the exact tables
    A* partial;            // (N, chunks, C, 3)
  };
  static constexpr int kPhases = 2;
  static constexpr const char* kName = kLast ? "shift_grad_nhwc" : "shift_grad_nchw";
  static constexpr bool kIndex64 = false;

  JS_HD static void phase(int ph, const Args& a, int64_t item, int tid, unsigned char* smem) {
    const Geometry& geo = a.geo;
    A* red = reinterpret_cast<A*>(smem);  // red[3][tid]
    int64_t b[3];
    block_of(a.plan, item, b);
    const int64_t chunk = b[0], n = b[2];
    const int tx = tid % kLanes, ty = tid / kLanes;
    const int c_lane = kLast ? tx : ty, p_lane = kLast ? ty : tx;
    const int64_t c = b[1] * grad_channels(kLast) + c_lane;
    if (ph == 0) {
      A s[3] = {A(0), A(0), A(0)};
      if (c < geo.C) {
        int mo[3];
        A fo[3];
        load_tables(geo, a.b.m_u, a.b.f_u, n, c, mo, fo);
        const T* xc = a.b.x + n * geo.sx_n + c * geo.sx_c;
        const T* gc = a.b.g + n * geo.sy_n + c * geo.sy_c;
        const int lo1 = geo.ax[1].Lo, lo2 = geo.ax[2].Lo;
        const int64_t S = static_cast<int64_t>(geo.ax[0].Lo) * lo1 * lo2;
        const int64_t end = S < (chunk + 1) * kChunk ? S : (chunk + 1) * kChunk;
        for (int64_t p = chunk * kChunk + p_lane; p < end; p += (kLast ? kRows : kLanes)) {
          int o[3];
          o[2] = static_cast<int>(p % lo2);
          o[1] = static_cast<int>((p / lo2) % lo1);
          o[0] = static_cast<int>(p / (static_cast<int64_t>(lo2) * lo1));
          const A gv =
              load<A>(gc + o[0] * geo.ax[0].sy + o[1] * geo.ax[1].sy + o[2] * geo.ax[2].sy);
          A d[3];
          deriv_values<P, A>(xc, geo.ax, o, mo, fo, d);
          for (int k = 0; k < 3; ++k) s[k] += gv * d[k];
        }
      }
      for (int k = 0; k < 3; ++k) sst(red + k * kThreads + tid, s[k]);
      return;
    }
    // Fixed-order reduction over the position lanes of each channel lane.
    if (p_lane != 0 || c >= geo.C) return;
    A t[3] = {A(0), A(0), A(0)};
    for (int l = 0; l < (kLast ? kRows : kLanes); ++l) {
      const int k = kLast ? l * kLanes + tx : ty * kLanes + l;
      for (int q = 0; q < 3; ++q) t[q] += sld(red + q * kThreads + k);
    }
    A* out = a.partial + partial_index(geo, n, chunk, a.plan.g[0], c);
    for (int q = 0; q < 3; ++q) gst(out + q, t[q]);
  }
};

}  // namespace walk
}  // namespace jaxshift
