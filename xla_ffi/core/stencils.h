// The per-axis formulas of jaxshift, and the NaN rule: every loop family of
// every kernel (core/elementwise.h, core/walks.h, cpu/staged.h, the CUDA
// families) evaluates these and restates none of them.
//
// Along one axis a channel's shift is the pair (m, f) of the shift tables:
// output o reads position q = o*t + m + f and, with k = o*t + m and P(j) the
// input at position j through the padding rule,
//
//   value   (1-f) P(k) + f P(k+1)
//   slope   d value / d shift:  P(k) - P(k+1)            (0 < f < 1)
//           the lattice rule:   (P(k-1) - P(k+1)) / 2    (f == 0)
//
// (the lattice rule is the mean of the two one-sided slopes; whether a shift
// is on the lattice is decided from the shift itself when the tables are
// made, so f == 0 exactly there). Each formula is a stencil of at most two
// taps around k. A tap of weight zero is not a tap: at the lattice the value
// reads P(k) alone, so an integer move reads one element and a non-finite
// input reaches only the outputs that read it. Several axes combine as the
// tensor product of their stencils; d out / d shift_a takes the slope on
// axis a and the value on the others (deriv_stencils).
#pragma once

#include <cstdint>

#include "core/device.h"
#include "core/float16.h"
#include "core/geometry.h"
#include "core/padding.h"

namespace jaxshift {

template <typename A>
JS_HD bool is_nan(A v) { return v != v; }

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
JS_HD constexpr Stencil<A> value_stencil(A f, Lat lattice) {
  if (lattice) return Stencil<A>{1, {0, 1}, {A(1), A(0)}};
  return Stencil<A>{2, {0, 1}, {A(1) - f, f}};
}

template <typename A, typename Lat>
JS_HD constexpr Stencil<A> slope_stencil(Lat lattice) {
  if (lattice) return Stencil<A>{2, {-1, 1}, {A(0.5), A(-0.5)}};
  return Stencil<A>{2, {0, 1}, {A(1), A(-1)}};
}

// Whether stencil s has a tap at offset q, and that tap's weight (0 where
// it has none).
template <typename A>
JS_HD constexpr bool has_tap(const Stencil<A>& s, int q) {
  return s.d[0] == q || (s.n == 2 && s.d[1] == q);
}
template <typename A>
JS_HD constexpr A tap_weight(const Stencil<A>& s, int q) {
  return s.d[0] == q ? s.w[0] : (s.n == 2 && s.d[1] == q ? s.w[1] : A(0));
}

// The stencils of d out / d shift_a over D axes: the slope on axis a, the
// value on every other.
template <int D, typename A>
JS_HD void deriv_stencils(const Stencil<A>* value, const Stencil<A>* slope, int a,
                          Stencil<A>* s) {
JS_UNROLL
  for (int b = 0; b < D; ++b) s[b] = b == a ? slope[b] : value[b];
}

// sum_j w[j] P(k + d[j]), for a reader P(position) -> A, or a vector of A
// (the CPU's register tiles, cpu/staged.h).
template <typename A, typename Read>
JS_HD auto apply(const Stencil<A>& s, int k, const Read& P) {
  auto v = s.w[0] * P(k + s.d[0]);
  if (s.n == 2) v += s.w[1] * P(k + s.d[1]);
  return v;
}

// The transpose of `apply` along an axis of unit stride where no read folds
// through the padding: input i = j + m collects the outputs j - d[j'] that
// read it, sum_j' w[j'] G(j - d[j']), for a reader G(output index) -> A.
template <typename A, typename Read>
JS_HD auto apply_adjoint(const Stencil<A>& s, int j, const Read& G) {
  auto v = s.w[0] * G(j - s.d[0]);
  if (s.n == 2) v += s.w[1] * G(j - s.d[1]);
  return v;
}

// The tensor product of three axes' stencils at origins k: the sum over
// their taps of rd(j0, j1, j2), for a reader rd(position on each axis) -> A.
template <typename A, typename R>
JS_HD A tensor3(const Stencil<A>* s, const int* k, const R& rd) {
  return apply(s[0], k[0], [&](int j0) -> A {
    return apply(s[1], k[1], [&](int j1) -> A {
      return apply(s[2], k[2], [&](int j2) -> A { return rd(j0, j1, j2); });
    });
  });
}

// Its transpose (apply_adjoint on every axis).
template <typename A, typename R>
JS_HD A tensor3_adjoint(const Stencil<A>* s, const int* j, const R& rd) {
  return apply_adjoint(s[0], j[0], [&](int p0) -> A {
    return apply_adjoint(s[1], j[1], [&](int p1) -> A {
      return apply_adjoint(s[2], j[2], [&](int p2) -> A { return rd(p0, p1, p2); });
    });
  });
}

// The input positions of an axis whose adjoint is the plain `apply_adjoint`
// (over the outputs o with o t + m + d == i), no read folding onto them
// through the padding: [lo, hi]. For zeros every position, and for periodic
// where the adjoint reads g wrapped (`wrapped`: unit strides,
// adjoint_padding); else a conservative interior, whose complement the
// caller answers with `adjoint_value` (core/elementwise.h).
template <int P>
JS_HD void simple_interval(const Axis& ax, int m, int* lo, int* hi, bool wrapped = true) {
  if (P == kZeros || (P == kPeriodic && wrapped)) {
    *lo = 0;
    *hi = ax.L - 1;
    return;
  }
  const int am = m < 0 ? -m : m;
  *lo = am + 1;
  *hi = ax.L - am - (P == kPeriodic ? 1 : 3);
}

// simple_interval for a strided axis (reads o t + m + {0, 1} for o in [0,
// Lo)): the widest [lo, hi] from the middle out holding no position that
// the padding folds a read onto (pad_index of each read outside [0, L)),
// instead of the conservative interior; where the reads reach more than
// 2 L beyond the axis, none (lo > hi). Positions outside it take
// adjoint_value (cpu/backward.cc, AdjointEdges: the strided lanes).
template <int P>
JS_HD void fold_free_interval(const Axis& ax, int m, int* lo, int* hi) {
  const int64_t jlo = m, jhi = int64_t{ax.Lo - 1} * ax.t + m + 1;
  *lo = 0;
  *hi = ax.L - 1;
  if (jlo < -2 * int64_t{ax.L} || jhi > 3 * int64_t{ax.L}) {
    *lo = 1;
    *hi = 0;
    return;
  }
  auto fold = [&](int j) {
    const int i = pad_index<P>(j, ax.L);
    if (i < 0) return;
    if (2 * i < ax.L) {
      *lo = *lo > i + 1 ? *lo : i + 1;
    } else {
      *hi = *hi < i - 1 ? *hi : i - 1;
    }
  };
  for (int j = static_cast<int>(jlo); j < 0 && j <= jhi; ++j) fold(j);
  for (int j = static_cast<int>(jlo > ax.L ? jlo : ax.L); j <= jhi; ++j) fold(j);
}

// The NaN rule: a channel whose shift is NaN on some axis (its fraction is
// NaN) is NaN everywhere: every output, every input-gradient element and its
// shift-gradient row. Every loop family checks it with these functions.
template <typename A>
JS_HD bool nan_shift(const A* f) {
  return is_nan(f[0]) || is_nan(f[1]) || is_nan(f[2]);
}
template <typename A>
JS_HD A nan_value(const A* f) { return f[0] + f[1] + f[2]; }

// The channel's `count` elements `stride` apart from p, all NaN (f's NaN).
template <typename T, typename A>
JS_HD void fill_nan(T* p, int64_t stride, int64_t count, const A* f) {
  for (int64_t i = 0; i < count; ++i) store(p + i * stride, nan_value(f));
}

}  // namespace jaxshift
