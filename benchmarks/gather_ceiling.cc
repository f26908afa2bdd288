// The ceiling of the channels-last lanes' design on this CPU, one core:
// time a 2-D float32 active forward's inner loop (fused_pair's structure in
// xla_ffi/cpu/lanes.h: a row of two groups of 8 channels, each output column
// one gather a group, the moved row kept in a ring, the rows' and columns'
// stencils in registers), the same loop with the library's masked gathers
// and with 16-lane AVX-512 gathers, the same stencils on rows transposed
// 16 x 16 in AVX-512 registers or 8 x 8 in AVX2 ones (no gathers), the
// gathers and stores alone (an integer move), and memcpy of
// the same bytes; then the one-pass backward's inner loop (backward_row:
// dx and the shift gradient's sums from g's moved rows and x in place) and
// the 3-D forward's span loop (span_row) beside a memcpy of its rows.
// v40 adds the window loops: no gathers, each lane's taps picked by blends
// from plain loads of the 5 x 5 window its offsets lie in (window_ring is
// the library's window_row, cpu/lanes.h).
// Interior pixels only (no padding), offsets -2 .. 1 on both axes per
// channel, 32x32 pixels of 64 channels a sample; S samples, so S = 1 runs
// hot in L2 and S = 32 (8 MB) streams. Not the library's code: its loop
// shape, for the write-up in benchmarks/NOTES.md (v32, v33, v39, v40).
//
//   g++ -std=c++20 -O3 -mavx2 -mfma -mavx512f -mavx512vl
//       -mprefer-vector-width=256 -o /tmp/gather_ceiling
//       benchmarks/gather_ceiling.cc
//
// Without AVX-512 (AMD Zen 3, v39) drop -mavx512f -mavx512vl: the AVX-512
// loops are left out and the AVX2 ones (8 x 8 transposes among them) run.
//   /tmp/gather_ceiling 1 2000; /tmp/gather_ceiling 32 40
//
// Prints ns per output vector of 8 channels, three rounds each. Two
// processes at once (one a core) give the 2-core figures. XHOT=1 (YHOT=1)
// reads (writes) the first sample's x (y) for every sample: the other
// stream alone streams. ONLY=name times only the loops whose names contain
// it (for perf record).
// NOTES v40 (Zen 3, least of 9-12 rounds): window ring 3.4 hot / 3.9 at 8 MB
// against fused pair 5.2 / 5.9; window move 2.3 / 2.8 (picks of 5: 3.9 /
// 4.2) against gathers + stores 4.8 / 5.2.
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <span>
#include <utility>
#include <vector>

namespace {

constexpr int H = 32, W = 32, C = 64, kLo = 2, kCount = W - 5;
struct Tables {
  int m1[C], m2[C];
  float f1[C], f2[C];
};

// Lane l of a group of `lanes` at channel c0 + l: its column term at output
// column w (kLo + w + m2) and its row term at row h (h + m1), in elements.
template <int kLanes>
void column_terms(const Tables& t, int c0, int (*col)[kLanes]) {
  for (int w = 0; w <= kCount; ++w) {
    for (int l = 0; l < kLanes; ++l) col[w][l] = (kLo + w + t.m2[c0 + l]) * C + c0 + l;
  }
}
template <int kLanes>
void row_terms(const Tables& t, int c0, int h, int* r) {
  for (int l = 0; l < kLanes; ++l) r[l] = (h + t.m1[c0 + l]) * W * C;
}

template <bool kMasked>
__attribute__((noinline)) void fused_avx2(const float* x, float* y, const Tables& t) {
  alignas(32) int col[C / 8][kCount + 1][8];
  alignas(32) float ring[C / 8][kCount + 1][8];
  alignas(32) int r[2][8];
  for (int g = 0; g < C / 8; ++g) column_terms<8>(t, 8 * g, col[g]);
  for (int g = 0; g < C / 8; ++g) {
    row_terms<8>(t, 8 * g, kLo, r[0]);
    const __m256i rg = _mm256_load_si256(reinterpret_cast<const __m256i*>(r[0]));
    for (int i = 0; i <= kCount; ++i) {
      const __m256i at = _mm256_add_epi32(rg, _mm256_load_si256((const __m256i*)col[g][i]));
      _mm256_store_ps(ring[g][i], _mm256_i32gather_ps(x, at, 4));
    }
  }
  for (int h = kLo; h < H - 3; ++h) {
    for (int i = 0; i < W * C; i += 16) __builtin_prefetch(x + (h + 3) * W * C + i);
    for (int g = 0; g < C / 8; g += 2) {
      row_terms<8>(t, 8 * g, h + 1, r[0]);
      row_terms<8>(t, 8 * g + 8, h + 1, r[1]);
      const __m256i r0 = _mm256_load_si256((const __m256i*)r[0]);
      const __m256i r1 = _mm256_load_si256((const __m256i*)r[1]);
      const __m256 f01 = _mm256_loadu_ps(t.f1 + 8 * g), f11 = _mm256_loadu_ps(t.f1 + 8 * g + 8);
      const __m256 f00 = _mm256_sub_ps(_mm256_set1_ps(1), f01);
      const __m256 f10 = _mm256_sub_ps(_mm256_set1_ps(1), f11);
      const __m256 w01 = _mm256_loadu_ps(t.f2 + 8 * g), w11 = _mm256_loadu_ps(t.f2 + 8 * g + 8);
      const __m256 w00 = _mm256_sub_ps(_mm256_set1_ps(1), w01);
      const __m256 w10 = _mm256_sub_ps(_mm256_set1_ps(1), w11);
      auto next = [&](int i, __m256* q0, __m256* q1) {
        const __m256i c0 = _mm256_load_si256((const __m256i*)col[g][i]);
        const __m256i c1 = _mm256_load_si256((const __m256i*)col[g + 1][i]);
        __m256 b0, b1;
        if (kMasked) {  // the library's gathers: lanes at negative terms masked off
          const __m256i z = _mm256_setzero_si256();
          const __m256 m0 = _mm256_castsi256_ps(
              _mm256_cmpgt_epi32(z, _mm256_or_si256(r0, c0)) ^ _mm256_set1_epi32(-1));
          const __m256 m1 = _mm256_castsi256_ps(
              _mm256_cmpgt_epi32(z, _mm256_or_si256(r1, c1)) ^ _mm256_set1_epi32(-1));
          b0 = _mm256_mask_i32gather_ps(_mm256_setzero_ps(), x, _mm256_add_epi32(r0, c0), m0, 4);
          b1 = _mm256_mask_i32gather_ps(_mm256_setzero_ps(), x, _mm256_add_epi32(r1, c1), m1, 4);
        } else {
          b0 = _mm256_i32gather_ps(x, _mm256_add_epi32(r0, c0), 4);
          b1 = _mm256_i32gather_ps(x, _mm256_add_epi32(r1, c1), 4);
        }
        const __m256 a0 = _mm256_load_ps(ring[g][i]), a1 = _mm256_load_ps(ring[g + 1][i]);
        _mm256_store_ps(ring[g][i], b0);
        _mm256_store_ps(ring[g + 1][i], b1);
        *q0 = _mm256_fmadd_ps(f01, b0, _mm256_mul_ps(f00, a0));
        *q1 = _mm256_fmadd_ps(f11, b1, _mm256_mul_ps(f10, a1));
      };
      __m256 p0, p1;
      next(0, &p0, &p1);
      float* out = y + (h * W + kLo) * C + 8 * g;
      for (int w = 0; w < kCount; ++w) {
        __m256 q0, q1;
        next(w + 1, &q0, &q1);
        _mm256_storeu_ps(out + w * C, _mm256_fmadd_ps(w01, q0, _mm256_mul_ps(w00, p0)));
        _mm256_storeu_ps(out + w * C + 8, _mm256_fmadd_ps(w11, q1, _mm256_mul_ps(w10, p1)));
        p0 = q0;
        p1 = q1;
      }
    }
  }
}

// Ring rows of the transposed loops.
constexpr int kSlots = 6;

#ifdef __AVX512F__
// The same, a pair of groups as one group of 16 lanes.
__attribute__((noinline)) void fused_avx512(const float* x, float* y, const Tables& t) {
  alignas(64) int col[C / 16][kCount + 1][16];
  alignas(64) float ring[C / 16][kCount + 1][16];
  alignas(64) int r[16];
  for (int g = 0; g < C / 16; ++g) column_terms<16>(t, 16 * g, col[g]);
  for (int g = 0; g < C / 16; ++g) {
    row_terms<16>(t, 16 * g, kLo, r);
    const __m512i rg = _mm512_load_si512(r);
    for (int i = 0; i <= kCount; ++i) {
      const __m512i at = _mm512_add_epi32(rg, _mm512_load_si512(col[g][i]));
      _mm512_store_ps(ring[g][i], _mm512_mask_i32gather_ps(_mm512_setzero_ps(), 0xffff, at, x, 4));
    }
  }
  for (int h = kLo; h < H - 3; ++h) {
    for (int i = 0; i < W * C; i += 16) __builtin_prefetch(x + (h + 3) * W * C + i);
    for (int g = 0; g < C / 16; ++g) {
      row_terms<16>(t, 16 * g, h + 1, r);
      const __m512i r0 = _mm512_load_si512(r);
      const __m512 f1 = _mm512_loadu_ps(t.f1 + 16 * g), w1 = _mm512_loadu_ps(t.f2 + 16 * g);
      const __m512 f0 = _mm512_sub_ps(_mm512_set1_ps(1), f1);
      const __m512 w0 = _mm512_sub_ps(_mm512_set1_ps(1), w1);
      auto next = [&](int i) {
        const __m512i at = _mm512_add_epi32(r0, _mm512_load_si512(col[g][i]));
        const __m512 b = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), 0xffff, at, x, 4);
        const __m512 a = _mm512_load_ps(ring[g][i]);
        _mm512_store_ps(ring[g][i], b);
        return _mm512_fmadd_ps(f1, b, _mm512_mul_ps(f0, a));
      };
      __m512 p = next(0);
      float* out = y + (h * W + kLo) * C + 16 * g;
      for (int w = 0; w < kCount; ++w) {
        const __m512 q = next(w + 1);
        _mm512_storeu_ps(out + w * C, _mm512_fmadd_ps(w1, q, _mm512_mul_ps(w0, p)));
        p = q;
      }
    }
  }
}

// A 16 x 16 transpose in registers (four rounds of 16 shuffles): r[i] holds
// row i on entry and column i on return.
inline void transpose16(__m512* r) {
  __m512 t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    for (int k = 0; k < 2; ++k) {
      r[i + 2 * k] = _mm512_castpd_ps(
          _mm512_unpacklo_pd(_mm512_castps_pd(t[i + k]), _mm512_castps_pd(t[i + k + 2])));
      r[i + 2 * k + 1] = _mm512_castpd_ps(
          _mm512_unpackhi_pd(_mm512_castps_pd(t[i + k]), _mm512_castps_pd(t[i + k + 2])));
    }
  }
  for (int i = 0; i < 16; i += 8) {
    for (int k = 0; k < 4; ++k) {
      t[i + k] = _mm512_shuffle_f32x4(r[i + k], r[i + k + 4], 0x88);
      t[i + k + 4] = _mm512_shuffle_f32x4(r[i + k], r[i + k + 4], 0xdd);
    }
  }
  for (int k = 0; k < 8; ++k) {
    r[k] = _mm512_shuffle_f32x4(t[k], t[k + 8], 0x88);
    r[k + 8] = _mm512_shuffle_f32x4(t[k], t[k + 8], 0xdd);
  }
}

// The design without gathers (v33): rows of x transposed once each (16
// pixels x 16 channels a block, in registers) into a ring of channel-major
// rows with zero halos; each output channel's 16 pixels are then four
// unaligned loads at its own row and column offsets, the same stencils as
// fused_avx2's (the same bits), and a transpose back on the way out. All 32
// columns of each row are computed (the halos give the edge columns zeros):
// 32/27 of the others' work, which the timing divides out.
constexpr int kHalo = 16, kRingW = W + 2 * kHalo;
alignas(64) float tring[kSlots][16][kRingW];

__attribute__((noinline)) void transposed_avx512(const float* x, float* y, const Tables& t) {
  // One group of 16 channels at a time, so that its ring (24 KB) stays in L1
  // (all groups' rows side by side, a 72 KB ring: 1.15x slower hot).
  for (int g = 0; g < C / 16; ++g) {
    auto load_row = [&](int row) {
      for (int w0 = 0; w0 < W; w0 += 16) {
        __m512 r[16];
        for (int p = 0; p < 16; ++p) r[p] = _mm512_loadu_ps(x + (row * W + w0 + p) * C + 16 * g);
        transpose16(r);
        float* ring = &tring[row % kSlots][0][kHalo + w0];
        for (int c = 0; c < 16; ++c) _mm512_storeu_ps(ring + c * kRingW, r[c]);
      }
    };
    __m512 f1[16], f0[16], w1[16], w0v[16];
    for (int c = 0; c < 16; ++c) {
      const int ch = 16 * g + c;
      f1[c] = _mm512_set1_ps(t.f1[ch]);
      f0[c] = _mm512_set1_ps(1 - t.f1[ch]);
      w1[c] = _mm512_set1_ps(t.f2[ch]);
      w0v[c] = _mm512_set1_ps(1 - t.f2[ch]);
    }
    for (int row = 0; row < kLo + 3; ++row) load_row(row);
    for (int h = kLo; h < H - 3; ++h) {
      // A row ahead, so that no load of this row's stencils waits on its
      // stores.
      if (h + 3 < H) load_row(h + 3);
      const float* a[16];
      const float* b[16];
      for (int c = 0; c < 16; ++c) {
        const int ch = 16 * g + c;
        a[c] = &tring[(h + t.m1[ch]) % kSlots][c][kHalo + t.m2[ch]];
        b[c] = &tring[(h + t.m1[ch] + 1) % kSlots][c][kHalo + t.m2[ch]];
      }
      for (int w0 = 0; w0 < W; w0 += 16) {
        __m512 o[16];
        for (int c = 0; c < 16; ++c) {
          const __m512 q0 = _mm512_fmadd_ps(f1[c], _mm512_loadu_ps(b[c] + w0),
                                            _mm512_mul_ps(f0[c], _mm512_loadu_ps(a[c] + w0)));
          const __m512 q1 = _mm512_fmadd_ps(f1[c], _mm512_loadu_ps(b[c] + w0 + 1),
                                            _mm512_mul_ps(f0[c], _mm512_loadu_ps(a[c] + w0 + 1)));
          o[c] = _mm512_fmadd_ps(w1[c], q1, _mm512_mul_ps(w0v[c], q0));
        }
        transpose16(o);
        for (int p = 0; p < 16; ++p) _mm512_storeu_ps(y + (h * W + w0 + p) * C + 16 * g, o[p]);
      }
    }
  }
}

#endif  // __AVX512F__

// An 8 x 8 transpose in AVX2 registers (three rounds of 8 shuffles): r[i]
// holds row i on entry and column i on return.
inline void transpose8(__m256* r) {
  __m256 t[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    r[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
    r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xee);
    r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xee);
  }
  for (int k = 0; k < 4; ++k) {
    t[k] = _mm256_permute2f128_ps(r[k], r[k + 4], 0x20);
    t[k + 4] = _mm256_permute2f128_ps(r[k], r[k + 4], 0x31);
  }
  for (int k = 0; k < 8; ++k) r[k] = t[k];
}

// transposed_avx512's design in AVX2 (v39, for CPUs whose gathers are slow):
// one group of 8 channels at a time, rows of x transposed 8 x 8 into a ring
// of channel-major rows with zero halos, each output channel's 8 pixels four
// unaligned loads, the same stencils, and a transpose back on the way out.
constexpr int kHalo8 = 8, kRingW8 = W + 2 * kHalo8;
alignas(64) float tring8[C / 8][kSlots][8][kRingW8];

// kRowsOuter: every group's row before the next row (a ring of all groups,
// 74 KB, in L2; x read and y written line after line) rather than one group
// over every row (a 9 KB ring in L1; x and y touched a half line at a time,
// a sample's sweep apart).
template <bool kRowsOuter>
__attribute__((noinline)) void transposed_avx2(const float* x, float* y, const Tables& t) {
  auto load_row = [&](int g, int row) __attribute__((always_inline)) {
    for (int w0 = 0; w0 < W; w0 += 8) {
      __m256 r[8];
      for (int p = 0; p < 8; ++p) r[p] = _mm256_loadu_ps(x + (row * W + w0 + p) * C + 8 * g);
      transpose8(r);
      float* ring = &tring8[g][row % kSlots][0][kHalo8 + w0];
      for (int c = 0; c < 8; ++c) _mm256_storeu_ps(ring + c * kRingW8, r[c]);
    }
  };
  auto out_row = [&](int g, int h) __attribute__((always_inline)) {
    __m256 f1[8], f0[8], w1[8], w0v[8];
    const float* a[8];
    const float* b[8];
    for (int c = 0; c < 8; ++c) {
      const int ch = 8 * g + c;
      f1[c] = _mm256_set1_ps(t.f1[ch]);
      f0[c] = _mm256_set1_ps(1 - t.f1[ch]);
      w1[c] = _mm256_set1_ps(t.f2[ch]);
      w0v[c] = _mm256_set1_ps(1 - t.f2[ch]);
      a[c] = &tring8[g][(h + t.m1[ch]) % kSlots][c][kHalo8 + t.m2[ch]];
      b[c] = &tring8[g][(h + t.m1[ch] + 1) % kSlots][c][kHalo8 + t.m2[ch]];
    }
    for (int w0 = 0; w0 < W; w0 += 8) {
      __m256 o[8];
      for (int c = 0; c < 8; ++c) {
        const __m256 q0 = _mm256_fmadd_ps(f1[c], _mm256_loadu_ps(b[c] + w0),
                                          _mm256_mul_ps(f0[c], _mm256_loadu_ps(a[c] + w0)));
        const __m256 q1 = _mm256_fmadd_ps(f1[c], _mm256_loadu_ps(b[c] + w0 + 1),
                                          _mm256_mul_ps(f0[c], _mm256_loadu_ps(a[c] + w0 + 1)));
        o[c] = _mm256_fmadd_ps(w1[c], q1, _mm256_mul_ps(w0v[c], q0));
      }
      transpose8(o);
      for (int p = 0; p < 8; ++p) _mm256_storeu_ps(y + (h * W + w0 + p) * C + 8 * g, o[p]);
    }
  };
  if (kRowsOuter) {
    for (int g = 0; g < C / 8; ++g) {
      for (int row = 0; row < kLo + 3; ++row) load_row(g, row);
    }
    for (int h = kLo; h < H - 3; ++h) {
      for (int i = 0; i < W * C && h + 4 < H; i += 16) __builtin_prefetch(x + (h + 4) * W * C + i);
      for (int g = 0; g < C / 8; ++g) {
        if (h + 3 < H) load_row(g, h + 3);
        out_row(g, h);
      }
    }
  } else {
    for (int g = 0; g < C / 8; ++g) {
      for (int row = 0; row < kLo + 3; ++row) load_row(g, row);
      for (int h = kLo; h < H - 3; ++h) {
        if (h + 3 < H) load_row(g, h + 3);  // a row ahead of the stencils' loads
        out_row(g, h);
      }
    }
  }
}

// The one-pass backward's inner loop (lanes.h's backward_row, v33): a
// group of 8 channels at a time, g's moved row (row h - m1, columns
// j - m2) gathered once a row into a ring whose other row is the tap
// above, x read in place, dx stored, and the shift gradient's sums in
// registers (sums: 2 x C, rows' then columns').
// kLoadFirst: x's load before dx's store (dx and x are the same offset in
// buffers a multiple of 4 KB apart: a load after a store with the same low
// 12 address bits may wait on it, "4K aliasing"). kAhead: the library's
// ring of three rows, row h + 1 gathered at row h (26 KB of ring at 64
// channels, against two rows' 17 KB gathered in place: L1 is 32 KB on Zen 3).
template <bool kLoadFirst, bool kAhead = false>
__attribute__((noinline)) void backward_avx2(const float* g, const float* x, float* dx,
                                             const Tables& t, float* sums) {
  constexpr int kRows = kAhead ? 3 : 2;
  alignas(32) int col[C / 8][kCount + 1][8];
  alignas(32) float ring[kRows][C / 8][kCount + 1][8];
  for (int gr = 0; gr < C / 8; ++gr) {
    for (int i = 0; i <= kCount; ++i) {  // column j = i - 1
      for (int l = 0; l < 8; ++l) {
        col[gr][i][l] = (kLo + i - 1 - t.m2[8 * gr + l]) * C + 8 * gr + l;
      }
    }
  }
  auto gather = [&](int row, int gr, float (*out)[8]) {
    alignas(32) int r[8];
    for (int l = 0; l < 8; ++l) r[l] = (row - t.m1[8 * gr + l]) * W * C;
    const __m256i rg = _mm256_load_si256(reinterpret_cast<const __m256i*>(r));
    for (int i = 0; i <= kCount; ++i) {
      const __m256i at = _mm256_add_epi32(rg, _mm256_load_si256((const __m256i*)col[gr][i]));
      _mm256_store_ps(out[i], _mm256_i32gather_ps(g, at, 4));
    }
  };
  for (int gr = 0; gr < C / 8; ++gr) {
    gather(kLo - 1, gr, ring[(kLo - 1) % kRows][gr]);
    if (kAhead) gather(kLo, gr, ring[kLo % kRows][gr]);
  }
  __m256 sf[C / 8], sw[C / 8];
  for (int gr = 0; gr < C / 8; ++gr) sf[gr] = sw[gr] = _mm256_setzero_ps();
  for (int h = kLo; h < H - 3; ++h) {
    for (int i = 0; i < W * C; i += 16) __builtin_prefetch(g + (h + 3) * W * C + i);
    for (int gr = 0; gr < C / 8; ++gr) {
      if (kAhead) {
        gather(h + 1, gr, ring[(h + 1) % kRows][gr]);
      } else {
        gather(h, gr, ring[h % kRows][gr]);
      }
      const float(*a)[8] = ring[h % kRows][gr];
      const float(*b)[8] = ring[(h - 1) % kRows][gr];
      const __m256 w1f = _mm256_loadu_ps(t.f1 + 8 * gr), w1w = _mm256_loadu_ps(t.f2 + 8 * gr);
      const __m256 w0f = _mm256_sub_ps(_mm256_set1_ps(1), w1f);
      const __m256 w0w = _mm256_sub_ps(_mm256_set1_ps(1), w1w);
      __m256 al = _mm256_load_ps(a[0]), bl = _mm256_load_ps(b[0]);
      __m256 rl = _mm256_fmadd_ps(w1f, bl, _mm256_mul_ps(w0f, al));
      __m256 f = sf[gr], w = sw[gr];
      const int64_t at = (h * W + kLo) * C + 8 * gr;
      for (int j = 0; j < kCount; ++j) {
        const __m256 ak = _mm256_load_ps(a[j + 1]), bk = _mm256_load_ps(b[j + 1]);
        const __m256 rk = _mm256_fmadd_ps(w1f, bk, _mm256_mul_ps(w0f, ak));
        const __m256 d = _mm256_fmadd_ps(w1w, rl, _mm256_mul_ps(w0w, rk));
        __m256 xv;
        if (kLoadFirst) {
          xv = _mm256_loadu_ps(x + at + j * C);
          _mm256_storeu_ps(dx + at + j * C, d);
        } else {
          _mm256_storeu_ps(dx + at + j * C, d);
          xv = _mm256_loadu_ps(x + at + j * C);
        }
        const __m256 tf = _mm256_sub_ps(_mm256_fmadd_ps(w1w, al, _mm256_mul_ps(w0w, ak)),
                                        _mm256_fmadd_ps(w1w, bl, _mm256_mul_ps(w0w, bk)));
        f = _mm256_fmadd_ps(xv, tf, f);
        w = _mm256_fmadd_ps(xv, _mm256_sub_ps(rk, rl), w);
        al = ak;
        bl = bk;
        rl = rk;
      }
      sf[gr] = f;
      sw[gr] = w;
    }
  }
  for (int gr = 0; gr < C / 8; ++gr) {
    _mm256_storeu_ps(sums + 8 * gr, sf[gr]);
    _mm256_storeu_ps(sums + C + 8 * gr, sw[gr]);
  }
}

// Without gathers or transposes: a group's integer offsets span 4 values a
// axis (-2 .. 1), so every lane's taps lie in the 5 x 5 window around its
// output. Each lane picks its rows and columns from the window's vectors by
// blends on the bits of offset + 2 (two blends of two, then one: any of 4),
// and the stencils are fused_pair's, on the same operands in the same order
// (its bits). A column's rows' value V_j = f1 * bottom + f0 * top is taken
// once (5 contiguous loads, 6 blends) and its column pick (3 blends) serves
// two outputs from registers.
__attribute__((noinline)) void window_avx2(const float* x, float* y, const Tables& t) {
  auto bit = [&](const int* m, int g, int b) {
    alignas(32) int v[8];
    for (int l = 0; l < 8; ++l) v[l] = (m[8 * g + l] + 2) >> b & 1 ? -1 : 0;
    return _mm256_castsi256_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(v)));
  };
  for (int h = kLo; h < H - 3; ++h) {
    for (int g = 0; g < C / 8; ++g) {
      const __m256 r0 = bit(t.m1, g, 0), r1 = bit(t.m1, g, 1);
      const __m256 c0 = bit(t.m2, g, 0), c1 = bit(t.m2, g, 1);
      const __m256 f1 = _mm256_loadu_ps(t.f1 + 8 * g), w1 = _mm256_loadu_ps(t.f2 + 8 * g);
      const __m256 f0 = _mm256_sub_ps(_mm256_set1_ps(1), f1);
      const __m256 w0 = _mm256_sub_ps(_mm256_set1_ps(1), w1);
      auto pick = [](__m256 a, __m256 b, __m256 c, __m256 d, __m256 lo, __m256 hi) {
        return _mm256_blendv_ps(_mm256_blendv_ps(a, b, lo), _mm256_blendv_ps(c, d, lo), hi);
      };
      const float* in = x + ((h - 2) * W) * C + 8 * g;
      auto column = [&](int j) __attribute__((always_inline)) {
        const float* p = in + j * C;
        const __m256 a = _mm256_loadu_ps(p), b = _mm256_loadu_ps(p + W * C);
        const __m256 c = _mm256_loadu_ps(p + 2 * W * C), d = _mm256_loadu_ps(p + 3 * W * C);
        const __m256 e = _mm256_loadu_ps(p + 4 * W * C);
        const __m256 top = pick(a, b, c, d, r0, r1), bottom = pick(b, c, d, e, r0, r1);
        return _mm256_fmadd_ps(f1, bottom, _mm256_mul_ps(f0, top));
      };
      // V at columns kLo - 2 + w .. kLo + 1 + w for output column w
      __m256 v0 = column(kLo - 2), v1 = column(kLo - 1), v2 = column(kLo), v3 = column(kLo + 1);
      __m256 p = pick(v0, v1, v2, v3, c0, c1);
      float* out = y + (h * W + kLo) * C + 8 * g;
      for (int w = 0; w < kCount; ++w) {
        const __m256 v4 = column(kLo + 2 + w);
        const __m256 q = pick(v1, v2, v3, v4, c0, c1);
        _mm256_storeu_ps(out + w * C, _mm256_fmadd_ps(w1, q, _mm256_mul_ps(w0, p)));
        p = q;
        v1 = v2;
        v2 = v3;
        v3 = v4;
      }
    }
  }
}

// The window loop with the rows' picks kept in a ring (as fused_pair keeps
// its moved row): a column's bottom pick (row h + m1 + 1: 4 loads, 3
// selections) is the next output row's top pick. kAndOr selects by and/or
// with one-hot masks (7 bitwise operations on any of Zen 3's four FP pipes)
// instead of blends.
template <bool kAndOr>
__attribute__((noinline)) void window_ring(const float* x, float* y, const Tables& t) {
  alignas(32) float ring[C / 8][W][8];
  auto mask = [&](const int* m, int g, int b, int v) {  // v < 0: bit b of m + 2; else m + 2 == v
    alignas(32) int s[8];
    for (int l = 0; l < 8; ++l) {
      const int d = m[8 * g + l] + 2;
      s[l] = (v < 0 ? d >> b & 1 : d == v) ? -1 : 0;
    }
    return _mm256_castsi256_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(s)));
  };
  struct Pick {
    __m256 m[4];
    __attribute__((always_inline)) __m256 operator()(__m256 a, __m256 b, __m256 c, __m256 d) const {
      if (kAndOr) {
        return _mm256_or_ps(_mm256_or_ps(_mm256_and_ps(a, m[0]), _mm256_and_ps(b, m[1])),
                            _mm256_or_ps(_mm256_and_ps(c, m[2]), _mm256_and_ps(d, m[3])));
      }
      return _mm256_blendv_ps(_mm256_blendv_ps(a, b, m[0]), _mm256_blendv_ps(c, d, m[0]), m[1]);
    }
  };
  auto picks = [&](const int* m, int g) {
    Pick p;
    for (int v = 0; v < 4; ++v) p.m[v] = kAndOr ? mask(m, g, 0, v) : mask(m, g, v, -1);
    return p;
  };
  for (int g = 0; g < C / 8; ++g) {  // the first output row's top picks
    const Pick rows = picks(t.m1, g);
    const float* p = x + (kLo - 2) * W * C + 8 * g;
    for (int j = 0; j < W; ++j, p += C) {
      _mm256_store_ps(ring[g][j], rows(_mm256_loadu_ps(p), _mm256_loadu_ps(p + W * C),
                                       _mm256_loadu_ps(p + 2 * W * C),
                                       _mm256_loadu_ps(p + 3 * W * C)));
    }
  }
  for (int h = kLo; h < H - 3; ++h) {
    for (int g = 0; g < C / 8; ++g) {
      const Pick rows = picks(t.m1, g), cols = picks(t.m2, g);
      const __m256 f1 = _mm256_loadu_ps(t.f1 + 8 * g), w1 = _mm256_loadu_ps(t.f2 + 8 * g);
      const __m256 f0 = _mm256_sub_ps(_mm256_set1_ps(1), f1);
      const __m256 w0 = _mm256_sub_ps(_mm256_set1_ps(1), w1);
      const float* in = x + ((h - 1) * W) * C + 8 * g;  // rows h - 1 .. h + 2: row taps 1
      auto column = [&](int j) __attribute__((always_inline)) {
        const float* p = in + j * C;
        const __m256 bottom = rows(_mm256_loadu_ps(p), _mm256_loadu_ps(p + W * C),
                                   _mm256_loadu_ps(p + 2 * W * C), _mm256_loadu_ps(p + 3 * W * C));
        const __m256 top = _mm256_load_ps(ring[g][j]);
        _mm256_store_ps(ring[g][j], bottom);
        return _mm256_fmadd_ps(f1, bottom, _mm256_mul_ps(f0, top));
      };
      __m256 v0 = column(kLo - 2), v1 = column(kLo - 1), v2 = column(kLo), v3 = column(kLo + 1);
      __m256 p = cols(v0, v1, v2, v3);
      float* out = y + (h * W + kLo) * C + 8 * g;
      for (int w = 0; w < kCount; ++w) {
        const __m256 v4 = column(kLo + 2 + w);
        const __m256 q = cols(v1, v2, v3, v4);
        _mm256_storeu_ps(out + w * C, _mm256_fmadd_ps(w1, q, _mm256_mul_ps(w0, p)));
        p = q;
        v1 = v2;
        v2 = v3;
        v3 = v4;
      }
    }
  }
}

// An integer move by the window: a column's row pick (row h + m1: 4 loads,
// 3 blends) and each output's column pick of those (3 blends), no gathers.
// kFive: picks of 5 (offsets -2 .. 2, sparse mode's rounding of [-2, 2):
// a fifth load and a fourth blend a pick; the tables here span 4, so the
// fifth is never picked, at the same cost).
template <bool kFive>
__attribute__((noinline)) void window_move(const float* x, float* y, const Tables& t) {
  auto bit = [&](const int* m, int g, int b) {
    alignas(32) int v[8];
    for (int l = 0; l < 8; ++l) {
      const int d = m[8 * g + l] + 2;
      v[l] = (b == 2 ? d == 4 : d >> b & 1) ? -1 : 0;
    }
    return _mm256_castsi256_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(v)));
  };
  auto pick = [](const __m256* v, __m256 lo, __m256 hi, __m256 top) {
    const __m256 p = _mm256_blendv_ps(_mm256_blendv_ps(v[0], v[1], lo),
                                      _mm256_blendv_ps(v[2], v[3], lo), hi);
    return kFive ? _mm256_blendv_ps(p, v[4], top) : p;
  };
  constexpr int kN = kFive ? 5 : 4;
  for (int h = kLo; h < H - 3; ++h) {
    for (int g = 0; g < C / 8; ++g) {
      const __m256 r0 = bit(t.m1, g, 0), r1 = bit(t.m1, g, 1), r2 = bit(t.m1, g, 2);
      const __m256 c0 = bit(t.m2, g, 0), c1 = bit(t.m2, g, 1), c2 = bit(t.m2, g, 2);
      const float* in = x + ((h - 2) * W) * C + 8 * g;
      auto column = [&](int j) __attribute__((always_inline)) {
        __m256 v[kN];
        for (int k = 0; k < kN; ++k) v[k] = _mm256_loadu_ps(in + j * C + k * W * C);
        return pick(v, r0, r1, r2);
      };
      __m256 v[kN];
      for (int k = 0; k < kN - 1; ++k) v[k] = column(kLo - 2 + k);
      float* out = y + (h * W + kLo) * C + 8 * g;
      for (int w = 0; w < kCount; ++w) {
        v[kN - 1] = column(kLo - 3 + kN + w);
        _mm256_storeu_ps(out + w * C, pick(v, c0, c1, c2));
        for (int k = 0; k < kN - 1; ++k) v[k] = v[k + 1];
      }
    }
  }
}

// An integer move: each output column one gather a group and its store.
__attribute__((noinline)) void gathers_only(const float* x, float* y, const Tables& t) {
  alignas(32) int col[C / 8][kCount + 1][8];
  alignas(32) int r[8];
  for (int g = 0; g < C / 8; ++g) column_terms<8>(t, 8 * g, col[g]);
  for (int h = kLo; h < H - 3; ++h) {
    for (int i = 0; i < W * C; i += 16) __builtin_prefetch(x + (h + 3) * W * C + i);
    for (int g = 0; g < C / 8; ++g) {
      row_terms<8>(t, 8 * g, h, r);
      const __m256i r0 = _mm256_load_si256((const __m256i*)r);
      float* out = y + (h * W + kLo) * C + 8 * g;
      for (int w = 0; w < kCount; ++w) {
        const __m256i at = _mm256_add_epi32(r0, _mm256_load_si256((const __m256i*)col[g][w]));
        _mm256_storeu_ps(out + w * C, _mm256_i32gather_ps(x, at, 4));
      }
    }
  }
}

__attribute__((noinline)) void copy(const float* x, float* y, const Tables&) {
  for (int h = kLo; h < H - 3; ++h) {
    std::memcpy(y + (h * W + kLo) * C, x + (h * W + kLo) * C, sizeof(float) * kCount * C);
  }
}

// The 3-D forward's span loop (lanes.h's span_row, v33): D x H x W x C
// samples, offsets -2 .. 1 on every axis; a strip of rows of an output
// plane reads depth tap 0's moved rows from the buffer the plane before
// filled as its tap 1, gathers tap 1's row h + 1 column by column into the
// other buffer, and takes the bilinear value of both taps and the depth
// stencil per output (a group of 8 channels at a time; strips of 7 rows).
namespace three {
constexpr int D = 16, H3 = 28, W3 = 28, kRows = 7, kCount3 = W3 - 5;
struct Tables3 {
  int m[3][C];
  float f[3][C];
};
int64_t at(int d, int h, int w) { return ((int64_t{d} * H3 + h) * W3 + w) * C; }

__attribute__((noinline)) void span_avx2(const float* x, float* y, const Tables3& t) {
  alignas(32) static float buf[2][kRows + 1][C / 8][kCount3 + 1][8];
  alignas(32) int col[C / 8][kCount3 + 1][8];
  for (int g = 0; g < C / 8; ++g) {
    for (int i = 0; i <= kCount3; ++i) {
      for (int l = 0; l < 8; ++l) col[g][i][l] = (kLo + i + t.m[2][8 * g + l]) * C + 8 * g + l;
    }
  }
  // lane terms of plane tap `tap` of output plane d, row h
  auto row_term = [&](int g, int d, int tap, int h) {
    alignas(32) int r[8];
    for (int l = 0; l < 8; ++l) {
      const int c = 8 * g + l;
      r[l] = static_cast<int>(at(d + t.m[0][c] + tap, h + t.m[1][c], 0));
    }
    return _mm256_load_si256(reinterpret_cast<const __m256i*>(r));
  };
  auto gather = [&](__m256i r, const int* c) {
    return _mm256_i32gather_ps(x, _mm256_add_epi32(r, _mm256_load_si256((const __m256i*)c)), 4);
  };
  for (int r0 = kLo; r0 < H3 - 3; r0 += kRows) {
    const int rows = std::min(kRows, H3 - 3 - r0);
    int flip = 0;
    for (int d = kLo; d < D - 3; ++d, flip ^= 1) {
      float(*b0)[C / 8][kCount3 + 1][8] = buf[flip];  // tap 0: the plane before's tap 1
      float(*b1)[C / 8][kCount3 + 1][8] = buf[flip ^ 1];
      for (int g = 0; g < C / 8; ++g) {
        const __m256 d1 = _mm256_loadu_ps(t.f[0] + 8 * g), f1 = _mm256_loadu_ps(t.f[1] + 8 * g);
        const __m256 w1 = _mm256_loadu_ps(t.f[2] + 8 * g);
        const __m256 d0 = _mm256_sub_ps(_mm256_set1_ps(1), d1);
        const __m256 f0 = _mm256_sub_ps(_mm256_set1_ps(1), f1);
        const __m256 w0 = _mm256_sub_ps(_mm256_set1_ps(1), w1);
        for (int k = 0; k <= rows; ++k) {  // the strip's first plane gathers both taps
          for (int i = 0; d == kLo && i <= kCount3; ++i) {
            _mm256_store_ps(b0[k][g][i], gather(row_term(g, d, 0, r0 + k), col[g][i]));
          }
        }
        const __m256i rt = row_term(g, d, 1, r0);
        for (int i = 0; i <= kCount3; ++i) _mm256_store_ps(b1[0][g][i], gather(rt, col[g][i]));
        for (int k = 0; k < rows; ++k) {
          const __m256i rn = row_term(g, d, 1, r0 + k + 1);
          auto next = [&](int i, __m256* q0, __m256* q1) {
            const __m256 b = gather(rn, col[g][i]);
            _mm256_store_ps(b1[k + 1][g][i], b);
            *q0 = _mm256_fmadd_ps(f1, _mm256_load_ps(b0[k + 1][g][i]),
                                  _mm256_mul_ps(f0, _mm256_load_ps(b0[k][g][i])));
            *q1 = _mm256_fmadd_ps(f1, b, _mm256_mul_ps(f0, _mm256_load_ps(b1[k][g][i])));
          };
          __m256 p0, p1;
          next(0, &p0, &p1);
          float* out = y + at(d, r0 + k, kLo) + 8 * g;
          for (int w = 0; w < kCount3; ++w) {
            __m256 q0, q1;
            next(w + 1, &q0, &q1);
            const __m256 v0 = _mm256_fmadd_ps(w1, q0, _mm256_mul_ps(w0, p0));
            const __m256 v1 = _mm256_fmadd_ps(w1, q1, _mm256_mul_ps(w0, p1));
            _mm256_storeu_ps(out + w * C, _mm256_fmadd_ps(d1, v1, _mm256_mul_ps(d0, v0)));
            p0 = q0;
            p1 = q1;
          }
        }
      }
    }
  }
}

__attribute__((noinline)) void copy(const float* x, float* y, const Tables3&) {
  for (int d = kLo; d < D - 3; ++d) {
    for (int h = kLo; h < H3 - 3; ++h) {
      const int64_t o = at(d, h, kLo);
      std::memcpy(y + o, x + o, sizeof(float) * kCount3 * C);
    }
  }
}
}  // namespace three

}  // namespace

// n floats 64-byte aligned, as XLA's buffers are: no load or store splits a
// line.
struct Free {
  void operator()(float* p) const { std::free(p); }
};
std::unique_ptr<float[], Free> aligned_floats(size_t n) {
  return std::unique_ptr<float[], Free>(static_cast<float*>(std::aligned_alloc(64, 4 * n)));
}

// Prints the ns a vector of `vectors` that `repeats` runs of run() take.
template <typename Run>
void timed(const char* name, int samples, int repeats, double vectors, const Run& run) {
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < repeats; ++i) run();
  const std::chrono::duration<double, std::nano> ns = std::chrono::steady_clock::now() - t0;
  std::printf("%-17s samples=%d: %.2f ns a vector of 8 channels\n", name, samples,
              ns.count() / repeats / vectors);
}

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s SAMPLES REPEATS\n", argv[0]);
    return 2;
  }
  const int samples = std::atoi(argv[1]), repeats = std::atoi(argv[2]);
  const bool xhot = std::getenv("XHOT"), yhot = std::getenv("YHOT");
  const size_t sample = size_t{H} * W * C;
  const auto xp = aligned_floats(samples * sample), yp = aligned_floats(samples * sample);
  std::span<float> x(xp.get(), samples * sample), y(yp.get(), samples * sample);
  std::mt19937 rng(0);
  std::uniform_real_distribution<float> u(0, 1);
  for (float& v : x) v = u(rng);
  std::fill(y.begin(), y.end(), 0.0f);  // y's pages faulted in before any timing
  Tables t;
  for (int c = 0; c < C; ++c) {
    t.m1[c] = static_cast<int>(u(rng) * 4) - 2;
    t.m2[c] = static_cast<int>(u(rng) * 4) - 2;
    t.f1[c] = u(rng);
    t.f2[c] = u(rng);
  }
  using Fn = void (*)(const float*, float*, const Tables&);
  // (the transposed loops compute all 32 columns: 32 / kCount times the work)
  struct Loop {
    const char* name;
    Fn fn;
    double work;
  };
  const Loop loops[] = {
      {"fused pair, AVX2", fused_avx2<false>, 1},
      {"fused, masked", fused_avx2<true>, 1},
#ifdef __AVX512F__
      {"fused, AVX-512", fused_avx512, 1},
      {"16x16 transposed", transposed_avx512, 32.0 / kCount},
#endif
      {"8x8 transposed", transposed_avx2<false>, 32.0 / kCount},
      {"8x8 tr. rows out", transposed_avx2<true>, 32.0 / kCount},
      {"window blends", window_avx2, 1},
      {"window ring", window_ring<false>, 1},
      {"window ring, and", window_ring<true>, 1},
      {"gathers + stores", gathers_only, 1},
      {"window move", window_move<false>, 1},
      {"window move, 5", window_move<true>, 1},
      {"memcpy", copy, 1},
  };
  // The transposed loops against the fused one on the interior all compute.
  std::vector<float> y2(sample);
  fused_avx2<false>(x.data(), y.data(), t);
  for (const Loop& loop : loops) {
    if (loop.fn == gathers_only || loop.fn == window_move<false> || loop.fn == window_move<true> ||
        loop.fn == copy) {
      continue;
    }
    std::fill(y2.begin(), y2.end(), 0.0f);
    loop.fn(x.data(), y2.data(), t);
    for (int h = kLo; h < H - 3; ++h) {
      for (int i = (h * W + kLo) * C; i < (h * W + kLo + kCount) * C; ++i) {
        if (y[i] != y2[i]) {
          std::fprintf(stderr, "%s differs at %d: %g != %g\n", loop.name, i, y2[i], y[i]);
          return 1;
        }
      }
    }
  }
  {  // the window move against the gathers' move
    std::vector<float> a(sample), b(sample);
    gathers_only(x.data(), a.data(), t);
    for (auto fn : {window_move<false>, window_move<true>}) {
      std::fill(b.begin(), b.end(), 0.0f);
      fn(x.data(), b.data(), t);
      if (a != b) {
        std::fprintf(stderr, "window move differs\n");
        return 1;
      }
    }
  }
  // The backward against a scalar evaluation of the same sums (double).
  const auto gp = aligned_floats(samples * sample);
  std::span<float> gs(gp.get(), samples * sample);
  for (float& v : gs) v = u(rng) - 0.5f;
  std::vector<float> sums(2 * C);
  backward_avx2<false>(gs.data(), x.data(), y.data(), t, sums.data());
  for (int c = 0; c < C; ++c) {
    double want[2] = {0, 0};
    const double w1f = t.f1[c], w0f = 1 - w1f, w1w = t.f2[c], w0w = 1 - w1w;
    for (int h = kLo; h < H - 3; ++h) {
      for (int w = kLo; w < kLo + kCount; ++w) {
        auto at = [&](int r, int q) { return double{gs[(r * W + q) * C + c]}; };
        const int r = h - t.m1[c], q = w - t.m2[c];
        const double ak = at(r, q), al = at(r, q - 1), bk = at(r - 1, q), bl = at(r - 1, q - 1);
        const double rk = w0f * ak + w1f * bk, rl = w0f * al + w1f * bl;
        const double xv = x[(h * W + w) * C + c], d = y[(h * W + w) * C + c];
        if (std::abs(d - (w0w * rk + w1w * rl)) > 1e-5) {
          std::fprintf(stderr, "backward dx differs at %d %d %d\n", h, w, c);
          return 1;
        }
        want[0] += xv * ((w0w * ak + w1w * al) - (w0w * bk + w1w * bl));
        want[1] += xv * (rk - rl);
      }
    }
    for (int k = 0; k < 2; ++k) {
      if (std::abs(want[k] - sums[k * C + c]) > 1e-3 * (1 + std::abs(want[k]))) {
        std::fprintf(stderr, "backward sum %d of channel %d: %g != %g\n", k, c,
                     double{sums[k * C + c]}, want[k]);
        return 1;
      }
    }
  }
  {  // the three-row ring's dx and sums: the two-row ring's bits
    std::vector<float> dx3(sample), sums3(2 * C);
    backward_avx2<false, true>(gs.data(), x.data(), dx3.data(), t, sums3.data());
    for (int h = kLo; h < H - 3; ++h) {
      for (int i = (h * W + kLo) * C; i < (h * W + kLo + kCount) * C; ++i) {
        if (dx3[i] != y[i]) {
          std::fprintf(stderr, "backward, 3 rows: dx differs at %d\n", i);
          return 1;
        }
      }
    }
    if (sums3 != sums) {
      std::fprintf(stderr, "backward, 3 rows: sums differ\n");
      return 1;
    }
  }
  // The 3-D span loop against a double evaluation, then timed beside a
  // memcpy of its bytes (samples / 4 of them: the same 8 MB at 32 samples).
  using three::D, three::H3, three::W3, three::kCount3;
  const int samples3 = std::max(1, samples / 4);
  const size_t sample3 = size_t{D} * H3 * W3 * C;
  const auto x3p = aligned_floats(samples3 * sample3), y3p = aligned_floats(samples3 * sample3);
  std::span<float> x3(x3p.get(), samples3 * sample3), y3(y3p.get(), samples3 * sample3);
  for (float& v : x3) v = u(rng);
  std::fill(y3.begin(), y3.end(), 0.0f);
  three::Tables3 t3;
  for (int c = 0; c < C; ++c) {
    for (int a = 0; a < 3; ++a) {
      t3.m[a][c] = static_cast<int>(u(rng) * 4) - 2;
      t3.f[a][c] = u(rng);
    }
  }
  three::span_avx2(x3.data(), y3.data(), t3);
  for (int d = kLo; d < D - 3; ++d) {
    for (int h = kLo; h < H3 - 3; ++h) {
      for (int w = kLo; w < kLo + kCount3; ++w) {
        for (int c = 0; c < C; ++c) {
          double want = 0;
          for (int k = 0; k < 8; ++k) {
            const int a = k >> 2 & 1, b = k >> 1 & 1, e = k & 1;
            double wt = 1;
            const int tap[3] = {a, b, e};
            for (int q = 0; q < 3; ++q) wt *= tap[q] ? t3.f[q][c] : 1 - t3.f[q][c];
            want += wt * x3[three::at(d + t3.m[0][c] + a, h + t3.m[1][c] + b,
                                      w + t3.m[2][c] + e) + c];
          }
          if (std::abs(want - y3[three::at(d, h, w) + c]) > 1e-5) {
            std::fprintf(stderr, "3-D span differs at %d %d %d %d\n", d, h, w, c);
            return 1;
          }
        }
      }
    }
  }
  const double vectors = static_cast<double>(samples) * (H - 5) * kCount * C / 8;
  const double vectors3 = static_cast<double>(samples3) * (D - 5) * (H3 - 5) * kCount3 * C / 8;
  using Fn3 = void (*)(const float*, float*, const three::Tables3&);
  const std::pair<const char*, Fn3> loops3[] = {{"3-D span, AVX2", three::span_avx2},
                                                {"3-D memcpy", three::copy}};
  const char* only = std::getenv("ONLY");  // time only the loops whose names contain it
  for (int round = 0; round < 3; ++round) {
    for (const Loop& loop : loops) {
      if (only && !std::strstr(loop.name, only)) continue;
      timed(loop.name, samples, repeats, vectors * loop.work, [&] {
        for (int s = 0; s < samples; ++s) {
          loop.fn(x.data() + (xhot ? 0 : s) * sample, y.data() + (yhot ? 0 : s) * sample, t);
        }
      });
    }
    using Bw = void (*)(const float*, const float*, float*, const Tables&, float*);
    const std::pair<const char*, Bw> backwards[] = {{"backward, AVX2", backward_avx2<false>},
                                                    {"backward, x first", backward_avx2<true>},
                                                    {"backward, 3 rows", backward_avx2<false, true>}};
    for (const auto& [name, fn] : backwards) {
      if (only && !std::strstr(name, only)) continue;
      timed(name, samples, repeats, vectors, [&] {
        for (int s = 0; s < samples; ++s) {
          fn(gs.data() + s * sample, x.data() + s * sample, y.data() + s * sample, t,
             sums.data());
        }
      });
    }
    for (const auto& [name, fn] : loops3) {
      if (only && !std::strstr(name, only)) continue;
      timed(name, samples3, repeats, vectors3, [&] {
        for (int s = 0; s < samples3; ++s) {
          fn(x3.data() + s * sample3, y3.data() + s * sample3, t3);
        }
      });
    }
  }
}
