// Walks: the loops of calls with at most two spatial axes and unit strides
// (the CUDA walk family's kernels, cuda/walk/; on the CPU, the fallback of the
// staged planes for far shifts and large planes). One walk takes one (sample, channel) and
// one index of the "fixed" axis and traverses the other ("walking") axis in
// order. Each step evaluates the fixed axis' stencil once, for the next
// column, and keeps the last three column values in a window, so the walking
// axis' stencil reads registers: a step costs one padded index and a few
// loads. The formulas are core/stencils.h's. The shift-gradient walk
// decides its lattice tests once per walk (with_lattice: its stencils are
// compile-time constants, one loop per combination); the forward and adjoint
// walks test them at run time (one branch per step, and a quarter of the
// code: nvcc's time grows with every variant). `fa`/`wa` are the fixed and
// walking axes; `x`/`g` point at the channel's origin.
#pragma once

#include <type_traits>

#include "core/elementwise.h"
#include "core/stencils.h"

namespace jaxshift {

// The walks apply: axis 0 absent, unit strides.
JS_HD bool walkable(const Geometry& geo) {
  return !geo.ax[0].present && geo.ax[0].t == 1 && geo.ax[1].t == 1 && geo.ax[2].t == 1;
}

// Calls fn(lattice_a, lattice_b) with the two lattice tests as compile-time
// std::bool_constant values.
template <typename A, typename Fn>
JS_HD void with_lattice(A fa, A fb, const Fn& fn) {
  if (at_lattice(fa)) {
    if (at_lattice(fb)) fn(std::true_type{}, std::true_type{}); else fn(std::true_type{}, std::false_type{});
  } else {
    if (at_lattice(fb)) fn(std::false_type{}, std::true_type{}); else fn(std::false_type{}, std::false_type{});
  }
}

// The rows at positions c - 1, c, c + 1 of an axis of length L read through
// padding Q (rows[1 + d] is position c + d), null where zeros answers.
template <int Q, typename T>
JS_HD void rows_around(const T* base, int c, int L, int64_t stride, const T** rows) {
JS_UNROLL
  for (int d = -1; d <= 1; ++d) {
    const int i = pad_index<Q>(c + d, L);
    rows[d + 1] = i >= 0 ? base + i * stride : nullptr;
  }
}

// A column value: stencil `s` across the rows around position c (s's
// reader sees rows[1 + offset]) at padded column index ic (-1: zero).
template <typename A, typename T>
JS_HD A column(const T* const* rows, const Stencil<A>& s, int ic, int64_t col_stride) {
  if (ic < 0) return A(0);
  return apply(s, 1, [&](int r) -> A {
    return rows[r] ? load<A>(rows[r] + ic * col_stride) : A(0);
  });
}

// Forward along a walk: outputs [begin, end) at index `of` of the fixed axis.
template <int P, typename A, typename T, typename LatF, typename LatW>
JS_HD void forward_walk_at(const T* x, T* y, const Axis& fa, const Axis& wa, int of, int begin,
                           int end, int mf, A ff, int mw, A fw, LatF lat_f, LatW lat_w) {
  const T* rows[3];
  rows_around<P>(x, of + mf, fa.L, fa.sx, rows);
  const Stencil<A> sf = value_stencil(ff, lat_f), sw = value_stencil(fw, lat_w);
  auto col = [&](int c) { return column<A>(rows, sf, pad_index<P>(c, wa.L), wa.sx); };
  T* yo = y + static_cast<int64_t>(of) * fa.sy;
  A win[3];  // win[1 + d] = col(o + mw + d)
  win[1] = col(begin + mw);
  for (int o = begin; o < end; ++o) {
    win[2] = col(o + mw + 1);
    store(yo + o * wa.sy, apply(sw, 1, [&](int c) { return win[c]; }));
    win[1] = win[2];
  }
}

// Forward along a walk. `move`: an integer move (f == 0 on both axes), a
// pure copy of the elements with no arithmetic on them.
template <int P, typename A, typename T>
JS_HD void forward_walk(const T* x, T* y, const Axis& fa, const Axis& wa, int of, int begin,
                        int end, int mf, A ff, int mw, A fw, bool move) {
  if (move) {
    const int r = pad_index<P>(of + mf, fa.L);
    const T* row = r >= 0 ? x + r * fa.sx : nullptr;
    T* yo = y + static_cast<int64_t>(of) * fa.sy;
    for (int o = begin; o < end; ++o) {
      const int i = pad_index<P>(o + mw, wa.L);
      if (row && i >= 0) {
        copy_element(yo + o * wa.sy, row + i * wa.sx);
      } else {
        store(yo + o * wa.sy, A(0));
      }
    }
    return;
  }
  forward_walk_at<P>(x, y, fa, wa, of, begin, end, mf, ff, mw, fw, at_lattice(ff),
                     at_lattice(fw));
}

// The input gradient along a walk: dx at inputs [begin, end) of index i_f of
// the fixed axis, from the rounded tables (mr, fr).
template <int P, typename A, typename T, typename LatF, typename LatW>
JS_HD void adjoint_walk_at(const T* g, T* dx, const Axis* ax3, int af, int aw, int i_f,
                           int begin, int end, const int* mr, const A* fr, LatF lat_f,
                           LatW lat_w) {
  constexpr int Q = adjoint_padding(P);
  const Axis& fa = ax3[af];
  const Axis& wa = ax3[aw];
  const Stencil<A> sf = value_stencil(fr[af], lat_f), sw = value_stencil(fr[aw], lat_w);
  // g rows around output position i_f - m_f; the fixed axis' adjoint reads
  // rows 1 - d (apply_adjoint at 1).
  const T* rows[3];
  rows_around<Q>(g, i_f - mr[af], fa.Lo, fa.sy, rows);
  auto gcol = [&](int j) -> A {  // the fixed axis' adjoint at output column j
    const int oc = pad_index<Q>(j, wa.Lo);
    if (oc < 0) return A(0);
    return apply_adjoint(sf, 1, [&](int r) -> A {
      return rows[r] ? load<A>(rows[r] + oc * wa.sy) : A(0);
    });
  };
  int flo, fhi, wlo, whi;
  simple_interval<P>(fa, mr[af], &flo, &fhi);
  simple_interval<P>(wa, mr[aw], &wlo, &whi);
  const bool row_simple = i_f >= flo && i_f <= fhi;
  T* dxo = dx + static_cast<int64_t>(i_f) * fa.sx;
  A win[3];  // win[1 + d] = gcol(i - mw + d)
  win[0] = gcol(begin - mr[aw] - 1);
  win[1] = gcol(begin - mr[aw]);
  for (int i = begin; i < end; ++i) {
    A v;
    // zeros and periodic: always the plain transpose (the compiler drops the
    // fallback); the other paddings fold reads near the edges.
    if (P == kZeros || P == kPeriodic || (row_simple && i >= wlo && i <= whi)) {
      v = apply_adjoint(sw, 1, [&](int c) { return win[c]; });
    } else {
      int pos[3] = {0, 0, 0}, m3[3] = {0, 0, 0};
      A f3[3] = {A(0), A(0), A(0)};
      pos[af] = i_f;
      pos[aw] = i;
      m3[af] = mr[af];
      m3[aw] = mr[aw];
      f3[af] = fr[af];
      f3[aw] = fr[aw];
      v = adjoint_value_outlined<P, A>(g, ax3, pos, m3, f3);
    }
    store(dxo + i * wa.sx, v);
    win[0] = win[1];
    win[1] = gcol(i + 1 - mr[aw]);
  }
}

// The shift-gradient sums along a walk at output index i_f of the fixed
// axis, exact tables (mu, fu): d[0] = sum g * d out / d shift_f and
// d[1] = sum g * d out / d shift_w (core/stencils.h, deriv_stencils).
template <int P, typename A, typename T, typename LatF, typename LatW>
JS_HD void shift_grad_walk_at(const T* x, const T* g, const Axis& fa, const Axis& wa, int i_f,
                              int begin, int end, int mf, A ff, int mw, A fw, LatF lat_f,
                              LatW lat_w, A* d) {
  const T* rows[3];
  rows_around<P>(x, i_f + mf, fa.L, fa.sx, rows);
  // Axis 0 of the stencils is the fixed axis, 1 the walking one; s[a] are
  // those of d out / d shift_a.
  const Stencil<A> value[2] = {value_stencil(ff, lat_f), value_stencil(fw, lat_w)};
  const Stencil<A> slope[2] = {slope_stencil<A>(lat_f), slope_stencil<A>(lat_w)};
  Stencil<A> s[2][2];
  deriv_stencils<2>(value, slope, 0, s[0]);
  deriv_stencils<2>(value, slope, 1, s[1]);
  A col[2][3];  // col[a][1 + d]: s[a]'s fixed-axis stencil at column o + mw + d
  auto cols = [&](int c, int slot) {
    const int ic = pad_index<P>(c, wa.L);
    col[0][slot] = column<A>(rows, s[0][0], ic, wa.sx);
    col[1][slot] = column<A>(rows, s[1][0], ic, wa.sx);
  };
  cols(begin + mw - 1, 0);
  cols(begin + mw, 1);
  const T* go = g + static_cast<int64_t>(i_f) * fa.sy;
  A sum[2] = {A(0), A(0)};
  for (int o = begin; o < end; ++o) {
    cols(o + mw + 1, 2);
    const A gv = load<A>(go + o * wa.sy);
JS_UNROLL
    for (int a = 0; a < 2; ++a) {
      sum[a] += gv * apply(s[a][1], 1, [&](int c) { return col[a][c]; });
      col[a][0] = col[a][1];
      col[a][1] = col[a][2];
    }
  }
  d[0] = sum[0];
  d[1] = sum[1];
}

// The fused backward walk: dx along the walk (input grid, rounded tables
// mr/fr) and the shift-gradient sums over the same walk (output grid, exact
// tables mu/fu): d[0] for the fixed axis and d[1] for the walking one. Unit
// strides: L == Lo.
template <int P, typename A, typename T>
JS_HD void backward_walk(const T* x, const T* g, T* dx, const Axis* ax3, int af, int aw, int i_f,
                         int begin, int end, const int* mr, const A* fr, const int* mu,
                         const A* fu, bool shift_grad, A* d) {
  adjoint_walk_at<P>(g, dx, ax3, af, aw, i_f, begin, end, mr, fr, at_lattice(fr[af]),
                     at_lattice(fr[aw]));
  d[0] = d[1] = A(0);
  if (!shift_grad) return;
  with_lattice(fu[af], fu[aw], [&](auto lat_f, auto lat_w) {
    shift_grad_walk_at<P>(x, g, ax3[af], ax3[aw], i_f, begin, end, mu[af], fu[af], mu[aw], fu[aw],
                          lat_f, lat_w, d);
  });
}

}  // namespace jaxshift
