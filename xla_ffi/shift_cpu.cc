// CPU XLA FFI handlers: forward and fused backward of the shift, parallel over
// XLA's intra-op thread pool. Each handler decodes and checks its buffers,
// then loops over shift_math.h.
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <type_traits>
#include <vector>

#if defined(__SSE2__)
#include <emmintrin.h>
#include <xmmintrin.h>
#endif
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define JAXSHIFT_X86_AVX2 1
#endif

#include "ffi_common.h"

namespace jaxshift {
namespace {

// Runs fn(i) for i in [0, n) on the pool; the caller works too, so this never
// waits on a pool that has no free thread. Which thread runs which i does not
// affect any result (each i writes its own outputs).
template <typename Fn>
void parallel_for(ffi::ThreadPool& pool, int64_t n, const Fn& fn) {
  struct State {
    std::atomic<int64_t> next{0};
    std::atomic<int64_t> done{0};
    std::mutex mu;
    std::condition_variable cv;
  };
  auto st = std::make_shared<State>();
  auto drain = [st, n, &fn]() {
    for (int64_t i; (i = st->next.fetch_add(1)) < n;) {
      fn(i);
      if (st->done.fetch_add(1) + 1 == n) {
        std::lock_guard<std::mutex> lock(st->mu);
        st->cv.notify_all();
      }
    }
  };
  const int64_t helpers = std::min<int64_t>(pool.num_threads() - 1, n - 1);
  for (int64_t h = 0; h < helpers; ++h) pool.Schedule([drain] { drain(); });
  drain();
  std::unique_lock<std::mutex> lock(st->mu);
  st->cv.wait(lock, [&] { return st->done.load() == n; });
}

// Rows of a sample: the (axis0, axis1) positions; a row is the innermost
// spatial axis times all channels.
struct Tables {
  const int32_t* m;
  const void* f;
};

template <typename A>
struct ChannelTables {
  int m[3];
  A f[3];
};

template <typename A>
ChannelTables<A> channel_tables(const Geometry& geo, const Tables& tab, int64_t n, int64_t c) {
  const int64_t base = ((n / geo.per_group) * geo.C + c) * 3;
  const A* f = static_cast<const A*>(tab.f);
  ChannelTables<A> r;
  for (int a = 0; a < 3; ++a) {
    r.m[a] = tab.m[base + a];
    r.f[a] = f[base + a];
  }
  return r;
}

// A channel whose walked axes (1 and 2) have a NaN shift reads nothing: its
// outputs and gradients are NaN.
template <typename A>
bool nan_shift(const ChannelTables<A>& t) {
  return is_nan(t.f[1]) || is_nan(t.f[2]);
}

// Calls fn(n, c, pos) for every element of the output grid (lengths Lo) or the
// input grid (L), one pool task per (sample, row of axes 0 and 1).
template <typename Fn>
void for_each_element(ffi::ThreadPool& pool, const Geometry& geo, bool out_grid, const Fn& fn) {
  const Axis* ax = geo.ax;
  const int l1 = out_grid ? ax[1].Lo : ax[1].L, l2 = out_grid ? ax[2].Lo : ax[2].L;
  const int64_t rows = (out_grid ? ax[0].Lo : ax[0].L) * static_cast<int64_t>(l1);
  parallel_for(pool, geo.N * rows, [&](int64_t task) {
    const int64_t n = task / rows, r = task % rows;
    int p[3] = {static_cast<int>(r / l1), static_cast<int>(r % l1), 0};
    for (int64_t c = 0; c < geo.C; ++c) {
      for (p[2] = 0; p[2] < l2; ++p[2]) fn(n, c, p);
    }
  });
}

// One output row (index `row` of axis 1) of one (sample, channel), in place:
// the fallback of the staged path for shifts that reach beyond its halo.
template <int P, typename A, typename T>
void forward_row(const T* xc, T* yc, const Axis* ax, int row, const ChannelTables<A>& ct,
                 bool move) {
  if (nan_shift(ct)) {
    for (int o = 0; o < ax[2].Lo; ++o) store(yc + row * ax[1].sy + o * ax[2].sy, ct.f[1] + ct.f[2]);
    return;
  }
  forward_walk<P, A>(xc, yc, ax[1], ax[2], row, 0, ax[2].Lo, ct.m[1], ct.f[1], ct.m[2], ct.f[2],
                     move);
}

// Backward of one row (index `row` of axis 1) of one (sample, channel), in
// place: dx along the row, and the shift-gradient sums d[0] (axis 1) and d[1]
// (axis 2) over the same row of the output grid. Unit strides: L == Lo.
template <int P, typename A, typename T>
void backward_row(const T* xc, const T* gc, T* dc, const Axis* ax, int row,
                  const ChannelTables<A>& r, const ChannelTables<A>& u, bool shift_grad, A* d) {
  d[0] = d[1] = A(0);
  if (nan_shift(r) || nan_shift(u)) {
    const A nan = r.f[1] + r.f[2] + u.f[1] + u.f[2];  // finish_shift_grad fills ds
    for (int i = 0; i < ax[2].L; ++i) store(dc + row * ax[1].sx + i * ax[2].sx, nan);
    return;
  }
  backward_walk<P, A>(xc, gc, dc, ax, 1, 2, row, 0, ax[2].L, r.m, r.f, u.m, u.f, shift_grad, d);
}

// ---------------------------------------------------------------------------
// Staged planes: the fast path of walkable calls (at most two spatial axes,
// unit strides). A task takes one sample and a block of channels and copies
// each channel into a contiguous plane with a halo of K cells on every side,
// filled by the padding rule, in per-thread scratch (it stays in L2). There,
// every read of the shift lands inside the padded plane, so the loops (one
// flat span per plane, see span_begin) have no padding test and compile to
// SIMD; the results are copied back. In NHWC the copies are transposes
// (neighbouring channels have different shifts, so a channel's row is
// strided in place). K is the farthest the block's offsets read; a block
// whose shifts reach further than kMaxHalo runs the walks in place. The terms
// are those of forward_walk, backward_walk and shift_grad_walk
// (shift_math.h); the AVX2 versions (with_isa) fuse multiply-adds and the
// shift-gradient sums run in lanes, so results agree with the walks to
// rounding, and each version is repeatable bit for bit.

constexpr int kMaxHalo = 16;

// Padded planes of a block: H x W interiors, halo K, padded rows of Wp.
struct Planes {
  int H, W, K, Wp;
  int64_t pitch;  // elements between the planes of a block
  // Offset of interior cell (r, c); r and c may reach K into the halo.
  int64_t at(int r, int c) const { return int64_t{r + K} * Wp + c + K; }
  // The planes as shift_math.h axes (origin at interior (0, 0)).
  void axes(Axis* ax) const {
    ax[0] = Axis{1, 1, 1, 0, 0};
    ax[1] = Axis{H, H, 1, Wp, Wp};
    ax[2] = Axis{W, W, 1, 1, 1};
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
  const Planes pl = make_planes<T>(geo.ax[1].L, geo.ax[2].L, kMaxHalo);
  return walkable(geo) &&
         staged_block<T>(geo) * pl.pitch * static_cast<int64_t>(sizeof(T)) <= (int64_t{2} << 20);
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
    if (nan_shift(ct)) continue;
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

#if defined(__SSE2__)
// dst row i, column j = src row j, column i, for 4x4 floats (row strides in elements).
inline void transpose4x4(const float* src, int64_t ss, float* dst, int64_t ds) {
  __m128 v0 = _mm_loadu_ps(src), v1 = _mm_loadu_ps(src + ss);
  __m128 v2 = _mm_loadu_ps(src + 2 * ss), v3 = _mm_loadu_ps(src + 3 * ss);
  _MM_TRANSPOSE4_PS(v0, v1, v2, v3);
  _mm_storeu_ps(dst, v0);
  _mm_storeu_ps(dst + ds, v1);
  _mm_storeu_ps(dst + 2 * ds, v2);
  _mm_storeu_ps(dst + 3 * ds, v3);
}
#endif

// The instruction sets the staged tasks are compiled for. The library is
// built for the baseline of its architecture (a wheel runs on any x86-64);
// on x86-64 the staged tasks are compiled a second time for AVX2 + FMA and
// chosen at run time when the CPU has them.
enum class Isa { kBase, kAvx2 };

template <Isa I>
using IsaTag = std::integral_constant<Isa, I>;

#if defined(JAXSHIFT_X86_AVX2)
// dst row i, column j = src row j, column i, for 8x8 floats (row strides in elements).
__attribute__((target("avx2"))) inline void transpose8x8(const float* src, int64_t ss, float* dst,
                                                         int64_t ds) {
  __m256 r[8], t[8];
  for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + i * ss);
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    r[i] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
    r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
    r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
    r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int i = 0; i < 4; ++i) {
    _mm256_storeu_ps(dst + i * ds, _mm256_permute2f128_ps(r[i], r[i + 4], 0x20));
    _mm256_storeu_ps(dst + (i + 4) * ds, _mm256_permute2f128_ps(r[i], r[i + 4], 0x31));
  }
}

// Runs fn(IsaTag<...>{}) with everything it calls inlined and compiled for
// AVX2 + FMA; only call it when have_avx2() is true.
template <typename Fn>
__attribute__((flatten, target("avx2,fma"))) void run_avx2(const Fn& fn) {
  fn(IsaTag<Isa::kAvx2>{});
}

// Whether the CPU has AVX2 and FMA; JAXSHIFT_CPU_ISA=baseline (read once, at
// the first call) says no, so that tests can run the baseline versions too.
inline bool have_avx2() {
  static const bool yes = [] {
    const char* isa = std::getenv("JAXSHIFT_CPU_ISA");
    if (isa != nullptr && std::string(isa) == "baseline") return false;
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }();
  return yes;
}
#endif

// Runs fn(IsaTag<I>{}) for the widest instruction set this CPU has.
template <typename Fn>
void with_isa(const Fn& fn) {
#if defined(JAXSHIFT_X86_AVX2)
  if (have_avx2()) return run_avx2(fn);
#endif
  fn(IsaTag<Isa::kBase>{});
}

// Asks for the lines of the `count` pixels kPrefetch pixels past `a` (pixel
// stride ws), to read or to write: a channels-last block reads one line of
// every pixel, a stride the hardware prefetchers follow too late (about 10 %
// of a forward+backward on the 2-core CI machine). Past the end of the array
// a prefetch is harmless.
constexpr int kPrefetch = 32;

template <typename T>
void prefetch_pixels(const T* a, int64_t ws, int count, bool read) {
#if defined(__GNUC__)
  for (int k = 0; k < count; ++k) {
    // An address, not a pointer into the array (it may lie past its end).
    const void* p = reinterpret_cast<const void*>(
        reinterpret_cast<uintptr_t>(a) + static_cast<uintptr_t>((k + kPrefetch) * ws * sizeof(T)));
    if (read) {
      __builtin_prefetch(p, 0);
    } else {
      __builtin_prefetch(p, 1);
    }
  }
#endif
}

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
void copy_planes(Block<T> blk, int64_t nb, T* planes, const Planes& pl, bool to_planes) {
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
template <Isa I, int P, typename T>
void stage_planes(Block<T> blk, int64_t nb, T* planes, const Planes& pl) {
  if (P == kZeros && pl.K > 0) std::fill(planes, planes + nb * pl.pitch, T{});
  copy_planes<I>(blk, nb, planes, pl, true);
  if (P != kZeros) fill_halo<P>(planes, nb, pl);
}

// Calls fn with two compile-time booleans.
template <bool B>
using Flag = std::integral_constant<bool, B>;

template <typename Fn>
void with_flags(bool a, bool b, const Fn& fn) {
  if (a) {
    if (b) fn(Flag<true>{}, Flag<true>{}); else fn(Flag<true>{}, Flag<false>{});
  } else {
    if (b) fn(Flag<false>{}, Flag<true>{}); else fn(Flag<false>{}, Flag<false>{});
  }
}

// The staged loops run over a plane's rows as one flat span, from interior
// (0, 0) to the end of interior row H - 1, halo columns between the rows
// included: a read at a constant offset of the padded layout is then one
// long SIMD loop. The values computed at halo columns are never copied out;
// every read stays inside the padded plane because K covers the offsets.
inline int64_t span_begin(const Planes& p) { return p.at(0, 0); }
inline int64_t span_end(const Planes& p) { return p.at(p.H - 1, p.W); }

// Forward of one channel (forward_walk): padded plane xs -> plane ys of the
// same layout (its halo is not written).
template <typename A, typename T>
void forward_plane(const T* xs, T* ys, const Planes& p, const ChannelTables<A>& ct, bool move) {
  const A ff = ct.f[1], fw = ct.f[2], wf0 = A(1) - ff, ww0 = A(1) - fw;
  const int64_t i0 = span_begin(p), i1 = span_end(p);
  const T* __restrict x0 = xs + (int64_t{ct.m[1]} * p.Wp + ct.m[2]);  // x0[i] = x(h + m1, w + m2)
  const T* __restrict x1 = x0 + p.Wp;
  T* __restrict yo = ys;
  if (move) {
    for (int64_t i = i0; i < i1; ++i) yo[i] = x0[i];
    return;
  }
  with_flags(ff != A(0), fw != A(0), [&](auto two_rows, auto blend) {
    for (int64_t i = i0; i < i1; ++i) {
      A a = A(0), q = A(0);  // forward_walk's col(w + m2) and col(w + m2 + 1)
      a += wf0 * load<A>(x0 + i);
      if (two_rows) a += ff * load<A>(x1 + i);
      if (blend) {
        q += wf0 * load<A>(x0 + i + 1);
        if (two_rows) q += ff * load<A>(x1 + i + 1);
      }
      store(yo + i, blend ? ww0 * a + fw * q : a);
    }
  });
}

// Input gradient of one channel (backward_walk's first part): padded g plane
// gs (zero halo; periodic: wrapped) -> dx plane of the same layout. The
// paddings that fold reads near the edges (border, reflect, symmetric) are
// answered there by adjoint_value, outside simple_interval.
template <int P, typename A, typename T>
void adjoint_plane(const T* gs, T* dxs, const Planes& p, const ChannelTables<A>& r) {
  const int m1 = r.m[1], m2 = r.m[2], H = p.H, W = p.W;
  const A ff = r.f[1], fw = r.f[2], gf0 = A(1) - ff, gw0 = A(1) - fw;
  const int64_t i0 = span_begin(p), i1 = span_end(p);
  const T* __restrict g0 = gs - (int64_t{m1} * p.Wp + m2);  // g0[i] = g(h - m1, w - m2)
  const T* __restrict g1 = g0 - p.Wp;
  T* __restrict dxo = dxs;
  with_flags(ff != A(0), fw != A(0), [&](auto two_rows, auto blend) {
    for (int64_t i = i0; i < i1; ++i) {
      A cur = A(0), prv = A(0);  // backward_walk's G(w - m2) and G(w - m2 - 1)
      cur += gf0 * load<A>(g0 + i);
      if (two_rows) cur += ff * load<A>(g1 + i);
      if (blend) {
        prv += gf0 * load<A>(g0 + i - 1);
        if (two_rows) prv += ff * load<A>(g1 + i - 1);
      }
      store(dxo + i, blend ? gw0 * cur + fw * prv : cur);
    }
  });
  if (P == kZeros || P == kPeriodic) return;
  Axis ax[3];
  p.axes(ax);
  int flo, fhi, wlo, whi;
  simple_interval<P>(ax[1], m1, &flo, &fhi);
  simple_interval<P>(ax[2], m2, &wlo, &whi);
  const int m3[3] = {0, m1, m2};
  const A f3[3] = {A(0), ff, fw};
  const T* g = gs + p.at(0, 0);
  for (int i = 0; i < H; ++i) {
    const bool row_simple = i >= flo && i <= fhi;
    for (int w = 0; w < W; ++w) {
      if (row_simple && w >= wlo && w <= whi) {
        w = whi;  // skip to the right edge
        continue;
      }
      const int pos[3] = {0, i, w};
      store(dxs + p.at(i, w), adjoint_value_outlined<P, A>(g, ax, pos, m3, f3));
    }
  }
}

// Shift-gradient sums of one channel (shift_grad_walk over every row): x
// plane padded by the padding rule, g plane (any halo), one layout. Adds the
// sum for axis 1 to acc[0] and for axis 2 to acc[1]. The terms are summed in
// kLanes running sums carried across the rows (SIMD lanes; a row's tail past
// a multiple of kLanes goes to one more), then the sums in a fixed order:
// repeatable bit for bit.
template <bool kFLat, bool kWLat, typename A, typename T>
void shift_grad_plane(const T* xs, const T* gs, const Planes& p, const ChannelTables<A>& u,
                      A* acc) {
  constexpr int kLanes = 8;
  const int m1 = u.m[1], m2 = u.m[2], W = p.W, full = W - W % kLanes;
  const A ff = u.f[1], fw = u.f[2], wi0 = A(1) - ff, w0 = A(1) - fw;
  A sf[kLanes + 1] = {}, sw[kLanes + 1] = {};
  for (int row = 0; row < p.H; ++row) {
    const T* __restrict xm = xs + p.at(row + m1 - 1, m2);  // rows kf - 1, kf, kf + 1
    const T* __restrict x0 = xm + p.Wp;
    const T* __restrict x1 = x0 + p.Wp;
    const T* __restrict go = gs + p.at(row, 0);
    // shift_grad_walk's cols(): XI across the fixed axis and its derivative XD.
    auto xi = [&](int k) -> A {
      const A a = load<A>(x0 + k);
      return kFLat ? a : wi0 * a + ff * load<A>(x1 + k);
    };
    auto xd = [&](int k) -> A {
      const A b = load<A>(x1 + k);
      return kFLat ? A(0.5) * load<A>(xm + k) - A(0.5) * b : load<A>(x0 + k) - b;
    };
    auto add = [&](int o, int l) {
      const A gv = load<A>(go + o);
      if (kWLat) {
        sf[l] += gv * xd(o);
        sw[l] += gv * (A(0.5) * xi(o - 1) - A(0.5) * xi(o + 1));
      } else {
        sf[l] += gv * (w0 * xd(o) + fw * xd(o + 1));
        sw[l] += gv * (xi(o) - xi(o + 1));
      }
    };
    for (int o = 0; o < full; o += kLanes) {
#pragma omp simd
      for (int l = 0; l < kLanes; ++l) add(o + l, l);
    }
    for (int o = full; o < W; ++o) add(o, kLanes);
  }
  for (int l = 0; l <= kLanes; ++l) {
    acc[0] += sf[l];
    acc[1] += sw[l];
  }
}

struct Forward {
  // One staged task: sample n, channels [c0, c0 + nb).
  template <Isa I, typename T, int P>
  static void StagedTask(const Geometry& geo, const T* x, Tables tab, T* y, bool move, int64_t n,
                         int64_t c0, int64_t nb) {
    using A = typename Acc<T>::type;
    const int H = geo.ax[1].L, W = geo.ax[2].L;
    const int K = block_halo<A>(geo, tab, n, c0, nb, 0);
    if (K > kMaxHalo) {
      for (int64_t c = c0; c < c0 + nb; ++c) {
        for (int row = 0; row < H; ++row) {
          forward_row<P, A>(x + n * geo.sx_n + c * geo.sx_c, y + n * geo.sy_n + c * geo.sy_c,
                            geo.ax, row, channel_tables<A>(geo, tab, n, c), move);
        }
      }
      return;
    }
    const Planes px = make_planes<T>(H, W, K);
    T* xs = scratch<T>(static_cast<size_t>(2 * nb * px.pitch));
    T* ys = xs + nb * px.pitch;
    const Block<T> xb{const_cast<T*>(x) + n * geo.sx_n + c0 * geo.sx_c, geo.sx_c, geo.ax[1].sx,
                      geo.ax[2].sx};
    stage_planes<I, P>(xb, nb, xs, px);
    for (int64_t b = 0; b < nb; ++b) {
      const ChannelTables<A> ct = channel_tables<A>(geo, tab, n, c0 + b);
      T* yb = ys + b * px.pitch;
      if (nan_shift(ct)) {
        for (int64_t i = span_begin(px); i < span_end(px); ++i) store(yb + i, ct.f[1] + ct.f[2]);
      } else {
        forward_plane<A>(xs + b * px.pitch, yb, px, ct, move);
      }
    }
    copy_planes<I>(Block<T>{y + n * geo.sy_n + c0 * geo.sy_c, geo.sy_c, geo.ax[1].sy, geo.ax[2].sy},
                   nb, ys, px, false);
  }

  template <typename T, int P>
  static void RunStaged(ffi::ThreadPool& pool, const Geometry& geo, const T* x, Tables tab, T* y,
                        bool move) {
    const int64_t B = staged_block<T>(geo), blocks = (geo.C + B - 1) / B;
    parallel_for(pool, geo.N * blocks, [&](int64_t task) {
      const int64_t n = task / blocks, c0 = (task % blocks) * B, nb = std::min(B, geo.C - c0);
      with_isa([&](auto isa) { StagedTask<isa(), T, P>(geo, x, tab, y, move, n, c0, nb); });
    });
  }

  template <typename T, int P>
  static ffi::Error Run(ffi::ThreadPool& pool, const Geometry& geo, const void* xv, Tables tab,
                        void* yv, bool move) {
    using A = typename Acc<T>::type;
    const T* x = static_cast<const T*>(xv);
    T* y = static_cast<T*>(yv);
    const Axis* ax = geo.ax;
    if (use_staging<T>(geo)) {
      RunStaged<T, P>(pool, geo, x, tab, y, move);
      return ffi::Error::Success();
    }
    if (walkable(geo)) {  // rows of axis 1, walking axis 2
      parallel_for(pool, geo.N * ax[1].Lo, [&](int64_t task) {
        const int64_t n = task / ax[1].Lo;
        const int row = static_cast<int>(task % ax[1].Lo);
        for (int64_t c = 0; c < geo.C; ++c) {
          forward_row<P, A>(x + n * geo.sx_n + c * geo.sx_c, y + n * geo.sy_n + c * geo.sy_c, ax,
                            row, channel_tables<A>(geo, tab, n, c), move);
        }
      });
      return ffi::Error::Success();
    }
    for_each_element(pool, geo, true, [&](int64_t n, int64_t c, const int* o) {
      const ChannelTables<A> ct = channel_tables<A>(geo, tab, n, c);
      const T* xc = x + n * geo.sx_n + c * geo.sx_c;
      T* out = y + n * geo.sy_n + c * geo.sy_c + o[0] * ax[0].sy + o[1] * ax[1].sy +
               o[2] * ax[2].sy;
      const bool nan = is_nan(ct.f[0]) || is_nan(ct.f[1]) || is_nan(ct.f[2]);
      if (move && !nan) {
        const T* src = move_source<P>(xc, ax, o, ct.m);
        if (src) {
          *out = *src;
        } else {
          store(out, A(0));
        }
      } else {
        store(out, forward_value<P, A>(xc, ax, o, ct.m, ct.f));
      }
    });
    return ffi::Error::Success();
  }
};

// Rows of the output grid per shift-gradient chunk: fixed by the shape alone,
// so the partial sums, and their fixed-order total, do not depend on threads.
inline int64_t rows_per_chunk(const Geometry& geo) {
  const int64_t row = std::max<int64_t>(1, geo.ax[2].Lo * geo.C);
  return std::max<int64_t>(1, 16384 / row);
}

// Fixed-order sum of per-row partials into per-sample ds; NaN shifts give NaN.
template <typename A>
void finish_shift_grad(const Geometry& geo, const Tables& exact, const std::vector<A>& partial,
                       int64_t parts, A* ds) {
  for (int64_t n = 0; n < geo.N; ++n) {
    A* out = ds + n * geo.C * 3;
    std::fill(out, out + geo.C * 3, A(0));
    for (int64_t k = 0; k < parts; ++k) {
      const A* p = partial.data() + (n * parts + k) * geo.C * 3;
      for (int64_t j = 0; j < geo.C * 3; ++j) out[j] += p[j];
    }
    for (int64_t c = 0; c < geo.C; ++c) {
      const ChannelTables<A> ct = channel_tables<A>(geo, exact, n, c);
      if (is_nan(ct.f[0]) || is_nan(ct.f[1]) || is_nan(ct.f[2])) {
        for (int a = 0; a < 3; ++a) out[c * 3 + a] = ct.f[0] + ct.f[1] + ct.f[2];
      }
    }
  }
}

struct Backward {
  // One staged task (see Forward::StagedTask). It owns its channels' whole
  // planes, so it sums their shift gradients itself into partial[n, c, 1:3],
  // row by row in order, as RunWalk's finish does.
  template <Isa I, typename T, int P, typename A>
  static void StagedTask(const Geometry& geo, const T* x, const T* g, Tables rounded,
                         Tables exact, bool shift_grad, T* dx, A* partial, int64_t n, int64_t c0,
                         int64_t nb) {
    const int H = geo.ax[1].L, W = geo.ax[2].L;
    // dx reads g at -m and -m - 1; the shift gradient reads x at m - 1 .. m + 1.
    const int K = std::max(block_halo<A>(geo, rounded, n, c0, nb, 1),
                           shift_grad ? block_halo<A>(geo, exact, n, c0, nb, 1) : 0);
    if (K > kMaxHalo) {
      for (int64_t c = c0; c < c0 + nb; ++c) {
        A* acc = partial + (n * geo.C + c) * 3;
        for (int row = 0; row < H; ++row) {
          A d[2];
          backward_row<P, A>(x + n * geo.sx_n + c * geo.sx_c, g + n * geo.sy_n + c * geo.sy_c,
                             dx + n * geo.sx_n + c * geo.sx_c, geo.ax, row,
                             channel_tables<A>(geo, rounded, n, c),
                             channel_tables<A>(geo, exact, n, c), shift_grad, d);
          acc[1] += d[0];
          acc[2] += d[1];
        }
      }
      return;
    }
    const Planes pp = make_planes<T>(H, W, K);
    T* gs = scratch<T>(static_cast<size_t>(3 * nb * pp.pitch));
    T* xs = gs + nb * pp.pitch;
    T* dxs = xs + nb * pp.pitch;
    // The adjoint sees no output outside the grid: zeros, or wrapped.
    stage_planes<I, P == kPeriodic ? kPeriodic : kZeros>(
        Block<T>{const_cast<T*>(g) + n * geo.sy_n + c0 * geo.sy_c, geo.sy_c, geo.ax[1].sy,
                 geo.ax[2].sy},
        nb, gs, pp);
    if (shift_grad) {
      stage_planes<I, P>(Block<T>{const_cast<T*>(x) + n * geo.sx_n + c0 * geo.sx_c, geo.sx_c,
                                  geo.ax[1].sx, geo.ax[2].sx},
                         nb, xs, pp);
    }
    for (int64_t b = 0; b < nb; ++b) {
      const ChannelTables<A> r = channel_tables<A>(geo, rounded, n, c0 + b);
      const ChannelTables<A> u = channel_tables<A>(geo, exact, n, c0 + b);
      T* dxb = dxs + b * pp.pitch;
      if (nan_shift(r) || nan_shift(u)) {
        const A nan = r.f[1] + r.f[2] + u.f[1] + u.f[2];  // finish_shift_grad fills ds
        for (int64_t i = span_begin(pp); i < span_end(pp); ++i) store(dxb + i, nan);
        continue;
      }
      adjoint_plane<P, A>(gs + b * pp.pitch, dxb, pp, r);
      if (!shift_grad) continue;
      A* acc = partial + (n * geo.C + c0 + b) * 3 + 1;
      with_flags(u.f[1] == A(0), u.f[2] == A(0), [&](auto f_lat, auto w_lat) {
        shift_grad_plane<decltype(f_lat)::value, decltype(w_lat)::value, A>(
            xs + b * pp.pitch, gs + b * pp.pitch, pp, u, acc);
      });
    }
    copy_planes<I>(Block<T>{dx + n * geo.sx_n + c0 * geo.sx_c, geo.sx_c, geo.ax[1].sx,
                            geo.ax[2].sx},
                   nb, dxs, pp, false);
  }

  template <typename T, int P, typename A = typename Acc<T>::type>
  static void RunStaged(ffi::ThreadPool& pool, const Geometry& geo, const T* x, const T* g,
                        Tables rounded, Tables exact, bool shift_grad, T* dx, A* ds) {
    const int64_t B = staged_block<T>(geo), blocks = (geo.C + B - 1) / B;
    std::vector<A> partial(static_cast<size_t>(geo.N * geo.C * 3), A(0));
    parallel_for(pool, geo.N * blocks, [&](int64_t task) {
      const int64_t n = task / blocks, c0 = (task % blocks) * B, nb = std::min(B, geo.C - c0);
      with_isa([&](auto isa) {
        StagedTask<isa(), T, P>(geo, x, g, rounded, exact, shift_grad, dx, partial.data(), n, c0,
                                nb);
      });
    });
    if (!shift_grad) {
      std::fill(ds, ds + geo.N * geo.C * 3, A(0));
    } else {
      finish_shift_grad(geo, exact, partial, 1, ds);
    }
  }

  template <typename T, int P, typename A = typename Acc<T>::type>
  static ffi::Error RunWalk(ffi::ThreadPool& pool, const Geometry& geo, const T* x, const T* g,
                            Tables rounded, Tables exact, bool shift_grad, T* dx, A* ds) {
    const Axis* ax = geo.ax;
    const int64_t rows = ax[1].L;
    std::vector<A> partial(shift_grad ? static_cast<size_t>(geo.N * rows * geo.C * 3) : 0);
    parallel_for(pool, geo.N * rows, [&](int64_t task) {
      const int64_t n = task / rows;
      const int row = static_cast<int>(task % rows);
      for (int64_t c = 0; c < geo.C; ++c) {
        A d[2];
        backward_row<P, A>(x + n * geo.sx_n + c * geo.sx_c, g + n * geo.sy_n + c * geo.sy_c,
                           dx + n * geo.sx_n + c * geo.sx_c, ax, row,
                           channel_tables<A>(geo, rounded, n, c),
                           channel_tables<A>(geo, exact, n, c), shift_grad, d);
        if (shift_grad) {
          A* acc = partial.data() + (task * geo.C + c) * 3;
          acc[1] = d[0];
          acc[2] = d[1];
        }
      }
    });
    if (!shift_grad) {
      std::fill(ds, ds + geo.N * geo.C * 3, A(0));
    } else {
      finish_shift_grad(geo, exact, partial, rows, ds);
    }
    return ffi::Error::Success();
  }

  template <typename T, int P>
  static ffi::Error Run(ffi::ThreadPool& pool, const Geometry& geo, const void* xv,
                        const void* gv, Tables rounded, Tables exact, bool shift_grad, void* dxv,
                        void* ds_out) {
    using A = typename Acc<T>::type;
    const T* x = static_cast<const T*>(xv);
    const T* g = static_cast<const T*>(gv);
    T* dx = static_cast<T*>(dxv);
    const Axis* ax = geo.ax;
    if (use_staging<T>(geo)) {
      RunStaged<T, P>(pool, geo, x, g, rounded, exact, shift_grad, dx, static_cast<A*>(ds_out));
      return ffi::Error::Success();
    }
    if (walkable(geo)) return RunWalk<T, P>(pool, geo, x, g, rounded, exact, shift_grad, dx,
                                            static_cast<A*>(ds_out));
    // Input gradient: a gather over input positions (deterministic).
    for_each_element(pool, geo, false, [&](int64_t n, int64_t c, const int* i) {
      const ChannelTables<A> ct = channel_tables<A>(geo, rounded, n, c);
      const T* gc = g + n * geo.sy_n + c * geo.sy_c;
      store(dx + n * geo.sx_n + c * geo.sx_c + i[0] * ax[0].sx + i[1] * ax[1].sx + i[2] * ax[2].sx,
            adjoint_value<P, A>(gc, ax, i, ct.m, ct.f));
    });
    A* ds = static_cast<A*>(ds_out);
    if (!shift_grad) {
      std::fill(ds, ds + geo.N * geo.C * 3, A(0));
      return ffi::Error::Success();
    }
    // Shift gradient: per-chunk partial sums over the output grid, then a
    // fixed-order sum of the chunks of each sample.
    const int64_t out_rows = ax[0].Lo * static_cast<int64_t>(ax[1].Lo);
    const int64_t rpc = rows_per_chunk(geo);
    const int64_t chunks = (out_rows + rpc - 1) / rpc;
    std::vector<A> partial(static_cast<size_t>(geo.N * chunks * geo.C * 3), A(0));
    parallel_for(pool, geo.N * chunks, [&](int64_t task) {
      const int64_t n = task / chunks, k = task % chunks;
      A* acc = partial.data() + task * geo.C * 3;
      const int64_t r_end = std::min(out_rows, (k + 1) * rpc);
      for (int64_t r = k * rpc; r < r_end; ++r) {
        int o[3] = {static_cast<int>(r / ax[1].Lo), static_cast<int>(r % ax[1].Lo), 0};
        for (int64_t c = 0; c < geo.C; ++c) {
          const ChannelTables<A> ct = channel_tables<A>(geo, exact, n, c);
          const T* xc = x + n * geo.sx_n + c * geo.sx_c;
          const T* gc = g + n * geo.sy_n + c * geo.sy_c + o[0] * ax[0].sy + o[1] * ax[1].sy;
          A s[3] = {A(0), A(0), A(0)};
          for (o[2] = 0; o[2] < ax[2].Lo; ++o[2]) {
            const A gv = load<A>(gc + o[2] * ax[2].sy);
            A d[3];
            deriv_values<P, A>(xc, ax, o, ct.m, ct.f, d);
            s[0] += gv * d[0];
            s[1] += gv * d[1];
            s[2] += gv * d[2];
          }
          for (int a = 0; a < 3; ++a) acc[c * 3 + a] += s[a];
        }
      }
    });
    finish_shift_grad(geo, exact, partial, chunks, ds);
    return ffi::Error::Success();
  }
};

ffi::Error ForwardImpl(ffi::ThreadPool pool, ffi::AnyBuffer x, ffi::AnyBuffer m, ffi::AnyBuffer f,
                       ffi::Result<ffi::AnyBuffer> y, int64_t padding, bool channels_last,
                       ffi::Span<const int64_t> strides, bool move) {
  Options opt;
  Geometry geo;
  if (auto e = prepare_forward(x, m, f, *y, padding, channels_last, strides, &opt, &geo);
      e.failure())
    return e;
  if (y->element_count() == 0) return ffi::Error::Success();
  Tables tab{m.typed_data<int32_t>(), f.untyped_data()};
  return dispatch<Forward>(x.element_type(), opt.padding, pool, geo, x.untyped_data(), tab,
                     y->untyped_data(), move);
}

ffi::Error BackwardImpl(ffi::ThreadPool pool, ffi::AnyBuffer x, ffi::AnyBuffer g,
                        ffi::AnyBuffer m_r, ffi::AnyBuffer f_r, ffi::AnyBuffer m_u,
                        ffi::AnyBuffer f_u, ffi::Result<ffi::AnyBuffer> dx,
                        ffi::Result<ffi::AnyBuffer> ds, int64_t padding, bool channels_last,
                        ffi::Span<const int64_t> strides, bool shift_grad) {
  Options opt;
  Geometry geo;
  if (auto e = prepare_backward(x, g, m_r, f_r, m_u, f_u, *dx, *ds, padding, channels_last,
                                strides, &opt, &geo);
      e.failure())
    return e;
  if (x.element_count() == 0) return ffi::Error::Success();
  Tables rounded{m_r.typed_data<int32_t>(), f_r.untyped_data()};
  Tables exact{m_u.typed_data<int32_t>(), f_u.untyped_data()};
  return dispatch<Backward>(x.element_type(), opt.padding, pool, geo, x.untyped_data(), g.untyped_data(),
                     rounded, exact, shift_grad, dx->untyped_data(), ds->untyped_data());
}

}  // namespace
}  // namespace jaxshift

namespace ffi = xla::ffi;

XLA_FFI_DEFINE_HANDLER_SYMBOL(jaxshift_forward_cpu, jaxshift::ForwardImpl,
                              jaxshift::forward_signature(ffi::Ffi::Bind().Ctx<ffi::ThreadPool>()));
XLA_FFI_DEFINE_HANDLER_SYMBOL(jaxshift_backward_cpu, jaxshift::BackwardImpl,
                              jaxshift::backward_signature(ffi::Ffi::Bind().Ctx<ffi::ThreadPool>()));

JAXSHIFT_EXPORT_HANDLER(cpu, forward)
JAXSHIFT_EXPORT_HANDLER(cpu, backward)
