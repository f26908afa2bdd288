// Rows straight from the array: the CPU kernel for walkable channels-first
// calls (2-D, unit strides, rows of at least 8 cells) of float and double,
// and 16-bit moves. No staging, no halo limit.
//
// A channel's rows are contiguous there, in x, g, y and dx. Along the rows
// the padding rule maps each row a stencil reads to a whole row of the
// array (zeros: a row of zeros), so a row's outputs are vectors of 8 read
// from a few rows at the channel's column offset: plain loads where the
// vector's reads stay inside the row, and where they do not ("edge"
// vectors, the first or last of a row for shifts under 8) one gather per
// row tap and column tap, at column indices through the padding rule made
// once per channel. The arithmetic is the staged planes' (cpu/staged.h:
// forward_row, adjoint_row, shift_grad_plane) in the same order, without
// their copy of the input into padded planes: that copy was ~40 % of a
// staged channels-first forward. 16-bit storage is widened as it is read
// and narrowed as it is stored (widen8, narrow8: the same bits); moves carry
// raw bits.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "cpu/isa.h"
#include "cpu/lanes.h"
#include "cpu/staged.h"
#include "core/stencils.h"
#include "core/walks.h"

namespace jaxshift {

// The direct rows apply: walkable calls whose rows are contiguous in the
// inputs and outputs and at least 8 cells long; for 16-bit storage only the
// forward of moves (16-bit active calls measured 1.15-1.3x slower here than
// on the staged planes, and no faster from rows widened once:
// benchmarks/NOTES.md, v9).
template <typename T>
bool use_direct_rows(const Geometry& geo, bool move) {
  return (sizeof(T) > 2 || move) && walkable(geo) && geo.ax[2].sx == 1 && geo.ax[2].sy == 1 &&
         geo.ax[2].L >= kGroup;
}

// A row of W zeros (per thread; what the zeros padding reads outside the
// array's rows), and one more cell: a 16-bit gather reads 32 bits.
template <typename T>
const T* zero_row(int W) {
  thread_local std::vector<T> row;
  if (row.size() <= static_cast<size_t>(W)) row.assign(static_cast<size_t>(W) + 1, T{});
  return row.data();
}

// For gather8: the index in `row` (W cells) of the array's last element
// `last`, or -1 if it is not in the row (16-bit storage; else -1).
template <typename T>
int32_t last_in_row(const T* row, const T* last, int W) {
  if constexpr (sizeof(T) != 2) return -1;
  const uintptr_t r = reinterpret_cast<uintptr_t>(row), l = reinterpret_cast<uintptr_t>(last);
  return l >= r && (l - r) / sizeof(T) < static_cast<uintptr_t>(W)
             ? static_cast<int32_t>((l - r) / sizeof(T))
             : -1;
}

// Row j of a channel's H rows (rs apart from p) through padding P; the zeros
// row where P answers zero.
template <int P, typename T>
const T* padded_row(const T* p, int64_t rs, int H, int j, const T* zeros) {
  const int i = pad_index<P>(j, H);
  return i < 0 ? zeros : p + i * rs;
}

// Per-thread room for a Columns' edge indices (its own: scratch<int> holds
// the adjoint's intervals meanwhile).
inline int32_t* column_scratch(size_t n) {
  thread_local std::vector<int32_t> buf;
  if (buf.size() < n) buf.resize(n);
  return buf.data();
}

// The column reads of one channel's row loops, on rows of W cells through
// padding P: vector k covers outputs [start(k), start(k) + 8), and column
// tap t in [lo, hi] reads cells start(k) + o + t + l of a row (l < 8).
template <int P>
struct Columns {
  int W, o, lo, hi, chunks;
  int32_t* edge;  // per (chunk, tap) of an edge vector: 8 indices, 8 masks

  Columns(int W_, int o_, int lo_, int hi_, int chunks_)
      : W(W_), o(o_), lo(lo_), hi(hi_), chunks(chunks_),
        edge(column_scratch(static_cast<size_t>(chunks_ * (hi_ - lo_ + 1) * 2 * kGroup))) {
    for (int k = 0; k < chunks; ++k) {
      if (inside(start(k))) continue;
      for (int t = lo; t <= hi; ++t) {
        int32_t* e = at(k, t);
        for (int l = 0; l < kGroup; ++l) {
          const int i = pad_index<P>(start(k) + o + t + l, W);
          e[l] = i < 0 ? 0 : i;
          e[kGroup + l] = i < 0 ? 0 : -1;
        }
      }
    }
  }
  int start(int k) const { return std::min(k * kGroup, W - kGroup); }
  bool inside(int w) const { return w + o + lo >= 0 && w + o + hi + kGroup <= W; }
  int32_t* at(int k, int t) const { return edge + (k * (hi - lo + 1) + t - lo) * 2 * kGroup; }
  // One cell, column c, in the accumulation type (the scalar tails).
  template <typename T>
  typename Acc<T>::type cell(const T* row, int c) const {
    const int i = pad_index<P>(c, W);
    return i < 0 ? typename Acc<T>::type(0) : load<typename Acc<T>::type>(row + i);
  }
};

// body(w, rd) for each vector of a row, where rd(row, t) is the vector of
// column tap t of `row` (a pointer to a row of the array, whose last
// element is `last`, or the zeros row) in the accumulation type (`bits`:
// raw bits).
template <Isa I, int P, typename T, typename Body>
__attribute__((always_inline)) inline void for_each_vector(const Columns<P>& cols, const T* last,
                                                           bool bits, const Body& body) {
  for (int k = 0; k < cols.chunks; ++k) {
    const int w = cols.start(k);
    if (cols.inside(w)) {
      body(w, [&](const T* row, int t) { return widen8<I>(row + w + cols.o + t, bits); });
    } else {
      body(w, [&](const T* row, int t) {
        const int32_t* e = cols.at(k, t);
        return gather8<I>(row, loadu<i32x8>(e), loadu<i32x8>(e + kGroup), bits,
                          last_in_row(row, last, cols.W));
      });
    }
  }
}

// One channel's forward, rows [r0, r0 + rows) of y (rows rs_y apart), from
// its H x W plane of x (rows rs_x apart; `last`: x's last element). `move`:
// integer moves (raw bits). The last vector of a row overlaps the one
// before where W is not a multiple of 8.
template <Isa I, int P, typename T, typename A>
void forward_direct_impl(std::integral_constant<int, P>, const T* xc, int64_t rs_x,
                         const T* last, int H, int W, const ChannelTables<A>* ct, bool move,
                         T* yc, int64_t rs_y, int r0, int rows) {
  if (nan_shift(ct->f)) {
    for (int r = r0; r < r0 + rows; ++r) fill_nan(yc + r * rs_y, 1, W, ct->f);
    return;
  }
  const T* zeros = zero_row<T>(W);
  with_lattice(ct->f[1], ct->f[2], [&](auto lat_f, auto lat_w) {
    const Stencil<A> sf = value_stencil(ct->f[1], lat_f), sw = value_stencil(ct->f[2], lat_w);
    // column taps 0 .. 1, 0 alone at the lattice
    const Columns<P> cols(W, ct->m[2], 0, move || lat_w ? 0 : 1, (W + kGroup - 1) / kGroup);
    for (int r = r0; r < r0 + rows; ++r) {
      const T* a = padded_row<P>(xc, rs_x, H, r + ct->m[1], zeros);
      const T* b = padded_row<P>(xc, rs_x, H, r + ct->m[1] + 1, zeros);
      T* out = yc + r * rs_y;
      for_each_vector<I>(cols, last, move, [&](int w, const auto& rd) {
        narrow8<I>(out + w, move ? rd(a, 0) : apply(sw, 0, [&](int c) {
          return apply(sf, 0, [&](int q) { return rd(q == 0 ? a : b, c); });
        }), move);
      });
    }
  });
}
JAXSHIFT_ISA_VERSIONS(forward_direct)

// One channel's input gradient, rows [r0, r0 + rows) of dx (rows rs_x
// apart), from its H x W plane of g (rows rs_g apart; `last`: g's last
// element) read through the adjoint's padding; where reads fold through the
// padding (outside [row lo, row hi] x [column lo, column hi] of `simple`),
// (*edge)(b, row, column).
template <Isa I, int P, typename T, typename A, typename Edge>
void adjoint_direct_impl(std::integral_constant<int, P>, const T* gc, int64_t rs_g,
                         const T* last, int H, int W, const ChannelTables<A>* ct,
                         const int* simple, const Edge* edge, int b, T* dxc, int64_t rs_x,
                         int r0, int rows) {
  constexpr int Q = adjoint_padding(P);
  if (nan_shift(ct->f)) {
    for (int r = r0; r < r0 + rows; ++r) fill_nan(dxc + r * rs_x, 1, W, ct->f);
    return;
  }
  const T* zeros = zero_row<T>(W);
  with_lattice(ct->f[1], ct->f[2], [&](auto lat_f, auto lat_w) {
    const Stencil<A> sf = value_stencil(ct->f[1], lat_f), sw = value_stencil(ct->f[2], lat_w);
    // column taps -1 .. 0, 0 alone at the lattice
    const Columns<Q> cols(W, -ct->m[2], lat_w ? 0 : -1, 0, (W + kGroup - 1) / kGroup);
    for (int r = r0; r < r0 + rows; ++r) {
      // rows of g at r - m1 + q, q = 0, -1 (apply_adjoint's taps)
      const T* g0 = padded_row<Q>(gc, rs_g, H, r - ct->m[1], zeros);
      const T* g1 = padded_row<Q>(gc, rs_g, H, r - ct->m[1] - 1, zeros);
      T* out = dxc + r * rs_x;
      for_each_vector<I>(cols, last, false, [&](int w, const auto& rd) {
        narrow8<I>(out + w, apply_adjoint(sw, 0, [&](int c) {
          return apply_adjoint(sf, 0, [&](int q) { return rd(q == 0 ? g0 : g1, c); });
        }), false);
      });
      for_each_folded(r, W, simple, [&](int w) { store(out + w, (*edge)(b, r, w)); });
    }
  });
}
JAXSHIFT_ISA_VERSIONS(adjoint_direct)

// One channel's shift-gradient sums over output rows [r0, r0 + rows), from
// its H x W planes of x (rows rs_x apart, through padding P; `last`: x's
// last element) and g (rows rs_g apart), exact tables (m1, m2, ff, fw):
// adds the sum for axis 1 to acc[0] and for axis 2 to acc[1], as
// shift_grad_plane sums them (8 lanes by column, a row's tail past a
// multiple of 8 to one more, then the lanes in order): the same terms in the
// same order.
template <Isa I, int P, typename T, typename A, typename LatF, typename LatW>
void shift_grad_direct_impl(std::integral_constant<int, P>, const T* xc, int64_t rs_x,
                            const T* last, const T* gc, int64_t rs_g, int H, int W, int m1,
                            int m2, A ff, A fw, LatF lat_f, LatW lat_w, int r0, int rows,
                            A* acc) {
  using V = Vec8<A>;
  const Stencil<A> value[2] = {value_stencil(ff, lat_f), value_stencil(fw, lat_w)};
  const Stencil<A> slope[2] = {slope_stencil<A>(lat_f), slope_stencil<A>(lat_w)};
  Stencil<A> sr[2], sc[2];
  deriv_stencils<2>(value, slope, 0, sr);
  deriv_stencils<2>(value, slope, 1, sc);
  const T* zeros = zero_row<T>(W);
  const int full = W - W % kGroup;
  // Taps -1 .. 1 at the lattice (the slope's), else 0 .. 1.
  constexpr int qlo = LatF::value ? -1 : 0, clo = LatW::value ? -1 : 0;
  const Columns<P> cols(W, m2, clo, 1, full / kGroup);
  // d out / d shift at a column from its taps X(q, c): stencils s (sr or sc)
  auto deriv = [](const Stencil<A>* s, const auto& X) {
    return apply(s[1], 0, [&](int c) { return apply(s[0], 0, [&](int q) { return X(q, c); }); });
  };
  V sum_f = {}, sum_w = {};
  A tail_f = A(0), tail_w = A(0);
  for (int r = r0; r < r0 + rows; ++r) {
    const T* xr[3];  // rows r + m1 - 1 .. r + m1 + 1 of x
    for (int q = -1; q <= 1; ++q) xr[q + 1] = padded_row<P>(xc, rs_x, H, r + m1 + q, zeros);
    const T* go = gc + r * rs_g;
    for_each_vector<I>(cols, last, false, [&](int w, const auto& rd) {
      V xv[3][3];  // each tap read once: both sums' stencils read them (gathers are not merged)
      for (int q = qlo; q <= 1; ++q) {
        for (int c = clo; c <= 1; ++c) xv[q + 1][c + 1] = rd(xr[q + 1], c);
      }
      auto X = [&](int q, int c) { return xv[q + 1][c + 1]; };
      const V gv = widen8<I>(go + w, false);
      sum_f += gv * deriv(sr, X);
      sum_w += gv * deriv(sc, X);
    });
    for (int o = full; o < W; ++o) {
      auto X = [&](int q, int c) { return cols.cell(xr[q + 1], o + m2 + c); };
      const A gv = load<A>(go + o);
      tail_f += gv * deriv(sr, X);
      tail_w += gv * deriv(sc, X);
    }
  }
  for (int l = 0; l < kGroup; ++l) {
    acc[0] += sum_f[l];
    acc[1] += sum_w[l];
  }
  acc[0] += tail_f;
  acc[1] += tail_w;
}
JAXSHIFT_ISA_VERSIONS(shift_grad_direct)

}  // namespace jaxshift
