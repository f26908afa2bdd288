// The index, padding and per-axis formulas of jaxshift, shared by every loop
// family of every kernel (the element-wise functions below, the walks of
// walks.h, the CPU's staged planes in cpu/staged.h; CPU and CUDA). Header
// only; no FFI, CUDA-runtime or Python includes.
//
// Canonical problem (jaxshift/_src/layout.py reshapes every call into it):
//   x   : N samples, C channels, three spatial axes (A, B, W): channels-last
//         (N, A, B, W, C) or channels-first (N, C, A, B, W), any element
//         strides. An axis that x does not have is absent (Axis::present is
//         false): length 1, stride 1, zero shift.
//   m, f: per (group, channel, axis) integer offset and fraction with
//         -shift == m + f, 0 <= f < 1, reduced so that |m| <= 2 L + 2
//         (jaxshift/_src/spec.py, shift_tables); sample n uses group
//         n / samples_per_group.
#pragma once

#include <cstdint>

#include "device.h"
#include "float16.h"

namespace jaxshift {

// The padding codes; their order is jaxshift.PADDINGS (jaxshift/_src/shapes.py,
// checked by tests/test_layout.py).
enum Padding : int {
  kZeros = 0,
  kBorder = 1,
  kPeriodic = 2,
  kReflect = 3,
  kSymmetric = 4,
};

// The longest axis (jaxshift/_src/shapes.py MAX_AXIS_LENGTH, checked by
// tests/test_layout.py). With |m| <= 2 L + 2 and output positions o * t <= L - 1,
// every position below (taps, adjoint progressions) stays within 6 L of 0:
// far inside int, with a margin of 8 at this bound.
constexpr int kMaxAxisLength = 1 << 28;

// ---------------------------------------------------------------------------
// Padding: index i in [0, L), or -1 for a read answered by zero.
JS_HD int floor_mod(int a, int b) {
  const int r = a % b;
  return r < 0 ? r + b : r;
}
JS_HD int floor_div(int a, int b) {  // b > 0
  const int q = a / b;
  return (a % b != 0 && a < 0) ? q - 1 : q;
}

template <int P>
JS_HD int pad_index(int j, int L) {
  if (P == kZeros) return (j >= 0 && j < L) ? j : -1;
  if (P == kBorder || (P == kReflect && L == 1)) return j < 0 ? 0 : (j >= L ? L - 1 : j);
  if (P == kPeriodic) return floor_mod(j, L);
  if (P == kReflect) {
    const int T = 2 * L - 2;
    const int r = floor_mod(j, T);
    return r < L ? r : T - r;
  }
  const int T = 2 * L;  // kSymmetric
  const int r = floor_mod(j, T);
  return r < L ? r : T - 1 - r;
}

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

template <typename A>
JS_HD bool is_nan(A v) { return v != v; }

// ---------------------------------------------------------------------------
// The per-axis formulas. Along one axis a channel's shift is the pair (m, f)
// of the shift tables: output o reads position q = o*t + m + f and, with
// k = o*t + m and P(j) the input at position j through the padding rule,
//
//   value   (1-f) P(k) + f P(k+1)
//   slope   d value / d shift:  P(k) - P(k+1)            (0 < f < 1)
//           the lattice rule:   (P(k-1) - P(k+1)) / 2    (f == 0)
//
// (the lattice rule is the mean of the two one-sided slopes). Each formula is
// a stencil of at most two taps around k. A tap of weight zero is not a tap:
// at the lattice the value reads P(k) alone, so an integer move reads one
// element and a non-finite input reaches only the outputs that read it.
// Every loop family evaluates these stencils (apply, apply_adjoint,
// for_each_adjoint_tap) and restates none of them.
template <typename A>
struct Stencil {
  int n;     // number of taps: 1 or 2
  int d[2];  // their offsets from k
  A w[2];    // their weights
};

// The lattice test (a NaN fraction is not at the lattice).
template <typename A>
JS_HD bool at_lattice(A f) { return f == A(0); }

// `Lat` is bool, or std::true_type / std::false_type where a hot loop has
// decided the lattice test once; the stencil is then a compile-time constant.
template <typename A, typename Lat>
JS_HD Stencil<A> value_stencil(A f, Lat lattice) {
  if (lattice) return Stencil<A>{1, {0, 1}, {A(1), A(0)}};
  return Stencil<A>{2, {0, 1}, {A(1) - f, f}};
}

template <typename A, typename Lat>
JS_HD Stencil<A> slope_stencil(Lat lattice) {
  if (lattice) return Stencil<A>{2, {-1, 1}, {A(0.5), A(-0.5)}};
  return Stencil<A>{2, {0, 1}, {A(1), A(-1)}};
}

// sum_j w[j] P(k + d[j]), for a reader P(position) -> A.
template <typename A, typename Read>
JS_HD A apply(const Stencil<A>& s, int k, const Read& P) {
  A v = s.w[0] * P(k + s.d[0]);
  if (s.n == 2) v += s.w[1] * P(k + s.d[1]);
  return v;
}

// The transpose of `apply` along an axis of unit stride where no read folds
// through the padding: input i = j + m collects the outputs j - d[j'] that
// read it, sum_j' w[j'] G(j - d[j']), for a reader G(output index) -> A.
template <typename A, typename Read>
JS_HD A apply_adjoint(const Stencil<A>& s, int j, const Read& G) {
  A v = s.w[0] * G(j - s.d[0]);
  if (s.n == 2) v += s.w[1] * G(j - s.d[1]);
  return v;
}

// The padding the adjoint reads the output cotangent g through: an output
// outside [0, Lo) does not exist (zero), except that a periodic axis wraps.
constexpr int adjoint_padding(int P) { return P == kPeriodic ? kPeriodic : kZeros; }

// The input positions of an axis (unit stride) whose adjoint is the plain
// `apply_adjoint`, no read folding onto them through the padding: [lo, hi].
// For zeros and periodic every position; for the clamped and mirrored
// paddings a conservative interior, whose complement the caller answers with
// `adjoint_value`.
template <int P>
JS_HD void simple_interval(const Axis& ax, int m, int* lo, int* hi) {
  if (P == kZeros || P == kPeriodic) {
    *lo = 0;
    *hi = ax.L - 1;
    return;
  }
  const int am = m < 0 ? -m : m;
  *lo = am + 1;
  *hi = ax.L - am - 3;
}

// The NaN rule: a channel whose shift is NaN on some axis (its fraction is
// NaN) is NaN everywhere: every output, every input-gradient element and its
// shift-gradient row. Every loop family checks it with these two functions.
template <typename A>
JS_HD bool nan_shift(const A* f) {
  return is_nan(f[0]) || is_nan(f[1]) || is_nan(f[2]);
}
template <typename A>
JS_HD A nan_value(const A* f) { return f[0] + f[1] + f[2]; }

// ---------------------------------------------------------------------------
// The element-wise functions: one output (or input-gradient) element of one
// (sample, channel) from anywhere, through the padding rule. `x` and `g`
// point at the channel's origin. The general path (3-D, strides).

// The three stencils of an output, applied axis by axis (the tensor product)
// to x through the padding rule.
template <int P, typename A, typename T>
JS_HD A apply3(const T* x, const Axis* ax, const Stencil<A>* s, const int* k) {
  return apply(s[0], k[0], [&](int j0) -> A {
    const int i0 = pad_index<P>(j0, ax[0].L);
    if (i0 < 0) return A(0);
    const T* x0 = x + i0 * ax[0].sx;
    return apply(s[1], k[1], [&](int j1) -> A {
      const int i1 = pad_index<P>(j1, ax[1].L);
      if (i1 < 0) return A(0);
      const T* x1 = x0 + i1 * ax[1].sx;
      return apply(s[2], k[2], [&](int j2) -> A {
        const int i2 = pad_index<P>(j2, ax[2].L);
        return i2 < 0 ? A(0) : load<A>(x1 + i2 * ax[2].sx);
      });
    });
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
JS_UNROLL
  for (int a = 0; a < 3; ++a) {
    Stencil<A> s[3];
JS_UNROLL
    for (int b = 0; b < 3; ++b) {
      const bool lat = at_lattice(f[b]);
      s[b] = b == a ? slope_stencil<A>(lat) : value_stencil(f[b], lat);
    }
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

// Not inlined on the GPU: three nested levels of it would otherwise grow the
// kernel (and ptxas time) exponentially.
template <int P, typename A, typename Fn>
JS_HD_NOINLINE void for_each_adjoint_tap(int i, const Axis& ax, int m, const Stencil<A>& s,
                                         Fn& fn) {
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

// Input gradient at input (i0, i1, i2) of one (sample, channel); `g` points at
// the channel's origin in the output cotangent (strides ax[].sy).
template <int P, typename A, typename T>
JS_HD A adjoint_value(const T* g, const Axis* ax, const int* i, const int* m, const A* f) {
  if (nan_shift(f)) return nan_value(f);
  const Stencil<A> s0 = value_stencil(f[0], at_lattice(f[0]));
  const Stencil<A> s1 = value_stencil(f[1], at_lattice(f[1]));
  const Stencil<A> s2 = value_stencil(f[2], at_lattice(f[2]));
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
