// Staged planes and register tiles: the CPU kernel's path for walkable calls
// (at most two spatial axes, unit strides) that neither the direct rows
// (cpu/direct.h: channels-first rows of 8 or more, moves of any length)
// nor the lanes (cpu/lanes.h: channels-last, and channels-first rows
// under 8 cells but double's; 8 channels or more, samples within 32-bit
// offsets; of 16-bit active calls on rows of 8 or more, the forwards,
// one-pass backwards and the backwards of a padding that folds only) take:
// 16-bit channels-first active forwards on rows over 4096 cells, calls of
// fewer than 8 channels, double's channels-first rows under 8 cells,
// 16-bit two-pass backwards of zeros or periodic padding (no shift
// gradient, or channels-first).
//
// A task takes one sample and a group of at most 8 channels and copies a
// strip of their rows into contiguous planes in the accumulation type, with
// a halo of K cells on every side filled by the padding rule (per-thread
// scratch, sized to stay in L2; tall planes go in several strips). Every
// read of the shift then lands inside the planes, so the loops have no
// padding test. The outputs are computed 8 channels x 8 pixels at a time in
// registers (a vector of 8 pixels per channel, read from its plane at the
// channel's own offset) and stored straight to the array: in channels-last
// after an 8 x 8 transpose in registers (a pixel's channels are contiguous
// there), in channels-first as they are. No output plane is written and read
// again. Staging into the planes is the same transpose the other way.
//
// 16-bit storage is widened to float on the way in and narrowed on the way
// out with store()'s rounding (core/float16.h), bit for bit; integer moves
// carry raw bits and do no arithmetic. K is the farthest the group's offsets
// read; a group whose shifts reach further than kMaxHalo runs the walks in
// place (cpu/forward.cc, cpu/backward.cc). The loops evaluate
// core/stencils.h's formulas. Each SIMD loop exists in a baseline and an
// AVX2 + FMA version (cpu/isa.h, JAXSHIFT_ISA_VERSIONS); they fuse
// multiply-adds differently and the shift-gradient sums run in lanes, so
// results agree with the walks to rounding, and each version is repeatable
// bit for bit.
//
// The vectors are GCC vector extensions (Vec8): one AVX register of floats
// in the AVX2 versions, two SSE registers in the baseline.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "cpu/isa.h"
#include "cpu/parallel.h"
#include "cpu/tables.h"
#include "core/elementwise.h"
#include "core/stencils.h"
#include "core/walks.h"

#if defined(JAXSHIFT_X86_AVX2)
#include <immintrin.h>
#endif

// Functions here pass vectors by value; they are inlined in one translation
// unit, so GCC's note that a vector return's ABI depends on the instruction
// set concerns no call that crosses a boundary.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace jaxshift {

constexpr int kMaxHalo = 16;
constexpr int kGroup = 8;       // channels (and pixels) of a register tile
constexpr int64_t kSetBytes = int64_t{512} << 10;  // one set of a block's planes, at most

// --- Vectors of 8 -------------------------------------------------------

template <typename A>
struct Vec8Of {
  typedef A type __attribute__((vector_size(8 * sizeof(A))));
};
template <typename A>
using Vec8 = typename Vec8Of<A>::type;

typedef uint32_t u32x8 __attribute__((vector_size(32)));
typedef uint16_t u16x8 __attribute__((vector_size(16)));
typedef float f32x8 __attribute__((vector_size(32)));

template <typename V, typename A>
V loadu(const A* p) {
  V v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <typename V, typename A>
void storeu(A* p, V v) {
  std::memcpy(p, &v, sizeof v);
}
// n (< 8) elements from `from` to `to` by pieces of 4, 2 and 1 elements. A
// loop of n elements became a call of memcpy: 64x4x4x256 channels-first
// forwards 0.84-0.90x the time without it (benchmarks/NOTES.md, v32).
template <typename A>
__attribute__((always_inline)) inline void copy_head(A* to, const A* from, int n) {
  int i = 0;
  if (n & 4) {
    std::memcpy(to, from, 4 * sizeof(A));
    i = 4;
  }
  if (n & 2) {
    std::memcpy(to + i, from + i, 2 * sizeof(A));
    i += 2;
  }
  if (n & 1) to[i] = from[i];
}
// The first n (< 8) elements of v stored at p, or read from p (the rest 0).
template <typename V, typename A>
__attribute__((always_inline)) inline void store_head(A* p, V v, int n) {
  static_assert(sizeof(V) == 8 * sizeof(A), "8 lanes of A");
  A c[8];
  storeu(c, v);
  copy_head(p, static_cast<const A*>(c), n);
}
template <typename V, typename A>
__attribute__((always_inline)) inline V load_head(const A* p, int n) {
  static_assert(sizeof(V) == 8 * sizeof(A), "8 lanes of A");
  A c[8] = {};
  copy_head(c, p, n);
  return loadu<V>(c);
}
// Every lane a (a copy: a + 0 would flush the raw bits of moves as
// denormals under XLA's flush-to-zero).
template <typename V, typename A>
V splat(A a) {
  V v;
  for (int l = 0; l < 8; ++l) v[l] = a;
  return v;
}
template <typename To, typename From>
To bitcast(From v) {
  static_assert(sizeof(To) == sizeof(From), "bitcast between equal sizes");
  To t;
  std::memcpy(&t, &v, sizeof t);
  return t;
}

// 8 consecutive elements of storage T in the accumulation type: widened by
// to_float's rules, or (bits) their raw bits zero-extended (integer moves).
// I: the version (cpu/isa.h) the caller is compiled for; the AVX2 versions
// convert float16 with F16C's instructions, the same values bit for bit.
template <Isa I = Isa::kBase, typename T>
Vec8<typename Acc<T>::type> widen8(const T* p, bool) {
  return loadu<Vec8<typename Acc<T>::type>>(p);
}
// The same from 8 stored values' bits (the pointer names the type only).
template <Isa I = Isa::kBase>
inline f32x8 widen8_bits(const BFloat16*, u16x8 raw, bool bits) {
  const u32x8 h = __builtin_convertvector(raw, u32x8);
  return bitcast<f32x8>(bits ? h : h << 16);
}
#if defined(JAXSHIFT_X86_AVX2)
// F16C (in every AVX2 version's target): float16 to float is exact, and a
// NaN keeps its payload (quieted, which the arithmetic after it does
// anyway). Pointer arguments, as lanes.h's gathers: a version's recursion
// can leave a copy of its caller outside the target, and a vector passed by
// value across targets changes its calling convention.
__attribute__((target("avx2,f16c"))) inline void widen8_f16c(const uint16_t* in, float* out) {
  _mm256_storeu_ps(out, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(in))));
}
// float to float16, rounded to nearest even (overflow to inf); NaNs as
// store() writes them, a quiet NaN of the sign without payload.
__attribute__((target("avx2,f16c"))) inline void narrow8_f16c(const float* in, uint16_t* out) {
  const __m256 v = _mm256_loadu_ps(in);
  const __m128i h = _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  if (!_mm256_movemask_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q))) {  // no NaN: h as it is
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out), h);
    return;
  }
  const __m256i all = _mm256_castps_si256(v);
  const __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(all, _mm256_set1_epi32(0x7fffffff)),
                                         _mm256_set1_epi32(0x7f800000));
  const __m256i quiet = _mm256_or_si256(
      _mm256_and_si256(_mm256_srli_epi32(all, 16), _mm256_set1_epi32(0x8000)),
      _mm256_set1_epi32(0x7e00));
  // both packed to 16 bits, in order (the mask signed, the NaNs unsigned)
  const __m128i nan16 = _mm_packs_epi32(_mm256_castsi256_si128(nan),
                                        _mm256_extracti128_si256(nan, 1));
  const __m128i quiet16 = _mm_packus_epi32(_mm256_castsi256_si128(quiet),
                                           _mm256_extracti128_si256(quiet, 1));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out), _mm_blendv_epi8(h, quiet16, nan16));
}
#endif
template <Isa I = Isa::kBase>
inline f32x8 widen8_bits(const Half*, u16x8 raw, bool bits) {
  const u32x8 h = __builtin_convertvector(raw, u32x8);
  if (bits) return bitcast<f32x8>(h);
#if defined(JAXSHIFT_X86_AVX2)
  if constexpr (I >= Isa::kAvx2) {
    f32x8 v;
    widen8_f16c(reinterpret_cast<const uint16_t*>(&raw), reinterpret_cast<float*>(&v));
    return v;
  }
#endif
  const u32x8 zero = {}, sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
  const u32x8 normal = sign | ((exp + 112) << 23) | (man << 13);
  const u32x8 special = sign | 0x7f800000u | (man << 13);  // inf, NaN
  // Subnormals and zeros: man * 2^-24, exact in float.
  const u32x8 sub = bitcast<u32x8>(__builtin_convertvector(man, f32x8) * 5.9604644775390625e-8f);
  return bitcast<f32x8>(exp == zero ? (sub | sign) : (exp == zero + 0x1fu ? special : normal));
}
#if defined(JAXSHIFT_X86_AVX2)
// widen8_bits' bfloat16 rule by one vpmovzxwd (GCC splits the generic
// conversion into two halves and an insert).
__attribute__((target("avx2"))) inline void widen8_bf16_avx2(const uint16_t* in, bool bits,
                                                             float* out) {
  const __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(in)));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), bits ? h : _mm256_slli_epi32(h, 16));
}
#endif
template <Isa I = Isa::kBase>
inline f32x8 widen8(const BFloat16* p, bool bits) {
#if defined(JAXSHIFT_X86_AVX2)
  if constexpr (I == Isa::kAvx2) {
    f32x8 v;
    widen8_bf16_avx2(reinterpret_cast<const uint16_t*>(p), bits, reinterpret_cast<float*>(&v));
    return v;
  }
#endif
  return widen8_bits<I>(p, loadu<u16x8>(p), bits);
}
template <Isa I = Isa::kBase>
inline f32x8 widen8(const Half* p, bool bits) {
  return widen8_bits<I>(p, loadu<u16x8>(p), bits);
}

// 8 values of the accumulation type stored as T (store()'s rounding, bit for
// bit), or (bits) the raw bits widen8 carried.
template <Isa I = Isa::kBase, typename T>
void narrow8(T* p, Vec8<typename Acc<T>::type> v, bool) {
  storeu(p, v);
}
// The bfloat16 bits of 8 floats (store()'s rounding), or (bits) the raw bits
// widen8 carried, in the low half of each 32-bit lane.
inline u32x8 bf16_bits8(f32x8 v, bool bits) {
  const u32x8 u = bitcast<u32x8>(v);
  if (bits) return u;
  const u32x8 rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  const u32x8 quiet = (u >> 16) | 0x40u;
  typedef int32_t s32x8 __attribute__((vector_size(32)));  // (a signed compare: one instruction)
  return bitcast<s32x8>(u & 0x7fffffffu) > 0x7f800000 ? quiet : rounded;
}
#if defined(JAXSHIFT_X86_AVX2)
// bf16_bits8(v, false), its NaN rule only where `nan` says a lane may be
// NaN (else the rounding alone: two constants fewer in the caller's
// registers).
__attribute__((target("avx2"), always_inline)) inline __m256i bf16_bits8_avx2(f32x8 v, bool nan) {
  if (nan) return (__m256i)bf16_bits8(v, false);
  const __m256i u = (__m256i)v;  // rounded to nearest even
  const __m256i r = _mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)),
                                     _mm256_and_si256(_mm256_srli_epi32(u, 16),
                                                      _mm256_set1_epi32(1)));
  return _mm256_srli_epi32(r, 16);
}
// bf16_bits8 of 8 floats to out (one unordered compare for NaN).
__attribute__((target("avx2"))) inline void narrow8_bf16_avx2(const f32x8* in, uint16_t* out) {
  const __m256 v = (__m256)*in;
  const __m256i r = bf16_bits8_avx2(*in, _mm256_movemask_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q)));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out),
                   _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1)));
}
#endif
template <Isa I = Isa::kBase>
inline void narrow8(BFloat16* p, f32x8 v, bool bits) {
#if defined(JAXSHIFT_X86_AVX2)
  if constexpr (I >= Isa::kAvx2) {
    if (!bits) return narrow8_bf16_avx2(&v, reinterpret_cast<uint16_t*>(p));
  }
#endif
  storeu(p, __builtin_convertvector(bf16_bits8(v, bits), u16x8));
}
template <Isa I = Isa::kBase>
inline void narrow8(Half* p, f32x8 v, bool bits) {
  if (bits) return storeu(p, __builtin_convertvector(bitcast<u32x8>(v), u16x8));
#if defined(JAXSHIFT_X86_AVX2)
  if constexpr (I >= Isa::kAvx2) {
    return narrow8_f16c(reinterpret_cast<const float*>(&v), reinterpret_cast<uint16_t*>(p));
  }
#endif
  const u32x8 zero = {}, all = bitcast<u32x8>(v);
  const u32x8 sign = (all >> 16) & 0x8000u, u = all & 0x7fffffffu;
  const u32x8 special = zero + 0x7c00u | (u > 0x7f800000u ? zero + 0x200u : zero);  // inf, NaN
  // Below the smallest normal: one half-subnormal ulp scaled to 1.0, rounded
  // half to even.
  const f32x8 r = bitcast<f32x8>(u) * 16777216.0f + 12582912.0f - 12582912.0f;
  const u32x8 subnormal = __builtin_convertvector(r, u32x8);
  const u32x8 normal = (u + 0xfffu + ((u >> 13) & 1u) - 0x38000000u) >> 13;
  const u32x8 mag = u >= 0x7f800000u
                        ? special
                        : (u >= 0x477ff000u ? zero + 0x7c00u : (u < 0x38800000u ? subnormal : normal));
  storeu(p, __builtin_convertvector(sign | mag, u16x8));
}

// One element, as widen8 / narrow8 do it.
template <typename T>
typename Acc<T>::type widen1(const T* p, bool bits) {
  using A = typename Acc<T>::type;
  return bits ? load_bits<A>(p) : load<A>(p);  // (core/float16.h)
}
template <typename T>
void narrow1(T* p, typename Acc<T>::type v, bool bits) {
  if (bits) return store_bits(p, v);
  store(p, v);
}

// r[i][j] <- r[j][i] for 8 vectors of 8 (unpack, shuffle, then halves: the
// AVX 8 x 8 transpose for floats).
template <typename V>
void transpose8(V* r) {
  V t[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = __builtin_shufflevector(r[i], r[i + 1], 0, 8, 1, 9, 4, 12, 5, 13);
    t[i + 1] = __builtin_shufflevector(r[i], r[i + 1], 2, 10, 3, 11, 6, 14, 7, 15);
  }
  for (int i = 0; i < 8; i += 4) {
    r[i] = __builtin_shufflevector(t[i], t[i + 2], 0, 1, 8, 9, 4, 5, 12, 13);
    r[i + 1] = __builtin_shufflevector(t[i], t[i + 2], 2, 3, 10, 11, 6, 7, 14, 15);
    r[i + 2] = __builtin_shufflevector(t[i + 1], t[i + 3], 0, 1, 8, 9, 4, 5, 12, 13);
    r[i + 3] = __builtin_shufflevector(t[i + 1], t[i + 3], 2, 3, 10, 11, 6, 7, 14, 15);
  }
  for (int i = 0; i < 4; ++i) {
    t[i] = __builtin_shufflevector(r[i], r[i + 4], 0, 1, 2, 3, 8, 9, 10, 11);
    t[i + 4] = __builtin_shufflevector(r[i], r[i + 4], 4, 5, 6, 7, 12, 13, 14, 15);
  }
  for (int i = 0; i < 8; ++i) r[i] = t[i];
}

// --- Planes and groups ----------------------------------------------------

// Padded planes of a group: a strip of H rows (global rows r0 .. r0 + H - 1)
// by W columns, halo K, padded rows of Wp.
struct Planes {
  int H, W, K, Wp, r0;
  int64_t pitch;  // elements between the planes of a group
  // Offset of cell (r, c) of the strip; r and c may reach K into the halo.
  int64_t at(int r, int c) const { return int64_t{r + K} * Wp + c + K; }
};

// The pitch is the padded plane rounded up to a cache line, plus one line, so
// that planes do not start 4 KiB apart: the transposes touch all the planes
// of a group at once, which would then share L1 sets.
template <typename A>
Planes make_planes(int rows, int W, int K, int r0) {
  const int64_t line = 64 / static_cast<int64_t>(sizeof(A));
  const int64_t area = int64_t{rows + 2 * K} * (W + 2 * K);
  return Planes{rows, W, K, W + 2 * K, r0, (area + line - 1) / line * line + line};
}

// How a staged call is cut into tasks: sample x block of B channels x strip
// of R rows. A block is every channel, or whole 64-byte lines of them when
// `sets` sets of all channels' planes would not fit kSetBytes each with 16
// rows: the output is then written in whole lines of contiguous pixels (the
// prefetchers follow), and no two tasks write parts of one line (two cores
// would pass it back and forth). A strip is as many rows as keep one set of
// the block's planes within kSetBytes, halo included; K is the farthest any
// channel of the call reads (call_halo).
struct StagedPlan {
  int B, R;
  int64_t blocks, strips;
  int64_t planes = 1;  // planes of axis 0 (3-D lanes tasks), else 1
  int64_t tasks(const Geometry& geo) const { return geo.N * planes * blocks * strips; }
  // Task t's sample, first channel, channels, first row and rows (of the
  // output: the input's too where strides are 1), and output plane.
  void task(const Geometry& geo, int64_t t, int64_t* n, int64_t* c0, int* nb, int* r0,
            int* rows, int* plane = nullptr) const {
    *n = t / (planes * blocks * strips);
    if (plane) *plane = static_cast<int>(t / (blocks * strips) % planes);
    *c0 = (t / strips) % blocks * B;
    *nb = static_cast<int>(std::min<int64_t>(B, geo.C - *c0));
    *r0 = static_cast<int>(t % strips) * R;
    *rows = std::min(R, geo.ax[1].Lo - *r0);
  }
};

// fn(n, d, c0, nb, r0, rows) for every task of `plan` on `grid` (sample,
// plane of axis 0, first channel, channels, first row, rows), on the pool.
template <typename Fn>
void for_each_task(xla::ffi::ThreadPool& pool, const StagedPlan& plan, const Geometry& grid,
                   const Fn& fn) {
  parallel_for(pool, plan.tasks(grid), [&](int64_t task) {
    int64_t n, c0;
    int nb, r0, rows, d;
    plan.task(grid, task, &n, &c0, &nb, &r0, &rows, &d);
    fn(n, d, c0, nb, r0, rows);
  });
}

template <typename T>
StagedPlan staged_plan(const Geometry& geo, int K) {
  using A = typename Acc<T>::type;
  const int H = geo.ax[1].L, W = geo.ax[2].L;
  const int64_t line = std::max<int64_t>(kGroup, 64 / static_cast<int64_t>(sizeof(T)));
  const int64_t channel = int64_t{std::min(H, 16) + 2 * K} * (W + 2 * K) * int64_t{sizeof(A)};
  const int64_t B = std::min<int64_t>(geo.C, std::max(line, kSetBytes / channel / line * line));
  const int64_t row = B * (W + 2 * K) * int64_t{sizeof(A)};
  const int R = static_cast<int>(std::clamp<int64_t>(kSetBytes / row - 2 * K, 1, H));
  return StagedPlan{static_cast<int>(B), R, (geo.C + B - 1) / B, (H + R - 1) / R};
}

// Staging applies to walkable calls whose rows are short enough that a strip
// of one row, with the largest halo, of the smallest block (one 64-byte line
// of channels) stays within 8 sets' budget (4 MB of scratch a thread, twice
// in the backward, at most).
template <typename T>
bool use_staging(const Geometry& geo) {
  using A = typename Acc<T>::type;
  const int64_t line = std::max<int64_t>(kGroup, 64 / static_cast<int64_t>(sizeof(T)));
  const int64_t row = line * (geo.ax[2].L + 2 * kMaxHalo) * int64_t{sizeof(A)};
  return walkable(geo) && row * (2 * kMaxHalo + 1) <= 8 * kSetBytes;
}

// The farthest (in cells) that channels [c0, c0 + nb) of sample n read from
// their own position along axes 1 and 2: offsets m and m + 1, plus `extra`.
// NaN shifts read nothing. More than kMaxHalo means "too far".
template <typename A>
int block_halo(const Geometry& geo, const Tables& tab, int64_t n, int64_t c0, int64_t nb,
               int extra) {
  int64_t k = 0;
  const int64_t row = table_row(geo, n, c0);
  for (int64_t b = 0; b < nb; ++b) {
    const ChannelTables<A> ct = tables_row<A>(tab, row + b);
    if (nan_shift(ct.f)) continue;
    for (int a = 1; a < 3; ++a) {
      const int64_t m = ct.m[a];
      k = std::max({k, m < 0 ? -m : m, m + 1 < 0 ? -(m + 1) : m + 1});
    }
  }
  return static_cast<int>(std::min<int64_t>(k + extra, kMaxHalo + 1));
}

// block_halo over every channel of every shift group, at most kMaxHalo (the
// strips are sized for it; a block that reads further is walked).
template <typename A>
int call_halo(const Geometry& geo, const Tables& tab, int extra) {
  int k = 0;
  for (int64_t n = 0; n < geo.N; n += geo.per_group) {
    k = std::max(k, block_halo<A>(geo, tab, n, 0, geo.C, extra));
  }
  return std::min(k, kMaxHalo);
}

// Per-thread scratch of at least n elements, kept between calls.
template <typename T>
T* scratch(size_t n) {
  thread_local std::vector<T> buf;
  if (buf.size() < n) buf.resize(n);
  return buf.data();
}

// Where a block's channels live: channel c0 at pixel (0, 0) of the sample,
// nb channels, channel, row and column strides (elements).
template <typename T>
struct Group {
  T* p;
  int nb;
  int64_t cs, rs, ws;
  // The channels in whole register tiles (8 x 8 transposes): channels-last,
  // all but nb % 8; none in channels-first.
  int tiled() const { return cs == 1 ? nb / kGroup * kGroup : 0; }
  // Channel b alone. Channels-first loops take one channel at a time: its
  // plane and its rows in the array are contiguous (all channels' rows at
  // once would meet in the same L1 sets, a plane apart).
  Group channel(int b) const { return Group{p + b * cs, 1, cs, rs, ws}; }
};

// The shift tables of a group's channels.
template <typename A>
void group_tables(const Geometry& geo, const Tables& tab, int64_t n, int64_t c0, int nb,
                  ChannelTables<A>* ct) {
  // Field by field into ct: a ChannelTables built on the stack and copied
  // whole made each copy's 16-byte load wait on the two smaller stores
  // before it (a failed store forward: 3 % of a 32x8x8x192 forward).
  const int32_t* m = tab.m + table_row(geo, n, c0) * 3;
  const A* f = static_cast<const A*>(tab.f) + (m - tab.m);
  for (int b = 0; b < nb; ++b) {
    for (int a = 0; a < 3; ++a) {
      ct[b].m[a] = m[3 * b + a];
      ct[b].f[a] = f[3 * b + a];
    }
  }
}

// --- Staging --------------------------------------------------------------

// Copies row `src` of the group's channels into row r of their planes'
// interiors (8 x 8 transposes in channels-last, row copies in channels-first).
template <Isa I, typename A, typename T>
void stage_row(Group<const T> grp, int src, A* planes, const Planes& pl, int r, bool bits) {
  using V = Vec8<A>;
  const T* row = grp.p + src * grp.rs;
  const int tiled = grp.tiled();
  int w = 0;
  for (; w + kGroup <= pl.W && (tiled > 0 || grp.ws == 1); w += kGroup) {
    for (int c = 0; c < tiled; c += kGroup) {
      V v[kGroup];
      for (int j = 0; j < kGroup; ++j) v[j] = widen8<I>(row + (w + j) * grp.ws + c, bits);
      transpose8(v);
      for (int b = 0; b < kGroup; ++b) storeu(planes + (c + b) * pl.pitch + pl.at(r, w), v[b]);
    }
    for (int b = tiled; b < grp.nb; ++b) {
      A* q = planes + b * pl.pitch + pl.at(r, w);
      if (grp.ws == 1) {
        storeu(q, widen8<I>(row + b * grp.cs + w, bits));
      } else {
        for (int j = 0; j < kGroup; ++j) q[j] = widen1(row + b * grp.cs + (w + j) * grp.ws, bits);
      }
    }
  }
  for (; w < pl.W; ++w) {
    for (int b = 0; b < grp.nb; ++b) {
      planes[b * pl.pitch + pl.at(r, w)] = widen1(row + b * grp.cs + w * grp.ws, bits);
    }
  }
}

// Stages the strip: rows -K .. H + K - 1 of the planes are global rows
// r0 - K .. through the padding rule P along the rows, each row's K halo
// cells on both sides by P along it. Zeros: every cell outside the array
// is zero, so each plane is cleared whole first (one fill; per row, the
// halo cells were two fills of K cells, a libc call apiece) and only the
// rows inside the array are staged.
template <Isa I, int P, typename A, typename T>
void stage_rows(Group<const T> grp, int rows, A* planes, const Planes& pl, bool bits) {
  if constexpr (P == kZeros) {
    for (int b = 0; b < grp.nb; ++b) {
      std::fill(planes + b * pl.pitch, planes + b * pl.pitch + pl.at(pl.H + pl.K, -pl.K), A(0));
    }
    const int lo = std::max(-pl.K, -pl.r0), hi = std::min(pl.H + pl.K, rows - pl.r0);
    for (int r = lo; r < hi; ++r) stage_row<I>(grp, pl.r0 + r, planes, pl, r, bits);
    return;
  }
  for (int r = -pl.K; r < pl.H + pl.K; ++r) {
    stage_row<I>(grp, pad_index<P>(pl.r0 + r, rows), planes, pl, r, bits);
    for (int b = 0; b < grp.nb; ++b) {
      A* q = planes + b * pl.pitch + pl.at(r, 0);
      for (int c = -pl.K; c < 0; ++c) q[c] = q[pad_index<P>(c, pl.W)];
      for (int c = pl.W; c < pl.W + pl.K; ++c) q[c] = q[pad_index<P>(c, pl.W)];
    }
  }
}

// stage_rows for the strip's group, or (channels-first) for each channel in
// turn. (Not by recursion: a version's flatten does not inline a recursive
// call, which would run a copy compiled for the baseline. Nor through a
// helper taking a lambda: flatten then left store_rows and the row loops
// out of line, objdump showed.)
template <Isa I, int P, typename A, typename T>
void stage_strip_impl(std::integral_constant<int, P>, Group<const T> grp, int rows, A* planes,
                      Planes pl, bool bits) {
  if (grp.tiled() == 0 && grp.nb > 1) {
    for (int b = 0; b < grp.nb; ++b) {
      stage_rows<I, P>(grp.channel(b), rows, planes + b * pl.pitch, pl, bits);
    }
    return;
  }
  stage_rows<I, P>(grp, rows, planes, pl, bits);
}
JAXSHIFT_ISA_VERSIONS(stage_strip)

// --- Rows out ---------------------------------------------------------------

// A row of each of a group's channels, computed in an L1-resident buffer
// (channel b at rows + b * pitch) and stored to the array 8 pixels x 8
// channels at a time: transposed in registers in channels-last (a pixel's
// channels are contiguous there), as they are in channels-first.
template <typename A>
struct RowBuffer {
  A* rows;
  int64_t pitch;  // >= W, a multiple of 8
};

// Where row `row` of a one-channel group of storage A with contiguous rows
// is computed in place (no buffer, no narrowing); null for every other group.
template <typename A, typename T>
A* row_in_place(const Group<T>& out, int row) {
  if constexpr (std::is_same_v<A, T>) {
    if (out.nb == 1 && out.ws == 1) return out.p + row * out.rs;
  }
  return nullptr;
}

template <typename A>
int64_t row_pitch(int W) {
  return (int64_t{W} + kGroup - 1) / kGroup * kGroup + 16;  // + 16: not 4 KiB apart
}

template <Isa I, typename A, typename T>
void store_rows(const RowBuffer<A>& buf, int W, Group<T> out, int row, bool bits) {
  using V = Vec8<A>;
  T* base = out.p + row * out.rs;
  const int tiled = out.tiled();
  int w = 0;
  for (; w + kGroup <= W && (tiled > 0 || out.ws == 1); w += kGroup) {
    for (int c = 0; c < tiled; c += kGroup) {
      V v[kGroup];
      for (int b = 0; b < kGroup; ++b) v[b] = loadu<V>(buf.rows + (c + b) * buf.pitch + w);
      transpose8(v);
      for (int j = 0; j < kGroup; ++j) narrow8<I>(base + (w + j) * out.ws + c, v[j], bits);
    }
    for (int b = tiled; b < out.nb; ++b) {
      const A* q = buf.rows + b * buf.pitch + w;
      if (out.ws == 1) {
        narrow8<I>(base + b * out.cs + w, loadu<V>(q), bits);
      } else {
        for (int j = 0; j < kGroup; ++j) narrow1(base + b * out.cs + (w + j) * out.ws, q[j], bits);
      }
    }
  }
  for (; w < W; ++w) {
    for (int b = 0; b < out.nb; ++b) {
      narrow1(base + b * out.cs + w * out.ws, buf.rows[b * buf.pitch + w], bits);
    }
  }
}

// Row r of the strip's forward for one channel, from its plane xs: the
// channel's stencils decided once (with_lattice), one SIMD loop.
template <typename T, typename A>
void forward_row(const A* xs, const Planes& pl, int r, const ChannelTables<A>& ct, bool move,
                 A* __restrict out) {
  const int W = pl.W;
  if (nan_shift(ct.f)) {
    A fill = nan_value(ct.f);
    if (move && sizeof(T) == 2) {  // a move carries bits: those of the stored NaN
      T t;
      store(&t, fill);
      fill = widen1(&t, true);
    }
    std::fill(out, out + W, fill);  // (a copy: raw bits stay as they are)
    return;
  }
  const A* __restrict x0 = xs + pl.at(r + ct.m[1], ct.m[2]);
  if (move) {
#pragma omp simd
    for (int w = 0; w < W; ++w) out[w] = x0[w];
    return;
  }
  const int64_t wp = pl.Wp;
  with_lattice(ct.f[1], ct.f[2], [&](auto lat_f, auto lat_w) {
    const Stencil<A> sf = value_stencil(ct.f[1], lat_f), sw = value_stencil(ct.f[2], lat_w);
#pragma omp simd
    for (int w = 0; w < W; ++w) {
      const A* xi = x0 + w;
      out[w] = apply(sw, 0, [&](int c) { return apply(sf, 0, [&](int q) { return xi[q * wp + c]; }); });
    }
  });
}

// The forward of a staged strip: y rows r0 .. r0 + H - 1. `move`: integer
// moves (one read an output, raw bits; a NaN channel's rows are the stored
// NaN's bits).
template <Isa I, typename A, typename T>
void forward_rows(const A* planes, const Planes& pl, const ChannelTables<A>* ct, bool move,
                  const RowBuffer<A>& buf, Group<T> y) {
  for (int r = 0; r < pl.H; ++r) {
    A* in_place = row_in_place<A>(y, pl.r0 + r);
    for (int b = 0; b < y.nb; ++b) {
      forward_row<T>(planes + b * pl.pitch, pl, r, ct[b], move,
                     in_place ? in_place : buf.rows + b * buf.pitch);
    }
    if (!in_place) store_rows<I>(buf, pl.W, y, pl.r0 + r, move);
  }
}

// forward_rows for the strip's group, or (channels-first) for each channel
// in turn (not by recursion: stage_strip_impl).
template <Isa I, typename A, typename T>
void forward_strip_impl(const A* planes, Planes pl, const ChannelTables<A>* ct, bool move,
                        RowBuffer<A> buf, Group<T> y) {
  if (y.tiled() == 0 && y.nb > 1) {
    for (int b = 0; b < y.nb; ++b) {
      forward_rows<I>(planes + b * pl.pitch, pl, ct + b, move, buf, y.channel(b));
    }
    return;
  }
  forward_rows<I>(planes, pl, ct, move, buf, y);
}
JAXSHIFT_ISA_VERSIONS(forward_strip)

// fn(w) for each column w of input row `row` (W columns) where a read of
// the input gradient folds through the padding: outside simple's [row lo,
// row hi] every column, else those outside [column lo, column hi]
// (simple_interval's intervals, the caller's AdjointEdges).
template <typename Fn>
__attribute__((always_inline)) inline void for_each_folded(int row, int W, const int* simple,
                                                           const Fn& fn) {
  const bool whole_row = row < simple[0] || row > simple[1];
  for (int w = 0; w < W; ++w) {
    if (!whole_row && w >= simple[2] && w <= simple[3]) {
      w = simple[3];  // skip to the right edge
      continue;
    }
    fn(w);
  }
}

// Row r of the strip's input gradient for one channel from its g plane gs
// (halo by the adjoint's padding): the transposed stencils, one SIMD loop;
// where the reads fold through the padding (border, reflect, symmetric near
// the edges: outside [lo, hi] of simple_interval) `edge(row, column)`,
// core/elementwise.h's adjoint_value on the whole array.
template <typename A, typename Edge>
void adjoint_row(const A* gs, const Planes& pl, int r, const ChannelTables<A>& ct,
                 const int* simple, const Edge& edge, A* __restrict out) {
  const int W = pl.W, row = pl.r0 + r;
  if (nan_shift(ct.f)) {
    std::fill(out, out + W, nan_value(ct.f));
    return;
  }
  const A* __restrict g0 = gs + pl.at(r - ct.m[1], -ct.m[2]);
  const int64_t wp = pl.Wp;
  with_lattice(ct.f[1], ct.f[2], [&](auto lat_f, auto lat_w) {
    const Stencil<A> sf = value_stencil(ct.f[1], lat_f), sw = value_stencil(ct.f[2], lat_w);
#pragma omp simd
    for (int w = 0; w < W; ++w) {
      const A* gi = g0 + w;
      out[w] = apply_adjoint(sw, 0, [&](int c) {
        return apply_adjoint(sf, 0, [&](int q) { return gi[q * wp + c]; });
      });
    }
  });
  for_each_folded(row, W, simple, [&](int w) { out[w] = edge(row, w); });
}

// The input gradient of a staged strip from its g planes, stored to dx rows
// r0 .. r0 + H - 1; simple[4 b ..] is channel b's [row lo, row hi, column
// lo, column hi] and edge(b, row, column) its folded elements.
template <Isa I, typename A, typename T, typename Edge>
void adjoint_rows(const A* gplanes, const Planes& pl, const ChannelTables<A>* ct,
                  const int* simple, const Edge& edge, int b0, const RowBuffer<A>& buf,
                  Group<T> dx) {
  for (int r = 0; r < pl.H; ++r) {
    A* in_place = row_in_place<A>(dx, pl.r0 + r);
    for (int b = 0; b < dx.nb; ++b) {
      adjoint_row(gplanes + b * pl.pitch, pl, r, ct[b], simple + 4 * b,
                  [&](int row, int w) { return edge(b0 + b, row, w); },
                  in_place ? in_place : buf.rows + b * buf.pitch);
    }
    if (!in_place) store_rows<I>(buf, pl.W, dx, pl.r0 + r, false);
  }
}

template <Isa I, typename A, typename T, typename Edge>
void adjoint_strip_impl(const A* gplanes, Planes pl, const ChannelTables<A>* ct,
                        const int* simple, const Edge* edge, RowBuffer<A> buf, Group<T> dx) {
  if (dx.tiled() == 0 && dx.nb > 1) {
    for (int b = 0; b < dx.nb; ++b) {
      adjoint_rows<I>(gplanes + b * pl.pitch, pl, ct + b, simple + 4 * b, *edge, b, buf,
                      dx.channel(b));
    }
    return;
  }
  adjoint_rows<I>(gplanes, pl, ct, simple, *edge, 0, buf, dx);
}
JAXSHIFT_ISA_VERSIONS(adjoint_strip)

// Shift-gradient sums of one channel over a strip: x plane padded by the
// padding rule, g plane (any halo), one layout. Adds the sum for axis 1 to
// acc[0] (the slope across rows, the value along them) and for axis 2 to
// acc[1] (the value across, the slope along). The terms are summed in
// kLanes running sums carried across the rows (SIMD lanes; a row's tail past
// a multiple of kLanes goes to one more), then the sums in a fixed order:
// repeatable bit for bit.
template <Isa I, typename A, typename LatF, typename LatW>
void shift_grad_plane_impl(const A* xs, const A* gs, Planes p, int m1, int m2, A ff, A fw,
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
    const A* __restrict x0 = xs + p.at(row + m1, m2);  // x0[o] = x(row + m1, o + m2)
    const A* __restrict go = gs + p.at(row, 0);
    auto add = [&](int o, int l) {
      const A* xo = x0 + o;
      auto X = [&](int q, int c) { return xo[q * wp + c]; };
      const A gv = go[o];
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
