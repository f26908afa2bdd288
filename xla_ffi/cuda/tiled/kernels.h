// The tiled CUDA kernels (forward and fused deterministic backward), written
// once for nvcc (the real kernels, cuda/tiled/handlers.cu) and for the host
// compiler (the emulator, emulator/).
//
// Each is a phased kernel (cuda/phased.h: the contract, the tracked
// accesses, the launch constants); cuda/tiled/plan.h cuts a call into items
// and cuda/tiled/window.h stages and reads their windows.
//
// One item is one sample, a block of channels (16 channels-last, 8 for
// volumes; one channels-first) and a tile of outputs. Phase 0 copies the
// block's shift tables to shared memory; phase 1 computes the window of
// extended input positions that the block's channels read (the union over
// its channels, at most `cap` positions per axis) and stages it through the
// padding with 16-byte loads where the layout allows; phase 2 computes the
// outputs from the window with core/stencils.h's formulas (no padding logic
// and no division per element); a channel whose offsets do not fit the window
// (far shifts) takes core/elementwise.h's functions instead, reading
// global memory (the per-channel fallback). The backward stages x (for the
// shift gradient) and the output cotangent g (for the input gradient, unit
// strides) and reduces the shift-gradient sums per block in a fixed order
// into per-tile partial sums (no atomics); `phased::finish` adds the tiles in
// order (core/partials.h).
#pragma once

#include <cstdint>

#include "core/elementwise.h"
#include "core/float16.h"
#include "core/geometry.h"
#include "core/stencils.h"
#include "cuda/phased.h"
#include "cuda/tiled/plan.h"
#include "cuda/tiled/window.h"

namespace jaxshift {
namespace tiled {

// The per-channel fallback (far shifts, folded edges, strided input
// gradients): core/elementwise.h's functions, reading global memory.
// Not inlined on the GPU: one copy per (dtype, padding) serves every layout
// and index width (inlined, they tripled the tiled kernels' compile time).
template <int P, typename A, typename T>
JS_HD_NOINLINE A fallback_forward(const T* x, const Axis* ax, const int* o, const int* m,
                                  const A* f) {
  return forward_value<P, A>(x, ax, o, m, f);
}
template <int P, typename T>
JS_HD_NOINLINE void fallback_move(const T* x, T* y, const Axis* ax, const int* o, const int* m) {
  const T* from = move_source<P>(x, ax, o, m);
  if (from) {
    copy_element(y, from);
  } else {
    store(y, typename Acc<T>::type(0));
  }
}
template <int P, typename A, typename T>
JS_HD_NOINLINE A fallback_adjoint(const T* g, const Axis* ax, const int* i, const int* m,
                                  const A* f) {
  return adjoint_value<P, A>(g, ax, i, m, f);
}
template <int P, typename A, typename T>
JS_HD_NOINLINE void fallback_deriv(const T* x, const Axis* ax, const int* o, const int* m,
                                   const A* f, A* d) {
  deriv_values<P, A>(x, ax, o, m, f, d);
}

// ---------------------------------------------------------------------------
// Forward.
template <typename T, int P, bool kLast, typename I>
struct Forward {
  using A = typename Acc<T>::type;
  struct Args {
    Geometry geo;
    Plan plan;
    ForwardBuffers<T> b;
    bool move;
  };
  static constexpr int kPhases = 3;
  static constexpr const char* kName = kLast ? "tiled_forward_nhwc" : "tiled_forward_nchw";
  static constexpr bool kIndex64 = sizeof(I) == 8;

  JS_HD static void phase(int ph, const Args& a, int64_t item, int tid, unsigned char* smem) {
    const Geometry& geo = a.geo;
    const Plan& p = a.plan;
    const View<A> v = view<A>(geo, p, item, smem);
    const Item& it = v.it;
    Chan<A>* ch = v.ch;
    Win* info = v.info;
    void* win = v.win;
    const int dmax = a.move ? 0 : 1;
    if (ph == 0) {
      load_chan<A>(geo, p, it, tid, a.b.m, a.b.f, nullptr, nullptr, ch);
    } else if (ph == 1) {
      const Win w = make_window<A>(geo, p, it, ch, false, 1, 0, dmax, false);
      if (tid == 0) store_win(info, w);
      stage<P, T, I>(geo, p, w, it, tid, a.b.x, false, win, a.move);
    } else {
      compute(a, it, tid, ch, read_win(info), win);
    }
  }

  JS_HD static void compute(const Args& a, const Item& it, int tid, const Chan<A>* ch,
                            const Win& w, const void* win) {
    const Geometry& geo = a.geo;
    const Plan& p = a.plan;
    Lane<A> l;
    if (!lane_of(geo, p, it, tid, ch, &l)) return;
    const Role& r = l.r;
    const int64_t c = l.c;
    const Chan<A>* cc = l.cc;
    const int state = l.state;
    int m[3];
    A f[3];
    for (int k = 0; k < 3; ++k) {
      m[k] = sld(&cc->m[k]);
      f[k] = sld(&cc->f[k]);
    }
    const bool in_window = state == kValid && fits(geo, w, it, m, 1, 0, a.move ? 0 : 1);
    Stencil<A> s[3];
    int base[3];
    for (int k = 0; k < 3; ++k) {
      s[k] = value_stencil(f[k], at_lattice(f[k]));
      base[k] = m[k] - win_origin<kLast>(w, k);
    }
    const WinReader<T, kLast> rd = reader<T, kLast>(p, w, win, r.lane);
    T* yc = a.b.y + it.n * geo.sy_n + c * geo.sy_c;
    const T* xc = a.b.x + it.n * geo.sx_n + c * geo.sx_c;
    for (Counter3 q(it.Tn, r.slot, r.slots); q.more(); q.next()) {
      int o[3];
      I off = 0;
      for (int k = 0; k < 3; ++k) {
        o[k] = it.o0[k] + q.i[k];
        off += static_cast<I>(o[k]) * static_cast<I>(geo.ax[k].sy);
      }
      T* yp = yc + off;
      if (in_window) {
        int kk[3];
        for (int k = 0; k < 3; ++k) kk[k] = o[k] * geo.ax[k].t + base[k];
        if (a.move) {  // raw bits: every pattern moves unchanged
          store_bits(yp, rd.bits(kk[0], kk[1], kk[2]));
        } else {
          store(yp, tensor3<A>(s, kk, rd));
        }
      } else if (a.move && !(state & kNan)) {  // far shift: the element-wise functions
        fallback_move<P>(xc, yp, geo.ax, o, m);
      } else {
        store(yp, fallback_forward<P, A>(xc, geo.ax, o, m, f));
      }
    }
  }
};

// ---------------------------------------------------------------------------
// Fused backward: dx (input grid, rounded tables) and the shift-gradient
// partial sums (output grid, exact tables) of one item.
template <typename T, int P, bool kLast, typename I>
struct Backward {
  using A = typename Acc<T>::type;
  struct Args {
    Geometry geo;
    Plan plan;
    BackwardBuffers<T> b;
    A* partial;  // (N, tiles, C, 3)
    bool shift_grad;
    bool unit;   // unit strides on every axis: dx from the staged g window
  };
  static constexpr int kPhases = 5;
  static constexpr const char* kName = kLast ? "tiled_backward_nhwc" : "tiled_backward_nchw";
  static constexpr bool kIndex64 = sizeof(I) == 8;
  static constexpr int Q = adjoint_padding(P);

  JS_HD static void phase(int ph, const Args& a, int64_t item, int tid, unsigned char* smem) {
    const Geometry& geo = a.geo;
    const Plan& p = a.plan;
    const View<A> v = view<A>(geo, p, item, smem);
    const Item& it = v.it;
    Chan<A>* ch = v.ch;
    Win* info = v.info;
    void* xwin = v.win;
    void* gwin = smem + p.off_win2;
    A* red = reinterpret_cast<A*>(smem + p.off_red);
    if (ph == 0) {
      load_chan<A>(geo, p, it, tid, a.b.m_u, a.b.f_u, a.b.m_r, a.b.f_r, ch);
    } else if (ph == 1) {
      const Win wx = make_window<A>(geo, p, it, ch, false, 1, -1, 1, false);
      const Win wg = make_window<A>(geo, p, it, ch, true, -1, -1, 0, true);
      if (tid == 0) {
        store_win(info, wx);
        store_win(info + 1, wg);
      }
      if (a.shift_grad) stage<P, T, I>(geo, p, wx, it, tid, a.b.x, false, xwin);
      if (a.unit) stage<Q, T, I>(geo, p, wg, it, tid, a.b.g, true, gwin);
    } else if (ph == 2) {
      A s[3] = {A(0), A(0), A(0)};
      compute(a, it, tid, ch, read_win(info), read_win(info + 1), xwin, gwin, s);
      for (int k = 0; k < 3; ++k) sst(red + tid * 3 + k, s[k]);
    } else if (a.shift_grad) {
      reduce(a, it, tid, ph, ch, red);
    }
  }

  // Fixed-order sums of the threads' partial sums: channels-last, lane k
  // adds its slots in order (phase 3); channels-first, 32 threads add 8
  // values each (phase 3) and thread 0 the 32 results (phase 4).
  JS_HD static void reduce(const Args& a, const Item& it, int tid, int ph, const Chan<A>* ch,
                           A* red) {
    const Geometry& geo = a.geo;
    const Plan& p = a.plan;
    A* red2 = red + kThreads * 3;
    A t[3] = {A(0), A(0), A(0)};
    if (p.last) {
      if (ph != 3 || tid >= p.cb || !(sld(&ch[tid].state) & kValid)) return;
      for (int s = 0; s < kThreads / p.cb; ++s) {
        for (int k = 0; k < 3; ++k) t[k] += sld(red + (s * p.cb + tid) * 3 + k);
      }
    } else if (ph == 3) {
      if (tid >= 32) return;
      for (int s = 0; s < kThreads / 32; ++s) {
        for (int k = 0; k < 3; ++k) t[k] += sld(red + (s * 32 + tid) * 3 + k);
      }
      for (int k = 0; k < 3; ++k) sst(red2 + tid * 3 + k, t[k]);
      return;
    } else {
      if (tid != 0 || !(sld(&ch[0].state) & kValid)) return;
      for (int s = 0; s < 32; ++s) {
        for (int k = 0; k < 3; ++k) t[k] += sld(red2 + s * 3 + k);
      }
    }
    const int64_t c = it.c0 + (p.last ? tid : 0);
    A* out = a.partial + partial_index(geo, it.n, it.tile, p.tiles, c);
    for (int k = 0; k < 3; ++k) gst(out + k, t[k]);
  }

  JS_HD static void compute(const Args& a, const Item& it, int tid, const Chan<A>* ch,
                            const Win& wx, const Win& wg, const void* xwin, const void* gwin,
                            A* sums) {
    const Geometry& geo = a.geo;
    const Plan& p = a.plan;
    Lane<A> l;
    if (!lane_of(geo, p, it, tid, ch, &l)) return;
    const Role& r = l.r;
    const int64_t c = l.c;
    const Chan<A>* cc = l.cc;
    const int state = l.state;
    int mu[3], mr[3];
    A fu[3], fr[3];
    for (int k = 0; k < 3; ++k) {
      mu[k] = sld(&cc->m[k]);
      fu[k] = sld(&cc->f[k]);
      mr[k] = sld(&cc->mr[k]);
      fr[k] = sld(&cc->fr[k]);
    }
    const T* xc = a.b.x + it.n * geo.sx_n + c * geo.sx_c;
    const T* gc = a.b.g + it.n * geo.sy_n + c * geo.sy_c;
    T* dc = a.b.dx + it.n * geo.sx_n + c * geo.sx_c;
    const WinReader<T, kLast> xr = reader<T, kLast>(p, wx, xwin, r.lane);
    const WinReader<T, kLast> gr = reader<T, kLast>(p, wg, gwin, r.lane);

    // The input gradient over the tile's inputs: [o0 t, (o0 + Tn) t), to L
    // on the last tile.
    const bool nan = state & kNan;
    const bool g_in = a.unit && state == kValid && fits(geo, wg, it, mr, -1, -1, 0);
    int lo[3], hi[3], i0[3], ext[3];
    Stencil<A> sv[3];
    for (int k = 0; k < 3; ++k) {
      const Axis& ax = geo.ax[k];
      simple_interval<P>(ax, mr[k], &lo[k], &hi[k]);
      if (!ax.present) lo[k] = hi[k] = 0;
      i0[k] = it.o0[k] * ax.t;
      const int end = it.o0[k] + it.Tn[k] == ax.Lo ? ax.L : (it.o0[k] + it.Tn[k]) * ax.t;
      ext[k] = end - i0[k];
      sv[k] = value_stencil(fr[k], at_lattice(fr[k]));
    }
    for (Counter3 q(ext, r.slot, r.slots); q.more(); q.next()) {
      int i[3];
      I off = 0;
      bool simple = true;
      for (int k = 0; k < 3; ++k) {
        i[k] = i0[k] + q.i[k];
        off += static_cast<I>(i[k]) * static_cast<I>(geo.ax[k].sx);
        simple = simple && i[k] >= lo[k] && i[k] <= hi[k];
      }
      A v;
      if (nan) {
        v = nan_value(fr);
      } else if (g_in && simple) {
        int j[3];
        for (int k = 0; k < 3; ++k) j[k] = i[k] - mr[k] - win_origin<kLast>(wg, k);
        v = tensor3_adjoint<A>(sv, j, gr);
      } else {
        v = fallback_adjoint<P, A>(gc, geo.ax, i, mr, fr);
      }
      store(dc + off, v);
    }
    if (!a.shift_grad || state != kValid) return;

    // The shift-gradient sums over the tile's outputs.
    const bool x_in = fits(geo, wx, it, mu, 1, -1, 1);
    const bool g_tile = a.unit && fits(geo, wg, it, mu, 0, 0, 0);  // g(o) from the window
    Stencil<A> vs[3], ss[3];
    int base[3], gbase[3];
    for (int k = 0; k < 3; ++k) {
      vs[k] = value_stencil(fu[k], at_lattice(fu[k]));
      ss[k] = slope_stencil<A>(at_lattice(fu[k]));
      base[k] = mu[k] - win_origin<kLast>(wx, k);
      gbase[k] = -win_origin<kLast>(wg, k);
    }
    for (Counter3 q(it.Tn, r.slot, r.slots); q.more(); q.next()) {
      int o[3];
      I off = 0;
      for (int k = 0; k < 3; ++k) {
        o[k] = it.o0[k] + q.i[k];
        off += static_cast<I>(o[k]) * static_cast<I>(geo.ax[k].sy);
      }
      const A gv = g_tile ? gr(o[0] + gbase[0], o[1] + gbase[1], o[2] + gbase[2])
                          : load<A>(gc + off);
      A d[3];
      if (x_in) {
        int kk[3];
        for (int k = 0; k < 3; ++k) kk[k] = o[k] * geo.ax[k].t + base[k];
        for (int k = 0; k < 3; ++k) {
          if (!geo.ax[k].present) {
            d[k] = A(0);
            continue;
          }
          Stencil<A> s3[3];
          deriv_stencils<3>(vs, ss, k, s3);
          d[k] = tensor3<A>(s3, kk, xr);
        }
      } else {
        fallback_deriv<P, A>(xc, geo.ax, o, mu, fu, d);
      }
      for (int k = 0; k < 3; ++k) sums[k] += gv * d[k];
    }
  }
};

}  // namespace tiled
}  // namespace jaxshift
