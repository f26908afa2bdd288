// Channel lanes: the CPU kernel's path for calls of at least 8 channels,
// 2 or 3 spatial axes, any strides, in channels-last, and in channels-first
// where the direct rows (cpu/direct.h) and the staged planes do not apply
// (strides; 16-bit 3-D active calls); 16-bit storage not for the 2-D
// unit-stride active forward but in channels-last, nor the 2-D unit-stride
// backward but the channels-last one pass and, in either layout, the two
// passes of a padding that folds (use_lanes).
//
// In channels-last a pixel's channels are contiguous, so 8 channels are one
// vector of lanes. Each lane (channel) reads its own offset (m1, m2); a row
// of those reads is one hardware gather per 8 channels and pixel, its
// indices a per-lane row term plus a per-lane column term, both through the
// padding rule (pad_index), so there is no staging, no halo and no
// transpose, and no shift is too far. What the gathers produce is a "moved
// row": M_h[w] = P(h + m1, w + m2) per lane, where the stencils' taps sit at
// the same offsets for every lane (rows h and h + 1, columns w and w + 1 in
// the forward). The stencils are then plain vector arithmetic with per-lane
// weights on a ring of moved rows in L1, and the outputs are stored as they
// are: a pixel's 8 channels are one contiguous vector of y.
//
//  - forward, integer moves: y[h, w] = M_h[w] (gathered straight to y, raw
//    bits); otherwise the value stencils of core/stencils.h over M_h, M_h+1;
//  - input gradient: the transposed stencils over the moved rows of g
//    through the adjoint's padding; in the clamped and mirrored paddings an
//    element adds the adjoint at each position folded onto it (its moved
//    rows reach the folded columns; folded rows and planes are gathered
//    for the rows they fold onto). With strides the folded elements take
//    adjoint_value one by one, as in cpu/staged.h;
//  - shift gradient: d out / d shift on moved rows h - 1 .. h + 1 of x,
//    times g, summed per lane over the task's pixels in order (repeatable
//    bit for bit; the per-task partials are added in order as before);
//  - float32 channels-last backwards in one pass (2-D unit strides, 2-D
//    strides >= 2, 3-D unit strides spanning planes; paddings that fold
//    nothing): the shift gradient in its adjoint form, x read in place
//    times the transposed stencils on the moved rows of g that the input
//    gradient reads anyway (lanes_backward*_impl).
//
// A row is taken one group at a time (a group's moved rows contiguous), so
// that the group's weights, row and column terms stay in registers along
// the row and a column's rows' value serves both outputs that read it. For
// groups with no lane at a lattice or NaN the stencils are fused with the
// reads: the 2-D forward of unit strides (fused_row: each column of the
// next moved row gathered, used and kept in one step), strided forwards
// (strided_row: the four taps gathered into the stencil), 3-D spans
// (span_row), the one-pass backwards (backward_row, backward3_row), the
// two-pass shift gradient's 2-D rows (shift_grad_row); and integer moves in
// channels-last (move_row). A hot 1x32x32x64 float32 forward took 4.5 ns a
// vector with the groups side by side in each column, 2.8 ns so
// (benchmarks/NOTES.md, v17); the two-pass backward (folding paddings,
// float64, 3-D) followed in v20. The exception: groups whose channels share
// 64-byte lines go together, a column of all of them at a time, in the
// channels-last 2-D active forward (fused_pair: float32, and 16-bit
// storage, whose pairs are half a line) and integer moves (move_line),
// because a pixel of 1024 float32 channels is a 4 KB page and
// all of a group's lines then fall in one L1 set: group by group, the
// second group of a line read it again from L2 (v22). 16-bit storage in
// AVX2 reads a pair as its moves do, two gathers and a word blend
// (fused_pair's Pair16, move_line; v24, v25).
//
// Window rows (v40): the 2-D float32 channels-last forward of a full group
// of at most 64 channels a pixel whose integer offsets span at most 4 values
// an axis takes no gathers where its taps' window lies inside x: each lane
// picks its rows and columns by blends from plain vector loads of the
// window (window_row for the stencils, window_move for integer moves; the
// gathers' bits), 0.5-0.7x the gathers' loop on Zen 3.
//
// In 3-D a gather's row index also carries a per-lane depth term (through
// the padding), so a moved row can come from any plane: the forward and
// the input gradient combine the 2-D stencils on the planes at their depth
// taps with the depth stencil (outermost, as core/stencils.h's tensor3),
// the shift gradient reads the planes at depth taps -1 .. 1. With strides,
// the forward and the shift gradient gather two or three column sets and
// the rows of each output row; the input gradient gathers, per lane, the
// outputs whose taps land on the input (where i - m - tap divides by the
// stride), straight from g.
//
// Channels-first is the same with a lane's channel offset l * (channel
// stride) in every index: the gathers read 8 planes, the stores are 8
// scalars (a group's pixels in turn, so 8 rows of y are written at a time).
//
// Lanes at the lattice (f == 0) take the one-tap stencils, lanes of a NaN
// shift the NaN rule, by per-lane selection. The gathers are AVX2's
// (vgatherdps, vgatherdpd, vpgatherdd for 16-bit storage, which reads the
// 32 bits at each element: a lane that would read past the end of the
// buffer is read alone) in the AVX2 version and a loop over lanes in the
// baseline (cpu/isa.h).
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <utility>
#include <vector>

#include "cpu/staged.h"

#if defined(JAXSHIFT_X86_AVX2)
#include <immintrin.h>
#endif

namespace jaxshift {

typedef int32_t i32x8 __attribute__((vector_size(32)));

// --- Gathers --------------------------------------------------------------

#if defined(JAXSHIFT_X86_AVX2)
// out[l] = mask[l] < 0 ? base[idx[l]] : 0, one AVX2 gather (pointer
// arguments: these may be called where AVX is not enabled).
__attribute__((target("avx2"))) inline void gather_avx2(const float* base, const i32x8* idx,
                                                        const i32x8* mask, float* out) {
  const __m256 v = _mm256_mask_i32gather_ps(_mm256_setzero_ps(), base, (__m256i)*idx,
                                            (__m256)*mask, 4);
  _mm256_storeu_ps(out, v);
}
__attribute__((target("avx2"))) inline void gather_avx2(const double* base, const i32x8* idx,
                                                        const i32x8* mask, double* out) {
  const __m256i i = (__m256i)*idx, k = (__m256i)*mask;
  const __m256d lo = _mm256_mask_i32gather_pd(
      _mm256_setzero_pd(), base, _mm256_castsi256_si128(i),
      _mm256_castsi256_pd(_mm256_cvtepi32_epi64(_mm256_castsi256_si128(k))), 8);
  const __m256d hi = _mm256_mask_i32gather_pd(
      _mm256_setzero_pd(), base, _mm256_extracti128_si256(i, 1),
      _mm256_castsi256_pd(_mm256_cvtepi32_epi64(_mm256_extracti128_si256(k, 1))), 8);
  _mm256_storeu_pd(out, lo);
  _mm256_storeu_pd(out + 4, hi);
}
// 16-bit storage: the 32 bits at each element (the element in the low half).
__attribute__((target("avx2"))) inline void gather_avx2(const uint16_t* base, const i32x8* idx,
                                                        const i32x8* mask, uint32_t* out) {
  const __m256i v = _mm256_mask_i32gather_epi32(_mm256_setzero_si256(),
                                                reinterpret_cast<const int*>(base),
                                                (__m256i)*idx, (__m256i)*mask, 2);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), v);
}
// 16 channels of 16-bit storage at out, in memory order, from two gathers
// (move_line): the even channels' lanes (indices `even`, pair_terms' order)
// read the 32 bits that start at their element (the low half), the odd
// channels' (`odd`: their elements' indices less one) the 32 bits that end
// at theirs (the high half), so one word blend interleaves them. Each read
// stays within its pixel's pair of channels. A lane whose mask is clear
// reads nothing and is 0.
__attribute__((target("avx2"), always_inline)) inline __m256i gather16_avx2(const uint16_t* base,
                                                                           const i32x8* even,
                                                                           const i32x8* me,
                                                                           const i32x8* odd,
                                                                           const i32x8* mo) {
  const __m256i zero = _mm256_setzero_si256();
  const __m256i e = _mm256_mask_i32gather_epi32(zero, reinterpret_cast<const int*>(base),
                                                (__m256i)*even, (__m256i)*me, 2);
  const __m256i o = _mm256_mask_i32gather_epi32(zero, reinterpret_cast<const int*>(base),
                                                (__m256i)*odd, (__m256i)*mo, 2);
  return _mm256_blend_epi16(e, o, 0xAA);
}
__attribute__((target("avx2"))) inline void move16_avx2(const uint16_t* base, const i32x8* even,
                                                        const i32x8* me, const i32x8* odd,
                                                        const i32x8* mo, uint16_t* out) {
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), gather16_avx2(base, even, me, odd, mo));
}
// move16_avx2's 16 channels widened to float, as widen8 does them
// (fused_pair's Pair16): float16 by F16C, the first 8 to out[0 .. 8) and
// the next 8 to out[8 .. 16); bfloat16's bits to the high half, in unpack
// order: channels 0-3 and 8-11 to out[0 .. 8), 4-7 and 12-15 to
// out[8 .. 16) (store16_bf16_avx2's order).
__attribute__((target("avx2,f16c"))) inline void read16_avx2(const uint16_t* base,
                                                             const i32x8* even, const i32x8* me,
                                                             const i32x8* odd, const i32x8* mo,
                                                             bool half, float* out) {
  const __m256i b = gather16_avx2(base, even, me, odd, mo);
  if (half) {
    _mm256_storeu_ps(out, _mm256_cvtph_ps(_mm256_castsi256_si128(b)));
    _mm256_storeu_ps(out + 8, _mm256_cvtph_ps(_mm256_extracti128_si256(b, 1)));
    return;
  }
  const __m256i zero = _mm256_setzero_si256();
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), _mm256_unpacklo_epi16(zero, b));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 8), _mm256_unpackhi_epi16(zero, b));
}
// 16 float16 channels (narrow8's rounding) from a (channels 0-7) and b
// (8-15): F16C's conversions, one unordered compare of both for NaN (then
// narrow8_f16c's NaN rule), one store.
__attribute__((target("avx2,f16c"))) inline void store16_f16c(const f32x8* a, const f32x8* b,
                                                              uint16_t* out) {
  if (_mm256_movemask_ps(_mm256_cmp_ps((__m256)*a, (__m256)*b, _CMP_UNORD_Q))) {
    narrow8_f16c(reinterpret_cast<const float*>(a), out);
    narrow8_f16c(reinterpret_cast<const float*>(b), out + kGroup);
    return;
  }
  constexpr int kRound = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out),
                      _mm256_set_m128i(_mm256_cvtps_ph((__m256)*b, kRound),
                                       _mm256_cvtps_ph((__m256)*a, kRound)));
}
// 16 bfloat16 channels in memory order (narrow8's rounding) from a
// (channels 0-3, 8-11) and b (4-7, 12-15): one pack, and narrow8's NaN
// rule only where a lane is NaN (one compare for both).
__attribute__((target("avx2"))) inline void store16_bf16_avx2(const f32x8* a, const f32x8* b,
                                                              uint16_t* out) {
  const bool nan = _mm256_movemask_ps(_mm256_cmp_ps((__m256)*a, (__m256)*b, _CMP_UNORD_Q));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out),
                      _mm256_packus_epi32(bf16_bits8_avx2(*a, nan), bf16_bits8_avx2(*b, nan)));
}
#endif

// The terms of two groups' lanes (channels 8 g .. 8 g + 15) in move16_avx2's
// order: `a` takes the even channels', `b` the odd channels'.
inline void pair_terms(i32x8* a, i32x8* b) {
  const i32x8 u = *a, v = *b;
  *a = __builtin_shufflevector(u, v, 0, 2, 4, 6, 8, 10, 12, 14);
  *b = __builtin_shufflevector(u, v, 1, 3, 5, 7, 9, 11, 13, 15);
}

// move16_avx2's indices and masks for a pair at row terms re, ro and column
// terms ce, co (pair_terms' order): the odd channels' reads start one
// element before theirs; a lane whose term is -1 reads nothing.
struct Pair16At {
  i32x8 even, me, odd, mo;
};
__attribute__((always_inline)) inline Pair16At pair16_at(i32x8 re, i32x8 ro, i32x8 ce,
                                                         i32x8 co) {
  return {re + ce, (re | ce) >= 0, ro + co - 1, (ro | co) >= 0};
}

// The storage bits a gather of T reads per lane.
template <typename T>
using GatherBits = std::conditional_t<sizeof(T) == 2, uint32_t, T>;
template <typename T>
using GatherBase = std::conditional_t<sizeof(T) == 2, uint16_t, T>;

// 8 lanes of storage T at base[idx[l]] where mask[l] < 0 (else 0), in the
// accumulation type (widen8's rules; `bits`: raw bits). `last`: the index,
// relative to base, of the buffer's last element, or -1 if it is not near:
// 16-bit gathers read 32 bits, so a lane at `last` is read alone.
template <Isa I, typename T>
__attribute__((always_inline)) inline Vec8<typename Acc<T>::type> gather8(
    const T* base, i32x8 idx, i32x8 mask, bool bits, int32_t last) {
  using A = typename Acc<T>::type;
  using Bits = GatherBits<T>;
  typedef Bits BitsV __attribute__((vector_size(8 * sizeof(Bits))));
  BitsV raw;
  bool done = false;
#if defined(JAXSHIFT_X86_AVX2)
  if constexpr (I == Isa::kAvx2) {
    if constexpr (sizeof(T) == 2) {
      const i32x8 hit = (idx == last) & mask;  // (last < 0 never hits)
      uint64_t any[4];
      std::memcpy(any, &hit, sizeof any);
      if (any[0] | any[1] | any[2] | any[3]) {  // that lane alone, without reading past
        Bits r[8];
        const i32x8 rest = mask & ~hit;
        gather_avx2(reinterpret_cast<const uint16_t*>(base), &idx, &rest, r);
        for (int l = 0; l < 8; ++l) {
          if (hit[l]) r[l] = bitcast<uint16_t>(base[last]);
        }
        raw = loadu<BitsV>(r);
        done = true;
      }
    }
    if (!done) {
      Bits r[8];
      gather_avx2(reinterpret_cast<const GatherBase<T>*>(base), &idx, &mask, r);
      raw = loadu<BitsV>(r);
      done = true;
    }
  }
#endif
  if (!done) {
    for (int l = 0; l < 8; ++l) {
      if constexpr (sizeof(T) == 2) {
        raw[l] = mask[l] < 0 ? bitcast<uint16_t>(base[idx[l]]) : 0u;
      } else {
        raw[l] = mask[l] < 0 ? base[idx[l]] : T(0);
      }
    }
  }
  (void)last;
  if constexpr (sizeof(T) == 2) {
    return widen8_bits<I>(static_cast<const T*>(nullptr), __builtin_convertvector(raw, u16x8), bits);
  } else {
    return raw;
  }
}

// --- Lanes ----------------------------------------------------------------

// The shift tables of 8 channels as lanes: integer offsets, the value
// stencils' weights, the lattice and NaN masks.
template <typename A>
struct Lanes {
  using V = Vec8<A>;
  using M = decltype(V{} == V{});  // a lane mask of A's width
  i32x8 m0, m1, m2;
  V w0f, w1f, w0w, w1w;  // value stencil weights along rows (f) and columns (w)
  V w0d, w1d;            // and along depth (axis 0; 3-D forwards)
  M lat_d, lat_f, lat_w, nan;  // at the lattice on each axis; NaN shift
  M up_d, up_f, up_w;    // a move one cell beyond m (the one-pass backwards' rounded tables)
  V nan_fill;            // a NaN lane's value (nan_value)
  i32x8 depth[3];        // the task's depth terms of its plane's taps
  int n;                 // lanes in use (the rest read nothing, store nothing)
  bool all_lat_d, all_lat_f, all_lat_w, any_lat, any_nan;
  bool any_lat_f, any_lat_w;  // some lane at the lattice of rows, of columns
  bool plain;            // no lane at the lattice or NaN: no selection
  bool uniform;          // 8 lanes, every one at the same offsets (read8)
  int unit;              // lanes_forward: the groups read as one from here (0: inside one)
  // lanes_forward's window rows (window_row, window_move): whether the
  // group takes them where its window is inside x, its least offsets (and
  // its rows' greatest), and whether its last row took them (the stencils'
  // window ring then holds the rows' picks).
  bool window, in_window;
  int lo1, hi1, lo2;
};

// Built in place (every field written): a Lanes returned by value was
// zeroed and then copied whole (rep stos, rep movs: 4 % of a 32x8x8x192
// forward, 24 groups a task).
template <typename A>
void make_lanes(const ChannelTables<A>* ct, int n, Lanes<A>* out) {
  Lanes<A>& ln = *out;
  ln.up_d = ln.up_f = ln.up_w = typename Lanes<A>::M{};
  for (i32x8& d : ln.depth) d = i32x8{};
  ln.n = n;
  ln.unit = 1;
  ln.window = ln.in_window = false;
  ln.lo1 = ln.hi1 = ln.lo2 = 0;
  // The 8 channels' tables as vectors (lanes past n repeat channel 0), then
  // every field a vector at a time: element by element, 192 channels took
  // 1.15 us, a sixth of a 1x8x8x192 sample's forward.
  using V = Vec8<A>;
  using M = typename Lanes<A>::M;
  V f0, f1, f2;
  i32x8 m0, m1, m2;
  for (int l = 0; l < 8; ++l) {
    const ChannelTables<A>& c = ct[l < n ? l : 0];
    m0[l] = c.m[0];
    m1[l] = c.m[1];
    m2[l] = c.m[2];
    f0[l] = c.f[0];
    f1[l] = c.f[1];
    f2[l] = c.f[2];
  }
  const M nan = (f0 != f0) | (f1 != f1) | (f2 != f2);  // nan_shift
  const M z0 = f0 == V{}, z1 = f1 == V{}, z2 = f2 == V{};  // at_lattice
  const V one = V{} + A(1);
  ln.w0d = z0 ? one : one - f0;  // value_stencil: {1, 0} at the lattice, else {1 - f, f}
  ln.w1d = z0 ? V{} : f0;
  ln.w0f = z1 ? one : one - f1;
  ln.w1f = z1 ? V{} : f1;
  ln.w0w = z2 ? one : one - f2;
  ln.w1w = z2 ? V{} : f2;
  const i32x8 nan32 = __builtin_convertvector(nan, i32x8);
  ln.m0 = nan32 ? i32x8{} : m0;
  ln.m1 = nan32 ? i32x8{} : m1;
  ln.m2 = nan32 ? i32x8{} : m2;
  ln.lat_d = nan | z0;
  ln.lat_f = nan | z1;
  ln.lat_w = nan | z2;
  ln.nan = nan;
  ln.nan_fill = nan ? f0 + f1 + f2 : V{};  // nan_value
  ln.all_lat_d = ln.all_lat_f = ln.all_lat_w = true;
  ln.any_lat = ln.any_nan = ln.any_lat_f = ln.any_lat_w = false;
  for (int l = 0; l < n; ++l) {
    const bool ld = ln.lat_d[l], lf = ln.lat_f[l], lw = ln.lat_w[l];
    ln.all_lat_d &= ld;
    ln.all_lat_f &= lf;
    ln.all_lat_w &= lw;
    ln.any_lat |= lf || lw;
    ln.any_lat_f |= lf;
    ln.any_lat_w |= lw;
    ln.any_nan |= ln.nan[l] != 0;
  }
  ln.plain = !ln.any_lat && !ln.any_nan;
  ln.uniform = n == kGroup;
  for (int l = 1; l < kGroup; ++l) {
    ln.uniform &= ln.m0[l] == ln.m0[0] && ln.m1[l] == ln.m1[0] && ln.m2[l] == ln.m2[0];
  }
}

// Where a task's lanes live: `p` is channel c0 of the task's first pixel
// (0, 0) of the sample; row, column and channel strides in elements (cs: 1
// in channels-last, where a group's lanes are one vector of memory); `last`
// the index, relative to p, of the buffer's last element if it is within
// 2^31, else -1.
template <typename T>
struct LaneArray {
  T* p;
  int64_t rs, ws;
  int32_t last;
  int64_t cs;
};

// Per-lane column terms of a group: col[i][l] = pad_index((w0 + i) * t +
// tap + dm[l], W) * ws + the lane's channel offset (lane0 + l) * cs, or -1
// where the read is answered by zero, for i in [0, count). Columns where
// every lane reads inside the row (pad_index the identity, for every
// padding) are one progression of vectors, step t * ws; only the edges take
// pad_index lane by lane (a 2x56x56x1024 call spent 124-131 us of thread
// time here lane by lane, benchmarks/NOTES.md, v34). The terms inside are
// offsets of x, which the caller checked fit in 32 bits (a lane past the
// group's channels wraps mod 2^32 either way).
template <int P>
void column_terms(const i32x8& dm, int W, int64_t ws, int64_t cs, int lane0, int w0, int count,
                  i32x8* col, int t = 1, int tap = 0) {
  auto edge = [&](int i) {
    for (int l = 0; l < 8; ++l) {
      const int s = pad_index<P>((w0 + i) * t + tap + dm[l], W);
      col[i][l] = s < 0 ? -1 : static_cast<int32_t>(s * ws + (lane0 + l) * cs);
    }
  };
  int lo = dm[0], hi = dm[0];
  for (int l = 1; l < 8; ++l) {
    lo = std::min(lo, dm[l]);
    hi = std::max(hi, dm[l]);
  }
  // Column i is inside for every lane where 0 <= (w0 + i) * t + tap + lo and
  // (w0 + i) * t + tap + hi <= W - 1.
  const int i0 = std::clamp(floor_div(t - 1 - tap - lo, t) - w0, 0, count);
  const int i1 = std::clamp(floor_div(W - 1 - tap - hi, t) - w0 + 1, i0, count);
  int i = 0;
  for (; i < i0; ++i) edge(i);
  if (i < i1) {
    typedef uint32_t u32x8 __attribute__((vector_size(32)));  // mod 2^32, as edge()'s cast
    const u32x8 lane = {0, 1, 2, 3, 4, 5, 6, 7};
    const uint32_t step = static_cast<uint32_t>(t * ws);
    u32x8 v = (u32x8)(dm + ((w0 + i) * t + tap)) * static_cast<uint32_t>(ws) +
              (lane + static_cast<uint32_t>(lane0)) * static_cast<uint32_t>(cs);
    for (; i < i1; ++i, v += step) col[i] = (i32x8)v;
  }
  for (; i < count; ++i) edge(i);
}

// Axis 0 (depth) of a 3-D call at one plane of a task: the length and
// stride of the array read along it (x, or g in the input gradient) and the
// plane's tap origin before the shift (output index times stride; the input
// index in the input gradient). A 2-D call has L = 1, pos = 0.
struct Depth {
  int L;
  int64_t s;
  int pos;
};

// The per-lane depth term of tap dd (-1 .. 1) at offsets dm: pad_index(pos +
// dm + dd, L) * s, or -1.
template <int P>
i32x8 depth_term(const i32x8& dm, const Depth& dp, int dd) {
  i32x8 r;
  for (int l = 0; l < 8; ++l) {
    const int s = pad_index<P>(dp.pos + dm[l] + dd, dp.L);
    r[l] = s < 0 ? -1 : static_cast<int32_t>(s * dp.s);
  }
  return r;
}

// The per-lane row term of row h read at offsets dm: pad_index(h + dm, H) *
// rs plus the depth term, or -1 where either is -1; lanes >= n read nothing.
// Taken a row and group: in vector arithmetic where every lane reads inside
// the rows (most rows: row_term_inside, the same for every padding), lane
// by lane through the padding only at the edges (a term stored lane by lane
// and loaded whole stalled on the store forwarding: 17 % of a reflect
// forward's samples, v20). `zeros` (zeros padding, whose rows outside read
// nothing): every row in vector arithmetic (the edges' out-of-line call
// was 9 % of a 32x8x8x192 forward, whose 8 rows are mostly edges, v25).
__attribute__((always_inline)) inline bool row_term_inside(const i32x8& dm, int h, int H,
                                                          int64_t rs, int n, const i32x8& depth,
                                                          i32x8* r, bool zeros = false) {
  const i32x8 lane = {0, 1, 2, 3, 4, 5, 6, 7};
  const i32x8 j = dm + h;
  const i32x8 inside = (j >= 0) & (j < H);
  i32x8 live = (lane < n) & (depth >= 0);
  if (zeros) {
    live &= inside;
  } else {
    const i32x8 edge = live & ~inside;
    int any = 0;
    for (int l = 0; l < 8; ++l) any |= edge[l];
    if (any) return false;
  }
  typedef uint32_t u32x8 __attribute__((vector_size(32)));  // a lane not read may overflow
  const u32x8 v = (u32x8)j * static_cast<uint32_t>(rs) + (u32x8)depth;
  *r = ((i32x8)v & live) | ~live;
  return true;
}
// (Out of line, and through pointers: a vector returned by value from a
// function compiled for the baseline instruction set is not where an AVX2
// caller looks for it.)
template <int P>
__attribute__((noinline)) void row_term_edge(const i32x8* dm, int h, int H, int64_t rs, int n,
                                             const i32x8* depth, i32x8* r) {
  for (int l = 0; l < 8; ++l) {
    const int s = pad_index<P>(h + (*dm)[l], H);
    const int32_t d = (*depth)[l];
    (*r)[l] = (s < 0 || l >= n || d < 0) ? -1 : static_cast<int32_t>(s * rs) + d;
  }
}
template <int P>
__attribute__((always_inline)) inline i32x8 row_term(const i32x8& dm, int h, int H, int64_t rs,
                                                     int n, const i32x8& depth = i32x8{}) {
  i32x8 r;
  if (!row_term_inside(dm, h, H, rs, n, depth, &r, P == kZeros)) {
    row_term_edge<P>(&dm, h, H, rs, n, &depth, &r);
  }
  return r;
}

// The terms with the padding a run-time value (for_padding): the lanes'
// per-element loops do not depend on it, only these terms, computed once a
// tile or a row, do, so the lanes compile once for every padding.
inline void column_terms(int p, const i32x8& dm, int W, int64_t ws, int64_t cs, int lane0, int w0,
                         int count, i32x8* col, int t = 1, int tap = 0) {
  for_padding(p, [&](auto P) {
    column_terms<decltype(P)::value>(dm, W, ws, cs, lane0, w0, count, col, t, tap);
  });
}
inline i32x8 depth_term(int p, const i32x8& dm, const Depth& dp, int dd) {
  return for_padding(p, [&](auto P) { return depth_term<decltype(P)::value>(dm, dp, dd); });
}
__attribute__((always_inline)) inline i32x8 row_term(int p, const i32x8& dm, int h, int H,
                                                     int64_t rs, int n,
                                                     const i32x8& depth = i32x8{}) {
  i32x8 r;
  if (!row_term_inside(dm, h, H, rs, n, depth, &r, p == kZeros)) {
    for_padding(p, [&](auto P) {
      row_term_edge<decltype(P)::value>(&dm, h, H, rs, n, &depth, &r);
    });
  }
  return r;
}

// A call's folded elements (backward.cc, AdjointEdges) through a pointer:
// they are few, and the lanes' input gradients compile once for every
// padding.
template <typename A>
struct EdgeRef {
  const void* self;
  A (*call)(const void*, int, int, int);
  A operator()(int b, int row, int col) const { return call(self, b, row, col); }
};
template <typename A, typename E>
EdgeRef<A> edge_ref(const E& e) {
  return {&e, [](const void* p, int b, int row, int col) -> A {
            return (*static_cast<const E*>(p))(b, row, col);
          }};
}

// A moved row: out[i] = the lanes at (row term, col[i]) for i in [0, count).
// The 8 lanes at (row term, column term), 0 where either is -1. `uniform`:
// the lanes' offsets are equal (a channel group of a grouped or fixed
// table), so in channels-last the lanes are 8 contiguous elements, or none:
// one load.
//
// 16-bit storage in AVX2: a gather reads 32 bits a lane, and gather8 tests
// every lane against the buffer's last element (a fifth of a 16-bit move's
// time, v23). Lane l of a group is channel c0 + 8 g + l, so lanes 1-7 are
// never the buffer's first element and read the 32 bits that end at theirs
// (the high half), and lane 0 reads those that start at its element, which
// is the buffer's last only where channel C - 1 is a lane 0 (with c0 a
// multiple of 8, lanes_plan's blocks: C % 8 == 1; then arr.last >= 0,
// last_from, and gather8 tests).
template <Isa I, typename T>
__attribute__((always_inline)) inline Vec8<typename Acc<T>::type> read8(
    const LaneArray<const T>& arr, i32x8 row, i32x8 c, bool uniform, bool bits) {
  if (uniform && arr.cs == 1) {
    if ((row[0] | c[0]) < 0) return Vec8<typename Acc<T>::type>{};
    return widen8<I>(arr.p + (row[0] + c[0]), bits);
  }
  const i32x8 mask = (row | c) < 0 ? i32x8{} : i32x8{} - 1;
#if defined(JAXSHIFT_X86_AVX2)
  if constexpr (I == Isa::kAvx2 && sizeof(T) == 2) {
    if (arr.last < 0) {
      const i32x8 back = {0, 1, 1, 1, 1, 1, 1, 1};
      const i32x8 at = row + c - back;
      u32x8 raw;
      gather_avx2(reinterpret_cast<const uint16_t*>(arr.p), &at, &mask,
                  reinterpret_cast<uint32_t*>(&raw));
      // Raw bits and bfloat16's float (its bits in the high half) straight
      // from the 32-bit lanes; float16 through F16C's packed conversion.
      if (bits) return bitcast<f32x8>((raw >> bitcast<u32x8>(back << 4)) & 0xffffu);
      if constexpr (std::is_same_v<T, BFloat16>) {
        return bitcast<f32x8>((raw << bitcast<u32x8>(16 - (back << 4))) & 0xffff0000u);
      }
      raw >>= bitcast<u32x8>(back << 4);
      return widen8_bits<I>(static_cast<const T*>(nullptr), __builtin_convertvector(raw, u16x8),
                            bits);
    }
  }
#endif
  return gather8<I>(arr.p, row + c, mask, bits, arr.last);
}

// Whether any lane of mask m is set.
template <typename M>
bool any_lane(const M& m) {
  bool any = false;
  for (int l = 0; l < kGroup; ++l) any |= m[l] != 0;
  return any;
}

// fn(std::true_type{}) where a group's lanes are `uniform` (read8's one
// load), else fn(std::false_type{}): a row's loop compiled for each, the
// branch out of it (fused_row: 5-10 % of its time; the other rows take
// `uniform` at run time, half the code to compile, at the same speed).
template <typename Fn>
__attribute__((always_inline)) inline void with_uniform(bool uniform, const Fn& fn) {
  if (uniform) {
    fn(std::true_type{});
  } else {
    fn(std::false_type{});
  }
}

// A moved row: out[i * stride] = the lanes at (row term, col[i]) for i in
// [0, count).
template <Isa I, typename T, typename V>
void gather_row(const LaneArray<const T>& arr, i32x8 row, const i32x8* col, int count,
                bool uniform, bool bits, V* out, int stride) {
  for (int i = 0; i < count; ++i) out[i * stride] = read8<I>(arr, row, col[i], uniform, bits);
}

// The two-axis stencils of core/stencils.h (apply, or apply_adjoint with
// the taps' signs turned) on moved rows: a0 = P(k1, k2), a1 = P(k1, k2 + 1),
// b0 = P(k1 + 1, k2), b1 = P(k1 + 1, k2 + 1) per lane, the rows' stencil
// inside the columns'; lanes at the lattice read one tap. (NaN lanes:
// nan_lanes.)
template <typename A, typename V>
__attribute__((always_inline)) inline V bilinear(const Lanes<A>& ln, V a0, V b0, V a1, V b1) {
  if (ln.plain) return ln.w0w * (ln.w0f * a0 + ln.w1f * b0) + ln.w1w * (ln.w0f * a1 + ln.w1f * b1);
  auto rows = [&](V a, V b) {
    V c = ln.w0f * a;
    return ln.all_lat_f ? c : (ln.lat_f ? c : c + ln.w1f * b);
  };
  V v = ln.w0w * rows(a0, b0);
  if (!ln.all_lat_w) v = ln.lat_w ? v : v + ln.w1w * rows(a1, b1);
  return v;
}

// v with the lanes of a NaN shift NaN (the NaN rule).
template <typename A, typename V>
__attribute__((always_inline)) inline V nan_lanes(const Lanes<A>& ln, V v) {
  return ln.any_nan ? (ln.nan ? ln.nan_fill : v) : v;
}

// The depth stencil (3-D; outermost, as core/stencils.h's tensor3) over the
// 2-D values v0 at depth tap 0 and v1() at tap 1 (evaluated only where a
// lane is off the depth lattice), then the NaN rule.
template <typename A, typename V, typename F>
__attribute__((always_inline)) inline V depth_stencil(const Lanes<A>& ln, V v0, const F& v1) {
  if (!ln.all_lat_d) {
    const V u = ln.w0d * v0 + ln.w1d * v1();
    v0 = ln.lat_d ? v0 : u;
  }
  return nan_lanes(ln, v0);
}

// Prefetches columns [w0, w1) (clamped to the row; by default all) of row
// `row` (if it exists) of the task's nb channels for reading: the gathers
// of a row touch lines of several rows in turn, which the hardware
// prefetchers do not follow.
template <typename T>
void prefetch_row(const LaneArray<const T>& arr, int row, int H, int W, int nb, int w0 = 0,
                  int w1 = INT32_MAX) {
  if (row < 0 || row >= H) return;
  w0 = std::max(w0, 0);
  w1 = std::min(w1, W);
  constexpr int kLine = 64 / sizeof(T);
  const T* p = arr.p + row * arr.rs;
  if (arr.cs != 1) {  // channels-first: each channel's row, if contiguous
    if (arr.ws != 1) return;
    for (int c = 0; c < nb; ++c) {
      for (int i = w0; i < w1; i += kLine) __builtin_prefetch(p + c * arr.cs + i);
    }
    return;
  }
  if (arr.ws == nb) {  // the block is every channel: one contiguous run
    for (int64_t i = int64_t{w0} * nb; i < int64_t{w1} * nb; i += kLine) __builtin_prefetch(p + i);
    return;
  }
  for (int w = w0; w < w1; ++w) {
    for (int c = 0; c < nb; c += kLine) __builtin_prefetch(p + w * arr.ws + c);
  }
}

// arr moved to the plane at dp.pos (or the last plane, if the origin lies
// beyond it): where the prefetches of a task's rows go.
template <typename T>
LaneArray<const T> in_plane(LaneArray<const T> arr, const Depth& dp) {
  arr.p += std::min(dp.pos, dp.L - 1) * dp.s;
  return arr;
}

// The farthest any lane of the groups reads from its own position along
// an axis: the largest sign * (offset member) + extra, at least 0.
template <typename A>
int reach(const Lanes<A>* lanes, int groups, i32x8 Lanes<A>::*member, int sign, int extra) {
  int d = 0;
  for (int g = 0; g < groups; ++g) {
    for (int l = 0; l < lanes[g].n; ++l) d = std::max(d, sign * (lanes[g].*member)[l] + extra);
  }
  return d;
}

// The output columns of a task's column tiles. A 64-byte line of a pixel's
// channels serves 16 float32 lanes, each of which reads it at its own row
// offset m1, i.e. in output rows as far apart as the groups' m1 spread
// (plus the stencils' rows, `extra`, and the stride's). A task that loops
// over every column of its rows reads a window of that many rows of x (or
// g) between a line's first and last reads, and 7 rows of a 32-pixel row
// of 64 float32 channels (56 KB) overflow L1 (48 KB): its lines went back
// to L2 up to once a lane. A tile keeps the window within the budget
// (tile_budget_in_use, cpu/isa.h: 32 KB; 0: no tiles) and is at least 16
// columns wide (tiles of 8 measured slower: each tile gathers its first
// moved rows and one column more). Tiles of equal width; Wo (no tiles)
// where the window fits. 16-bit storage: no tiles where even 16 columns'
// window is over twice the budget and a pixel is under 2 KB (under 1024
// channels; from 384 up with shifts within +-2, from 256 within +-3). L1
// cannot hold that window at any width that pays, and a 16-bit group has
// the per-tile work of a float32 one (column terms, the extra column and
// first rows) for half the bytes: untiled, bfloat16 2x56x56x512 forwards
// took 0.88-0.92x the time. At 2 KB pixels and up the tiles measured no
// worse (float32's 4 KB: 2x faster with them), and float32 below 2 KB within
// the noise either way. benchmarks/NOTES.md, v16, v35.
template <typename T, typename A>
int tile_columns(const Lanes<A>* lanes, int groups, int nb, int64_t cs, int t1, int t2, int extra,
                 int Wo) {
  constexpr int64_t kLeast = 16;
  const int64_t budget = tile_budget_in_use().load(std::memory_order_relaxed);
  if (budget <= 0) return Wo;
  const int64_t rows = reach(lanes, groups, &Lanes<A>::m1, 1, extra) +
                       reach(lanes, groups, &Lanes<A>::m1, -1, 0) + t1;
  const int64_t spread = reach(lanes, groups, &Lanes<A>::m2, 1, extra) +
                         reach(lanes, groups, &Lanes<A>::m2, -1, 0);
  const int64_t bytes = int64_t{nb} * int64_t{sizeof(T)};
  const int64_t pixel = cs == 1 ? (bytes + 63) / 64 * 64 : bytes;  // lines of a pixel's channels
  if (sizeof(T) == 2 && pixel < 2048 && rows * pixel * (kLeast * t2 + spread) > 2 * budget) {
    return Wo;
  }
  const int64_t fit = std::max(kLeast, (budget / (rows * pixel) - spread) / t2);
  if (fit >= Wo) return Wo;
  const int64_t tiles = (Wo + fit - 1) / fit;
  return static_cast<int>((Wo + tiles - 1) / tiles);
}

// Loads 8 lanes (n of them, the rest 0) from p, cs elements apart, in the
// accumulation type: store_lanes' mirror.
template <Isa I, typename T>
Vec8<typename Acc<T>::type> load_lanes(const T* p, int64_t cs, int n) {
  if (n == kGroup && cs == 1) return widen8<I>(p, false);
  Vec8<typename Acc<T>::type> v{};
  for (int l = 0; l < n; ++l) v[l] = widen1(p + l * cs, false);
  return v;
}

// Stores 8 lanes (n of them) to p, cs elements apart.
template <Isa I, typename T, typename V>
void store_lanes(T* p, int64_t cs, V v, int n, bool bits) {
  if (n == 8 && cs == 1) return narrow8<I>(p, v, bits);
  for (int l = 0; l < n; ++l) narrow1(p + l * cs, v[l], bits);
}

// Stores a row of `count` pixels of every group: value(w, g) is pixel w's
// lanes of group g, stored at out + w ws + (g 8 + l) cs. Channels-last: a
// pixel's groups in turn, so each line of the row is written whole.
// Channels-first: a group's pixels in turn, where pixels are contiguous 8 at
// a time, transposed in registers into 8 vectors of a channel's pixels.
template <Isa I, typename T, typename A, typename F>
__attribute__((always_inline)) inline void store_row(T* out, int64_t ws, int64_t cs, int count,
                                                     const Lanes<A>* lanes, int groups, bool bits,
                                                     const F& value) {
  using V = Vec8<A>;
  if (cs == 1) {
    for (int w = 0; w < count; ++w) {
      for (int g = 0; g < groups; ++g) {
        store_lanes<I>(out + w * ws + g * kGroup, 1, value(w, g), lanes[g].n, bits);
      }
    }
    return;
  }
  for (int g = 0; g < groups; ++g) {
    T* p = out + g * kGroup * cs;
    int w = 0;
    for (; ws == 1 && w + kGroup <= count; w += kGroup) {
      V v[kGroup];
      for (int j = 0; j < kGroup; ++j) v[j] = value(w + j, g);
      transpose8(v);
      for (int l = 0; l < lanes[g].n; ++l) narrow8<I>(p + l * cs + w, v[l], bits);
    }
    for (; w < count; ++w) store_lanes<I>(p + w * ws, cs, value(w, g), lanes[g].n, bits);
  }
}

// A task's groups of lanes in per-thread scratch (kept between calls,
// 64-byte aligned): the lanes of the nb channels' tables ct, room for their
// column terms (`cols` a group) and a ring of `ring` moved rows of `cols`
// pixels a group. (Not std::vector<V>: a vector type's alignment does not
// survive as a template argument.)
template <typename A>
struct LaneScratch {
  int groups;
  Lanes<A>* lanes;
  i32x8* col;
  Vec8<A>* ring;
};
template <typename A>
LaneScratch<A> lane_groups(const ChannelTables<A>* ct, int nb, int64_t cols, int ring) {
  auto round = [](size_t b) { return (b + 63) / 64 * 64; };
  const int groups = (nb + kGroup - 1) / kGroup;
  const size_t g = static_cast<size_t>(groups), c = static_cast<size_t>(cols);
  const size_t a = round(g * sizeof(Lanes<A>)), b = round(g * c * sizeof(i32x8));
  const size_t total = a + b + round(static_cast<size_t>(ring) * g * c * sizeof(Vec8<A>));
  thread_local std::vector<unsigned char> buf;
  if (buf.size() < total + 64) buf.resize(total + 64);
  unsigned char* p = buf.data() + (64 - reinterpret_cast<uintptr_t>(buf.data()) % 64) % 64;
  const LaneScratch<A> sc{groups, reinterpret_cast<Lanes<A>*>(p), reinterpret_cast<i32x8*>(p + a),
                          reinterpret_cast<Vec8<A>*>(p + a + b)};
  for (int k = 0; k < groups; ++k) {
    make_lanes(ct + k * kGroup, std::min(kGroup, nb - k * kGroup), sc.lanes + k);
  }
  return sc;
}

// --- Plan -----------------------------------------------------------------

// The lanes path takes channels-last calls, and channels-first calls that
// the staged planes do not (3-D, strides) or should not (rows under 8
// cells, but double's: the per-row work is most of a staged plane's
// there; the direct rows need 8), of at least 8 channels whose
// samples' element offsets fit the gathers' 32-bit indices. 16-bit storage
// not where the staged planes measured faster (benchmarks/NOTES.md, v6):
// the active forward and the backward of walkable calls (2-D, unit
// strides), except in channels-last the active forward (float16's since
// v23: 0.76-0.88x the staged planes' time; bfloat16's since v25, with
// fused_pair's Pair16: 0.6-0.8x), a channels-last backward
// that takes the lanes' one pass (`one_pass`: zeros or periodic padding,
// with the shift gradient; v19: 0.66-0.87x the staged planes' forward +
// backward time), and a backward whose padding folds (`folds`: border,
// reflect, symmetric), in either layout: the staged planes took each
// element of the folded bands by adjoint_value (v24: forward + backward
// 0.19-0.44x the time on the lanes' fold_edges).
template <typename T>
bool use_lanes(const Geometry& geo, bool backward, bool move, bool one_pass = false,
               bool folds = false) {
  const Axis* ax = geo.ax;
  auto fits = [&](int64_t ds, int64_t rs, int64_t ws, int64_t cs, int d, int h, int w) {
    return (d - 1) * ds + (h - 1) * rs + (w - 1) * ws + (geo.C - 1) * cs < int64_t{INT32_MAX};
  };
  const bool channels_last = geo.sx_c == 1 && geo.sy_c == 1;
  const bool half_forward = channels_last && !backward;
  const bool half_folds = sizeof(T) == 2 && backward && folds;
  // Channels-first rows under 8 cells (moves take the direct rows first:
  // run_forward): against the staged planes' time, float32 0.56-0.82x,
  // 16-bit 0.48-0.74x, double 1.1-1.45x (it stays there; v29).
  const bool short_rows = sizeof(T) <= 4 && !channels_last && ax[2].L < kGroup;
  if (sizeof(T) == 2 && walkable(geo) && (backward || !move) &&
      !(half_forward || (channels_last && backward && one_pass) || half_folds || short_rows)) {
    return false;
  }
  return (channels_last || !walkable(geo) || half_folds || short_rows) && geo.C >= kGroup &&
         fits(ax[0].sx, ax[1].sx, ax[2].sx, geo.sx_c, ax[0].L, ax[1].L, ax[2].L) &&
         fits(ax[0].sy, ax[1].sy, ax[2].sy, geo.sy_c, ax[0].Lo, ax[1].Lo, ax[2].Lo);
}

// Tasks: sample x plane of axis 0 (3-D) x block of B channels x strip of R
// rows, on the output grid (or the input grid, for the input gradient of a
// strided call: geo's Lo set to L). A block is every channel or whole
// 64-byte lines of them, as many as keep the groups' rings of moved rows (at
// most 3 rows of 2 Wo + 2 pixels) within 96 KB; a strip about 256 KB of
// output.
//
// `tiled` (channels-last calls whose lanes tile their columns, tile_columns,
// which bounds the rings instead: the 2-D forward, the 2-D backward's one
// pass or two), on `threads` threads: every channel in one block, so a task
// reads and writes whole rows of pixels, contiguous. A block of some of
// many channels reads and writes a sliver of each pixel (256 B of 4 KB at
// 1024 float32 channels): a new page at every pixel, no stream the hardware
// prefetchers follow, and lines a multiple of 4 KB apart crowding a few of
// L1's sets (2x56x56x1024 float32 forward 2.3x slower; benchmarks/NOTES.md,
// v19). Strips of at least 8 rows (each strip gathers one row more than it
// outputs), enough of them for `tasks` tasks: the forward's 4 a thread; the
// backward's a constant, since its strips are the shift gradient's
// partials, whose sums must not depend on the number of threads.
template <typename T>
StagedPlan lanes_plan(const Geometry& geo, bool tiled = false, int64_t tasks = 1) {
  using A = typename Acc<T>::type;
  const int Ho = geo.ax[1].Lo, Wo = geo.ax[2].Lo;
  const int64_t line = std::max<int64_t>(kGroup, 64 / static_cast<int64_t>(sizeof(T)));
  const int64_t ring = 3 * (2 * int64_t{Wo} + 2) * int64_t{sizeof(A)};
  int64_t B = std::min<int64_t>(geo.C, std::max(line, (96 << 10) / ring / line * line));
  const int64_t row = B * Wo * int64_t{sizeof(T)};
  int R = static_cast<int>(std::clamp<int64_t>((256 << 10) / row, 1, Ho));
  if (tiled && B < geo.C && geo.sx_c == 1 && geo.sy_c == 1) {
    B = geo.C;
    const int64_t others = geo.N * geo.ax[0].Lo;  // samples x planes
    const int64_t strips = (std::max<int64_t>(tasks, 1) + others - 1) / others;
    R = static_cast<int>(std::clamp<int64_t>((Ho + strips - 1) / strips, std::min(Ho, 8), Ho));
  }
  return StagedPlan{static_cast<int>(B), R, (geo.C + B - 1) / B, (Ho + R - 1) / R,
                    geo.ax[0].Lo};
}

// lanes_plan for forward tasks that take every plane of axis 0 (3-D, unit
// strides on axes 0 and 1): one task per sample, block and strip (every
// channel a block in channels-last: `tiled`; 2x8x28x28x512 NDHWC forward
// 0.8-0.9x the time, v19), in strips of at most lanes_plan's rows and
// enough of them for 4 tasks a thread.
template <typename T>
StagedPlan lanes_span_plan(const Geometry& geo, int threads) {
  const int64_t tasks = 4 * int64_t{std::max(threads, 1)};
  StagedPlan plan = lanes_plan<T>(geo, true, tasks);
  const int Ho = geo.ax[1].Lo;
  const int64_t others = geo.N * plan.blocks;
  const int64_t want = (tasks + others - 1) / others;  // strips
  plan.R = static_cast<int>(std::min<int64_t>(plan.R, std::max<int64_t>(1, Ho / want)));
  plan.strips = (Ho + plan.R - 1) / plan.R;
  plan.planes = 1;
  return plan;
}

// The index of a buffer's last element relative to element `at` (channel
// c0 of sample n; the buffer holds geo.N samples sn elements apart, of
// geo.C channels), where a gather may read past it: a 16-bit lane 0
// (read8) at channel C - 1 (lane 0 of its group: (C - 1 - c0) % 8 == 0),
// in the last sample (the task's reads end with its sample), within 32-bit
// reach; else -1.
inline int32_t last_from(const Geometry& geo, int64_t sn, int64_t n, int64_t c0, int64_t at) {
  const int64_t elements = geo.N * sn;
  if ((n + 1) * sn < elements || (geo.C - 1 - c0) % kGroup != 0) return -1;
  const int64_t d = elements - 1 - at;
  return (d >= 0 && d <= int64_t{INT32_MAX}) ? static_cast<int32_t>(d) : -1;
}

// --- Forward --------------------------------------------------------------

// One output row of group `ln`'s lanes, fused: unit strides, 2-D stencils
// (every lane at the depth lattice), channels-last y. `ring` holds the
// group's moved row of position h (count + 1 columns); each column of the
// moved row of h + 1 (row term `row`, column terms col) is gathered once,
// combined with the ring's entry in the rows' stencil, and takes that
// entry's place for the next output row, so a column's rows' stencil serves
// outputs w - 1 and w from registers and the group's weights stay in
// registers along the row. Stores count pixels of ln.n lanes, ws apart.
template <Isa I, typename A, typename T, bool Uniform>
__attribute__((always_inline)) inline void fused_row(const LaneArray<const T>& x, i32x8 row,
                                                     const i32x8* col, Vec8<A>* ring, int count,
                                                     const Lanes<A>& ln, T* out, int64_t ws) {
  using V = Vec8<A>;
  auto next = [&](int i) {  // the moved row of h + 1 at column i, into the ring
    const V b = read8<I>(x, row, col[i], Uniform, false);
    const V a = ring[i];
    ring[i] = b;
    return std::pair<V, V>{a, b};
  };
  auto [a, b] = next(0);
  if (ln.plain) {
    const V w0f = ln.w0f, w1f = ln.w1f, w0w = ln.w0w, w1w = ln.w1w;
    V r = w0f * a + w1f * b;
    for (int w = 0; w < count; ++w) {
      const auto [a1, b1] = next(w + 1);
      const V r1 = w0f * a1 + w1f * b1;
      store_lanes<I>(out + w * ws, 1, w0w * r + w1w * r1, ln.n, false);
      r = r1;
    }
    return;
  }
  for (int w = 0; w < count; ++w) {
    const auto [a1, b1] = next(w + 1);
    store_lanes<I>(out + w * ws, 1, nan_lanes(ln, bilinear(ln, a, b, a1, b1)), ln.n, false);
    a = a1;
    b = b1;
  }
}

// Window rows (v40): fused_row without gathers, for a full plain group of
// channels-last float32 whose integer offsets each span at most 4 values
// (m1 in lo1 .. lo1 + 3, m2 in lo2 .. lo2 + 3), on the rows and columns
// where every tap of that window lies inside x. A lane's rows' tap 1, row
// h + 1 + m1, is one of 4 consecutive rows and its columns' taps are 2 of 5
// consecutive columns, so each is picked per lane by blends on the bits of
// m - lo from plain vector loads (pick4: two blends of two, then one)
// instead of one gather a column: on Zen 3, 3.4 against 5.2 ns a vector
// hot, 3.9 against 5.9 from L3 (benchmarks/gather_ceiling.cc, NOTES v40).
// The same operands in the same order as fused_row's plain branch: a
// column's rows' value w0f * top + w1f * bottom, kept in a window ring by
// input column (the bottom pick is the next row's top), then the columns'
// stencil on the two picks of those values.
inline constexpr int kWindowSpan = 4;     // offsets a window picks from, an axis
inline constexpr int kWindowMinCount = 8;  // outputs a row at least (a row's setup: 4 columns)
// Channels a pixel at most (x's pixel stride): at 96-1024 channels the
// window rows took 1.1-1.3x the gathers' time (a group at a time, each line
// read twice; pairs of groups as fused_pair's measured no better).
inline constexpr int kWindowPixel = 64;

// The bits of m - lo as lane masks (bit 0, bit 1), and the offsets of the
// 4 rows a pick reads, rs apart up to the group's last (row hi: the rows
// past it are never picked, so none is read).
struct WindowBits {
  i32x8 b0, b1;
  int64_t at[kWindowSpan];
};
inline WindowBits window_bits(const i32x8& m, int lo, int hi = 0, int64_t rs = 0) {
  const i32x8 d = m - lo;
  WindowBits k{i32x8{} - (d & 1), i32x8{} - ((d >> 1) & 1), {}};
  for (int r = 0; r < kWindowSpan; ++r) k.at[r] = std::min(r, hi - lo) * rs;
  return k;
}
template <typename V>
__attribute__((always_inline)) inline V pick4(const WindowBits& k, V a, V b, V c, V d) {
  const V ab = k.b0 ? b : a, cd = k.b0 ? d : c;
  return k.b1 ? cd : ab;
}

// The rows' pick (rows.at from `in`, the window's row lo) at input columns
// 0 .. count - 1 of `in` (ws apart): the row each lane reads at lo + m.
template <Isa I, typename A, typename T>
__attribute__((always_inline)) inline Vec8<A> row_pick(const T* in, const WindowBits& rows,
                                                       bool bits = false) {
  return pick4(rows, widen8<I>(in + rows.at[0], bits), widen8<I>(in + rows.at[1], bits),
               widen8<I>(in + rows.at[2], bits), widen8<I>(in + rows.at[3], bits));
}
template <Isa I, typename A, typename T>
__attribute__((always_inline)) inline void window_picks(const T* in, int64_t ws, int count,
                                                        const WindowBits& rows, Vec8<A>* ring) {
  for (int i = 0; i < count; ++i) ring[i] = row_pick<I, A>(in + i * ws, rows);
}

// `count` outputs of one row of group `ln`: `in` is x at the group's lanes,
// row h + 1 + lo1 (the bottom picks' first row), input column w + lo2 of
// the first output w; `ring` holds the top picks of input columns w + lo2
// .. w + lo2 + count + 3 and takes the bottom picks in their place.
template <Isa I, typename A, typename T>
__attribute__((always_inline)) inline void window_row(const T* in, int64_t ws,
                                                      const WindowBits& rows,
                                                      const WindowBits& cols, Vec8<A>* ring,
                                                      int count, const Lanes<A>& ln, T* out,
                                                      int64_t ys) {
  using V = Vec8<A>;
  const V w0f = ln.w0f, w1f = ln.w1f, w0w = ln.w0w, w1w = ln.w1w;
  auto column = [&](int i) JAXSHIFT_INLINE {  // the rows' value at input column i
    const V b = row_pick<I, A>(in + i * ws, rows);
    const V a = ring[i];
    ring[i] = b;
    return w0f * a + w1f * b;
  };
  V v0 = column(0), v1 = column(1), v2 = column(2), v3 = column(3);
  V r = pick4(cols, v0, v1, v2, v3);
  for (int w = 0; w < count; ++w) {
    const V v4 = column(w + 4);
    const V r1 = pick4(cols, v1, v2, v3, v4);
    store_lanes<I>(out + w * ys, 1, w0w * r + w1w * r1, kGroup, false);
    r = r1;
    v1 = v2;
    v2 = v3;
    v3 = v4;
  }
}

// `count` outputs of one row of an integer move of a group by its window
// (window_row's picks, no stencil, raw bits): `in` is x at the group's lanes,
// row h + lo1, input column w + lo2 of the first output w. A column's row
// pick (row h + m1) serves the 4 outputs whose column picks read it: on Zen
// 3, 2.3 against the gathers' 4.8 ns a vector hot, 2.8 against 5.2 from L3
// (gather_ceiling.cc, NOTES v40).
template <Isa I, typename A, typename T>
__attribute__((always_inline)) inline void window_move(const T* in, int64_t ws,
                                                       const WindowBits& rows,
                                                       const WindowBits& cols, int count, T* out,
                                                       int64_t ys) {
  using V = Vec8<A>;
  auto column = [&](int i) JAXSHIFT_INLINE { return row_pick<I, A>(in + i * ws, rows, true); };
  V v1 = column(0), v2 = column(1), v3 = column(2);
  for (int w = 0; w < count; ++w) {
    const V v4 = column(w + 3);
    store_lanes<I>(out + w * ys, 1, pick4(cols, v1, v2, v3, v4), kGroup, true);
    v1 = v2;
    v2 = v3;
    v3 = v4;
  }
}

#if defined(JAXSHIFT_X86_AVX2)
// Groups g and g + 1 of 16-bit storage (channels 8 g .. 8 g + 15), in
// float, at row terms re, ro and column terms ce, co in pair_terms' order
// (move16_avx2's two gathers): out[0] the first group's lanes, out[1] the
// second's.
template <typename T>
__attribute__((always_inline)) inline void read16(const LaneArray<const T>& x, i32x8 re,
                                                  i32x8 ro, i32x8 ce, i32x8 co, f32x8* out) {
  static_assert(sizeof(T) == 2, "16-bit storage");
  const Pair16At p = pair16_at(re, ro, ce, co);
  float v[2 * kGroup];
  read16_avx2(reinterpret_cast<const uint16_t*>(x.p), &p.even, &p.me, &p.odd, &p.mo,
              std::is_same_v<T, Half>, v);
  out[0] = loadu<f32x8>(v);
  out[1] = loadu<f32x8>(v + kGroup);
}

// Two values of a pair (read16's order) stored as 16 channels of T at out.
template <typename T>
__attribute__((always_inline)) inline void store_pair16(T* out, f32x8 a, f32x8 b) {
  if constexpr (std::is_same_v<T, BFloat16>) {
    store16_bf16_avx2(&a, &b, reinterpret_cast<uint16_t*>(out));
  } else {
    store16_f16c(&a, &b, reinterpret_cast<uint16_t*>(out));
  }
}
#endif

// The value stencils' weights of two groups' lanes: p0 the first group's,
// p1 the second's, or (`unpack`: bfloat16's pairs in read16's order)
// channels 0-3 and 8-11 in p0, 4-7 and 12-15 in p1.
template <typename A>
struct PairWeights {
  Vec8<A> f0, f1, w0, w1;  // w0f, w1f, w0w, w1w
};
template <bool kUnpack, typename A>
__attribute__((always_inline)) inline void pair_weights(const Lanes<A>& l0, const Lanes<A>& l1,
                                                        PairWeights<A>* p0, PairWeights<A>* p1) {
  using V = Vec8<A>;
  auto lo = [](V a, V b) {
    return kUnpack ? __builtin_shufflevector(a, b, 0, 1, 2, 3, 8, 9, 10, 11) : a;
  };
  auto hi = [](V a, V b) {
    return kUnpack ? __builtin_shufflevector(a, b, 4, 5, 6, 7, 12, 13, 14, 15) : b;
  };
  *p0 = {lo(l0.w0f, l1.w0f), lo(l0.w1f, l1.w1f), lo(l0.w0w, l1.w0w), lo(l0.w1w, l1.w1w)};
  *p1 = {hi(l0.w0f, l1.w0f), hi(l0.w1f, l1.w1f), hi(l0.w0w, l1.w0w), hi(l0.w1w, l1.w1w)};
}

// fused_row for two plain groups side by side (channels g * 8 .. g * 8 + 15:
// one 64-byte line of float32 x and y, half of 16-bit), a column of both at
// a time, so that
// each line of x the pair's lanes gather is read by both groups while it is
// in L1. In channels-last a pixel of 1024 float32 channels is a 4 KB page,
// so all of a group's lines fall in one L1 set, and group by group the
// second group's reads went back to L2.
// `Pair16` (16-bit storage in AVX2, groups not both uniform): both groups'
// lanes read by read16 (2 gathers, a blend and the widening of 16 lanes,
// against read8's 2 gathers, index, shift and widening a group), row terms
// row0, row1 and column terms col0, col1 in pair_terms' order; bfloat16's
// lanes in read16's unpack order (the weights and the ring's rows too),
// stored by one pack. The same arithmetic, lane by lane, either way.
template <Isa I, typename A, typename T, bool Uniform, bool Pair16 = false>
__attribute__((always_inline)) inline void fused_pair(const LaneArray<const T>& x, i32x8 row0,
                                                      i32x8 row1, const i32x8* col0,
                                                      const i32x8* col1, Vec8<A>* ring0,
                                                      Vec8<A>* ring1, int count,
                                                      const Lanes<A>& l0, const Lanes<A>& l1,
                                                      T* out, int64_t ws) {
  using V = Vec8<A>;
  PairWeights<A> p0, p1;
  pair_weights<Pair16 && std::is_same_v<T, BFloat16>>(l0, l1, &p0, &p1);
  const V f00 = p0.f0, f01 = p0.f1, w00 = p0.w0, w01 = p0.w1;
  const V f10 = p1.f0, f11 = p1.f1, w10 = p1.w0, w11 = p1.w1;
  auto next = [&](int i, V* q0, V* q1) {  // column i of both groups' next moved rows
    V b[2];
#if defined(JAXSHIFT_X86_AVX2)
    if constexpr (Pair16) read16(x, row0, row1, col0[i], col1[i], b);
#endif
    if constexpr (!Pair16) {
      b[0] = read8<I>(x, row0, col0[i], Uniform, false);
      b[1] = read8<I>(x, row1, col1[i], Uniform, false);
    }
    const V a0 = ring0[i], a1 = ring1[i];
    ring0[i] = b[0];
    ring1[i] = b[1];
    *q0 = f00 * a0 + f01 * b[0];
    *q1 = f10 * a1 + f11 * b[1];
  };
  V r0, r1;
  next(0, &r0, &r1);
  for (int w = 0; w < count; ++w) {
    V q0, q1;
    next(w + 1, &q0, &q1);
#if defined(JAXSHIFT_X86_AVX2)
    if constexpr (Pair16) store_pair16(out + w * ws, w00 * r0 + w01 * q0, w10 * r1 + w11 * q1);
#endif
    if constexpr (!Pair16) {
      store_lanes<I>(out + w * ws, 1, w00 * r0 + w01 * q0, kGroup, false);
      store_lanes<I>(out + w * ws + kGroup, 1, w10 * r1 + w11 * q1, kGroup, false);
    }
    r0 = q0;
    r1 = q1;
  }
}

// One output row of group `ln`'s lanes, no lane at a lattice or NaN, 2-D
// stencils, from rows `ra` (the stencils' row tap 0) and `rb` (tap 1) of
// x: the four taps of output w at column terms col[w] and col[w + next]
// gathered straight into the stencil (strided calls: no tap is another
// output's), stored by store_row (y's pixels ws apart, lanes cs apart).
template <Isa I, typename A, typename T>
__attribute__((always_inline)) inline void strided_row(bool uniform, const LaneArray<const T>& x,
                                                       i32x8 ra, i32x8 rb, const i32x8* col,
                                                       int next, int count, const Lanes<A>& ln,
                                                       T* out, int64_t ws, int64_t cs) {
  using V = Vec8<A>;
  const V w0f = ln.w0f, w1f = ln.w1f, w0w = ln.w0w, w1w = ln.w1w;
  store_row<I>(out, ws, cs, count, &ln, 1, false, [&](int w, int) {
    const V a0 = read8<I>(x, ra, col[w], uniform, false);
    const V b0 = read8<I>(x, rb, col[w], uniform, false);
    const V a1 = read8<I>(x, ra, col[w + next], uniform, false);
    const V b1 = read8<I>(x, rb, col[w + next], uniform, false);
    return w0w * (w0f * a0 + w1f * b0) + w1w * (w0f * a1 + w1f * b1);
  });
}

#if defined(JAXSHIFT_X86_AVX2)
// strided_row for two plain groups of 16-bit storage in channels-last, read
// and stored as fused_pair's Pair16: row terms (ra0, ra1) of the rows' tap
// 0 and (rb0, rb1) of tap 1, column terms ce, co, each in pair_terms'
// order. The same arithmetic, lane by lane.
template <typename A, typename T>
__attribute__((always_inline)) inline void strided_pair16(const LaneArray<const T>& x, i32x8 ra0,
                                                          i32x8 ra1, i32x8 rb0, i32x8 rb1,
                                                          const i32x8* ce, const i32x8* co,
                                                          int next, int count,
                                                          const Lanes<A>& l0, const Lanes<A>& l1,
                                                          T* out, int64_t ws) {
  using V = Vec8<A>;
  PairWeights<A> p[2];
  pair_weights<std::is_same_v<T, BFloat16>>(l0, l1, p, p + 1);
  for (int w = 0; w < count; ++w) {
    V a0[2], b0[2], a1[2], b1[2];  // rows' taps (a, b) at columns' taps (0, 1)
    read16(x, ra0, ra1, ce[w], co[w], a0);
    read16(x, rb0, rb1, ce[w], co[w], b0);
    read16(x, ra0, ra1, ce[w + next], co[w + next], a1);
    read16(x, rb0, rb1, ce[w + next], co[w + next], b1);
    V v[2];
    for (int k = 0; k < 2; ++k) {
      v[k] = p[k].w0 * (p[k].f0 * a0[k] + p[k].f1 * b0[k]) +
             p[k].w1 * (p[k].f0 * a1[k] + p[k].f1 * b1[k]);
    }
    store_pair16(out + w * ws, v[0], v[1]);
  }
}
#endif

// One output row of group `ln`'s lanes of a 3-D forward that takes every
// plane of its strip (span), no lane at a lattice (depth included) or NaN,
// channels-last y: rows h (a0, a1) and h + 1 (b0, b1) of the planes at
// depth taps 0 and 1, columns 0 .. count. Row h + 1 of tap 1 (and, on the
// strip's first plane, `first`, of tap 0) is gathered here (row terms rb1,
// rb0) into its buffer, column by column as it is used; each column's rows'
// values serve outputs w - 1 and w from registers.
template <Isa I, typename A, typename T>
__attribute__((always_inline)) inline void span_row(bool uniform, const LaneArray<const T>& x,
                                                    i32x8 rb0, i32x8 rb1, bool first,
                                                    const i32x8* col, const Vec8<A>* a0,
                                                    Vec8<A>* b0, const Vec8<A>* a1, Vec8<A>* b1,
                                                    int count, const Lanes<A>& ln, T* out,
                                                    int64_t ws) {
  using V = Vec8<A>;
  const V w0f = ln.w0f, w1f = ln.w1f, w0w = ln.w0w, w1w = ln.w1w, w0d = ln.w0d, w1d = ln.w1d;
  const int n = ln.n;
  auto rows_at = [&](int i, V* r0, V* r1) {  // the rows' values of column i on both planes
    V c0 = b0[i];
    if (first) {
      c0 = read8<I>(x, rb0, col[i], uniform, false);
      b0[i] = c0;
    }
    const V c1 = read8<I>(x, rb1, col[i], uniform, false);
    b1[i] = c1;
    *r0 = w0f * a0[i] + w1f * c0;
    *r1 = w0f * a1[i] + w1f * c1;
  };
  V p0, p1;
  rows_at(0, &p0, &p1);
  for (int w = 0; w < count; ++w) {
    V q0, q1;
    rows_at(w + 1, &q0, &q1);
    const V v0 = w0w * p0 + w1w * q0, v1 = w0w * p1 + w1w * q1;
    store_lanes<I>(out + w * ws, 1, w0d * v0 + w1d * v1, n, false);
    p0 = q0;
    p1 = q1;
  }
}

// One output row of group `ln`'s lanes of an integer move: the lanes at
// row term `row` and column terms col[w], raw bits straight to out + w ws
// (channels-last y), the group's lanes and terms in registers along the row.
template <Isa I, typename A, typename T>
__attribute__((always_inline)) inline void move_row(bool uniform, const LaneArray<const T>& x,
                                                    i32x8 row, const i32x8* col, int count,
                                                    const Lanes<A>& ln, T* out, int64_t ws) {
  const int n = ln.n;
  if (ln.any_nan) {
    for (int w = 0; w < count; ++w) {
      store_lanes<I>(out + w * ws, 1, nan_lanes(ln, read8<I>(x, row, col[w], uniform, true)), n,
                     true);
    }
    return;
  }
  for (int w = 0; w < count; ++w) {
    store_lanes<I>(out + w * ws, 1, read8<I>(x, row, col[w], uniform, true), n, true);
  }
}

// Whether groups g and g + 1 (16-bit storage, AVX2) are read as a pair by
// two gathers (move_line's move16_avx2, the fused and strided forwards'
// read16), their column terms in pair_terms' order: unless both are uniform
// (read8's loads).
template <typename A>
bool gathers_pair(const Lanes<A>* ln) {
  return !(ln[0].uniform && ln[1].uniform);
}

// move_row for the K groups from `ln` on (K = 64 / (8 * sizeof(T)): a
// 64-byte line of channels), full and with no NaN lane, a column of all K
// at a time: as fused_pair, each line of x the lanes gather serves every
// group while it is in L1, and y's line is written whole. 16-bit storage
// in AVX2: pairs of groups (gathers_pair) whose column terms are in
// pair_terms' order, two gathers and a blend a pair (move16_avx2) instead
// of read8's widening and store_lanes' narrowing (hot 3.3 -> 6.0 elements
// a ns, benchmarks/NOTES.md v24).
template <Isa I, int K, typename A, typename T>
__attribute__((always_inline)) inline void move_line(const LaneArray<const T>& x,
                                                     const i32x8* row, const i32x8* col,
                                                     int64_t cols, int count, const Lanes<A>* ln,
                                                     T* out, int64_t ws) {
#if defined(JAXSHIFT_X86_AVX2)
  if constexpr (I == Isa::kAvx2 && sizeof(T) == 2) {
    static_assert(K % 2 == 0, "16-bit lines are pairs of groups");
    constexpr int kPairs = K / 2;
    const uint16_t* base = reinterpret_cast<const uint16_t*>(x.p);
    i32x8 re[kPairs], ro[kPairs];
    bool pair[kPairs];
    for (int q = 0; q < kPairs; ++q) {
      pair[q] = gathers_pair(ln + 2 * q);
      re[q] = row[2 * q];
      ro[q] = row[2 * q + 1];
      if (pair[q]) pair_terms(&re[q], &ro[q]);
    }
    for (int w = 0; w < count; ++w) {
      for (int q = 0; q < kPairs; ++q) {
        T* o = out + w * ws + 2 * q * kGroup;
        if (!pair[q]) {
          for (int k = 2 * q; k < 2 * q + 2; ++k) {
            store_lanes<I>(o + (k - 2 * q) * kGroup, 1,
                           read8<I>(x, row[k], col[k * cols + w], ln[k].uniform, true), kGroup,
                           true);
          }
          continue;
        }
        const Pair16At p =
            pair16_at(re[q], ro[q], col[2 * q * cols + w], col[(2 * q + 1) * cols + w]);
        move16_avx2(base, &p.even, &p.me, &p.odd, &p.mo, reinterpret_cast<uint16_t*>(o));
      }
    }
    return;
  }
#endif
  for (int w = 0; w < count; ++w) {
    for (int k = 0; k < K; ++k) {
      store_lanes<I>(out + w * ws + k * kGroup, 1,
                     read8<I>(x, row[k], col[k * cols + w], ln[k].uniform, true), kGroup, true);
    }
  }
}

// Output rows [r0, r0 + rows) of y (Wo columns) for the task's nb channels
// (tables ct), from x (H x W; strides t1, t2), both at the task's first
// channel, in one output plane of depth `dp` (3-D; a 2-D call has one).
// `move`: integer moves, gathered straight to y with raw bits. Moved rows
// hold, per output column w, the lanes at column w * t2 + m2 and (at `next`
// entries further) at w * t2 + m2 + 1: with unit strides that is the next
// entry of one row of Wo + 1, else a second half of Wo. Rows: with t1 = 1
// the moved row of position h + 1 is the next output row's first, kept in a
// ring; else both rows of each output row are gathered. A 3-D group off the
// lattice in depth has a second ring at depth tap 1, and its outputs are
// the depth stencil of the two planes' bilinear values (core/stencils.h's
// tensor product, the depth axis outermost).
// `planes` > 1 (3-D, unit strides on axes 0 and 1, not a move): the task's
// `planes` consecutive output planes from dp.pos, y's planes `ys0` apart.
// Plane d's depth tap 1 is plane d + 1's tap 0, so the moved rows of the
// strip's tap 1 are kept (two strip buffers instead of the rings, their roles
// swapped at each plane) and a group off the depth lattice gathers one plane
// a plane instead of two.
template <Isa I, typename A, typename T>
void lanes_forward_impl(int P, LaneArray<const T> x, LaneArray<T> y, Depth dp, int H, int W,
                        int t1, int t2, int Wo, const ChannelTables<A>* ct, int nb, int r0,
                        int rows, bool move, int planes, int64_t ys0) {
  using V = Vec8<A>;
  const int64_t cols = t2 == 1 ? int64_t{Wo} + 1 : 2 * int64_t{Wo};
  const bool span = planes > 1;  // the caller checked the strides and the mode
  const LaneScratch<A> sc = lane_groups(ct, nb, cols, span ? 2 * (rows + 1) : 4);
  const int groups = sc.groups;
  Lanes<A>* lanes = sc.lanes;
  i32x8* col = sc.col;
  V* ring = sc.ring;
  if (move && sizeof(T) == 2) {  // a move carries bits: those of the stored NaN
    for (int g = 0; g < groups; ++g) {
      for (int l = 0; l < kGroup; ++l) {
        T t;
        store(&t, lanes[g].nan_fill[l]);
        lanes[g].nan_fill[l] = widen1(&t, true);
      }
    }
  }
  const int extra = move ? 0 : 1;  // the stencils' second tap
  const int Wt = tile_columns<T>(lanes, groups, nb, x.cs, t1, t2, extra, Wo);
  const int ahead = reach(lanes, groups, &Lanes<A>::m1, 1, extra) + 1;
  const int up = reach(lanes, groups, &Lanes<A>::m1, -1, 0);
  const int left = reach(lanes, groups, &Lanes<A>::m2, -1, 0);
  const int right = reach(lanes, groups, &Lanes<A>::m2, 1, extra);
  // `fused`: one moved row a group, fused with the stencils (fused_row).
  // The fused rows are compiled where they pay: fused_row, strided_row and
  // span_row for float32 and 16-bit storage; float64 takes the group's
  // generic row (a third of the library's compile time is the lanes).
  constexpr bool kFuseRows = std::is_same_v<A, float>;
  // Channels-last moves take a 64-byte line of channels at a time
  // (move_line) where its kLine groups are full and have no NaN lane.
  constexpr int kLine = 64 / (kGroup * int{sizeof(T)});
  auto line_at = [&](int g) {
    bool line = kLine > 1 && g + kLine <= groups;
    for (int k = 0; line && k < kLine; ++k) {
      line = lanes[g + k].n == kGroup && !lanes[g + k].any_nan && !lanes[g + k].window;
    }
    return line;
  };
#if defined(JAXSHIFT_X86_AVX2)
  constexpr bool kPairTerms = I == Isa::kAvx2 && sizeof(T) == 2;
#else
  constexpr bool kPairTerms = false;
#endif
  bool fused = !move && t1 == 1 && t2 == 1 && !span && y.cs == 1;
  for (int g = 0; g < groups; ++g) fused &= lanes[g].all_lat_d;
  // The groups that take the window rows where their window is inside x
  // (window_row, window_move: float32 channels-last, unit strides, full
  // groups of offsets within kWindowSpan on rows and columns and one plane
  // for every lane, with no lane at a lattice or NaN, or for moves no NaN).
  constexpr bool kWindows = kFuseRows && std::is_same_v<T, float>;
  if constexpr (kWindows) {
    const bool on = (fused || (move && t1 == 1 && t2 == 1 && y.cs == 1)) && x.cs == 1 &&
                    x.ws <= kWindowPixel && windows_in_use();
    for (int g = 0; g < groups; ++g) {
      Lanes<A>& ln = lanes[g];
      if (!on || !(move ? !ln.any_nan : ln.plain) || ln.n != kGroup || ln.uniform) continue;
      int lo[3], hi[3];
      for (int a = 0; a < 3; ++a) {
        const i32x8& m = a == 0 ? ln.m0 : a == 1 ? ln.m1 : ln.m2;
        lo[a] = hi[a] = m[0];
        for (int l = 1; l < kGroup; ++l) {
          lo[a] = std::min(lo[a], m[l]);
          hi[a] = std::max(hi[a], m[l]);
        }
      }
      ln.window = lo[0] == hi[0] && hi[1] - lo[1] < kWindowSpan && hi[2] - lo[2] < kWindowSpan;
      ln.lo1 = lo[1];
      ln.hi1 = hi[1];
      ln.lo2 = lo[2];
    }
  }
  // fuse_pair: whether groups g and g + 1 take fused_pair (16-bit storage in
  // AVX2: fused_pair's Pair16 where they are not both uniform).
  auto fuse_pair = [&](int g) {
    return g + 1 < groups && lanes[g].plain && lanes[g + 1].plain && lanes[g + 1].n == kGroup &&
           !lanes[g].window && !lanes[g + 1].window &&
           (kPairTerms || lanes[g].uniform == lanes[g + 1].uniform);
  };
  auto pair16 = [&](int g) { return kPairTerms && gathers_pair(lanes + g); };
  // strided_pair: whether groups g and g + 1 take strided_pair16 (16-bit
  // storage in AVX2, channels-last, a row stride of 2 or more).
  auto strided_pair = [&](int g) {
    return kPairTerms && !move && t1 != 1 && !span && x.cs == 1 && y.cs == 1 && g + 1 < groups &&
           lanes[g].plain && lanes[g + 1].plain && lanes[g].all_lat_d && lanes[g + 1].all_lat_d &&
           lanes[g + 1].n == kGroup && pair16(g);
  };
  // The units the rows below read the groups in, decided once a task:
  // move_line's lines (channels-last moves), fused_pair's pairs (the fused
  // rows) or strided_pair16's (16-bit strided rows), else one group at a
  // time. A unit of lanes[g].unit groups starts at g (0 inside one); the
  // loops that take pairs or lines walk g += lanes[g].unit.
  for (int g = 0; g < groups;) {
    const bool two = !lanes[g].window && ((kFuseRows && fused) ? fuse_pair(g) : strided_pair(g));
    const int unit = move ? (y.cs == 1 && line_at(g) ? kLine : 1) : two ? 2 : 1;
    lanes[g].unit = unit;
    for (int k = 1; k < unit; ++k) lanes[g + k].unit = 0;
    g += unit;
  }
  for (int w0 = 0; w0 < Wo; w0 += Wt) {  // column tiles
    const int wn = std::min(Wt, Wo - w0);
    const int next = t2 == 1 ? 1 : wn;  // col, a moved row: tap 1 `next` entries on
    const int used = t2 == 1 ? wn + 1 : 2 * wn;
    for (int g = 0; g < groups; ++g) {
      const Lanes<A>& ln = lanes[g];
      if (t2 == 1) {
        column_terms(P, ln.m2, W, x.ws, x.cs, g * kGroup, w0, used, col + g * cols);
      } else {
        column_terms(P, ln.m2, W, x.ws, x.cs, g * kGroup, w0, wn, col + g * cols, t2, 0);
        column_terms(P, ln.m2, W, x.ws, x.cs, g * kGroup, w0, wn, col + g * cols + wn, t2, 1);
      }
    }
    if constexpr (kPairTerms) {  // the pairs of the units' gathers read their column
      for (int g = 0; g < groups; g += lanes[g].unit) {  // terms in pairs
        for (int k = 0; lanes[g].unit > 1 && k < lanes[g].unit; k += 2) {
          if (!gathers_pair(lanes + g + k)) continue;
          i32x8* a = col + (g + k) * cols;
          for (int i = 0; i < used; ++i) pair_terms(a + i, a + cols + i);
        }
      }
    }
    // The columns of x the tile reads (where the prefetches go).
    const int c0 = w0 * t2 - left, c1 = (w0 + wn - 1) * t2 + right + 1;
    // slot(k, g, dd)[w] = x(depth tap dd, row position + m1, w * t2 + m2)
    // for group g's lanes (a group's moved row contiguous): rings of two
    // rows, or (span) strip buffers of rows r0 .. r0 + rows, tap dd's at
    // buffer dd ^ flip.
    int flip = 0;
    auto slot = [&](int k, int g, int dd) {
      const int64_t at = g * cols;
      if (span) return ring + ((dd ^ flip) * int64_t{rows + 1} + (k - r0)) * groups * cols + at;
      return ring + ((k & 1) + 2 * dd) * groups * cols + at;
    };
    auto row_at = [&](int pos, int g, int dd) {
      const Lanes<A>& ln = lanes[g];
      return row_term(P, ln.m1, pos, H, x.rs, ln.n, ln.depth[dd]);
    };
    auto gather = [&](int pos, int g, int dd, V* out) {
      gather_row<I>(x, row_at(pos, g, dd), col + g * cols, used, lanes[g].uniform, false, out, 1);
    };
    Depth dq = dp;
    T* yp = y.p + w0 * y.ws;
    for (int r = r0 * t1 - up; r < r0 * t1 + ahead; ++r) {  // the tile's first rows
      prefetch_row(in_plane(x, dq), r, H, W, nb, c0, c1);
    }
    for (int pl = 0; pl < planes; ++pl, ++dq.pos, yp += ys0, flip ^= 1) {
      for (int g = 0; g < groups; ++g) {
        for (int dd = 0; dd < 2; ++dd) lanes[g].depth[dd] = depth_term(P, lanes[g].m0, dq, dd);
      }
      // Whether group g gathers depth tap dd on this plane (tap 0 of a group off
      // the depth lattice is the last plane's tap 1, after the first plane).
      auto gathers = [&](int g, int dd) {
        return dd == 0 ? (pl == 0 || lanes[g].all_lat_d) : !lanes[g].all_lat_d;
      };
      const LaneArray<const T> plane = in_plane(x, dq);
      if (move && y.cs == 1) {
        // Group g's row h by window_move on the output columns [a, b) of the
        // tile whose window is inside x's columns, where its rows are inside
        // x's rows; move_row's on the rest (unit strides).
        auto window_or_move = [&](int h, int g) JAXSHIFT_INLINE {
          if constexpr (kWindows) {  // (pick4's masks are 32-bit lanes)
            const Lanes<A>& ln = lanes[g];
            const int a = std::clamp(-ln.lo2 - w0, 0, wn);
            const int b = std::clamp(W - kWindowSpan + 1 - ln.lo2 - w0, a, wn);
            const int32_t depth = ln.depth[0][0];
            const bool inside = h + ln.lo1 >= 0 && h + ln.hi1 <= H - 1 &&
                                b - a >= kWindowMinCount && depth >= 0;
            T* out = yp + h * y.rs + g * kGroup;
            const i32x8 row = row_at(h, g, 0);
            if (!inside) return move_row<I>(false, x, row, col + g * cols, wn, ln, out, y.ws);
            if (a > 0) move_row<I>(false, x, row, col + g * cols, a, ln, out, y.ws);
            window_move<I, A>(x.p + depth + g * kGroup + (h + ln.lo1) * x.rs +
                                  (w0 + a + ln.lo2) * x.ws,
                              x.ws, window_bits(ln.m1, ln.lo1, ln.hi1, x.rs),
                              window_bits(ln.m2, ln.lo2), b - a, out + a * y.ws, y.ws);
            if (b < wn) {
              move_row<I>(false, x, row, col + g * cols + b, wn - b, ln, out + b * y.ws, y.ws);
            }
          }
        };
        for (int h = r0; h < r0 + rows; ++h) {
          prefetch_row(plane, h * t1 + ahead, H, W, nb, c0, c1);
          for (int g = 0; g < groups; g += lanes[g].unit) {
            if constexpr (kWindows) {
              if (lanes[g].window) {
                window_or_move(h, g);
                continue;
              }
            }
            if (lanes[g].unit > 1) {
              i32x8 rows_k[kLine];
              for (int k = 0; k < kLine; ++k) rows_k[k] = row_at(h * t1, g + k, 0);
              move_line<I, kLine>(x, rows_k, col + g * cols, cols, wn, lanes + g,
                                  yp + h * y.rs + g * kGroup, y.ws);
              continue;
            }
            move_row<I>(lanes[g].uniform, x, row_at(h * t1, g, 0), col + g * cols, wn, lanes[g],
                        yp + h * y.rs + g * kGroup, y.ws);
          }
        }
        continue;
      }
      if (move) {
        i32x8* rowt = reinterpret_cast<i32x8*>(ring);  // each group's row term
        for (int h = r0; h < r0 + rows; ++h) {
          prefetch_row(plane, h * t1 + ahead, H, W, nb, c0, c1);
          for (int g = 0; g < groups; ++g) rowt[g] = row_at(h * t1, g, 0);
          store_row<I>(yp + h * y.rs, y.ws, y.cs, wn, lanes, groups, true, [&](int w, int g) {
            const Lanes<A>& ln = lanes[g];
            return nan_lanes(ln, read8<I>(x, rowt[g], col[g * cols + w], ln.uniform, true));
          });
        }
        continue;
      }
      if constexpr (kFuseRows) {
        if (fused) {
          for (int g = 0; g < groups; g += lanes[g].unit) {
#if defined(JAXSHIFT_X86_AVX2)
            if constexpr (kPairTerms) {  // (the pairs as the rows below take them)
              if (lanes[g].unit == 2 && pair16(g)) {
                i32x8 re = row_at(r0, g, 0), ro = row_at(r0, g + 1, 0);
                pair_terms(&re, &ro);
                const i32x8* ce = col + g * cols;
                for (int i = 0; i < used; ++i) {
                  V b[2];
                  read16(x, re, ro, ce[i], ce[cols + i], b);
                  ring[g * cols + i] = b[0];
                  ring[(g + 1) * cols + i] = b[1];
                }
                continue;
              }
            }
#endif
            for (int k = g; k < g + lanes[g].unit; ++k) {
              gather_row<I>(x, row_at(r0, k, 0), col + k * cols, used, lanes[k].uniform, false,
                            ring + k * cols, 1);
              lanes[k].in_window = false;
            }
          }
          // Group g's row h by window_row on the output columns [a, b) of the
          // tile whose window is inside x's columns, where its rows are inside
          // x's rows, fused_row's on the rest. fused_row's ring entries of
          // [a, b] lapse while the group takes window rows and are gathered
          // again when it leaves them; its window ring (by input column from
          // w0 + a + lo2, after the fused rings: lane_groups' 4 rings of cols
          // hold both) is filled when it enters.
          auto window_or_fused = [&](int h, int g) JAXSHIFT_INLINE {
            Lanes<A>& ln = lanes[g];
            const int a = std::clamp(-ln.lo2 - w0, 0, wn);
            const int b = std::clamp(W - kWindowSpan - ln.lo2 - w0, a, wn);
            const int32_t depth = ln.depth[0][0];
            const bool inside = h + ln.lo1 >= 0 && h + ln.hi1 + 1 <= H - 1 &&
                                b - a >= kWindowMinCount && depth >= 0;
            T* out = yp + h * y.rs + g * kGroup;
            if (!inside) {
              if (ln.in_window) {
                gather_row<I>(x, row_at(h, g, 0), col + g * cols, used, false, false,
                              ring + g * cols, 1);
                ln.in_window = false;
              }
              fused_row<I, A, T, false>(x, row_at(h + 1, g, 0), col + g * cols, ring + g * cols,
                                        wn, ln, out, y.ws);
              return;
            }
            const int j0 = w0 + a + ln.lo2;
            const T* in = x.p + depth + g * kGroup + (h + ln.lo1) * x.rs + j0 * x.ws;
            V* wring = ring + groups * cols + g * (cols + kWindowSpan - 1);
            const WindowBits rows_k = window_bits(ln.m1, ln.lo1, ln.hi1, x.rs);
            if (!ln.in_window) {
              window_picks<I, A>(in, x.ws, b - a + kWindowSpan, rows_k, wring);
              ln.in_window = true;
            }
            const i32x8 row = row_at(h + 1, g, 0);
            if (a > 0) fused_row<I, A, T, false>(x, row, col + g * cols, ring + g * cols, a, ln,
                                                 out, y.ws);
            window_row<I>(in + x.rs, x.ws, rows_k, window_bits(ln.m2, ln.lo2), wring, b - a, ln,
                          out + a * y.ws, y.ws);
            if (b < wn) fused_row<I, A, T, false>(x, row, col + g * cols + b,
                                                  ring + g * cols + b, wn - b, ln,
                                                  out + b * y.ws, y.ws);
          };
          for (int h = r0; h < r0 + rows; ++h) {
            prefetch_row(plane, h + ahead, H, W, nb, c0, c1);
            for (int g = 0; g < groups; g += lanes[g].unit) {
              if constexpr (kWindows) {
                if (lanes[g].window) {
                  window_or_fused(h, g);
                  continue;
                }
              }
#if defined(JAXSHIFT_X86_AVX2)
              if constexpr (kPairTerms) {
                if (lanes[g].unit == 2 && pair16(g)) {
                  i32x8 re = row_at(h + 1, g, 0), ro = row_at(h + 1, g + 1, 0);
                  pair_terms(&re, &ro);
                  fused_pair<I, A, T, false, true>(x, re, ro, col + g * cols,
                                                   col + (g + 1) * cols, ring + g * cols,
                                                   ring + (g + 1) * cols, wn, lanes[g],
                                                   lanes[g + 1], yp + h * y.rs + g * kGroup,
                                                   y.ws);
                  continue;
                }
              }
#endif
              if (lanes[g].unit == 2) {
                with_uniform(lanes[g].uniform, [&](auto uniform) {
                  fused_pair<I, A, T, uniform()>(
                      x, row_at(h + 1, g, 0), row_at(h + 1, g + 1, 0), col + g * cols,
                      col + (g + 1) * cols, ring + g * cols, ring + (g + 1) * cols, wn, lanes[g],
                      lanes[g + 1], yp + h * y.rs + g * kGroup, y.ws);
                });
                continue;
              }
              with_uniform(lanes[g].uniform, [&](auto uniform) {
                fused_row<I, A, T, uniform()>(x, row_at(h + 1, g, 0), col + g * cols,
                                              ring + g * cols, wn, lanes[g],
                                              yp + h * y.rs + g * kGroup, y.ws);
              });
            }
          }
          continue;
        }
      }
      if (t1 == 1) {
        for (int g = 0; g < groups; ++g) {
          for (int dd = 0; dd < 2; ++dd) {
            if (gathers(g, dd)) gather(r0, g, dd, slot(r0, g, dd));
          }
        }
      }
      for (int h = r0; h < r0 + rows; ++h) {
        prefetch_row(plane, h * t1 + ahead, H, W, nb, c0, c1);
        // a: the moved row of position h * t1, b: of h * t1 + 1.
        const int ka = t1 == 1 ? h : 0, kb = t1 == 1 ? h + 1 : 1;
        for (int g = 0; g < groups; g += lanes[g].unit) {  // a group's row at a time
#if defined(JAXSHIFT_X86_AVX2)
          if constexpr (kPairTerms) {
            if (lanes[g].unit == 2) {  // (strided_pair)
              i32x8 ra0 = row_at(h * t1, g, 0), ra1 = row_at(h * t1, g + 1, 0);
              i32x8 rb0 = row_at(h * t1 + 1, g, 0), rb1 = row_at(h * t1 + 1, g + 1, 0);
              pair_terms(&ra0, &ra1);
              pair_terms(&rb0, &rb1);
              strided_pair16(x, ra0, ra1, rb0, rb1, col + g * cols, col + (g + 1) * cols, next,
                             wn, lanes[g], lanes[g + 1], yp + h * y.rs + g * kGroup, y.ws);
              continue;
            }
          }
#endif
          if constexpr (kFuseRows) {
            if (t1 != 1 && !span && lanes[g].plain && lanes[g].all_lat_d) {
              strided_row<I>(lanes[g].uniform, x, row_at(h * t1, g, 0), row_at(h * t1 + 1, g, 0),
                             col + g * cols, next, wn, lanes[g], yp + h * y.rs + g * kGroup * y.cs,
                             y.ws, y.cs);
              continue;
            }
            if (span && t1 == 1 && y.cs == 1 && lanes[g].plain && !lanes[g].all_lat_d &&
                !any_lane(lanes[g].lat_d)) {
              span_row<I>(lanes[g].uniform, x, row_at(h + 1, g, 0), row_at(h + 1, g, 1), pl == 0,
                          col + g * cols, slot(h, g, 0), slot(h + 1, g, 0), slot(h, g, 1),
                          slot(h + 1, g, 1), wn, lanes[g], yp + h * y.rs + g * kGroup, y.ws);
              continue;
            }
          }
          for (int dd = 0; dd < 2; ++dd) {
            if (!gathers(g, dd)) continue;
            if (t1 != 1) {
              gather(h * t1, g, dd, slot(ka, g, dd));
              if (!lanes[g].all_lat_f) gather(h * t1 + 1, g, dd, slot(kb, g, dd));
            } else if (!lanes[g].all_lat_f) {
              gather(h + 1, g, dd, slot(kb, g, dd));
            } else if (h > r0) {  // row h alone: it was not gathered as the row below h - 1
              gather(h, g, dd, slot(ka, g, dd));
            }
          }
          const V* a = slot(ka, g, 0);
          const V* b = slot(kb, g, 0);
          const V* a1 = slot(ka, g, 1);  // depth tap 1 (groups off the depth lattice)
          const V* b1 = slot(kb, g, 1);
          const Lanes<A> ln = lanes[g];  // a copy: no store to y reaches it
          auto value = [&](const V* p, const V* q, int w) {
            return bilinear(ln, p[w], q[w], p[w + next], q[w + next]);
          };
          store_row<I>(yp + h * y.rs + g * kGroup * y.cs, y.ws, y.cs, wn, &ln, 1, false,
                       [&](int w, int) {
                         return depth_stencil(ln, value(a, b, w), [&] { return value(a1, b1, w); });
                       });
        }
      }
    }
  }
}
JAXSHIFT_ISA_VERSIONS(lanes_forward)

// --- Backward ---------------------------------------------------------------

// The positions j outside [0, L) that the forward's outputs o in [0, L)
// read on an axis (j = o + m + tap, taps 0 .. hi) for offsets m in [m_lo,
// m_hi] and that padding P folds onto an element i = pad_index(j): border,
// reflect and symmetric (periodic is read wrapped instead; zeros answers
// zero), as (j, i) pairs in increasing j. The input gradient of element i
// collects, besides its own position's, the adjoint at each such j (zero
// where no offset reads j).
inline void folds_of(int P, int L, int m_lo, int m_hi, int hi,
                     std::vector<std::pair<int, int>>* out) {
  out->clear();
  if (P == kZeros || P == kPeriodic) return;
  const int first = m_lo, last = L - 1 + m_hi + hi;
  for (int j = first; j <= std::min(last, -1); ++j) out->emplace_back(j, pad_index_of(P, j, L));
  for (int j = std::max(first, L); j <= last; ++j) out->emplace_back(j, pad_index_of(P, j, L));
}

// Per-thread room for the folds of three axes (not inlined: GCC would look
// the thread-local address up again at every use).
__attribute__((noinline)) inline std::vector<std::pair<int, int>>* fold_scratch() {
  thread_local std::vector<std::pair<int, int>> folds[3];
  return folds;
}

// fn(j0, j1) for each position (plane j0, row j1) but (d, r) itself that
// the folds of axes 0 and 1 (folds_of's pairs, folds[0] and folds[1]) fold
// onto plane d, row r, in a fixed order.
template <typename Fn>
void for_each_row_folded_onto(const std::vector<std::pair<int, int>>* folds, int d, int r,
                              const Fn& fn) {
  auto onto = [](const std::vector<std::pair<int, int>>& fl, int i, const auto& f) {
    f(i);
    for (const auto& [j, k] : fl) {
      if (k == i) f(j);
    }
  };
  onto(folds[0], d, [&](int j0) {
    onto(folds[1], r, [&](int j1) {
      if (j0 != d || j1 != r) fn(j0, j1);
    });
  });
}

// Row i of dx (W columns a `ws` apart, channels `cs` apart, at the task's
// first channel): the elements of the task's channels outside their simple
// intervals (simple[4 b ..]: row lo, row hi, column lo, column hi), each
// edge(b, i, j).
template <typename A, typename T, typename Edge>
void fold_edges(T* out, int64_t ws, int64_t cs, int W, int i, const ChannelTables<A>* ct,
                const int* simple, const Edge* edge, int nb) {
  for (int b = 0; b < nb; ++b) {
    if (nan_shift(ct[b].f)) continue;
    for_each_folded(i, W, simple + 4 * b,
                    [&](int j) { narrow1(out + j * ws + b * cs, (*edge)(b, i, j), false); });
  }
}

// Rows [r0, r0 + rows) of dx for the task's nb channels (rounded tables ct)
// in input plane dp.pos of axis 0 (3-D; a 2-D call has one), from g (at the
// sample's first plane; dx at the plane), both at the task's first channel:
// the transposed stencils on moved rows of g through the adjoint's padding,
// in 3-D on the planes at depth taps 0 and -1 (dp: g's depth). Where P folds
// reads back onto the array (border, reflect, symmetric: folds_of), an
// element's gradient is its own position's adjoint plus the adjoint at each
// position folded onto it, as in cpu/direct.h: the moved rows reach the
// folded columns, the planes and rows folded onto a row are gathered for
// it, and a row's sums are kept in lanes until it is stored (one rounding
// to 16-bit storage). Where the folded columns reach more than
// kFoldColumns beyond a row (shifts far beyond the axis) the folded
// elements take edge(b, row, column) instead (core/elementwise.h
// adjoint_value, outside channel b's simple[4 b ..] = [row lo, row hi,
// column lo, column hi]), as the strided calls do: the moved rows stay
// within a few times the plan's budget.
constexpr int kFoldColumns = 32;
template <Isa I, typename A, typename T>
void lanes_adjoint_impl(int P, LaneArray<const T> g, LaneArray<T> dx, Depth dp, int H, int W,
                        const ChannelTables<A>* ct, const int* simple, const EdgeRef<A>* edge,
                        int nb, int r0, int rows, int planes, int64_t xs0) {
  using V = Vec8<A>;
  const int AP = adjoint_padding(P);
  std::vector<std::pair<int, int>>* folds = nullptr;  // (where P folds)
  int jlo = 0, jhi = W - 1;  // the columns whose adjoint a row needs
  bool fold = false;         // folds by rows (else none, or edge's)
  if (P != kZeros && P != kPeriodic) {
    folds = fold_scratch();
    int lo[3] = {0, 0, 0}, hi[3] = {0, 0, 0};  // the task's offsets' range per axis
    bool off[3] = {false, false, false};       // some channel off the lattice
    for (int b = 0; b < nb; ++b) {
      if (nan_shift(ct[b].f)) continue;
      for (int a = 0; a < 3; ++a) {
        lo[a] = std::min(lo[a], ct[b].m[a]);
        hi[a] = std::max(hi[a], ct[b].m[a]);
        off[a] = off[a] || !at_lattice(ct[b].f[a]);
      }
    }
    folds_of(P, dp.L, lo[0], hi[0], off[0], &folds[0]);
    folds_of(P, H, lo[1], hi[1], off[1], &folds[1]);
    folds_of(P, W, lo[2], hi[2], off[2], &folds[2]);
    if (!folds[2].empty()) {
      jlo = std::min(0, folds[2].front().first);
      jhi = std::max(W - 1, folds[2].back().first);
    }
    fold = jhi - jlo + 1 - W <= kFoldColumns;
    if (!fold) jlo = 0, jhi = W - 1;
  }
  const int64_t cols = int64_t{jhi - jlo} + 2;  // moved columns jlo - 1 .. jhi
  // `planes` > 1 (3-D, unit strides, zeros or periodic padding: no folds):
  // the task's input planes from dp.pos, dx's `xs0` apart; input plane d's
  // depth tap 0 is plane d + 1's tap -1, so the strip's moved rows are kept
  // (strip buffers per plane read, tap dd of plane pl in buffer (pl + dd) %
  // 2) and a group off the depth lattice gathers one plane a plane.
  const bool span = planes > 1;
  // a ring of 4 moved rows (span: two strips of rows r0 - 1 .. r0 + rows -
  // 1); where P folds, 4 for folded rows and a row of sums
  const int nrows = span ? 2 * (rows + 1) : fold ? 9 : 4;  // moved rows a group
  const LaneScratch<A> sc = lane_groups(ct, nb, cols, nrows);
  const int groups = sc.groups;
  Lanes<A>* lanes = sc.lanes;
  i32x8* col = sc.col;
  V* ring = sc.ring;
  // Column tiles (tile_columns) where no edge is folded after the row
  // (fold_edges) and the task takes one plane: tile [w0, w0 + wn) gathers
  // moved columns clo - 1 .. chi, its own and, where P folds by rows, the
  // columns folded onto it (folds[2]'s (j, k) with k in the tile), and
  // re-gathers its first rows.
  const bool edges = !fold && P != kZeros && P != kPeriodic;  // fold_edges after each row
  const int Wt = span || edges ? W : tile_columns<T>(lanes, groups, nb, g.cs, 1, 1, 1, W);
  int w0 = 0, wn = W, clo = jlo, used = static_cast<int>(cols);  // the tile
  // A moved row of group gr: row(k, gr)[j + 1 - clo] = g(plane - m0 - dd,
  // i - m1, j - m2) per lane; rows 0 .. 3 a ring (moved(i, dd, gr)), 4 .. 7
  // the rows of a folded position, 8 the sums (sum[j - w0]). A group's rows
  // are contiguous and a row is taken group by group (as the forward's,
  // v17), so a group's weights stay in registers along it.
  int pl = 0;
  auto row = [&](int k, int gr) { return ring + (int64_t{gr} * nrows + k) * cols; };
  auto moved = [&](int i, int dd, int gr) {
    if (span) return row(((pl + dd) & 1) * (rows + 1) + (i - r0 + 1), gr);
    return row((i & 1) + 2 * dd, gr);
  };
  auto gather = [&](int i, int gr, const i32x8& depth, V* out) {
    const Lanes<A>& ln = lanes[gr];
    gather_row<I>(g, row_term(AP, -ln.m1, i, H, g.rs, ln.n, depth), col + gr * cols, used,
                  ln.uniform, false, out, 1);
  };
  // The adjoint at column j from the moved rows at row taps 0 (a) and -1
  // (b), depth taps 0 and -1 (a1, b1) of group ln: X[j] = X's row at j.
  auto adjoint = [&](const Lanes<A>& ln, const V* a, const V* b, const V* a1, const V* b1,
                     int j) {
    const int l = j - 1;
    return depth_stencil(ln, bilinear(ln, a[j], b[j], a[l], b[l]),
                         [&] { return bilinear(ln, a1[j], b1[j], a1[l], b1[l]); });
  };
  const int ahead = reach(lanes, groups, &Lanes<A>::m1, -1, 0) + 1;
  const int left = reach(lanes, groups, &Lanes<A>::m2, 1, 0);
  const int right = reach(lanes, groups, &Lanes<A>::m2, -1, 0);
  for (; pl < planes; ++pl, ++dp.pos, dx.p += xs0) {
    for (int gr = 0; gr < groups; ++gr) {
      for (int dd = 0; dd < 2; ++dd) lanes[gr].depth[dd] = depth_term(AP, -lanes[gr].m0, dp, -dd);
    }
    // Whether group gr gathers depth tap dd on this plane (tap -1 of a group
    // off the depth lattice is the last plane's tap 0, after the first plane).
    auto gathers = [&](int gr, int dd) {
      return dd == 0 || (!lanes[gr].all_lat_d && pl == 0);
    };
    const LaneArray<const T> plane = in_plane(g, dp);
    for (w0 = 0; w0 < W; w0 += Wt) {
      wn = std::min(Wt, W - w0);
      int chi = w0 + wn - 1;  // the tile's moved columns clo - 1 .. chi
      clo = Wt < W ? w0 : jlo;
      if (Wt < W && fold) {
        for (const auto& [j, k] : folds[2]) {
          if (k >= w0 && k < w0 + wn) clo = std::min(clo, j), chi = std::max(chi, j);
        }
      }
      if (Wt == W) chi = jhi;
      used = chi - clo + 2;
      if (Wt < W || (pl == 0 && w0 == 0)) {
        for (int gr = 0; gr < groups; ++gr) {
          column_terms(AP, -lanes[gr].m2, W, g.ws, g.cs, gr * kGroup, clo - 1, used,
                       col + gr * cols);
        }
      }
      const int64_t origin = 1 - clo;  // where column 0 is in a moved row
      const int c0 = clo - 1 - left, c1 = chi + 1 + right;  // the columns of g read
      for (int gr = 0; gr < groups; ++gr) {
        if (lanes[gr].all_lat_f) continue;
        for (int dd = 0; dd < 2; ++dd) {
          if (gathers(gr, dd)) gather(r0 - 1, gr, lanes[gr].depth[dd], moved(r0 - 1, dd, gr));
        }
      }
      for (int i = r0; i < r0 + rows; ++i) {
        prefetch_row(plane, i + ahead, H, W, nb, c0, c1);
        T* out = dx.p + i * dx.rs;
        for (int gr = 0; gr < groups; ++gr) {
          const Lanes<A>& ln = lanes[gr];
          for (int dd = 0; dd < 2; ++dd) {
            if (gathers(gr, dd)) gather(i, gr, ln.depth[dd], moved(i, dd, gr));
          }
          const V* a = moved(i, 0, gr) + origin;      // a[j] = G(i - m1, j - m2)
          const V* b = moved(i - 1, 0, gr) + origin;  // b[j] = G(i - 1 - m1, j - m2)
          const V* a1 = moved(i, 1, gr) + origin;     // the same at depth tap -1
          const V* b1 = moved(i - 1, 1, gr) + origin;
          T* og = out + w0 * dx.ws + gr * kGroup * dx.cs;
          if (!fold) {
            store_row<I>(og, dx.ws, dx.cs, wn, lanes + gr, 1, false,
                         [&](int j, int) { return adjoint(ln, a, b, a1, b1, w0 + j); });
            continue;
          }
          V* sum = row(8, gr);  // sum[j - w0]: the row's gradient so far
          // adds the adjoint row (a, b, a1, b1) and its folded columns to sum
          auto add_row = [&](const V* ra, const V* rb, const V* ra1, const V* rb1, bool first) {
            for (int j = 0; j < wn; ++j) {
              const V v = adjoint(ln, ra, rb, ra1, rb1, w0 + j);
              sum[j] = first ? v : sum[j] + v;
            }
            for (const auto& [j, k] : folds[2]) {
              if (k >= w0 && k < w0 + wn) sum[k - w0] += adjoint(ln, ra, rb, ra1, rb1, j);
            }
          };
          add_row(a, b, a1, b1, true);
          for_each_row_folded_onto(folds, dp.pos, i, [&](int d2, int i2) {
            const Depth dp2{dp.L, dp.s, d2};
            for (int dd = 0; dd <= !ln.all_lat_d; ++dd) {
              const i32x8 depth = depth_term(AP, -ln.m0, dp2, -dd);
              gather(i2, gr, depth, row(4 + 2 * dd, gr));
              if (!ln.all_lat_f) gather(i2 - 1, gr, depth, row(5 + 2 * dd, gr));
            }
            add_row(row(4, gr) + origin, row(5, gr) + origin, row(6, gr) + origin,
                    row(7, gr) + origin, false);
          });
          store_row<I>(og, dx.ws, dx.cs, wn, lanes + gr, 1, false,
                       [&](int j, int) { return nan_lanes(ln, sum[j]); });
        }
        if (edges) fold_edges(out, dx.ws, dx.cs, W, i, ct, simple, edge, nb);
      }
    }
  }
}
JAXSHIFT_ISA_VERSIONS(lanes_adjoint)

// The per-lane term of the outputs that input position i's tap `tap` (0 or
// 1) collects along an axis of stride t and Lo outputs, read through zeros:
// o = (i - dm - tap) / t where that divides and 0 <= o < Lo, as o * s, else
// -1; lanes >= n read nothing.
inline i32x8 strided_term(const i32x8& dm, int i, int tap, int t, int Lo, int64_t s, int n) {
  i32x8 r;
  for (int l = 0; l < 8; ++l) {
    const int q = i - dm[l] - tap;
    r[l] = (l >= n || q < 0 || q % t != 0 || q / t >= Lo) ? -1 : static_cast<int32_t>(q / t * s);
  }
  return r;
}

// Lane-wise a + b, or -1 where either is.
inline i32x8 add_terms(const i32x8& a, const i32x8& b) {
  return (a | b) < 0 ? i32x8{} - 1 : a + b;
}

// Of an axis' taps 0 and 1 (their terms t0, t1 per lane, -1 where a tap
// collects no output): tap 0's term where it reads, else tap 1's (not at
// the lattice, where tap 1 has no weight); one[l]: lane l took tap 1.
template <typename M>
i32x8 pick_tap(const i32x8& t0, const i32x8& t1, const M& lat, bool* one) {
  i32x8 r;
  for (int l = 0; l < 8; ++l) {
    one[l] = t0[l] < 0 && !lat[l];
    r[l] = one[l] ? t1[l] : t0[l];
  }
  return r;
}

// lanes_adjoint for a call with strides: input row i's tap j on an axis
// collects output (i - m - j) / t where that divides, per lane, so each
// output vector gathers its (up to 8) taps from g directly, through zeros;
// every position where a read folds (the periodic padding's too: `simple`
// from simple_interval with wrapped = false) takes edge. Rows [r0, r0 +
// rows) of input plane `plane` of axis 0 (dx at the plane, g at the
// sample's first plane).
template <Isa I, typename A, typename T>
void lanes_adjoint_strided_impl(int P, LaneArray<const T> g, LaneArray<T> dx, const Axis* ax,
                                int plane, const ChannelTables<A>* ct, const int* simple,
                                const EdgeRef<A>* edge, int nb, int r0, int rows) {
  using V = Vec8<A>;
  const int W = ax[2].L;
  // column terms 2 a column (taps 0, 1); in the ring the row terms of 4 a
  // group (with one tap, the first of each group's 4 used), then 2 weights
  // a group, and in its second row the columns' weights
  const int64_t cols = std::max<int64_t>(2 * int64_t{W}, 8);
  const LaneScratch<A> sc = lane_groups(ct, nb, cols, 2);
  const int groups = sc.groups;
  Lanes<A>* lanes = sc.lanes;
  i32x8* col = sc.col;
  // terms[4 gr + 2 dd + tap]: row tap `tap` at depth tap dd, depth term added
  i32x8* terms = reinterpret_cast<i32x8*>(sc.ring);
  // With a stride of 2 or more on every axis, at most one of an axis' taps 0
  // and 1 collects an output (of two consecutive integers, at most one
  // divides), and a lane at the lattice reads tap 0 alone: each lane reads
  // at most one element of g for an input, so one gather serves a vector,
  // at per-lane terms and weights of the tap that divides. The value is the
  // stencils' (their other taps read zeros): wd (wc (wr v)), no weight on a
  // lattice axis' tap (its weight is 1), as bilinear and depth_stencil
  // round it.
  if (ax[1].t > 1 && ax[2].t > 1 && (!ax[0].present || ax[0].t > 1)) {
    V* wcol = sc.ring + groups * cols;  // wcol[gr * cols + j]: column j's weight per lane
    V* wd = reinterpret_cast<V*>(terms + 4 * groups);  // after the terms: 2 a group
    V* wr = wd + groups;
    bool one[8];
    for (int gr = 0; gr < groups; ++gr) {
      Lanes<A>& ln = lanes[gr];
      i32x8 lane;
      for (int l = 0; l < 8; ++l) lane[l] = static_cast<int32_t>((gr * kGroup + l) * g.cs);
      for (int j = 0; j < W; ++j) {
        col[gr * cols + j] = add_terms(
            pick_tap(strided_term(ln.m2, j, 0, ax[2].t, ax[2].Lo, g.ws, 8),
                     strided_term(ln.m2, j, 1, ax[2].t, ax[2].Lo, g.ws, 8), ln.lat_w, one),
            lane);
        for (int l = 0; l < 8; ++l) wcol[gr * cols + j][l] = one[l] ? ln.w1w[l] : ln.w0w[l];
      }
      ln.depth[0] = pick_tap(strided_term(ln.m0, plane, 0, ax[0].t, ax[0].Lo, ax[0].sy, 8),
                             strided_term(ln.m0, plane, 1, ax[0].t, ax[0].Lo, ax[0].sy, 8),
                             ln.lat_d, one);
      for (int l = 0; l < 8; ++l) wd[gr][l] = one[l] ? ln.w1d[l] : ln.w0d[l];
    }
    for (int i = r0; i < r0 + rows; ++i) {
      for (int gr = 0; gr < groups; ++gr) {
        const Lanes<A>& ln = lanes[gr];
        terms[gr] = add_terms(pick_tap(strided_term(ln.m1, i, 0, ax[1].t, ax[1].Lo, g.rs, ln.n),
                                       strided_term(ln.m1, i, 1, ax[1].t, ax[1].Lo, g.rs, ln.n),
                                       ln.lat_f, one),
                              ln.depth[0]);
        for (int l = 0; l < 8; ++l) wr[gr][l] = one[l] ? ln.w1f[l] : ln.w0f[l];
      }
      T* out = dx.p + i * dx.rs;
      store_row<I>(out, dx.ws, dx.cs, W, lanes, groups, false, [&](int j, int gr) {
        const Lanes<A>& ln = lanes[gr];
        V v = wcol[gr * cols + j] * (wr[gr] * read8<I>(g, terms[gr], col[gr * cols + j],
                                                        ln.uniform, false));
        if (!ln.all_lat_d) v = ln.lat_d ? v : wd[gr] * v;
        return nan_lanes(ln, v);
      });
      if (P != kZeros) fold_edges(out, dx.ws, dx.cs, W, i, ct, simple, edge, nb);
    }
    return;
  }
  for (int gr = 0; gr < groups; ++gr) {
    Lanes<A>& ln = lanes[gr];
    i32x8 lane;
    for (int l = 0; l < 8; ++l) lane[l] = static_cast<int32_t>((gr * kGroup + l) * g.cs);
    for (int j = 0; j < W; ++j) {
      for (int tap = 0; tap < 2; ++tap) {
        col[gr * cols + 2 * j + tap] = add_terms(
            strided_term(ln.m2, j, tap, ax[2].t, ax[2].Lo, g.ws, 8), lane);
      }
    }
    for (int dd = 0; dd < 2; ++dd) {
      ln.depth[dd] = strided_term(ln.m0, plane, dd, ax[0].t, ax[0].Lo, ax[0].sy, 8);
    }
  }
  for (int i = r0; i < r0 + rows; ++i) {
    for (int gr = 0; gr < groups; ++gr) {
      const Lanes<A>& ln = lanes[gr];
      for (int tap = 0; tap < 2; ++tap) {
        const i32x8 r = strided_term(ln.m1, i, tap, ax[1].t, ax[1].Lo, g.rs, ln.n);
        for (int dd = 0; dd < 2; ++dd) terms[4 * gr + 2 * dd + tap] = add_terms(r, ln.depth[dd]);
      }
    }
    T* out = dx.p + i * dx.rs;
    store_row<I>(out, dx.ws, dx.cs, W, lanes, groups, false, [&](int j, int gr) {
      const Lanes<A>& ln = lanes[gr];
      const i32x8* c = col + gr * cols + 2 * j;
      auto at = [&](int dd) {  // the 2-D adjoint stencil at depth tap dd
        const i32x8* r = terms + 4 * gr + 2 * dd;
        const V a0 = read8<I>(g, r[0], c[0], ln.uniform, false);
        const V b0 = ln.all_lat_f ? a0 : read8<I>(g, r[1], c[0], ln.uniform, false);
        const V a1 = ln.all_lat_w ? a0 : read8<I>(g, r[0], c[1], ln.uniform, false);
        const V b1 =
            ln.all_lat_f || ln.all_lat_w ? a0 : read8<I>(g, r[1], c[1], ln.uniform, false);
        return bilinear(ln, a0, b0, a1, b1);
      };
      return depth_stencil(ln, at(0), [&] { return at(1); });
    });
    if (P != kZeros) fold_edges(out, dx.ws, dx.cs, W, i, ct, simple, edge, nb);
  }
}
JAXSHIFT_ISA_VERSIONS(lanes_adjoint_strided)

// Adds each group's shift-gradient sums of axes [first, 3) to acc[3 b + a]
// of its lanes' channels b, skipping NaN channels (the finish fills them):
// a group's `per` sums are those of axes 3 - per .. 2, at sums[per gr].
template <typename A>
void add_group_sums(const Lanes<A>* lanes, int groups, const Vec8<A>* sums, int per, int first,
                    A* acc) {
  for (int gr = 0; gr < groups; ++gr) {
    const Lanes<A>& ln = lanes[gr];
    for (int q = 0; q < ln.n; ++q) {
      if (ln.nan[q]) continue;
      for (int a = first; a < 3; ++a) {
        acc[3 * (gr * kGroup + q) + a] += sums[per * gr + a - (3 - per)][q];
      }
    }
  }
}

// The one-pass backwards' terms at a column off every lattice (backward_row,
// backward3_row, direct.h's backward_direct): g's moved rows a (row tap 0)
// and b (tap 1) at this column (k) and the one before (l), and the rows'
// values there, rk = w0f ak + w1f bk and rl: `value`, the bilinear's (the
// input gradient's) value; `slope_f` and `slope_w`, the transposed
// d out / d shift_1 and d out / d shift_2 that x multiplies in the shift
// gradient's sums (transposed_slopes' plain terms). In 3-D, depth3 combines
// the terms of depth taps 0 and 1 by the depth stencil, `slope_d` the
// transposed d out / d shift_0.
template <typename V>
struct PlainTerms {
  V value, slope_d, slope_f, slope_w;
};
template <typename V>
__attribute__((always_inline)) inline PlainTerms<V> plain_terms(V w0w, V w1w, V ak, V al, V bk,
                                                                V bl, V rk, V rl) {
  return {w0w * rk + w1w * rl, V{}, (w0w * ak + w1w * al) - (w0w * bk + w1w * bl), rk - rl};
}
template <typename V>
__attribute__((always_inline)) inline PlainTerms<V> depth3(V w0d, V w1d, const PlainTerms<V>& t0,
                                                           const PlainTerms<V>& t1) {
  return {w0d * t0.value + w1d * t1.value, t0.value - t1.value,
          w0d * t0.slope_f + w1d * t1.slope_f, w0d * t0.slope_w + w1d * t1.slope_w};
}

// The one-pass backwards' transposed slopes of a group at entry k of moved
// rows of g a (row tap 0), b (tap 1) and c (tap -1, the row lattice's), l
// = k - groups and u = k + groups the columns to its left and right: tf,
// the transposed d out / d shift_1 (the rows' slope inside the columns'
// value), tw, d out / d shift_2 (the rows' value inside the columns'
// slope), as lanes_shift_grad_impl's terms (half, mhalf: 0.5 and -0.5).
template <typename A, typename V>
__attribute__((always_inline)) inline void transposed_slopes(const Lanes<A>& ln, const V* a,
                                                             const V* b, const V* c, int k,
                                                             int l, int u, V half, V mhalf,
                                                             V* tf, V* tw) {
  if (ln.plain) {
    auto rw = [&](int q) { return ln.w0f * a[q] + ln.w1f * b[q]; };
    const PlainTerms<V> t = plain_terms(ln.w0w, ln.w1w, a[k], a[l], b[k], b[l], rw(k), rw(l));
    *tf = t.slope_f;
    *tw = t.slope_w;
  } else {
    auto cw = [&](const V* r) {
      const V v = ln.w0w * r[k];
      return ln.lat_w ? v : v + ln.w1w * r[l];
    };
    auto rw = [&](int q) {
      const V v = ln.w0f * a[q];
      return ln.lat_f ? v : v + ln.w1f * b[q];
    };
    *tf = ln.lat_f ? half * cw(c) + mhalf * cw(b) : cw(a) - cw(b);
    *tw = ln.lat_w ? half * rw(u) + mhalf * rw(l) : rw(k) - rw(l);
  }
}

// One row of the one-pass backward (lanes_backward_impl) for a group with
// no lane at the lattice or NaN: moved rows of g a (row tap 0) and b (tap
// 1) at columns -1 .. count, x and dx at the row's first pixel of the group
// (pixels ws apart, lanes cs apart). dx: bilinear's value (or, `moves`,
// the rounded tables' element of a and b), the sums (sums[0], sums[1]) as
// transposed_slopes' plain terms, in pixel order. Each column's rows'
// value is taken once and serves columns j and j + 1.
template <Isa I, typename A, typename T>
__attribute__((always_inline)) inline void backward_row(const Lanes<A>& ln, const Vec8<A>* a,
                                                        const Vec8<A>* b, bool moves,
                                                        const T* xr, int64_t xws, int64_t xcs,
                                                        T* out, int64_t ws, int64_t cs, int count,
                                                        Vec8<A>* sums) {
  using V = Vec8<A>;
  const V w0f = ln.w0f, w1f = ln.w1f, w0w = ln.w0w, w1w = ln.w1w;
  const auto up_f = ln.up_f, up_w = ln.up_w;
  const int n = ln.n;
  V sf = sums[0], sw = sums[1];
  V al = a[-1], bl = b[-1];
  V rl = w0f * al + w1f * bl;
  for (int j = 0; j < count; ++j) {
    const V ak = a[j], bk = b[j];
    const V rk = w0f * ak + w1f * bk;
    const PlainTerms<V> t = plain_terms(w0w, w1w, ak, al, bk, bl, rk, rl);
    const V d = moves ? (up_w ? (up_f ? bl : al) : (up_f ? bk : ak)) : t.value;
    store_lanes<I>(out + j * ws, cs, d, n, false);
    const V xv = load_lanes<I>(xr + j * xws, xcs, n);
    sf += xv * t.slope_f;
    sw += xv * t.slope_w;
    al = ak;
    bl = bk;
    rl = rk;
  }
  sums[0] = sf;
  sums[1] = sw;
}

// One row of the 3-D one-pass backward (lanes_backward3_impl) for a group
// with no lane at a lattice (depth included) or NaN: moved rows of g a0, b0
// (S_d, row taps 0 and 1) and a1, b1 (S_d-1) at columns -1 .. count, x and
// dx as backward_row's. dx: the depth stencil of the 2-D values (or,
// `moves`, the rounded tables' element), the sums (sums[0 .. 2]: depth,
// rows, columns) as lanes_backward3_impl's plain terms, in pixel order.
// Each column's rows' values are taken once and serve columns j and j + 1.
template <Isa I, typename A, typename T>
__attribute__((always_inline)) inline void backward3_row(
    const Lanes<A>& ln, const Vec8<A>* a0, const Vec8<A>* b0, const Vec8<A>* a1,
    const Vec8<A>* b1, bool moves, const T* xr, int64_t xws, int64_t xcs, T* out, int64_t ws,
    int64_t cs, int count, Vec8<A>* sums) {
  using V = Vec8<A>;
  const V w0f = ln.w0f, w1f = ln.w1f, w0w = ln.w0w, w1w = ln.w1w, w0d = ln.w0d, w1d = ln.w1d;
  const auto up_d = ln.up_d, up_f = ln.up_f, up_w = ln.up_w;
  const int n = ln.n;
  V sd = sums[0], sf = sums[1], sw = sums[2];
  V a0l = a0[-1], b0l = b0[-1], a1l = a1[-1], b1l = b1[-1];
  V r0l = w0f * a0l + w1f * b0l, r1l = w0f * a1l + w1f * b1l;
  for (int j = 0; j < count; ++j) {
    const V a0k = a0[j], b0k = b0[j], a1k = a1[j], b1k = b1[j];
    const V r0k = w0f * a0k + w1f * b0k, r1k = w0f * a1k + w1f * b1k;
    const PlainTerms<V> t = depth3(w0d, w1d, plain_terms(w0w, w1w, a0k, a0l, b0k, b0l, r0k, r0l),
                                   plain_terms(w0w, w1w, a1k, a1l, b1k, b1l, r1k, r1l));
    V d = t.value;
    if (moves) {
      const V p0 = up_w ? (up_f ? b0l : a0l) : (up_f ? b0k : a0k);
      const V p1 = up_w ? (up_f ? b1l : a1l) : (up_f ? b1k : a1k);
      d = up_d ? p1 : p0;
    }
    store_lanes<I>(out + j * ws, cs, d, n, false);
    const V xv = load_lanes<I>(xr + j * xws, xcs, n);
    sd += xv * t.slope_d;
    sf += xv * t.slope_f;
    sw += xv * t.slope_w;
    a0l = a0k;
    b0l = b0k;
    a1l = a1k;
    b1l = b1k;
    r0l = r0k;
    r1l = r1k;
  }
  sums[0] = sd;
  sums[1] = sf;
  sums[2] = sw;
}

// One output row of lanes_shift_grad_impl's sums for a 2-D group with no
// lane at a lattice or NaN, unit column stride: the moved rows of x at row
// taps 0 (mid) and 1 (down), mid[w] at output column w, for w in [0,
// count], g's row at gp; sums[0], sums[1] (rows, columns) add d out / d
// shift times g per lane in column order. A column's rows' slope and value
// serve it as the left tap and the column before as the right one: the
// terms of lanes_shift_grad_impl's plain groups, each taken once.
template <Isa I, typename A, typename T>
__attribute__((always_inline)) inline void shift_grad_row(const Lanes<A>& ln, const Vec8<A>* mid,
                                                          const Vec8<A>* down, const T* gp,
                                                          int64_t ws, int64_t cs, int count,
                                                          Vec8<A>* sums) {
  using V = Vec8<A>;
  const V w0f = ln.w0f, w1f = ln.w1f, w0w = ln.w0w, w1w = ln.w1w;
  const int n = ln.n;
  V sf = sums[0], sw = sums[1];
  V s0 = mid[0] - down[0], v0 = w0f * mid[0] + w1f * down[0];
  for (int w = 0; w < count; ++w) {
    const V m = mid[w + 1], d = down[w + 1];
    const V s1 = m - d, v1 = w0f * m + w1f * d;
    const V gv = load_lanes<I>(gp + w * ws, cs, n);
    sf += gv * (w0w * s0 + w1w * s1);
    sw += gv * (v0 - v1);
    s0 = s1;
    v0 = v1;
  }
  sums[0] = sf;
  sums[1] = sw;
}

// The shift-gradient sums of the task's nb channels (exact tables ct) over
// output rows [r0, r0 + rows) (Wo columns) of the output plane at dp.pos
// (its tap origin) of axis 0 (x at the sample's first plane, g at the
// plane): d out / d shift on moved rows h t1 - 1 .. h t1 + 1 of x (through
// the padding; with `depth`, a present axis 0, on the planes at depth taps
// -1 .. 1), times g, summed per lane in order. Moved rows hold, per output
// column w, the lanes at column w t2 + m2 and (`next` entries away) at
// w t2 + m2 -+ 1: with t2 <= 2 in one run of columns, else three sets of
// Wo. With t1 = 1 the rows are a ring of 3;
// with t1 = 2 too, row h t1 + 1 kept as the next output row's h t1 - 1.
// Adds the sum for axis a to acc[3 b + a] of channel b (axis 0 only with
// `depth`; NaN channels: nothing, the finish fills them).
template <Isa I, typename A, typename T>
void lanes_shift_grad_impl(int P, LaneArray<const T> x, LaneArray<const T> g, Depth dp,
                           bool depth, int H, int W, int t1, int t2, int Wo,
                           const ChannelTables<A>* ct, int nb, int r0, int rows, A* acc,
                           int planes, int64_t gs0, int64_t acc_plane) {
  using V = Vec8<A>;
  // One run of columns -1 .. (Wo - 1) t2 + 1 with t2 <= 2 (with t2 = 2 the
  // three sets overlap: 2 Wo + 1 gathers where they take 3 Wo), else three
  // sets of Wo.
  const bool run = t2 <= 2;
  const int next = run ? 1 : Wo;
  const int64_t cols = run ? int64_t{Wo - 1} * t2 + 3 : 3 * int64_t{Wo};
  // 3 rows at each depth tap (span: rows r0 - 1 .. r0 + rows), then the sums
  // (3 a group: cols >= 3)
  const int taps = depth ? 3 : 1;
  const bool span = planes > 1;  // the caller checked: 3-D, unit strides on axes 0 and 1
  const int slots = span ? rows + 2 : 3;
  const LaneScratch<A> sc = lane_groups(ct, nb, cols, slots * taps + 1);
  const int groups = sc.groups;
  Lanes<A>* lanes = sc.lanes;
  i32x8* col = sc.col;
  V* ring = sc.ring;
  const int d0 = depth ? -1 : 0;  // the first depth tap
  // Column tiles (tile_columns, as lanes_backward_impl's: the moved rows'
  // taps -1 .. 1) for a single plane of unit strides: tile [w0, w0 + wn)
  // gathers moved columns w0 - 1 .. w0 + wn and re-gathers its first rows.
  // The sums run on across the tiles (per lane in tile order, then rows).
  const bool tiles = t1 == 1 && t2 == 1 && !span;
  const int Wt = tiles ? tile_columns<T>(lanes, groups, nb, x.cs, 1, 1, 2, Wo) : Wo;
  int w0 = 0, wn = Wo;  // the tile
  int used = static_cast<int>(cols);  // its moved columns
  auto terms_of_tile = [&] {
    for (int gr = 0; gr < groups; ++gr) {
      if (run) {
        column_terms(P, lanes[gr].m2, W, x.ws, x.cs, gr * kGroup, w0 * t2 - 1, used,
                     col + gr * cols);
      } else {
        for (int k = 0; k < 3; ++k) {
          column_terms(P, lanes[gr].m2, W, x.ws, x.cs, gr * kGroup, 0, Wo,
                       col + gr * cols + k * Wo, t2, k - 1);
        }
      }
    }
  };
  // moved(key, gr, dd)[w t2 + 1] (t2 <= 2; else [Wo + w]) = x(plane + m0 +
  // dd, row + m1, (w0 + w) t2 + m2) per lane of group gr (a group's moved
  // rows contiguous), dd in [-1, 1] with `depth`, else 0; key: the row position (>= -1) with t1 <=
  // 2, where 3 consecutive rows take distinct slots (t1 = 2 keeps row
  // h t1 + 1 for the next output row), else 0 .. 2 for rows h t1 - 1 ..
  // h t1 + 1.
  // With a span of planes, the taps' buffers hold whole strips and belong to
  // absolute planes (plane pl + dd in buffer (pl + dd - d0) % 3): the next
  // plane's taps -1 and 0 are this one's 0 and 1, so after the first plane
  // only tap 1 is gathered.
  int pl = 0;
  auto moved = [&](int h, int gr, int dd) {
    const int k = span ? (h - r0 + 1) + slots * ((pl + dd - d0) % 3)
                       : ((h + 3) % 3) + 3 * (dd - d0);
    return ring + (int64_t{gr} * slots * taps + k) * cols;
  };
  auto gather = [&](int pos, int key, int gr) {
    const Lanes<A>& ln = lanes[gr];
    for (int dd = pl > 0 ? d0 + taps - 1 : d0; dd < d0 + taps; ++dd) {
      gather_row<I>(x, row_term(P, ln.m1, pos, H, x.rs, ln.n, ln.depth[dd - d0]),
                    col + gr * cols, used, ln.uniform, false, moved(key, gr, dd), 1);
    }
  };
  V* sums = ring + slots * taps * groups * cols;  // sum_d, sum_f, sum_w of each group
  const int ahead = reach(lanes, groups, &Lanes<A>::m1, 1, 1) + 1;
  const int left = reach(lanes, groups, &Lanes<A>::m2, -1, 1);
  const int right = reach(lanes, groups, &Lanes<A>::m2, 1, 1);
  const V half = splat<V>(A(0.5)), mhalf = splat<V>(A(-0.5));
  // k0: output column 0's entry, e: the next column's, step: the next output's
  const int k0 = run ? 1 : Wo, e = next, step = run ? t2 : 1;
  if (!tiles) terms_of_tile();
  for (; pl < planes; ++pl, ++dp.pos, g.p += gs0, acc += acc_plane) {
    for (int gr = 0; gr < groups; ++gr) {
      for (int t = 0; t < taps; ++t) lanes[gr].depth[t] = depth_term(P, lanes[gr].m0, dp, d0 + t);
    }
    for (int k = 0; k < 3 * groups; ++k) sums[k] = V{};
    const LaneArray<const T> plane = in_plane(x, dp);
    for (w0 = 0; w0 < Wo; w0 += Wt) {
      if (tiles) {
        wn = std::min(Wt, Wo - w0);
        used = wn + 2;
        terms_of_tile();
      }
      // the columns of x the tile reads (without tiles, every column)
      const int c0 = tiles ? w0 - left : 0, c1 = tiles ? w0 + wn + right : W;
      if (t1 <= 2) {  // the rows the loop below does not gather for its first output row
        for (int gr = 0; gr < groups; ++gr) {
          gather(r0 * t1 - 1, r0 * t1 - 1, gr);
          if (t1 == 1) gather(r0, r0, gr);
        }
      }
      for (int h = r0; h < r0 + rows; ++h) {
        prefetch_row(plane, h * t1 + ahead, H, W, nb, c0, c1);
        const T* gp = g.p + h * g.rs + w0 * g.ws;
        for (int gr = 0; gr < groups; ++gr) {
          if (t1 == 1) {
            gather(h + 1, h + 1, gr);
          } else if (t1 == 2) {  // row 2 h - 1 was the last output row's 2 h + 1
            gather(2 * h, 2 * h, gr);
            gather(2 * h + 1, 2 * h + 1, gr);
          } else {
            for (int r = 0; r < 3; ++r) gather(h * t1 - 1 + r, r, gr);
          }
          // rows3[dd - d0][r][k] = x(plane + m0 + dd, h t1 - 1 + r + m1, ..)
          const V* rows3[3][3];
          for (int t = 0; t < taps; ++t) {
            for (int r = 0; r < 3; ++r) {
              rows3[t][r] = moved(t1 <= 2 ? h * t1 - 1 + r : r, gr, d0 + t);
            }
          }
          const Lanes<A>& ln = lanes[gr];
          const T* gg = gp + gr * kGroup * g.cs;
          if (ln.plain && !depth && run && t2 == 1) {
            shift_grad_row<I>(ln, rows3[0][1] + k0, rows3[0][2] + k0, gg, g.ws, g.cs, wn,
                              sums + 3 * gr + 1);
            continue;
          }
          V sum_d = sums[3 * gr], sum_f = sums[3 * gr + 1], sum_w = sums[3 * gr + 2];
          for (int w = 0; w < wn; ++w) {
            const int k = k0 + w * step;
            const V gv = load_lanes<I>(gg + w * g.ws, g.cs, ln.n);
            // At depth tap dd: tf = d out / d shift_1 (the rows' slope inside the
            // columns' value), tw = d out / d shift_2 (the rows' value inside the
            // columns' slope), and with `value` the value (for the depth slope).
            auto terms = [&](int dd, V* tf, V* tw, V* vv, bool value) {
              const V* up = rows3[dd - d0][0];
              const V* mid = rows3[dd - d0][1];
              const V* down = rows3[dd - d0][2];
              if (ln.plain) {
                auto sf = [&](int i) { return mid[i] - down[i]; };
                auto vf = [&](int i) { return ln.w0f * mid[i] + ln.w1f * down[i]; };
                *tf = ln.w0w * sf(k) + ln.w1w * sf(k + e);
                *tw = vf(k) - vf(k + e);
                if (value) *vv = ln.w0w * vf(k) + ln.w1w * vf(k + e);
                return;
              }
              auto sf = [&](int i) {
                return ln.lat_f ? half * up[i] + mhalf * down[i] : mid[i] - down[i];
              };
              auto vf = [&](int i) {
                const V v = ln.w0f * mid[i];
                return ln.lat_f ? v : v + ln.w1f * down[i];
              };
              *tf = ln.w0w * sf(k);
              *tf = ln.lat_w ? *tf : *tf + ln.w1w * sf(k + e);
              *tw = ln.lat_w ? half * vf(k - e) + mhalf * vf(k + e) : vf(k) - vf(k + e);
              if (value) {
                *vv = ln.w0w * vf(k);
                *vv = ln.lat_w ? *vv : *vv + ln.w1w * vf(k + e);
              }
            };
            V tf, tw, vv;
            terms(0, &tf, &tw, &vv, depth);
            if (depth) {
              // The depth stencils: value (1 - f) T(0) + f T(1), slope T(0) - T(1)
              // off the depth lattice, T(0) and (T(-1) - T(1)) / 2 on it.
              V tf1, tw1, vv1, tfm, twm, vvm;
              terms(1, &tf1, &tw1, &vv1, true);
              terms(-1, &tfm, &twm, &vvm, true);
              const V td = ln.lat_d ? half * vvm + mhalf * vv1 : vv - vv1;
              tf = ln.lat_d ? tf : ln.w0d * tf + ln.w1d * tf1;
              tw = ln.lat_d ? tw : ln.w0d * tw + ln.w1d * tw1;
              sum_d += gv * td;
            }
            sum_f += gv * tf;
            sum_w += gv * tw;
          }
          sums[3 * gr] = sum_d;
          sums[3 * gr + 1] = sum_f;
          sums[3 * gr + 2] = sum_w;
        }
      }
    }
    add_group_sums(lanes, groups, sums, 3, depth ? 0 : 1, acc);
  }
}
JAXSHIFT_ISA_VERSIONS(lanes_shift_grad)

// The input gradient and the shift-gradient sums of a 2-D call of unit
// strides in one pass, where the rounded tables are the exact ones (active
// mode, or shifts already integers) and P folds nothing (zeros, periodic:
// the adjoint's padding is P). The sums are taken in their adjoint form:
// the sum over outputs q of g[q] times d out / d shift at q (a stencil D on
// x around q + m) equals the sum over inputs p of x[p] times the
// transposed stencil on g around p - m, and that reads the moved rows of g
// the input gradient gathers anyway: G_i[j] = g(i - m1, j - m2) through
// the padding, D's row taps -1 .. 1 at G_i+1 .. G_i-1 and its column taps
// -1 .. 1 at columns j + 1 .. j - 1. So x is read where it lies (one vector
// load a pixel and group) and no moved row of x is gathered. Rows [r0,
// r0 + rows) of dx (bit for bit lanes_adjoint's); the sums (a different
// order from lanes_shift_grad's: not its bits) add to acc[3 b + 1 ..] of
// channel b, taken per lane in pixel order (NaN channels: nothing, the
// finish fills them). With `rt` (sparse mode: the input gradient's tables
// are integer moves at m or m + 1 per axis, no shift NaN), dx is a moved
// row's element as it is, at row tap 0 or 1 and column tap 0 or 1 per lane.
template <Isa I, int P, typename A, typename T>
void lanes_backward_impl(std::integral_constant<int, P>, LaneArray<const T> x,
                         LaneArray<const T> g, LaneArray<T> dx, int H, int W,
                         const ChannelTables<A>* ct, const ChannelTables<A>* rt, int nb, int r0,
                         int rows, A* acc) {
  static_assert(P == kZeros || P == kPeriodic, "the adjoint form needs a padding that folds nothing");
  using V = Vec8<A>;
  const int64_t cols = int64_t{W} + 2;  // moved columns -1 .. W
  // a ring of 3 moved rows (i - 1 .. i + 1), then the sums (2 a group)
  const LaneScratch<A> sc = lane_groups(ct, nb, cols, 4);
  const int groups = sc.groups;
  Lanes<A>* lanes = sc.lanes;
  i32x8* col = sc.col;
  V* ring = sc.ring;
  for (int gr = 0; gr < groups; ++gr) {
    for (int q = 0; rt != nullptr && q < kGroup; ++q) {
      const int b = gr * kGroup + std::min(q, lanes[gr].n - 1);
      lanes[gr].up_f[q] = rt[b].m[1] > ct[b].m[1] ? -1 : 0;
      lanes[gr].up_w[q] = rt[b].m[2] > ct[b].m[2] ? -1 : 0;
    }
  }
  V* sums = ring + 3 * groups * cols;  // sum_f, sum_w of each group
  for (int k = 0; k < 2 * groups; ++k) sums[k] = V{};
  // Column tiles (tile_columns; the moved rows' taps -1 .. 1 are the
  // forward's 0 .. 1 with one more row and column).
  const int Wt = tile_columns<T>(lanes, groups, nb, g.cs, 1, 1, 2, W);
  const int ahead = reach(lanes, groups, &Lanes<A>::m1, -1, 1) + 1;
  const int up = reach(lanes, groups, &Lanes<A>::m1, 1, 1);
  const int left = reach(lanes, groups, &Lanes<A>::m2, 1, 1);
  const int right = reach(lanes, groups, &Lanes<A>::m2, -1, 1);
  const V half = splat<V>(A(0.5)), mhalf = splat<V>(A(-0.5));
  for (int w0 = 0; w0 < W; w0 += Wt) {
    const int wn = std::min(Wt, W - w0);
    const int used = wn + 2;  // moved columns w0 - 1 .. w0 + wn
    for (int gr = 0; gr < groups; ++gr) {
      column_terms<P>(-lanes[gr].m2, W, g.ws, g.cs, gr * kGroup, w0 - 1, used, col + gr * cols);
    }
    const int c0 = w0 - left, c1 = w0 + wn + right;  // the columns of g the tile reads
    // moved(i, gr)[j] = g(i - m1, w0 + j - m2) per lane of group gr, j in
    // [-1, wn]: a group's moved rows are contiguous, and a row is taken
    // group by group (the weights, the left column's terms and the sums in
    // registers along it).
    auto moved = [&](int i, int gr) {
      return ring + ((i + 3) % 3) * groups * cols + gr * cols + 1;
    };
    auto gather = [&](int i, int gr) {
      const Lanes<A>& ln = lanes[gr];
      gather_row<I>(g, row_term<P>(-ln.m1, i, H, g.rs, ln.n), col + gr * cols, used, ln.uniform,
                    false, moved(i, gr) - 1, 1);
    };
    for (int r = r0 - up; r < r0 + ahead; ++r) prefetch_row(g, r, H, W, nb, c0, c1);
    for (int gr = 0; gr < groups; ++gr) {
      gather(r0 - 1, gr);
      gather(r0, gr);
    }
    for (int i = r0; i < r0 + rows; ++i) {
      prefetch_row(g, i + ahead, H, W, nb, c0, c1);
      for (int gr = 0; gr < groups; ++gr) {
        gather(i + 1, gr);
        const Lanes<A>& ln = lanes[gr];
        const V* a = moved(i, gr);      // G_i (row tap 0)
        const V* b = moved(i - 1, gr);  // row tap 1
        const V* c = moved(i + 1, gr);  // row tap -1 (the lattice's)
        const T* xr = x.p + i * x.rs + w0 * x.ws + gr * kGroup * x.cs;
        T* out = dx.p + i * dx.rs + w0 * dx.ws + gr * kGroup * dx.cs;
        if (ln.plain) {
          backward_row<I>(ln, a, b, rt != nullptr, xr, x.ws, x.cs, out, dx.ws, dx.cs, wn,
                          sums + 2 * gr);
          continue;
        }
        for (int j = 0; j < wn; ++j) {
          const int l = j - 1, u = j + 1;  // columns j - 1, j + 1
          const V d = rt == nullptr ? nan_lanes(ln, bilinear(ln, a[j], b[j], a[l], b[l]))
                                    : ln.up_w ? (ln.up_f ? b[l] : a[l]) : (ln.up_f ? b[j] : a[j]);
          store_lanes<I>(out + j * dx.ws, dx.cs, d, ln.n, false);
          const V xv = load_lanes<I>(xr + j * x.ws, x.cs, ln.n);
          V tf, tw;
          transposed_slopes(ln, a, b, c, j, l, u, half, mhalf, &tf, &tw);
          sums[2 * gr] += xv * tf;
          sums[2 * gr + 1] += xv * tw;
        }
      }
    }
  }
  add_group_sums(lanes, groups, sums, 2, 1, acc);
}
JAXSHIFT_ISA_VERSIONS(lanes_backward)

// lanes_backward_impl for a 3-D call of unit strides (P folding nothing),
// a task taking every plane of its strip: input plane d's gradient and
// shift-gradient sums from the moved strips of g at g-planes e = d - m0 +
// {1, 0, -1} (the stencils' depth taps -1, 0, 1), S_e[i][j] = g(e - m0,
// i - m1, j - m2) per lane, rows r0 - 1 .. r0 + rows, columns -1 .. W. Plane
// d + 1 reads S_d and S_d+1 again, so the three strips rotate and a plane
// after the first gathers one (S_d+2). dx is the depth stencil of the 2-D
// adjoints at S_d and S_d-1, as lanes_adjoint_impl's. The sums
// (adjoint form, x read in place) are lanes_shift_grad_impl's terms
// transposed: at each g-plane the 2-D transposed slopes (tf2, tw2) and
// value (v2); sum_f over the depth value stencil of tf2 (taps 0, 1: S_d,
// S_d-1), sum_w of tw2, and sum_d of the depth slope of v2 (S_d - S_d-1,
// or (S_d+1 - S_d-1) / 2 on the depth lattice). Each plane's sums add to
// acc + pl * acc_plane. With `rt` (sparse), dx is the strips' element at
// depth, row and column tap 0 or 1 per lane. dx is the same arithmetic as
// lanes_adjoint_impl's, but GCC contracts it to FMAs differently here:
// it differs in the last bits (deterministic all the same).
template <Isa I, int P, typename A, typename T>
void lanes_backward3_impl(std::integral_constant<int, P>, LaneArray<const T> x,
                          LaneArray<const T> g, LaneArray<T> dx, Depth dp, int H, int W,
                          const ChannelTables<A>* ct, const ChannelTables<A>* rt, int nb, int r0,
                          int rows, A* acc, int planes, int64_t xs0, int64_t acc_plane) {
  static_assert(P == kZeros || P == kPeriodic, "the adjoint form needs a padding that folds nothing");
  using V = Vec8<A>;
  const int64_t cols = int64_t{W} + 2;  // moved columns -1 .. W
  const int strip = rows + 2;           // moved rows r0 - 1 .. r0 + rows
  // three strips, then the sums (3 a group)
  const LaneScratch<A> sc = lane_groups(ct, nb, cols, 3 * strip + 1);
  const int groups = sc.groups;
  Lanes<A>* lanes = sc.lanes;
  i32x8* col = sc.col;
  V* ring = sc.ring;
  for (int gr = 0; gr < groups; ++gr) {
    column_terms<P>(-lanes[gr].m2, W, g.ws, g.cs, gr * kGroup, -1, static_cast<int>(cols),
                    col + gr * cols);
    for (int q = 0; rt != nullptr && q < kGroup; ++q) {
      const int b = gr * kGroup + std::min(q, lanes[gr].n - 1);
      lanes[gr].up_d[q] = rt[b].m[0] > ct[b].m[0] ? -1 : 0;
      lanes[gr].up_f[q] = rt[b].m[1] > ct[b].m[1] ? -1 : 0;
      lanes[gr].up_w[q] = rt[b].m[2] > ct[b].m[2] ? -1 : 0;
    }
  }
  // moved(e, i, gr)[j] = S_e[i][j] of group gr (e >= -1), j in [-1, W]: a
  // group's moved rows contiguous, and a row taken group by group (the
  // group's lanes copied out: no store to dx reaches them, so its weights
  // and sums stay in registers along the row).
  auto moved = [&](int e, int i, int gr) {
    return ring + (((e + 3) % 3) * int64_t{strip} + (i - r0 + 1)) * groups * cols + gr * cols + 1;
  };
  auto gather = [&](int e) {  // strip S_e
    for (int gr = 0; gr < groups; ++gr) {
      const Lanes<A>& ln = lanes[gr];
      const i32x8 depth = depth_term<P>(-ln.m0, Depth{dp.L, dp.s, 0}, e);
      for (int i = r0 - 1; i <= r0 + rows; ++i) {
        gather_row<I>(g, row_term<P>(-ln.m1, i, H, g.rs, ln.n, depth), col + gr * cols,
                      static_cast<int>(cols), ln.uniform, false, moved(e, i, gr) - 1, 1);
      }
    }
  };
  V* sums = ring + 3 * int64_t{strip} * groups * cols;  // sum_d, sum_f, sum_w of each group
  const V half = splat<V>(A(0.5)), mhalf = splat<V>(A(-0.5));
  for (int pl = 0; pl < planes; ++pl, x.p += xs0, dx.p += xs0, acc += acc_plane) {
    const int d = dp.pos + pl;
    if (pl == 0) {
      gather(d - 1);
      gather(d);
    }
    gather(d + 1);
    for (int k = 0; k < 3 * groups; ++k) sums[k] = V{};
    for (int i = r0; i < r0 + rows; ++i) {
      for (int gr = 0; gr < groups; ++gr) {
        const Lanes<A> ln = lanes[gr];
        // rows i (row tap 0), i - 1 (tap 1), i + 1 (tap -1) of S_d (t0), S_d-1
        // (t1), S_d+1 (tm), at column 0
        const V* a0 = moved(d, i, gr);
        const V* b0 = moved(d, i - 1, gr);
        const V* c0 = moved(d, i + 1, gr);
        const V* a1 = moved(d - 1, i, gr);
        const V* b1 = moved(d - 1, i - 1, gr);
        const V* c1 = moved(d - 1, i + 1, gr);
        const V* am = moved(d + 1, i, gr);
        const V* bm = moved(d + 1, i - 1, gr);
        const T* xr = x.p + i * x.rs + gr * kGroup * x.cs;
        T* out = dx.p + i * dx.rs + gr * kGroup * dx.cs;
        if (ln.plain && !ln.all_lat_d && !any_lane(ln.lat_d)) {
          backward3_row<I>(ln, a0, b0, a1, b1, rt != nullptr, xr, x.ws, x.cs, out, dx.ws, dx.cs,
                           W, sums + 3 * gr);
          continue;
        }
        V sd = sums[3 * gr], sf = sums[3 * gr + 1], sw = sums[3 * gr + 2];
        for (int j = 0; j < W; ++j) {
          const int k = j, l = j - 1, u = j + 1;  // columns j, j - 1, j + 1
          // the 2-D transposed value, row slope and column slope at a g-plane
          auto v2 = [&](const V* a, const V* b) { return bilinear(ln, a[k], b[k], a[l], b[l]); };
          auto slopes = [&](const V* a, const V* b, const V* c, V* tf, V* tw) {
            transposed_slopes(ln, a, b, c, k, l, u, half, mhalf, tf, tw);
          };
          const V va = v2(a0, b0);
          V d_;
          if (rt == nullptr) {
            d_ = depth_stencil(ln, va, [&] { return v2(a1, b1); });
          } else {
            auto pick = [&](const V* a, const V* b) {
              return ln.up_w ? (ln.up_f ? b[l] : a[l]) : (ln.up_f ? b[k] : a[k]);
            };
            d_ = ln.up_d ? pick(a1, b1) : pick(a0, b0);
          }
          store_lanes<I>(out + j * dx.ws, dx.cs, d_, ln.n, false);
          const V xv = load_lanes<I>(xr + j * x.ws, x.cs, ln.n);
          V tf, tw, td;
          slopes(a0, b0, c0, &tf, &tw);
          if (ln.all_lat_d) {
            td = half * v2(am, bm) + mhalf * v2(a1, b1);
          } else {
            V tf1, tw1;
            slopes(a1, b1, c1, &tf1, &tw1);
            const V vb = v2(a1, b1);
            const V lat = half * v2(am, bm) + mhalf * vb;
            td = ln.lat_d ? lat : va - vb;
            tf = ln.lat_d ? tf : ln.w0d * tf + ln.w1d * tf1;
            tw = ln.lat_d ? tw : ln.w0d * tw + ln.w1d * tw1;
          }
          sd += xv * td;
          sf += xv * tf;
          sw += xv * tw;
        }
        sums[3 * gr] = sd;
        sums[3 * gr + 1] = sf;
        sums[3 * gr + 2] = sw;
      }
    }
    add_group_sums(lanes, groups, sums, 3, 0, acc);
  }
}
JAXSHIFT_ISA_VERSIONS(lanes_backward3)

// lanes_backward_impl for a 2-D call with strides of 2 or more on both axes,
// zeros padding: rows [r0, r0 + rows) of the input grid. As in
// lanes_adjoint_strided_impl, of an axis' taps 0 and 1 at most one collects
// an output for input i (the tap whose i - m - tap divides by the stride),
// so each lane reads one element G of g at the picked taps (a*, b*), and
// dx = wc (wr G) as there (same bits). The shift-gradient sums in adjoint
// form take the same G: x[p] times G times the rows' slope at a* (+1 at tap
// 0, -1 at tap 1) and the columns' weight at b* (sum_f), or the rows'
// weight and the columns' slope (sum_w). Lanes at the lattice of an axis
// have the slope taps -1 and +1 there (+1/2, -1/2), both of which may
// divide: a group with such lanes gathers those two elements too. With
// `rt` (sparse mode: integer moves at m or m + 1 per axis, no shift NaN),
// dx is G where the picked taps are the move's on both axes, else 0.
template <Isa I, int P, typename A, typename T>
void lanes_backward_strided_impl(std::integral_constant<int, P>, LaneArray<const T> x,
                                 LaneArray<const T> g, LaneArray<T> dx, const Axis* ax,
                                 const ChannelTables<A>* ct, const ChannelTables<A>* rt, int nb,
                                 int r0, int rows, A* acc) {
  static_assert(P == kZeros, "the strided adjoint form reads through zeros");
  using V = Vec8<A>;
  using M = typename Lanes<A>::M;
  const int W = ax[2].L;
  const int t1 = ax[1].t, t2 = ax[2].t, Ho = ax[1].Lo, Wo = ax[2].Lo;
  // column terms 3 a column: the picked tap's (j < W), tap -1's, tap +1's
  const int64_t cols = std::max<int64_t>(3 * int64_t{W}, 8);
  // ring slot 0: per group the columns' weights (j) and slopes (W + j);
  // slot 1: the columns' sparse masks (pick == the move's); slot 2: per
  // group 3 row terms, the row's weight and slope, its sparse mask, 2 sums
  const LaneScratch<A> sc = lane_groups(ct, nb, cols, 3);
  const int groups = sc.groups;
  Lanes<A>* lanes = sc.lanes;
  i32x8* col = sc.col;
  V* wcol = sc.ring;
  M* cmatch = reinterpret_cast<M*>(sc.ring + groups * cols);
  V* per_row = sc.ring + 2 * groups * cols;
  i32x8* rterm = reinterpret_cast<i32x8*>(per_row);  // 3 a group: picked, -1, +1
  V* wr = per_row + 3 * groups;
  V* dr = wr + groups;
  M* rmatch = reinterpret_cast<M*>(dr + groups);
  V* sums = reinterpret_cast<V*>(rmatch + groups);  // sum_f, sum_w of each group
  bool one[8];
  const V none{};
  for (int gr = 0; gr < groups; ++gr) {
    Lanes<A>& ln = lanes[gr];
    for (int q = 0; rt != nullptr && q < kGroup; ++q) {
      const int b = gr * kGroup + std::min(q, ln.n - 1);
      ln.up_f[q] = rt[b].m[1] > ct[b].m[1] ? -1 : 0;
      ln.up_w[q] = rt[b].m[2] > ct[b].m[2] ? -1 : 0;
    }
    i32x8 lane;
    for (int l = 0; l < 8; ++l) lane[l] = static_cast<int32_t>((gr * kGroup + l) * g.cs);
    for (int j = 0; j < W; ++j) {
      const int64_t k = gr * cols + j;
      col[k] = add_terms(pick_tap(strided_term(ln.m2, j, 0, t2, Wo, g.ws, 8),
                                  strided_term(ln.m2, j, 1, t2, Wo, g.ws, 8), ln.lat_w, one),
                         lane);
      for (int l = 0; l < 8; ++l) {
        wcol[k][l] = one[l] ? ln.w1w[l] : ln.w0w[l];
        wcol[k + W][l] = one[l] ? A(-1) : A(1);
        cmatch[k][l] = (one[l] ? -1 : 0) == ln.up_w[l] ? -1 : 0;
      }
      if (ln.any_lat_w) {
        col[k + W] = add_terms(strided_term(ln.m2, j, -1, t2, Wo, g.ws, 8), lane);
        col[k + 2 * W] = add_terms(strided_term(ln.m2, j, 1, t2, Wo, g.ws, 8), lane);
      }
    }
  }
  for (int k = 0; k < 2 * groups; ++k) sums[k] = V{};
  const V half = splat<V>(A(0.5)), mhalf = splat<V>(A(-0.5));
  for (int i = r0; i < r0 + rows; ++i) {
    for (int gr = 0; gr < groups; ++gr) {
      const Lanes<A>& ln = lanes[gr];
      rterm[3 * gr] = pick_tap(strided_term(ln.m1, i, 0, t1, Ho, g.rs, ln.n),
                               strided_term(ln.m1, i, 1, t1, Ho, g.rs, ln.n), ln.lat_f, one);
      for (int l = 0; l < 8; ++l) {
        wr[gr][l] = one[l] ? ln.w1f[l] : ln.w0f[l];
        dr[gr][l] = one[l] ? A(-1) : A(1);
        rmatch[gr][l] = (one[l] ? -1 : 0) == ln.up_f[l] ? -1 : 0;
      }
      if (ln.any_lat_f) {
        rterm[3 * gr + 1] = strided_term(ln.m1, i, -1, t1, Ho, g.rs, ln.n);
        rterm[3 * gr + 2] = strided_term(ln.m1, i, 1, t1, Ho, g.rs, ln.n);
      }
    }
    // A group's row at a time, its lanes, row terms and sums in registers.
    for (int gr = 0; gr < groups; ++gr) {
      const Lanes<A> ln = lanes[gr];
      const i32x8 row = rterm[3 * gr], rup = rterm[3 * gr + 1], rdown = rterm[3 * gr + 2];
      const V wrg = wr[gr], drg = dr[gr];
      const M rm = rmatch[gr];
      const T* xr = x.p + i * x.rs + gr * kGroup * x.cs;
      T* out = dx.p + i * dx.rs + gr * kGroup * dx.cs;
      const i32x8* cg = col + gr * cols;
      const V* wg = wcol + gr * cols;
      const M* mg = cmatch + gr * cols;
      V sf = sums[2 * gr], sw = sums[2 * gr + 1];
      for (int j = 0; j < W; ++j) {
        const V G = read8<I>(g, row, cg[j], ln.uniform, false);
        const V wc = wg[j];
        const V d = rt == nullptr ? nan_lanes(ln, wc * (wrg * G)) : ((rm & mg[j]) ? G : none);
        store_lanes<I>(out + j * dx.ws, dx.cs, d, ln.n, false);
        const V xv = load_lanes<I>(xr + j * x.ws, x.cs, ln.n);
        V tf = drg * (wc * G);
        V tw = wrg * (wg[j + W] * G);
        if (ln.any_lat_f) {
          const V up = read8<I>(g, rup, cg[j], ln.uniform, false);
          const V down = read8<I>(g, rdown, cg[j], ln.uniform, false);
          tf = ln.lat_f ? wc * (half * up + mhalf * down) : tf;
        }
        if (ln.any_lat_w) {
          const V left = read8<I>(g, row, cg[j + W], ln.uniform, false);
          const V right = read8<I>(g, row, cg[j + 2 * W], ln.uniform, false);
          tw = ln.lat_w ? wrg * (half * left + mhalf * right) : tw;
        }
        sf += xv * tf;
        sw += xv * tw;
      }
      sums[2 * gr] = sf;
      sums[2 * gr + 1] = sw;
    }
  }
  add_group_sums(lanes, groups, sums, 2, 1, acc);
}
JAXSHIFT_ISA_VERSIONS(lanes_backward_strided)

}  // namespace jaxshift
