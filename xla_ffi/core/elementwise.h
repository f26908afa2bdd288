// The element-wise functions: one output (or input-gradient) element of one
// (sample, channel) from anywhere, through the padding rule; the general path
// of every family (3-D, strides, far shifts, folded edges). `x` and `g` point
// at the channel's origin. They evaluate core/stencils.h's formulas.
#pragma once

#include <cstdint>

#include "core/device.h"
#include "core/float16.h"
#include "core/geometry.h"
#include "core/padding.h"
#include "core/stencils.h"

namespace jaxshift {

// The three stencils of an output applied to x through the padding rule
// (the tensor product of core/stencils.h over a padded reader).
template <int P, typename A, typename T>
JS_HD A apply3(const T* x, const Axis* ax, const Stencil<A>* s, const int* k) {
  return tensor3(s, k, [&](int j0, int j1, int j2) -> A {
    const int i0 = pad_index<P>(j0, ax[0].L);
    const int i1 = pad_index<P>(j1, ax[1].L);
    const int i2 = pad_index<P>(j2, ax[2].L);
    if (i0 < 0 || i1 < 0 || i2 < 0) return A(0);
    return load<A>(x + i0 * ax[0].sx + i1 * ax[1].sx + i2 * ax[2].sx);
  });
}

// k = o*t + m on every axis.
JS_HD void tap_origins(const Axis* ax, const int* o, const int* m, int* k) {
JS_UNROLL
  for (int a = 0; a < 3; ++a) k[a] = o[a] * ax[a].t + m[a];
}

// The forward value at output (o0, o1, o2).
template <int P, typename A, typename T>
JS_HD A forward_value(const T* x, const Axis* ax, const int* o, const int* m, const A* f) {
  if (nan_shift(f)) return nan_value(f);
  int k[3];
  tap_origins(ax, o, m, k);
  const Stencil<A> s[3] = {value_stencil(f[0], at_lattice(f[0])),
                           value_stencil(f[1], at_lattice(f[1])),
                           value_stencil(f[2], at_lattice(f[2]))};
  return apply3<P>(x, ax, s, k);
}

// Integer move (sparse/integer forward, f == 0): the one element output o
// copies, or null where `zeros` padding answers 0. No arithmetic on values.
template <int P, typename T>
JS_HD const T* move_source(const T* x, const Axis* ax, const int* o, const int* m) {
  int64_t off = 0;
JS_UNROLL
  for (int a = 0; a < 3; ++a) {
    const int i = pad_index<P>(o[a] * ax[a].t + m[a], ax[a].L);
    if (i < 0) return nullptr;
    off += i * ax[a].sx;
  }
  return x + off;
}

// The three shift-derivative terms at output o: d out / d shift_a for
// a = 0, 1, 2 (the slope on axis a, the value on the others).
template <int P, typename A, typename T>
JS_HD void deriv_values(const T* x, const Axis* ax, const int* o, const int* m, const A* f,
                        A* d) {
  int k[3];
  tap_origins(ax, o, m, k);
  Stencil<A> value[3], slope[3];
JS_UNROLL
  for (int b = 0; b < 3; ++b) {
    const bool lat = at_lattice(f[b]);
    value[b] = value_stencil(f[b], lat);
    slope[b] = slope_stencil<A>(lat);
  }
JS_UNROLL
  for (int a = 0; a < 3; ++a) {
    Stencil<A> s[3];
    deriv_stencils<3>(value, slope, a, s);
    d[a] = apply3<P>(x, ax, s, k);
  }
}

// The adjoint (input gradient) as a gather: for input index i, visit every
// (output o, weight w) whose forward read lands on i. Output o's tap j reads
// the extended position e = o*t + m + d[j] with weight w[j]; input i is read
// through every e with pad(e) == i. Those e form at most two arithmetic
// progressions (or, for the clamped ends of `border`, a range), visited in a
// fixed order: the result is deterministic.
template <typename A, typename Fn>
JS_HD void visit_extended(int e, const Axis& ax, int m, const Stencil<A>& s, Fn& fn) {
  for (int j = 0; j < s.n; ++j) {
    const int d = e - m - s.d[j];  // o * t == d for tap j
    if (d % ax.t == 0) {
      const int o = d / ax.t;
      if (o >= 0 && o < ax.Lo) fn(o, s.w[j]);
    }
  }
}

template <typename A, typename Fn>
JS_HD void visit_progression(int base, int step, int lo, int hi, const Axis& ax, int m,
                             const Stencil<A>& s, Fn& fn) {
  for (int e = base + (floor_div(lo - base + step - 1, step)) * step; e <= hi; e += step) {
    visit_extended(e, ax, m, s, fn);
  }
}

// Every (output, weight) of one axis whose read lands on input i, in order.
template <int P, typename A, typename Fn>
JS_HD void visit_adjoint_taps(int i, const Axis& ax, int m, const Stencil<A>& s, Fn& fn) {
  const int lo = m;                           // first extended position read
  const int hi = (ax.Lo - 1) * ax.t + m + 1;  // last
  const int L = ax.L;
  if (P == kZeros) {
    if (i >= lo && i <= hi) visit_extended(i, ax, m, s, fn);
  } else if (P == kPeriodic) {
    visit_progression(i, L, lo, hi, ax, m, s, fn);
  } else if (L == 1 && (P == kBorder || P == kReflect)) {
    visit_progression(lo, 1, lo, hi, ax, m, s, fn);
  } else if (P == kBorder) {
    if (i == 0) {
      visit_progression(lo, 1, lo, hi < 0 ? hi : 0, ax, m, s, fn);
    } else if (i == L - 1) {
      visit_progression(L - 1, 1, lo > L - 1 ? lo : L - 1, hi, ax, m, s, fn);
    } else if (i >= lo && i <= hi) {
      visit_extended(i, ax, m, s, fn);
    }
  } else if (P == kReflect) {
    const int T = 2 * L - 2;
    visit_progression(i, T, lo, hi, ax, m, s, fn);
    if (i > 0 && i < L - 1) visit_progression(T - i, T, lo, hi, ax, m, s, fn);
  } else {  // kSymmetric
    const int T = 2 * L;
    visit_progression(i, T, lo, hi, ax, m, s, fn);
    visit_progression(T - 1 - i, T, lo, hi, ax, m, s, fn);
  }
}

// The same, out of line on the GPU: the nested path below calls it three
// levels deep, which inlined would grow the kernel (and ptxas time)
// exponentially.
template <int P, typename A, typename Fn>
JS_HD_NOINLINE void for_each_adjoint_tap(int i, const Axis& ax, int m, const Stencil<A>& s,
                                         Fn& fn) {
  visit_adjoint_taps<P>(i, ax, m, s, fn);
}

// One axis' taps of an input, collected: n counts them all, the first kMax
// are kept (with zeros padding an axis has at most 2; the folds of the
// other paddings a few, unless a shift reaches far past a short axis).
template <typename A>
struct AxisTaps {
  static constexpr int kMax = 4;
  int n;
  int o[kMax];
  A w[kMax];
};

template <int P, typename A>
JS_HD AxisTaps<A> collect_adjoint_taps(int i, const Axis& ax, int m, const Stencil<A>& s) {
  AxisTaps<A> t;
  t.n = 0;
  auto keep = [&](int o, A w) {
JS_UNROLL
    for (int k = 0; k < AxisTaps<A>::kMax; ++k) {  // constant indices: registers
      if (k == t.n) {
        t.o[k] = o;
        t.w[k] = w;
      }
    }
    ++t.n;
  };
  visit_adjoint_taps<P>(i, ax, m, s, keep);
  return t;
}

// Whether every axis' taps were kept (AxisTaps' kMax): adjoint_of_taps.
template <typename A>
JS_HD bool taps_kept(const AxisTaps<A>& t0, const AxisTaps<A>& t1, const AxisTaps<A>& t2) {
  constexpr int kMax = AxisTaps<A>::kMax;
  return t0.n <= kMax && t1.n <= kMax && t2.n <= kMax;
}

// The input gradient from each axis' collected taps (taps_kept), their
// products summed in registers, axis 0 outermost (adjoint_value's order).
template <typename A, typename T>
JS_HD A adjoint_of_taps(const T* g, const Axis* ax, const AxisTaps<A>& t0, const AxisTaps<A>& t1,
                        const AxisTaps<A>& t2) {
  constexpr int kMax = AxisTaps<A>::kMax;
  A acc = A(0);
JS_UNROLL
  for (int a = 0; a < kMax; ++a) {
    if (a < t0.n) {
      const T* g0 = g + t0.o[a] * ax[0].sy;
JS_UNROLL
      for (int b = 0; b < kMax; ++b) {
        if (b < t1.n) {
          const T* g1 = g0 + t1.o[b] * ax[1].sy;
          const A w01 = t0.w[a] * t1.w[b];
JS_UNROLL
          for (int c = 0; c < kMax; ++c) {
            if (c < t2.n) acc += w01 * t2.w[c] * load<A>(g1 + t2.o[c] * ax[2].sy);
          }
        }
      }
    }
  }
  return acc;
}

// Input gradient at input (i0, i1, i2) of one (sample, channel); `g` points at
// the channel's origin in the output cotangent (strides ax[].sy). Each axis'
// taps are collected first and their products summed in registers (fully
// unrolled: no local memory, no calls on the GPU); an axis with more taps
// than AxisTaps keeps takes the nested path. Both visit the taps in the same
// order with the same arithmetic, so they give the same bits.
template <int P, typename A, typename T>
JS_HD A adjoint_value(const T* g, const Axis* ax, const int* i, const int* m, const A* f) {
  if (nan_shift(f)) return nan_value(f);
  const Stencil<A> s0 = value_stencil(f[0], at_lattice(f[0]));
  const Stencil<A> s1 = value_stencil(f[1], at_lattice(f[1]));
  const Stencil<A> s2 = value_stencil(f[2], at_lattice(f[2]));
  const AxisTaps<A> t0 = collect_adjoint_taps<P>(i[0], ax[0], m[0], s0);
  const AxisTaps<A> t1 = collect_adjoint_taps<P>(i[1], ax[1], m[1], s1);
  const AxisTaps<A> t2 = collect_adjoint_taps<P>(i[2], ax[2], m[2], s2);
  if (taps_kept(t0, t1, t2)) return adjoint_of_taps(g, ax, t0, t1, t2);
  A acc = A(0);
  auto v0 = [&](int o0, A w0) {
    const T* g0 = g + o0 * ax[0].sy;
    auto v1 = [&](int o1, A w1) {
      const T* g1 = g0 + o1 * ax[1].sy;
      const A w01 = w0 * w1;
      auto v2 = [&](int o2, A w2) { acc += w01 * w2 * load<A>(g1 + o2 * ax[2].sy); };
      for_each_adjoint_tap<P>(i[2], ax[2], m[2], s2, v2);
    };
    for_each_adjoint_tap<P>(i[1], ax[1], m[1], s1, v1);
  };
  for_each_adjoint_tap<P>(i[0], ax[0], m[0], s0, v0);
  return acc;
}

// `adjoint_value` kept out of the hot loops that only need it near the edges
// (on the CPU; inlined on the GPU).
template <int P, typename A, typename T>
JS_CPU_NOINLINE A adjoint_value_outlined(const T* g, const Axis* ax, const int* i, const int* m,
                                         const A* f) {
  return adjoint_value<P, A>(g, ax, i, m, f);
}

}  // namespace jaxshift
