// Staged planes: the CPU kernel's fast path for walkable calls (at most two
// spatial axes, unit strides).
//
// A task takes one sample and a block of channels and copies each channel
// into a contiguous plane with a halo of K cells on every side, filled by the
// padding rule, in per-thread scratch (it stays in L2). There every read of
// the shift lands inside the padded plane, so the loops (one flat span per
// plane, see span_begin) have no padding test and compile to SIMD; the
// results are copied back. In NHWC the copies are transposes (neighbouring
// channels have different shifts, so a channel's row is strided in place).
// K is the farthest the block's offsets read; a block whose shifts reach
// further than kMaxHalo runs the walks in place (cpu/forward.cc,
// cpu/backward.cc). The loops evaluate core/stencils.h's formulas. Each SIMD
// loop (the copies in and out, and the three plane loops) exists in a
// baseline and an AVX2 + FMA version (cpu/isa.h, JAXSHIFT_ISA_VERSIONS); they
// fuse multiply-adds differently and the shift-gradient sums run in lanes,
// so results agree with the walks to rounding, and each version is
// repeatable bit for bit.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "cpu/isa.h"
#include "cpu/tables.h"
#include "core/elementwise.h"
#include "core/stencils.h"
#include "core/walks.h"

namespace jaxshift {

constexpr int kMaxHalo = 16;

// Padded planes of a block: H x W interiors, halo K, padded rows of Wp.
struct Planes {
  int H, W, K, Wp;
  int64_t pitch;  // elements between the planes of a block
  // Offset of interior cell (r, c); r and c may reach K into the halo.
  int64_t at(int r, int c) const { return int64_t{r + K} * Wp + c + K; }
  // The planes as core/geometry.h axes (origin at interior (0, 0)).
  void axes(Axis* ax) const {
    ax[0] = Axis{1, 1, 1, 0, 0, false};
    ax[1] = Axis{H, H, 1, Wp, Wp, true};
    ax[2] = Axis{W, W, 1, 1, 1, true};
  }
};

// The pitch is the padded plane rounded up to a cache line, plus one line, so
// that planes do not start 4 KiB apart: the transposes touch all the planes
// of a block at once, which would then share L1 sets.
template <typename T>
Planes make_planes(int H, int W, int K) {
  const int64_t line = std::max<int64_t>(1, 64 / static_cast<int64_t>(sizeof(T)));
  const int64_t area = int64_t{H + 2 * K} * (W + 2 * K);
  return Planes{H, W, K, W + 2 * K, (area + line - 1) / line * line + line};
}

// Channels a staged block holds: one 64-byte line of them (fewer if C is
// smaller); staging applies while a block's padded planes fit the budget.
template <typename T>
int64_t staged_block(const Geometry& geo) {
  return std::min<int64_t>(geo.C, std::max<int64_t>(1, 64 / static_cast<int64_t>(sizeof(T))));
}

template <typename T>
bool use_staging(const Geometry& geo) {
  if (!walkable(geo)) return false;
  const Planes pl = make_planes<T>(geo.ax[1].L, geo.ax[2].L, kMaxHalo);
  return staged_block<T>(geo) * pl.pitch * static_cast<int64_t>(sizeof(T)) <= (int64_t{2} << 20);
}

// The farthest (in cells) that channels [c0, c0 + nb) of sample n read from
// their own position along axes 1 and 2: offsets m and m + 1, plus `extra`.
// NaN shifts read nothing. More than kMaxHalo means "too far".
template <typename A>
int block_halo(const Geometry& geo, const Tables& tab, int64_t n, int64_t c0, int64_t nb,
               int extra) {
  int64_t k = 0;
  for (int64_t b = 0; b < nb; ++b) {
    const ChannelTables<A> ct = channel_tables<A>(geo, tab, n, c0 + b);
    if (nan_shift(ct.f)) continue;
    for (int a = 1; a < 3; ++a) {
      const int64_t m = ct.m[a];
      k = std::max({k, m < 0 ? -m : m, m + 1 < 0 ? -(m + 1) : m + 1});
    }
  }
  return static_cast<int>(std::min<int64_t>(k + extra, kMaxHalo + 1));
}

// Per-thread scratch of at least n elements, kept between calls.
template <typename T>
T* scratch(size_t n) {
  thread_local std::vector<T> buf;
  if (buf.size() < n) buf.resize(n);
  return buf.data();
}

// Where the channels of a block live: origin, channel stride, row and column
// strides (elements).
template <typename T>
struct Block {
  T* p;
  int64_t cs, rs, ws;
};

// Transposes S x S tiles (S pixels x S channels in the array, S channels x
// S pixels in the planes) with tr(src, src_stride, dst, dst_stride), columns
// w0 onwards; returns the first column left for the caller.
template <int S, typename Tr>
int transpose_tiles(Block<float> blk, int64_t nb, float* planes, const Planes& pl, bool to_planes,
                    int w0, const Tr& tr) {
  for (int r = 0; r < pl.H; ++r) {
    for (int w = w0; w + S <= pl.W; w += S) {
      float* a = blk.p + r * blk.rs + w * blk.ws;
      float* q = planes + pl.at(r, w);
      prefetch_pixels(a, blk.ws, S, to_planes);
      for (int64_t b = 0; b < nb; b += S) {
        if (to_planes) {
          tr(a + b, blk.ws, q + b * pl.pitch, pl.pitch);
        } else {
          tr(q + b * pl.pitch, pl.pitch, a + b, blk.ws);
        }
      }
    }
  }
  return pl.W - (pl.W - w0) % S;
}

// Copies the block's channels into (to_planes) or out of the planes'
// interiors. Channels-first rows are contiguous copies; channels-last is a
// transpose, for float in 8x8 tiles of AVX registers (I = kAvx2) or 4x4 tiles
// of SSE registers.
template <Isa I, typename T>
void copy_planes_impl(Block<T> blk, int64_t nb, T* planes, Planes pl, bool to_planes) {
  const int H = pl.H, W = pl.W;
  if (blk.ws == 1) {
    for (int64_t b = 0; b < nb; ++b) {
      for (int r = 0; r < H; ++r) {
        T* a = blk.p + b * blk.cs + r * blk.rs;
        T* q = planes + b * pl.pitch + pl.at(r, 0);
        if (to_planes) std::copy(a, a + W, q); else std::copy(q, q + W, a);
      }
    }
    return;
  }
  int w0 = 0;
  if constexpr (std::is_same_v<T, float>) {
#if defined(JAXSHIFT_X86_AVX2)
    if constexpr (I == Isa::kAvx2) {
      if (blk.cs == 1 && nb % 8 == 0) {
        w0 = transpose_tiles<8>(blk, nb, planes, pl, to_planes, w0,
                                [](auto... args) { transpose8x8(args...); });
      }
    }
#endif
#if defined(__SSE2__)
    if (blk.cs == 1 && nb % 4 == 0) {
      w0 = transpose_tiles<4>(blk, nb, planes, pl, to_planes, w0,
                              [](auto... args) { transpose4x4(args...); });
    }
#endif
  }
  for (int r = 0; r < H; ++r) {
    for (int w = w0; w < W; ++w) {
      T* a = blk.p + r * blk.rs + w * blk.ws;
      T* q = planes + pl.at(r, w);
      for (int64_t b = 0; b < nb; ++b) {
        if (to_planes) q[b * pl.pitch] = a[b * blk.cs]; else a[b * blk.cs] = q[b * pl.pitch];
      }
    }
  }
}
JAXSHIFT_ISA_VERSIONS(copy_planes)

// Fills the halo of each of nb planes from its interior by the padding rule
// P (stage_planes zeroes the halos of P = kZeros).
template <int P, typename T>
void fill_halo(T* planes, int64_t nb, const Planes& pl) {
  const int K = pl.K, H = pl.H, W = pl.W;
  if (K == 0) return;
  for (int64_t b = 0; b < nb; ++b) {
    T* q = planes + b * pl.pitch;
    auto cell = [&](int r, int c) {  // interior coordinates of a halo cell
      const int sr = pad_index<P>(r, H), sc = pad_index<P>(c, W);
      q[pl.at(r, c)] = (sr < 0 || sc < 0) ? T{} : q[pl.at(sr, sc)];
    };
    for (int r = -K; r < H + K; ++r) {
      if (r < 0 || r >= H) {
        for (int c = -K; c < W + K; ++c) cell(r, c);
      } else {
        for (int c = -K; c < 0; ++c) cell(r, c);
        for (int c = W; c < W + K; ++c) cell(r, c);
      }
    }
  }
}

// Copies the block's channels into padded planes and fills their halos by
// the padding rule P. Zero halos come from one fill of the whole block before
// the copy (one pass over the planes is cheaper than a small fill per row).
template <int P, typename T>
void stage_planes(Isa isa, Block<T> blk, int64_t nb, T* planes, const Planes& pl) {
  if (P == kZeros && pl.K > 0) std::fill(planes, planes + nb * pl.pitch, T{});
  copy_planes(isa, blk, nb, planes, pl, true);
  if (P != kZeros) fill_halo<P>(planes, nb, pl);
}

// The staged loops run over a plane's rows as one flat span, from interior
// (0, 0) to the end of interior row H - 1, halo columns between the rows
// included: a read at a constant offset of the padded layout is then one
// long SIMD loop. The values computed at halo columns are never copied out;
// every read stays inside the padded plane because K covers the offsets.
inline int64_t span_begin(const Planes& p) { return p.at(0, 0); }
inline int64_t span_end(const Planes& p) { return p.at(p.H - 1, p.W); }

// Forward of one channel: padded plane xs -> plane ys of the same layout
// (its halo is not written). Element i of the span reads x at (row + m1 + r,
// column + m2 + c) for the taps (r, c) of the two value stencils.
template <Isa I, typename A, typename T, typename LatF, typename LatW>
void forward_plane_impl(const T* xs, T* ys, Planes p, int m1, int m2, A ff, A fw, LatF lat_f,
                        LatW lat_w) {
  const int64_t i0 = span_begin(p), i1 = span_end(p), wp = p.Wp;
  const T* __restrict x0 = xs + (int64_t{m1} * wp + m2);
  T* __restrict yo = ys;
  const Stencil<A> sf = value_stencil(ff, lat_f), sw = value_stencil(fw, lat_w);
  for (int64_t i = i0; i < i1; ++i) {
    const T* xi = x0 + i;
    store(yo + i, apply(sw, 0, [&](int c) {
            return apply(sf, 0, [&](int r) { return load<A>(xi + r * wp + c); });
          }));
  }
}
JAXSHIFT_ISA_VERSIONS(forward_plane)

// An integer move of one channel (f == 0 on both axes): a pure copy.
template <Isa I, typename T>
void move_plane_impl(const T* xs, T* ys, Planes p, int m1, int m2) {
  const T* __restrict x0 = xs + (int64_t{m1} * p.Wp + m2);
  T* __restrict yo = ys;
  for (int64_t i = span_begin(p); i < span_end(p); ++i) yo[i] = x0[i];
}
JAXSHIFT_ISA_VERSIONS(move_plane)

// Input gradient of one channel, the plain transposed stencils: padded g
// plane gs (halo by the adjoint's padding: zeros, or wrapped) -> dx plane of
// the same layout. Exact for zeros and periodic; for the other paddings
// adjoint_plane_edges then corrects the cells near the edges.
template <Isa I, typename A, typename T, typename LatF, typename LatW>
void adjoint_plane_impl(const T* gs, T* dxs, Planes p, int m1, int m2, A ff, A fw, LatF lat_f,
                        LatW lat_w) {
  const int64_t i0 = span_begin(p), i1 = span_end(p), wp = p.Wp;
  const T* __restrict g0 = gs - (int64_t{m1} * wp + m2);  // g0[i] = g(h - m1, w - m2)
  T* __restrict dxo = dxs;
  const Stencil<A> sf = value_stencil(ff, lat_f), sw = value_stencil(fw, lat_w);
  for (int64_t i = i0; i < i1; ++i) {
    const T* gi = g0 + i;
    store(dxo + i, apply_adjoint(sw, 0, [&](int c) {
            return apply_adjoint(sf, 0, [&](int q) { return load<A>(gi + q * wp + c); });
          }));
  }
}
JAXSHIFT_ISA_VERSIONS(adjoint_plane)

// The cells of a dx plane outside simple_interval, for the paddings that fold
// reads near the edges (border, reflect, symmetric): adjoint_value there.
template <int P, typename A, typename T>
void adjoint_plane_edges(const T* gs, T* dxs, const Planes& p, const ChannelTables<A>& r) {
  if (P == kZeros || P == kPeriodic) return;
  Axis ax[3];
  p.axes(ax);
  int flo, fhi, wlo, whi;
  simple_interval<P>(ax[1], r.m[1], &flo, &fhi);
  simple_interval<P>(ax[2], r.m[2], &wlo, &whi);
  const int m3[3] = {0, r.m[1], r.m[2]};
  const A f3[3] = {A(0), r.f[1], r.f[2]};
  const T* g = gs + p.at(0, 0);
  for (int i = 0; i < p.H; ++i) {
    const bool row_simple = i >= flo && i <= fhi;
    for (int w = 0; w < p.W; ++w) {
      if (row_simple && w >= wlo && w <= whi) {
        w = whi;  // skip to the right edge
        continue;
      }
      const int pos[3] = {0, i, w};
      store(dxs + p.at(i, w), adjoint_value_outlined<P, A>(g, ax, pos, m3, f3));
    }
  }
}

// Shift-gradient sums of one channel: x plane padded by the padding rule, g
// plane (any halo), one layout. Adds the sum for axis 1 to acc[0] (the slope
// across rows, the value along them) and for axis 2 to acc[1] (the value
// across, the slope along). The terms are summed in kLanes running sums
// carried across the rows (SIMD lanes; a row's tail past a multiple of
// kLanes goes to one more), then the sums in a fixed order: repeatable bit
// for bit.
template <Isa I, typename A, typename T, typename LatF, typename LatW>
void shift_grad_plane_impl(const T* xs, const T* gs, Planes p, int m1, int m2, A ff, A fw,
                           LatF lat_f, LatW lat_w, A* acc) {
  constexpr int kLanes = 8;
  const int W = p.W, full = W - W % kLanes;
  const int64_t wp = p.Wp;
  // Axis 0 of the stencils is the rows, 1 the columns; s[a] are those of
  // d out / d shift_a (core/stencils.h).
  const Stencil<A> value[2] = {value_stencil(ff, lat_f), value_stencil(fw, lat_w)};
  const Stencil<A> slope[2] = {slope_stencil<A>(lat_f), slope_stencil<A>(lat_w)};
  Stencil<A> sr[2], sc[2];
  deriv_stencils<2>(value, slope, 0, sr);
  deriv_stencils<2>(value, slope, 1, sc);
  A sum_f[kLanes + 1] = {}, sum_w[kLanes + 1] = {};
  for (int row = 0; row < p.H; ++row) {
    const T* __restrict x0 = xs + p.at(row + m1, m2);  // x0[o] = x(row + m1, o + m2)
    const T* __restrict go = gs + p.at(row, 0);
    auto add = [&](int o, int l) {
      const T* xo = x0 + o;
      auto X = [&](int q, int c) { return load<A>(xo + q * wp + c); };
      const A gv = load<A>(go + o);
      sum_f[l] += gv * apply(sr[1], 0, [&](int c) {
        return apply(sr[0], 0, [&](int q) { return X(q, c); });
      });
      sum_w[l] += gv * apply(sc[1], 0, [&](int c) {
        return apply(sc[0], 0, [&](int q) { return X(q, c); });
      });
    };
    for (int o = 0; o < full; o += kLanes) {
#pragma omp simd
      for (int l = 0; l < kLanes; ++l) add(o + l, l);
    }
    for (int o = full; o < W; ++o) add(o, kLanes);
  }
  for (int l = 0; l <= kLanes; ++l) {
    acc[0] += sum_f[l];
    acc[1] += sum_w[l];
  }
}
JAXSHIFT_ISA_VERSIONS(shift_grad_plane)

}  // namespace jaxshift
