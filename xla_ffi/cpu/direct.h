// Rows straight from the array: the CPU kernel for channels-first calls
// (2-D and 3-D, unit strides, rows of at least 8 cells; moves, and 2-D
// forwards of 32-bit storage, on rows of any length): forwards of every
// type, backwards of float and double, 16-bit backwards that take the one
// pass; and channels-first strided calls of 16- and 32-bit storage (column
// stride 1 or 2: active forwards, and backwards in one pass over the input
// rows; "Strided rows" below). No staging, no halo limit.
//
// A channel's rows are contiguous there, in x, g, y and dx. Along the rows
// and planes the padding rule maps each row a stencil reads to a whole row
// of the array (zeros: a row of zeros), so a row's outputs are vectors of 8
// read from a few rows (2 a depth tap) at the channel's column offset:
// plain loads where the vector's reads stay inside the row, and where they
// do not ("edge" vectors, the first or last of a row for shifts under 8)
// the cells through the padding rule, by one load and a permutation per
// row tap and column tap where they fit in 8 cells of the row, else by a
// gather (column indices cached per thread: Columns). The stencils are
// the staged planes' (cpu/staged.h), without their copy of the input into
// padded planes: that copy was ~40 % of a staged channels-first forward.
// 3-D calls add the depth axis outermost (core/stencils.h's tensor
// product): a 2-D call is one at depth 0 of one plane, on the lattice in
// depth. On rows of at most 32 cells (16-bit storage: every row it takes,
// its taps widened as they are read) the forward keeps each input row's
// column stencil for the next output row (a ring), and reads two column
// taps a vector instead of four. With zeros or periodic padding a
// channel's input gradient and shift gradient come from the same rows of g
// in one pass (backward_direct). The input gradient of the clamped and
// mirrored paddings adds the adjoint rows, planes and columns that fold
// onto an element (folds_of), not element-wise values. Nothing here depends
// on the padding but a few indices per row and channel, so the padding is a
// run-time argument (pad_index_of): one compiled copy per type and lattice
// case. 16-bit storage is widened as it is read and narrowed as it is
// stored (widen8, narrow8: the same bits); moves carry raw bits, and copy
// the rows whose source rows are the array's as one flat run of the plane.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

#include "cpu/isa.h"
#include "cpu/lanes.h"
#include "cpu/staged.h"
#include "core/stencils.h"
#include "core/walks.h"

namespace jaxshift {

// The calls the direct rows can take: unit strides, rows contiguous in the
// inputs and outputs and (but for `short_rows`: moves, which copy rows of
// any length, and 2-D forwards of 32-bit storage, one_vector_rows) at least
// 8 cells long.
inline bool direct_rows_fit(const Geometry& geo, bool short_rows = false) {
  const Axis* ax = geo.ax;
  return ax[0].t == 1 && ax[1].t == 1 && ax[2].t == 1 && ax[2].sx == 1 && ax[2].sy == 1 &&
         (ax[2].L >= kGroup || short_rows);
}

// The direct rows take every forward they fit (16-bit active forwards on
// the ring: 0.66-0.87x the staged planes' time at rows of 32 cells and
// more, 1.0 at 8; benchmarks/NOTES.md, v28), but 16-bit active forwards on
// rows longer than kMaxRingCells (the ring holds 4 rows of floats a
// thread, for as long as the thread lives: those take the staged planes);
// and the backwards of float and double they fit; a 16-bit backward, and
// a 2-D float32 one on rows under 8 cells, takes them where every channel
// takes backward_direct's one pass (direct_one_pass_all, decided by the
// backward).
constexpr int kMaxRingCells = 4096;
template <typename T>
bool use_direct_forward(const Geometry& geo, bool move) {
  const bool short_rows = sizeof(T) == 4 && !geo.ax[0].present;  // (one_vector_rows)
  return direct_rows_fit(geo, move || short_rows) &&
         (sizeof(T) > 2 || move || geo.ax[2].L <= kMaxRingCells);
}
template <typename T>
bool use_direct_backward(const Geometry& geo) {
  return sizeof(T) > 2 && direct_rows_fit(geo);
}

// One channel's D x H rows of W contiguous cells in an array: planes ps
// apart and rows rs apart from p (a 2-D call: D = 1). `last`: the array's
// last element (gather8's guard for 16-bit storage).
template <typename T>
struct Rows {
  const T* p;
  int64_t ps, rs;
  int D, H, W;
  const T* last;
  // Row j of plane i through padding P; the zeros row where P answers zero.
  const T* at(int P, int i, int j, const T* zeros) const {
    const int a = pad_index_of(P, i, D), b = pad_index_of(P, j, H);
    return a < 0 || b < 0 ? zeros : p + a * ps + b * rs;
  }
};

// The lanes of v from lane `first` on, those of `below` before it (bits,
// whatever they hold).
template <typename V>
V lanes_from(V v, int first, V below = V{}) {
  using L = std::conditional_t<sizeof(v[0]) == 4, int32_t, int64_t>;
  typedef L LV __attribute__((vector_size(sizeof(V))));
  LV lane;
  for (int l = 0; l < kGroup; ++l) lane[l] = l;
  const LV keep = lane >= first;
  return reinterpret_cast<V>((reinterpret_cast<LV>(v) & keep) |
                             (reinterpret_cast<LV>(below) & ~keep));
}

// with_lattice for three axes: fn(lattice_d, lattice_a, lattice_b).
template <typename A, typename Fn>
void with_lattice3(A fd, A fa, A fb, const Fn& fn) {
  auto rest = [&](auto lat_d) {
    with_lattice(fa, fb, [&](auto lat_a, auto lat_b) { fn(lat_d, lat_a, lat_b); });
  };
  if (at_lattice(fd)) rest(std::true_type{}); else rest(std::false_type{});
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

// The column reads of one channel's row loops, on rows of W cells through
// padding P: vector k covers outputs [start(k), start(k) + 8), and column
// tap t in [lo, hi] reads cells start(k) + o + t + l of a row (l < 8).
// Where those leave the row (an "edge" vector) the cells the padding
// answers are, per (chunk, tap): 8 indices and 8 masks for a gather and,
// where the indices fit in 8 cells of the row from `base` (every padding
// but a periodic wrap, for shifts under a vector), the same as a permutation
// of those 8 cells: a load, a permute and a mask instead of 8 loads. The
// records live in a per-thread cache (ColumnCache) and are built once per
// (padding, row length, offset, taps): the channels of a task share a few
// column offsets, and building them per channel was a tenth of a 16x16
// plane's forward.
// An edge vector's record (Columns', StridedColumns'): lane l < 8 reads
// cell j0 + l step of a row of W cells through padding P. 8 indices and 8
// masks for gather8; where the cells read lie within `window` cells of the
// row from `base`, each lane's cell as a permutation of those (else 0); and
// base, or -1 where they do not fit.
inline void edge_record(int32_t* r, int P, int j0, int step, int W, int window) {
  int first = W, end = 0;  // the cells read: [first, end)
  for (int l = 0; l < kGroup; ++l) {
    const int i = pad_index_of(P, j0 + l * step, W);
    if (i >= 0) first = std::min(first, i), end = std::max(end, i + 1);
  }
  const int base = std::max(0, std::min(first, W - window));
  const bool fits = end - base <= window;
  // (written once, never read back here: a wide load of cells just stored
  // one by one waits for the stores to reach the cache)
  for (int l = 0; l < kGroup; ++l) {
    const int i = pad_index_of(P, j0 + l * step, W);
    r[l] = i < 0 ? 0 : i;
    r[kGroup + l] = i < 0 ? 0 : -1;
    r[2 * kGroup + l] = fits && i >= 0 ? i - base : 0;
  }
  r[3 * kGroup] = fits ? base : -1;
}

struct ColumnCache;
struct Columns {
  static constexpr int kRecord = 4 * kGroup;  // indices, masks, permutation, base
  int P, W, o, lo, hi, chunks;
  int ka, kb;  // the vectors k in [ka, kb) are inside the row (ka = kb = chunks: none)
  const int32_t* edge;

  Columns(ColumnCache* cache, int P_, int W_, int o_, int lo_, int hi_);
  int start(int k) const { return std::max(0, std::min(k * kGroup, W - kGroup)); }
  bool inside(int w) const { return w + o + lo >= 0 && w + o + hi + kGroup <= W; }
  int record(int k, int t) const { return (k * (hi - lo + 1) + t - lo) * kRecord; }
  const int32_t* at(int k, int t) const { return edge + record(k, t); }
  // Rows of at most one vector (W <= 8), its vector an edge (!inside(0)):
  // tap t's cells as a permutation of 8 from the row's first and its mask.
  // Every padding's cells of such a row fit 8 from base 0, so the record
  // always has them.
  void one_vector(int t, i32x8* perm, i32x8* mask) const {
    const int32_t* e = at(0, t);
    *perm = loadu<i32x8>(e + 2 * kGroup);
    *mask = loadu<i32x8>(e + kGroup);
  }
  // Fills the records of (P, W, o, lo, hi) into e.
  void build(int32_t* e) const {
    for (int k = 0; k < chunks; ++k) {
      if (inside(start(k))) continue;
      for (int t = lo; t <= hi; ++t) {
        edge_record(e + record(k, t), P, start(k) + o + t, 1, W, kGroup);
      }
    }
  }
};

// A thread's Columns records, direct-mapped by (offset, taps): an entry is
// rebuilt when another key lands on it. Records of more than kMaxCached
// ints (rows of a few hundred cells and more) share one entry, `large`, so
// the cache holds at most kEntries x 16 KB plus one row's records. One
// Columns is alive at a time on a thread (each direct function holds one),
// so none is evicted in use.
struct ColumnCache {
  static constexpr int kEntries = 32;
  static constexpr size_t kMaxCached = 4096;
  struct Entry {
    int P = -1, W = -1, o = 0, lo = 0, hi = 0, ka = 0, kb = 0;
    std::vector<int32_t> edge;
  };
  Entry entry[kEntries];
  Entry large;
};
__attribute__((noinline)) inline ColumnCache* column_cache() {
  thread_local ColumnCache cache;
  return &cache;
}

// Whether the forward keeps its ring of column values on rows of W cells
// (forward_direct_impl): 16-bit storage on every row it takes (at most
// kMaxRingCells), float and double on rows of at most 4 vectors.
template <typename T>
constexpr bool forward_ring(int W) {
  return sizeof(T) == 2 || W <= 4 * kGroup;
}

// Four rows of W cells of the accumulation type (per thread): the forward's
// ring of column values (forward_direct_impl).
template <typename A>
A* ring_rows(int W) {
  thread_local std::vector<A> rows;
  if (rows.size() < 4 * static_cast<size_t>(W)) rows.resize(4 * static_cast<size_t>(W));
  return rows.data();
}

// What a thread's direct functions use besides the arrays, looked up once a
// task (each is a thread-local lookup, a call into the dynamic linker's TLS
// resolver in a shared library; per channel they were a measurable share of
// an 8x8 plane): the zeros row of W cells (8 at least: rows under 8 cells
// read 8, backward_direct), the Columns cache, the fold
// lists of three axes (fold_scratch) and, for a forward that keeps it
// (forward_ring), the ring (ring_rows; else null: nothing is allocated for
// rows that do not use it).
template <typename T>
struct DirectScratch {
  const T* zeros;
  ColumnCache* cache;
  std::vector<std::pair<int, int>>* folds;
  typename Acc<T>::type* ring;
};
template <typename T>
DirectScratch<T> direct_scratch(int W, bool forward) {
  return DirectScratch<T>{
      zero_row<T>(std::max(W, kGroup)), column_cache(), fold_scratch(),
      forward && forward_ring<T>(W) ? ring_rows<typename Acc<T>::type>(W) : nullptr};
}

inline Columns::Columns(ColumnCache* cache, int P_, int W_, int o_, int lo_, int hi_)
    : P(P_), W(W_), o(o_), lo(lo_), hi(hi_), chunks((W_ + kGroup - 1) / kGroup) {
  const size_t n = static_cast<size_t>(chunks) * static_cast<size_t>(hi - lo + 1) * kRecord;
  ColumnCache::Entry& en =
      n > ColumnCache::kMaxCached
          ? cache->large
          : cache->entry[static_cast<unsigned>(o * 4 + lo + 2 * hi) % ColumnCache::kEntries];
  // (the arguments, not the members just stored: GCC merged two of these
  // compares into one 64-bit load of two 32-bit stores, a store-forwarding
  // stall that held 12 % of an 8x8 plane's forward samples; NOTES.md, v28)
  if (en.P != P_ || en.W != W_ || en.o != o_ || en.lo != lo_ || en.hi != hi_) {
    en.edge.resize(n);
    build(en.edge.data());
    en.ka = en.kb = chunks;  // (inside(start(k)) holds on one run of k: start(k) grows with k)
    for (int k = 0; k < chunks; ++k) {
      if (!inside(start(k))) continue;
      if (en.ka == chunks) en.ka = k;
      en.kb = k + 1;
    }
    en.P = P, en.W = W, en.o = o, en.lo = lo, en.hi = hi;
  }
  edge = en.edge.data();
  ka = en.ka, kb = en.kb;
}

// v's 32-bit lanes permuted by `perm`, those where `mask` is 0 cleared: an
// edge vector's cells from the 8 cells of its row that its Columns record
// names.
template <typename V>
V permuted(V v, i32x8 perm, i32x8 mask) {
  return reinterpret_cast<V>(reinterpret_cast<i32x8>(__builtin_shuffle(v, perm)) & mask);
}

// body(w, rd) for each vector of a row, where rd(row, t) is the vector of
// column tap t of `row` (a pointer to a row of the array, whose last
// element is `last`, or the zeros row) in the accumulation type (`bits`:
// raw bits). Edge vectors of 32-bit lanes by permutation where they fit,
// else (and for double) by gathers.
template <Isa I, typename T, typename Body>
__attribute__((always_inline)) inline void for_each_vector(const Columns& cols, const T* last,
                                                           bool bits, const Body& body) {
  using V = Vec8<typename Acc<T>::type>;
  auto edge = [&](int k) {
    body(cols.start(k), [&](const T* row, int t) {
      const int32_t* e = cols.at(k, t);
      if constexpr (sizeof(typename Acc<T>::type) == 4) {
        if (e[3 * kGroup] >= 0) {
          return permuted(widen8<I>(row + e[3 * kGroup], bits), loadu<i32x8>(e + 2 * kGroup),
                          loadu<i32x8>(e + kGroup));
        }
      }
      return gather8<I>(row, loadu<i32x8>(e), loadu<i32x8>(e + kGroup), bits,
                        last_in_row(row, last, cols.W));
    });
  };
  // The vectors in order: edges, the run inside the row, edges. The run's
  // bounds and offsets in locals (a 16-bit store may alias cols' members).
  const int ka = cols.ka, kb = cols.kb, o = cols.o, last_w = cols.W - kGroup;
  for (int k = 0; k < cols.chunks; ++k) {  // (one call site each: the body is large)
    if (k == ka) {
      for (; k < kb; ++k) {
        const int w = std::min(k * kGroup, last_w);
        body(w, [&](const T* row, int t) { return widen8<I>(row + w + o + t, bits); });
      }
      if (k == cols.chunks) break;
    }
    edge(k);
  }
}

// n cells from `from` to `to` (raw bits; not overlapping), by vectors of 8
// (the last overlapping the one before) where n >= 8, else copy_head's
// pieces. (memcpy measured the same; this loop is the same code on every C
// library: glibc's takes 64-byte registers on CPUs that have them.)
template <Isa I, typename T>
__attribute__((always_inline)) inline void copy_cells(T* to, const T* from, int64_t n) {
  if (n < kGroup) return copy_head(to, from, static_cast<int>(n));
  for (int64_t i = 0;; i += kGroup) {
    const int64_t j = std::min(i, n - kGroup);
    narrow8<I>(to + j, widen8<I>(from + j, true), true);
    if (j == n - kGroup) break;
  }
}

// forward_direct_impl's rows of one vector (W == 8: 8x8 planes; kShort: W
// < 8, 32-bit storage), of float lanes, at one depth tap: a row's column
// stencil from one load and a permutation and mask a column tap (its
// Columns record: on rows of at most 8 cells every padding's cells fit 8
// cells from the row's first, base 0), the rows' stencil on the row above's
// value kept in a register. The ring's arithmetic in the ring's order (the
// same bits), without the general row loop's per-row record lookups. Rows
// under 8 cells read 8 (the cells after the row are the array's; the row
// ending within 8 cells of the array's end: its W alone) and write 8 where
// rows are contiguous in y and the 8 cells are the task's rows (those past
// the row are written again after it; the task's last rows: their W
// alone). A template, not a lambda taking the choice: GCC left such a
// lambda out of line in the baseline build, where the lattice's stencils
// stopped being constants and a multiply by 1 flushed subnormal moves to
// zero under XLA's denormals-are-zero
// (test_subnormals_at_the_lattice_agree_on_every_instruction_set).
template <Isa I, bool kShort, typename T, typename A>
__attribute__((always_inline)) inline void one_vector_rows(
    const Rows<T>& x, const ChannelTables<A>& ct, const Columns& cols, const Stencil<A>& sf,
    const Stencil<A>& sw, const T* zeros, int d, T* yc, int64_t rs_y, int r0, int rows) {
  using V = Vec8<A>;
  const int W = x.W;
  const bool same = cols.ka == 0;  // (column offset 0 at the columns' lattice: the row itself)
  i32x8 perm[2] = {}, mask[2] = {};
  for (int t = 0; t < sw.n && !same; ++t) cols.one_vector(t, &perm[t], &mask[t]);
  auto columns = [&](const T* row) {
    V v = {};
    if constexpr (!kShort) {
      v = widen8<I>(row, false);
    } else if (row != zeros && row + kGroup <= x.last + 1) {
      v = widen8<I>(row, false);
    } else if (row != zeros) {
      v = load_head<V>(row, W);
    }
    return apply(sw, 0, [&](int t) { return same ? v : permuted(v, perm[t], mask[t]); });
  };
  const int plane = d + ct.m[0];
  V a = columns(x.at(cols.P, plane, r0 + ct.m[1], zeros));
  for (int r = r0; r < r0 + rows; ++r) {
    const V b = columns(x.at(cols.P, plane, r + ct.m[1] + 1, zeros));
    const V out = apply(sf, 0, [&](int q) { return q ? b : a; });
    if constexpr (!kShort) {
      narrow8<I>(yc + r * rs_y, out, false);
    } else if (rs_y == W && (r0 + rows - r) * W >= kGroup) {
      narrow8<I>(yc + r * rs_y, out, false);
    } else {
      store_head(yc + r * rs_y, out, W);
    }
    a = b;
  }
}

// One channel's forward, rows [r0, r0 + rows) of output plane d of y (yc:
// that plane, rows rs_y apart), from its rows of x. `move`: integer moves
// (raw bits). The last vector of a row overlaps the one before where W is
// not a multiple of 8.
template <Isa I, typename T, typename A>
void forward_direct_impl(int P, const Rows<T>* xp, const ChannelTables<A>* ct,
                         const DirectScratch<T>* scr, bool move, int d, T* yc, int64_t rs_y,
                         int r0, int rows) {
  const Rows<T>& x = *xp;
  const int W = x.W;
  if (nan_shift(ct->f)) {
    for (int r = r0; r < r0 + rows; ++r) fill_nan(yc + r * rs_y, 1, W, ct->f);
    return;
  }
  const T* zeros = scr->zeros;
  if (move) {  // one tap, raw bits
    const int m1 = ct->m[1], m2 = ct->m[2];
    // The output rows [ra, rb) whose source rows are rows of the array
    // (through the planes' padding), rows contiguous in x and y and the
    // column offset under a vector: one copy of their bytes, the plane
    // read as one flat run at offset m1 W + m2, then in each row the |m2|
    // cells the columns' padding answers (that run put the next or last
    // row's cells there). The other rows by vectors.
    const int plane = pad_index_of(P, d + ct->m[0], x.D);
    int ra = r0, rb = r0;
    if (plane >= 0 && x.rs == W && rs_y == W && std::abs(m2) < std::min(W, kGroup)) {
      ra = std::max(r0, -m1);
      rb = std::max(ra, std::min(r0 + rows, x.H - m1));
    }
    if (rb > ra) {
      const T* xp = x.p + plane * x.ps;
      const int64_t a = int64_t{ra} * W + std::max(0, -m2), b = int64_t{rb} * W - std::max(0, m2);
      copy_cells<I>(yc + a, xp + a + int64_t{m1} * W + m2, b - a);
      const int c0 = m2 > 0 ? W - m2 : 0, n = m2 > 0 ? m2 : -m2;  // columns [c0, c0 + n)
      int src[kGroup];
      for (int c = 0; c < n; ++c) src[c] = pad_index_of(P, c0 + c + m2, W);
      for (int r = ra; r < rb; ++r) {
        const T* xr = xp + int64_t{r + m1} * W;
        T* out = yc + int64_t{r} * W + c0;
        for (int c = 0; c < n; ++c) out[c] = src[c] < 0 ? T{} : xr[src[c]];
      }
    }
    if (ra == r0 && rb == r0 + rows) return;
    if (W < kGroup) {  // rows under a vector, cell by cell
      int src[kGroup];
      for (int c = 0; c < W; ++c) src[c] = pad_index_of(P, c + m2, W);
      for (int r = r0; r < r0 + rows; ++r) {
        if (r == ra) r = rb;  // (the rows copied above)
        if (r >= r0 + rows) break;
        const T* xr = x.at(P, d + ct->m[0], r + m1, zeros);
        T* out = yc + r * rs_y;
        for (int c = 0; c < W; ++c) out[c] = src[c] < 0 ? T{} : xr[src[c]];
      }
      return;
    }
    const Columns cols(scr->cache, P, W, m2, 0, 0);
    for (int r = r0; r < r0 + rows; ++r) {
      if (r == ra) r = rb;  // (the rows copied above)
      if (r >= r0 + rows) break;
      const T* xr = x.at(P, d + ct->m[0], r + m1, zeros);
      T* out = yc + r * rs_y;
      for_each_vector<I>(cols, x.last, true, [&](int w, const auto& rd) {
        narrow8<I>(out + w, rd(xr, 0), true);
      });
    }
    return;
  }
  with_lattice3(ct->f[0], ct->f[1], ct->f[2], [&](auto lat_d, auto lat_f, auto lat_w) {
    const Stencil<A> sd = value_stencil(ct->f[0], lat_d), sf = value_stencil(ct->f[1], lat_f),
                     sw = value_stencil(ct->f[2], lat_w);
    // column taps 0 .. 1, 0 alone at the lattice
    const Columns cols(scr->cache, P, W, ct->m[2], 0, lat_w ? 0 : 1);
    if constexpr (sizeof(A) == 4 && decltype(lat_d)::value) {
      if (W == kGroup) {
        return one_vector_rows<I, false>(x, *ct, cols, sf, sw, zeros, d, yc, rs_y, r0, rows);
      }
      if constexpr (sizeof(T) == 4) {
        // (2-D calls alone: use_direct_forward; their depth is at its lattice)
        if (W < kGroup) {
          return one_vector_rows<I, true>(x, *ct, cols, sf, sw, zeros, d, yc, rs_y, r0, rows);
        }
      }
    }
    // Rows of at most 4 vectors (W <= 32), off the rows' and columns'
    // lattices: each input row's column stencil is taken once, as row tap
    // 1 of the output row above it, and kept in a ring (two rows a depth
    // tap) for the next output row, whose row tap 0 it is. Two column taps
    // a vector are read from x where the stencils read four, and half of
    // a 32-cell row's vectors are edges, read through a permutation each
    // (forward 0.85-0.93x at rows of 8-32 cells; at 512 cells, with 2
    // edges in 64 vectors, the ring's loads and stores cost more than the
    // taps they save: 1.06-1.09x; benchmarks/NOTES.md, v27). The rows'
    // stencil is outside the columns' here: not the other paths' bits.
    // 16-bit storage: every row and lattice case (on the rows' lattice
    // the stencil reads the ring's row alone), the taps widened once
    // (0.66-0.87x the staged planes' time; v28). It has no other
    // active forward here.
    if constexpr (sizeof(T) == 2 || (!lat_f && !lat_w)) {
      if (forward_ring<T>(W)) {
        using V = Vec8<A>;
        auto slot = [&](int p, int r) { return scr->ring + (2 * p + (r & 1)) * W; };
        auto columns = [&](const auto& rd, const T* row) {
          return apply(sw, 0, [&](int c) { return rd(row, c); });
        };
        const int depth = lat_d ? 1 : 2;
        for (int p = 0; p < depth; ++p) {  // row r0 + m1 (row tap 0 of output row r0)
          const T* xr = x.at(P, d + ct->m[0] + p, r0 + ct->m[1], zeros);
          A* c = slot(p, r0);
          for_each_vector<I>(cols, x.last, false,
                             [&](int w, const auto& rd) { storeu(c + w, columns(rd, xr)); });
        }
        for (int r = r0; r < r0 + rows; ++r) {
          const T* xb[2];
          A *ca[2], *cb[2];  // the ring's rows r + m1 (read) and r + m1 + 1 (written)
          for (int p = 0; p < depth; ++p) {
            xb[p] = x.at(P, d + ct->m[0] + p, r + ct->m[1] + 1, zeros);
            ca[p] = slot(p, r), cb[p] = slot(p, r + 1);
          }
          T* out = yc + r * rs_y;
          for_each_vector<I>(cols, x.last, false, [&](int w, const auto& rd) JAXSHIFT_INLINE {
            narrow8<I>(out + w, apply(sd, 0, [&](int p) {
              const V b = columns(rd, xb[p]);
              const V a = loadu<V>(ca[p] + w);
              storeu(cb[p] + w, b);
              return apply(sf, 0, [&](int q) { return q ? b : a; });
            }), false);
          });
        }
        return;
      }
    }
    if constexpr (sizeof(T) > 2) {  // (16-bit storage took the ring)
      for (int r = r0; r < r0 + rows; ++r) {
        const T* xr[2][2];  // [depth tap][row tap]
        for (int p = 0; p < (lat_d ? 1 : 2); ++p) {
          for (int q = 0; q < (lat_f ? 1 : 2); ++q) {  // (row tap 1 off the lattice only)
            xr[p][q] = x.at(P, d + ct->m[0] + p, r + ct->m[1] + q, zeros);
          }
        }
        T* out = yc + r * rs_y;
        for_each_vector<I>(cols, x.last, false, [&](int w, const auto& rd) JAXSHIFT_INLINE {
          narrow8<I>(out + w, apply(sd, 0, [&](int p) {
            return apply(sw, 0, [&](int c) {
              return apply(sf, 0, [&](int q) { return rd(xr[p][q], c); });
            });
          }), false);
        });
      }
    }
  });
}

// forward_direct_impl for channels [c0, c0 + nb) of sample n, rows [r0, r0
// + rows) of output plane d: the channel loop inside one version, so that
// a channel of a small plane (7x7, 8x8: 49-64 cells) does not pay a call,
// its version's dispatch and its frame.
template <Isa I, typename T>
void forward_channels_impl(int P, const Geometry* geo, const T* x, const Tables* tab,
                           const DirectScratch<T>* scr, bool move, int64_t n, int64_t c0,
                           int nb, int d, T* y, int r0, int rows) {
  using A = typename Acc<T>::type;
  const Axis* ax = geo->ax;
  const T* last = x + (geo->N * geo->sx_n - 1);
  for (int64_t c = c0; c < c0 + nb; ++c) {
    const ChannelTables<A> ct = channel_tables<A>(*geo, *tab, n, c);
    const Rows<T> xc{x + n * geo->sx_n + c * geo->sx_c, ax[0].sx, ax[1].sx, ax[0].L, ax[1].L,
                     ax[2].L, last};
    forward_direct_impl<I>(P, &xc, &ct, scr, move, d,
                           y + n * geo->sy_n + c * geo->sy_c + d * ax[0].sy, ax[1].sy, r0, rows);
  }
}
JAXSHIFT_ISA_VERSIONS(forward_channels)

// --- Strided rows (channels-first forwards) -------------------------------

// Channels-first active forwards with a stride of 2 or more on some axis,
// a column stride of 1 or 2, at least 8 output columns and storage of at
// most 32 bits: rows straight from the array as the unit-stride forward's.
// Output row r of output plane d reads rows r t1 + m1 + {0, 1} of planes
// d t0 + m0 + {0, 1}, and its column j cells j t2 + m2 + {0, 1} of each;
// with t2 = 2 a vector's two column taps are the even and the odd cells of
// one run of 16 (two loads, two shuffles), where the channel lanes
// (cpu/lanes.h) read each vector by gathers from 8 planes (8 lines a
// vector; benchmarks/NOTES.md, v36). Moves stay on the lanes, which
// gather only the cells a move reads (these rows measured 0.74-1.27x their
// time: slower on small planes and in 16-bit); so do float64 (compile
// time), column strides of 3 and more, and rows under 8 outputs.
// The backward takes every such call, moves' too (strided_adjoint, below).
template <typename T>
bool strided_rows_fit(const Geometry& geo) {
  const Axis* ax = geo.ax;
  const bool strided = ax[0].t > 1 || ax[1].t > 1 || ax[2].t > 1;
  return sizeof(T) <= 4 && strided && ax[2].t <= 2 && ax[2].sx == 1 && ax[2].sy == 1 &&
         ax[2].Lo >= kGroup;
}
template <typename T>
bool use_strided_rows(const Geometry& geo, bool move) {
  return !move && strided_rows_fit<T>(geo);
}

// Tasks of rows: sample x plane (of `planes`) x block of B channels x strip
// of R of `rows` rows of `row` bytes, a strip about `strip` bytes of x
// (fixed by the shape: a backward's shift-gradient partials are per strip)
// and a task about 64 KB, at least 4 tasks a thread where the call has
// them (B the threads').
inline StagedPlan strip_plan(const Geometry& geo, int rows, int64_t row, int64_t planes,
                             int64_t strip, int threads) {
  const int R = static_cast<int>(std::clamp<int64_t>(strip / row, 1, rows));
  const int64_t strips = (rows + R - 1) / R;
  int64_t B = std::clamp<int64_t>((int64_t{64} << 10) / (row * R), 1, geo.C);
  const int64_t want = 4 * int64_t{std::max(threads, 1)};
  while (B > 1 && geo.N * planes * strips * ((geo.C + B - 1) / B) < want) B = (B + 1) / 2;
  return StagedPlan{static_cast<int>(B), R, (geo.C + B - 1) / B, strips, planes};
}

// The strided rows' forward tasks: per output plane, strips of output rows
// of about 64 KB of x (an output row's: t1 input rows, two planes in 3-D).
template <typename T>
StagedPlan strided_plan(const Geometry& geo, int threads) {
  const Axis* ax = geo.ax;
  const int64_t row = int64_t{ax[1].t} * ax[2].L * int64_t{sizeof(T)} * (ax[0].present ? 2 : 1);
  return strip_plan(geo, ax[1].Lo, row, ax[0].Lo, int64_t{64} << 10, threads);
}

// The column reads of a strided row (W cells, padding P, column stride t,
// offset o): vector k covers outputs [start(k), start(k) + 8), its column
// tap c reads cells t (start(k) + l) + o + c. Vectors [ka, kb) read inside
// the row (t = 2: the run of 16 cells from t start(k) + o; t = 1: 9), the
// others through the padding: per (vector, tap) a record of 8 indices and
// 8 masks for gather8 and, where the cells the padding answers lie within
// 16 of the row from `base` (every padding but a periodic wrap, on rows of
// 16 cells or more), the same as a permutation of those 16 cells (two
// loads and two permutes instead of a gather of 8). A thread keeps 4 of
// them (strided_cache), direct-mapped by offset: a task's channels share a
// few offsets.
struct StridedColumns {
  static constexpr int kRecord = Columns::kRecord;  // edge_record's
  int P = -1, W = 0, Wo = 0, t = 0, o = 0;  // the key
  int ka = 0, kb = 0, chunks = 0;
  std::vector<int32_t> rec;
  int start(int k) const { return std::min(k * kGroup, Wo - kGroup); }
  const int32_t* at(int k, int c) const { return rec.data() + (2 * k + c) * kRecord; }
  void build(int P_, int W_, int Wo_, int t_, int o_) {
    P = P_, W = W_, Wo = Wo_, t = t_, o = o_;
    chunks = (Wo + kGroup - 1) / kGroup;
    rec.resize(static_cast<size_t>(chunks) * 2 * kRecord);
    ka = chunks, kb = chunks;
    for (int k = 0; k < chunks; ++k) {
      const int run = t * start(k) + o;  // the run a vector inside reads: [run, run + 16 or 9)
      const bool inside = run >= 0 && run + (t == 2 ? 2 * kGroup - 1 : kGroup) < W;
      if (inside && ka == chunks) ka = k;
      if (!inside && ka < chunks && kb == chunks) kb = k;
      for (int c = 0; c < 2; ++c) {
        int32_t* e = rec.data() + (2 * k + c) * kRecord;
        edge_record(e, P, t * start(k) + o + c, t, W, 2 * kGroup);
        if (W < 2 * kGroup) e[3 * kGroup] = -1;  // (no 16 cells to load: gathers)
      }
    }
  }
};
inline StridedColumns* strided_cache() {
  thread_local StridedColumns cache[4];
  return cache;
}
inline const StridedColumns& strided_columns(StridedColumns* cache, int P, int W, int Wo, int t,
                                             int o) {
  StridedColumns& s = cache[o & 3];
  if (s.P != P || s.W != W || s.Wo != Wo || s.t != t || s.o != o) s.build(P, W, Wo, t, o);
  return s;
}

// One channel's strided forward, rows [r0, r0 + rows) of output plane d (yc:
// that plane, rows rs_y apart, Wo cells), from its rows of x; t: the
// strides; cache: the thread's strided_cache. The taps in the order of the
// unit-stride rows' ring: the columns' stencil inside the rows', inside the
// planes'.
template <Isa I, typename T, typename A>
void strided_forward_impl(int P, const Rows<T>& x, const ChannelTables<A>& ct, const T* zeros,
                          StridedColumns* cache, const int* t, int Wo, int d, T* yc,
                          int64_t rs_y, int r0, int rows) {
  using V = Vec8<A>;
  if (nan_shift(ct.f)) {
    for (int r = r0; r < r0 + rows; ++r) fill_nan(yc + r * rs_y, 1, Wo, ct.f);
    return;
  }
  const StridedColumns& cols = strided_columns(cache, P, x.W, Wo, t[2], ct.m[2]);
  const int o = ct.m[2], ka = cols.ka, kb = cols.kb, chunks = cols.chunks;
  // Column taps [0, n) of vector k (outputs from w) of `row`, in A.
  auto taps = [&](const T* row, int k, int w, int n, V* v) {
    if (k >= ka && k < kb) {
      const T* p = row + t[2] * w + o;
      if (t[2] == 2) {
        const V lo = widen8<I>(p, false), hi = widen8<I>(p + kGroup, false);
        v[0] = __builtin_shufflevector(lo, hi, 0, 2, 4, 6, 8, 10, 12, 14);
        v[1] = __builtin_shufflevector(lo, hi, 1, 3, 5, 7, 9, 11, 13, 15);
      } else {
        for (int c = 0; c < n; ++c) v[c] = widen8<I>(p + c, false);
      }
      return;
    }
    for (int c = 0; c < n; ++c) {
      const int32_t* e = cols.at(k, c);
      if (e[3 * kGroup] >= 0) {  // cells [base, base + 16) permuted
        const T* p = row + e[3 * kGroup];
        const i32x8 perm = loadu<i32x8>(e + 2 * kGroup);
        const V lo = permuted(widen8<I>(p, false), perm, perm < kGroup);
        const V hi = permuted(widen8<I>(p + kGroup, false), perm, perm >= kGroup);
        v[c] = reinterpret_cast<V>((reinterpret_cast<i32x8>(lo) | reinterpret_cast<i32x8>(hi)) &
                                   loadu<i32x8>(e + kGroup));
      } else {
        v[c] = gather8<I>(row, loadu<i32x8>(e), loadu<i32x8>(e + kGroup), false,
                          last_in_row(row, x.last, x.W));
      }
    }
  };
  with_lattice3(ct.f[0], ct.f[1], ct.f[2], [&](auto lat_d, auto lat_f, auto lat_w) {
    const Stencil<A> sd = value_stencil(ct.f[0], lat_d), sf = value_stencil(ct.f[1], lat_f),
                     sw = value_stencil(ct.f[2], lat_w);
    for (int r = r0; r < r0 + rows; ++r) {
      const T* xr[2][2];  // [depth tap][row tap]
      for (int p = 0; p < (lat_d ? 1 : 2); ++p) {
        for (int q = 0; q < (lat_f ? 1 : 2); ++q) {
          xr[p][q] = x.at(P, d * t[0] + ct.m[0] + p, r * t[1] + ct.m[1] + q, zeros);
        }
      }
      T* out = yc + r * rs_y;
      for (int k = 0; k < chunks; ++k) {
        const int w = cols.start(k);
        narrow8<I>(out + w, apply(sd, 0, [&](int p) {
          return apply(sf, 0, [&](int q) {
            V v[2] = {};
            taps(xr[p][q], k, w, lat_w ? 1 : 2, v);
            return apply(sw, 0, [&](int c) { return v[c]; });
          });
        }), false);
      }
    }
  });
}

// strided_forward_impl for channels [c0, c0 + nb) of sample n, rows [r0, r0
// + rows) of output plane d (forward_channels' frame).
template <Isa I, typename T>
void strided_channels_impl(int P, const Geometry* geo, const T* x, const Tables* tab, int64_t n,
                           int64_t c0, int nb, int d, T* y, int r0, int rows) {
  using A = typename Acc<T>::type;
  const Axis* ax = geo->ax;
  const T* last = x + (geo->N * geo->sx_n - 1);
  const T* zeros = zero_row<T>(ax[2].L);
  StridedColumns* cache = strided_cache();
  const int t[3] = {ax[0].t, ax[1].t, ax[2].t};
  for (int64_t c = c0; c < c0 + nb; ++c) {
    const ChannelTables<A> ct = channel_tables<A>(*geo, *tab, n, c);
    const Rows<T> xc{x + n * geo->sx_n + c * geo->sx_c, ax[0].sx, ax[1].sx, ax[0].L, ax[1].L,
                     ax[2].L, last};
    strided_forward_impl<I>(P, xc, ct, zeros, cache, t, ax[2].Lo, d,
                            y + n * geo->sy_n + c * geo->sy_c + d * ax[0].sy, ax[1].sy, r0, rows);
  }
}
JAXSHIFT_ISA_VERSIONS(strided_channels)

// --- Strided rows: the backward (channels-first) --------------------------

// The channels-first strided backward, input gradient and shift gradient in
// one pass over the input grid, rows straight from the arrays. Per axis,
// the outputs j whose reads j t + m + q (tap q: 0 and 1, and -1 at the
// exact shift's lattice, the slope's) land through the padding on an input
// position i collect there (the transposed stencils): the input gradient
// dx[i] = sum of the value's weights times g[j], and the shift gradient in
// its adjoint form, the sum over inputs of x[i] times the transposed
// slope's (on one axis; the value's on the others) weights times g[j], as
// the unit-stride one pass (backward_direct) has it. An input row's reads
// of g are a short list of (row of g, weights): at a row stride of 2 one
// row (two at the rows' lattice); at a column stride of 2 lane l of a vector
// of 8 inputs takes g's cell (i - m) / 2 (rounded down) at tap (i - m) mod
// 2: one load of 8 cells of g and one permutation a vector, lane weights
// that alternate (StridedAdjointColumns). x, g and dx are each read or
// written once, where the channel lanes took two passes of gathers from 8
// planes (benchmarks/NOTES.md, v37). A tap of weight zero in the input
// gradient is masked, not multiplied: a non-finite g reaches only the inputs
// its output reads. Columns folded back onto the row by the padding (every
// padding but zeros; periodic's wrap too) are added cell by cell after the
// row's vectors; rows and planes folded onto a row are more entries in its
// list.

// One axis of a channel in the strided backward: the exact tables' offset
// m, and per tap q = -1, 0, 1 (index q + 1; index 3: no tap) the weights of
// the exact value and slope stencils (the shift gradient's) and of the
// input gradient's (the rounded tables' stencil, sparse mode's move by m +
// delta for delta 0 or 1, at tap q - delta), and whether it has the tap.
template <typename A>
struct AxisShift {
  static constexpr int kNone = 3;
  int m;
  bool lattice;  // (of the exact shift: taps -1 .. 1, the slope's)
  A value[4], slope[4], dx[4];
  bool has_dx[4];
};
template <typename A>
AxisShift<A> axis_shift(const ChannelTables<A>& exact, const ChannelTables<A>& rounded, int a) {
  const A f = exact.f[a], fr = rounded.f[a];
  const Stencil<A> value = value_stencil(f, at_lattice(f)), slope = slope_stencil<A>(at_lattice(f)),
                   dx = value_stencil(fr, at_lattice(fr));
  AxisShift<A> sh{exact.m[a], at_lattice(f), {}, {}, {}, {}};
  const int delta = rounded.m[a] - exact.m[a];
  for (int q = -1; q <= 1; ++q) {
    sh.value[q + 1] = tap_weight(value, q), sh.slope[q + 1] = tap_weight(slope, q);
    sh.dx[q + 1] = tap_weight(dx, q - delta), sh.has_dx[q + 1] = has_tap(dx, q - delta);
  }
  return sh;
}

// The reads of one axis of a channel (length L, Lo outputs, stride t,
// padding P) in the transposed form: reads(i, fn), for i ascending from
// `first`, calls fn(j, q + 1) for each output j and tap q whose read j t + m + q
// lands on input position i: the position itself (q ascending: per tap the
// next output's read kept, no division a row), then each virtual position
// outside [0, L) that the padding answers with i (`folds`, ascending).
// Without `grad` (the input gradient alone) only the taps the input
// gradient has.
template <typename A>
struct AxisReads {
  const AxisShift<A>* sh;
  int Lo, t, qlo;
  bool grad;
  std::vector<std::pair<int, int>>* folds;  // (virtual position, i)
  int next[3];  // per tap q: the next output whose read j t + m + q is at or after i
  AxisReads(int P, const Axis& ax, const AxisShift<A>* sh_, bool grad_, int first,
            std::vector<std::pair<int, int>>* folds_)
      : sh(sh_), Lo(ax.Lo), t(ax.t), qlo(sh_->lattice ? -1 : 0), grad(grad_), folds(folds_) {
    for (int q = qlo; q <= 1; ++q) next[q + 1] = floor_div(first - sh->m - q + t - 1, t);
    folds->clear();
    if (P == kZeros) return;
    for (int v = sh->m + qlo; v <= (Lo - 1) * t + sh->m + 1; ++v) {
      const int i = pad_index_of(P, v, ax.L);
      if ((v < 0 || v >= ax.L) && i >= 0) folds->emplace_back(v, i);
    }
  }
  template <typename Fn>
  void tap(int q, int j, const Fn& fn) const {
    if (j >= 0 && j < Lo && (grad || sh->has_dx[q + 1])) fn(j, q + 1);
  }
  template <typename Fn>
  void reads(int i, const Fn& fn) {
    for (int q = qlo; q <= 1; ++q) {
      int& j = next[q + 1];
      if (j * t + sh->m + q == i) tap(q, j++, fn);
    }
    for (const auto& [v, k] : *folds) {
      if (k != i) continue;
      for (int q = qlo; q <= 1; ++q) {
        const int u = v - sh->m - q, j = floor_div(u, t);
        if (j * t == u) tap(q, j, fn);
      }
    }
  }
};

// One row of g an input row reads, with the weights of its depth and row
// taps: dx (the input gradient's, where has_dx), value (both values: the
// columns' slope is taken inside it), slope_f (the rows' slope inside the
// depth's value) and slope_d (the depth's slope inside the rows' value).
template <typename T, typename A>
struct RowTerm {
  const T* g;
  A dx, value, slope_f, slope_d;
  bool has_dx;
};

// A column folded back onto the row: virtual column v (outside [0, W))
// answered by cell i, and the outputs (cells j of g) that read v at taps
// c (AxisShift's indices).
struct ColumnFold {
  int i, n;
  int j[3], c[3];
};

// The column reads of a strided backward's rows (W input cells, Wo >= 8
// output cells, column stride t, the exact offset o), from `sources` cells
// of g per input: at t = 2 source 0 reads g's cell (i - o) / 2 (rounded
// down: tap (i - o) mod 2), source 1 (the lattice's slope) (i - o + 1) / 2
// (tap -1 for odd i - o, none else); at t = 1 source s reads cell i - o - c
// at tap c = 0, 1 (-1: the lattice's). A vector's cells of a source lie
// within 8 cells of g's row (5 at most), so per (vector, source) they are a
// permutation of the 8 cells from `base` (inside [0, Wo)) and a mask (zero
// where a cell is outside the row or a lane has no tap): one load, one
// permutation, no gathers, no reads past the row. Per parity of a vector's
// first input less o, the lanes' taps (as AxisShift's indices: q + 1, kNone
// for none). Folds: each virtual column outside [0, W) that an output reads
// and padding P answers with a cell, in increasing order. A thread keeps 4
// (strided_adjoint_cache), direct-mapped by offset.
struct StridedAdjointColumns {
  static constexpr int kNoTap = 99, kNone = AxisShift<float>::kNone;
  static constexpr int kRecord = 2 * kGroup + 1;  // permutation, mask, base
  int P = -1, W = 0, Wo = 0, t = 0, o = 0, sources = 0;  // the key
  int chunks = 0;
  std::vector<int32_t> rec;   // per (vector, source)
  std::vector<int32_t> vec;   // per vector: first input, parity
  int32_t tap[2][3][kGroup];  // per (parity, source, lane)
  std::vector<ColumnFold> folds;
  const int32_t* at(int k, int s) const { return rec.data() + (k * sources + s) * kRecord; }
  // source s's output cell for input i, and its tap (kNoTap: none)
  int cell(int s, int i, int* c) const {
    if (t == 2) {
      const int j = floor_div(i - o + s, 2);
      *c = i - o - 2 * j;
      if (s == 1 && *c == 0) *c = kNoTap;  // (source 0 reads it)
      return j;
    }
    *c = s == 2 ? -1 : s;
    return i - o - *c;
  }
  void build(int P_, int W_, int Wo_, int t_, int o_, int sources_) {
    P = P_, W = W_, Wo = Wo_, t = t_, o = o_, sources = sources_;
    chunks = (W + kGroup - 1) / kGroup;
    rec.assign(static_cast<size_t>(chunks) * sources * kRecord, 0);
    vec.assign(static_cast<size_t>(chunks) * 2, 0);
    for (int p = 0; p < 2; ++p) {
      for (int s = 0; s < sources; ++s) {
        for (int l = 0; l < kGroup; ++l) {
          int c;
          cell(s, o + p + l, &c);
          tap[p][s][l] = c == kNoTap ? kNone : c + 1;
        }
      }
    }
    for (int k = 0; k < chunks; ++k) {
      const int start = std::min(k * kGroup, W - kGroup);
      vec[2 * k] = start, vec[2 * k + 1] = t == 2 ? floor_mod(start - o, 2) : 0;
      for (int s = 0; s < sources; ++s) {
        int32_t* e = rec.data() + (k * sources + s) * kRecord;
        int c, j[kGroup], first = Wo;
        bool in[kGroup];
        for (int l = 0; l < kGroup; ++l) {
          j[l] = cell(s, start + l, &c);
          in[l] = j[l] >= 0 && j[l] < Wo && c != kNoTap;
          if (in[l]) first = std::min(first, j[l]);
        }
        const int base = std::max(0, std::min(first, Wo - kGroup));
        for (int l = 0; l < kGroup; ++l) {
          e[l] = in[l] ? j[l] - base : 0;
          e[kGroup + l] = in[l] ? -1 : 0;
        }
        e[2 * kGroup] = base;
      }
    }
    folds.clear();
    if (P == kZeros) return;
    const bool lattice = sources == (t == 2 ? 2 : 3);
    for (int v = o - lattice; v <= (Wo - 1) * t + o + 1; ++v) {
      const int i = pad_index_of(P, v, W);
      if ((v >= 0 && v < W) || i < 0) continue;
      ColumnFold f{i, 0, {}, {}};
      for (int s = 0; s < sources; ++s) {
        int c;
        const int j = cell(s, v, &c);
        if (c != kNoTap && j >= 0 && j < Wo) f.j[f.n] = j, f.c[f.n++] = c + 1;
      }
      if (f.n > 0) folds.push_back(f);
    }
  }
};
inline StridedAdjointColumns* strided_adjoint_cache() {
  thread_local StridedAdjointColumns cache[4];
  return cache;
}
inline const StridedAdjointColumns& strided_adjoint_columns(StridedAdjointColumns* cache, int P,
                                                            int W, int Wo, int t, int o,
                                                            int sources) {
  StridedAdjointColumns& s = cache[o & 3];
  if (s.P != P || s.W != W || s.Wo != Wo || s.t != t || s.o != o || s.sources != sources) {
    s.build(P, W, Wo, t, o, sources);
  }
  return s;
}

// One channel's strided backward over input rows [r0, r0 + rows) of one
// input plane: row r reads the terms [first[r - r0], first[r - r0 + 1]); x
// and dx at the plane (rows rs apart); `buf`: W cells of A for 16-bit rows
// that collect folded columns (their sums narrowed once); acc: the
// channel's shift-gradient sums (the depth's where `three`).
template <typename T, typename A>
struct StridedAdjoint {
  const StridedAdjointColumns* cols;
  const RowTerm<T, A>* terms;
  const int* first;
  AxisShift<A> col;
  const T* x;
  T* dx;
  int64_t rs;
  int r0, rows;
  bool three;
  A* buf;
  A* acc;
};

// kT: the column stride; kSources: the column sources; kGrad: with the
// shift gradient (else the input gradient alone: integer mode, whose terms
// and sources are the input gradient's).
template <Isa I, int kT, int kSources, bool kGrad, typename T, typename A>
void strided_adjoint_impl(std::integral_constant<int, kT>, std::integral_constant<int, kSources>,
                          std::integral_constant<bool, kGrad>, const StridedAdjoint<T, A>* sa) {
  using V = Vec8<A>;
  const StridedAdjoint<T, A>& a = *sa;
  const StridedAdjointColumns& cols = *a.cols;
  const int W = cols.W;
  // The lanes' weights per (parity, source): value, slope, input gradient
  // (and its mask: lanes with no such tap take none).
  V pv[2][kSources], ps[2][kSources], pd[2][kSources];
  i32x8 pm[2][kSources];
  for (int p = 0; p < (kT == 2 ? 2 : 1); ++p) {
    for (int s = 0; s < kSources; ++s) {
      for (int l = 0; l < kGroup; ++l) {
        const int c = cols.tap[p][s][l];
        pv[p][s][l] = a.col.value[c], ps[p][s][l] = a.col.slope[c];
        pd[p][s][l] = a.col.dx[c], pm[p][s][l] = a.col.has_dx[c] ? -1 : 0;
      }
    }
  }
  const bool folds = !cols.folds.empty(), buffered = sizeof(T) == 2 && folds;
  V sd = {}, sf = {}, sw = {};
  A fold_d = 0, fold_f = 0, fold_w = 0;
  for (int r = a.r0; r < a.r0 + a.rows; ++r) {
    const RowTerm<T, A>* e0 = a.terms + a.first[r - a.r0];
    const RowTerm<T, A>* e1 = a.terms + a.first[r - a.r0 + 1];
    const T* xr = a.x + r * a.rs;
    T* out = a.dx + r * a.rs;
    if (e0 == e1) {  // a row no output reads
      std::memset(static_cast<void*>(out), 0, sizeof(T) * static_cast<size_t>(W));
      continue;
    }
    // The row's vectors from its terms te: a copy of rows of 1 or 2 terms
    // (count; 0: any), whose weights then stay in registers (a dx store may
    // alias the list's).
    auto vectors = [&](const RowTerm<T, A>* te, auto count) {
      constexpr int N = decltype(count)::value;
      RowTerm<T, A> local[N > 0 ? N : 1];
      if constexpr (N > 0) {
        for (int t = 0; t < N; ++t) local[t] = te[t];
        te = local;
      }
      const int n = N > 0 ? N : static_cast<int>(e1 - e0);
      for (int k = 0; k < cols.chunks; ++k) {
        const int w = cols.vec[2 * k], p = cols.vec[2 * k + 1];
        int base[kSources];
        i32x8 perm[kSources], mask[kSources];
        for (int s = 0; s < kSources; ++s) {
          const int32_t* e = cols.at(k, s);
          perm[s] = loadu<i32x8>(e), mask[s] = loadu<i32x8>(e + kGroup);
          base[s] = e[2 * kGroup];
        }
        V adx = {}, aw = {}, af = {}, ad = {};
        for (int t = 0; t < n; ++t) {
          const RowTerm<T, A>& e = te[t];
          V cv = {}, cs = {}, cdx = {};
          for (int s = 0; s < kSources; ++s) {
            const V G = permuted(widen8<I>(e.g + base[s], false), perm[s], mask[s]);
            cdx += reinterpret_cast<V>(reinterpret_cast<i32x8>(pd[p][s] * G) & pm[p][s]);
            if constexpr (kGrad) {
              cv += pv[p][s] * G;
              cs += ps[p][s] * G;
            }
          }
          if (e.has_dx) adx += e.dx * cdx;
          if constexpr (kGrad) {
            aw += e.value * cs;
            af += e.slope_f * cv;
            if (a.three) ad += e.slope_d * cv;
          }
        }
        if (buffered) {
          storeu(a.buf + w, adx);
        } else {
          narrow8<I>(out + w, adx, false);
        }
        if constexpr (kGrad) {
          const V xv = widen8<I>(xr + w, false);
          // (a row's last vector overlapping the one before: its new lanes)
          const int fresh = k * kGroup - w;
          auto add = [&](V* sum, V t) { *sum += fresh ? lanes_from(t, fresh) : t; };
          add(&sw, xv * aw);
          add(&sf, xv * af);
          if (a.three) add(&sd, xv * ad);
        }
      }
    };
    if (e1 - e0 == 1) {
      vectors(e0, std::integral_constant<int, 1>{});
    } else if (e1 - e0 == 2) {
      vectors(e0, std::integral_constant<int, 2>{});
    } else {
      vectors(e0, std::integral_constant<int, 0>{});
    }
    if (!folds) continue;
    for (const ColumnFold& f : cols.folds) {
      A dxa = 0, tw = 0, tf = 0, td = 0;
      for (const RowTerm<T, A>* e = e0; e < e1; ++e) {
        A cv = 0, cs = 0, cdx = 0;
        for (int u = 0; u < f.n; ++u) {
          const A G = load<A>(e->g + f.j[u]);
          cv += a.col.value[f.c[u]] * G;
          cs += a.col.slope[f.c[u]] * G;
          if (a.col.has_dx[f.c[u]]) cdx += a.col.dx[f.c[u]] * G;
        }
        if (e->has_dx) dxa += e->dx * cdx;
        tw += e->value * cs;
        tf += e->slope_f * cv;
        td += e->slope_d * cv;
      }
      if (buffered) {
        a.buf[f.i] += dxa;
      } else {
        store(out + f.i, load<A>(out + f.i) + dxa);
      }
      if constexpr (kGrad) {
        const A xv = load<A>(xr + f.i);
        fold_w += xv * tw, fold_f += xv * tf, fold_d += xv * td;
      }
    }
    if (buffered) {
      for (int k = 0; k < cols.chunks; ++k) {
        const int w = cols.vec[2 * k];
        narrow8<I>(out + w, loadu<V>(a.buf + w), false);
      }
    }
  }
  if constexpr (kGrad) {
    if (a.three) {
      for (int l = 0; l < kGroup; ++l) a.acc[0] += sd[l];
      a.acc[0] += fold_d;
    }
    for (int l = 0; l < kGroup; ++l) a.acc[1] += sf[l];
    a.acc[1] += fold_f;
    for (int l = 0; l < kGroup; ++l) a.acc[2] += sw[l];
    a.acc[2] += fold_w;
  }
}
JAXSHIFT_ISA_VERSIONS(strided_adjoint)

// A thread's room for strided_adjoint_terms.
template <typename T, typename A>
struct StridedAdjointScratch {
  std::vector<std::pair<int, int>> folds[2], depth, row;  // (output, tap index)
  std::vector<RowTerm<T, A>> terms;
  std::vector<int> first;
  std::vector<A> buf;
};
template <typename T, typename A>
__attribute__((noinline)) StridedAdjointScratch<T, A>* strided_adjoint_scratch() {
  thread_local StridedAdjointScratch<T, A> s;
  return &s;
}

// The terms of one channel's input rows [r0, r0 + rows) of input plane d
// (g: the channel's first plane, planes ps and rows rs apart; sh: its three
// axes), into s->terms and s->first (rows + 1 offsets): per row the depth
// reads of the plane (one at depth 0 in 2-D) times the rows' reads of the
// row, the depth outermost. (Fields written one by one: a term built on the
// stack and copied was read back by wide loads of narrow stores, a stall
// that held most of this function's time.)
template <typename T, typename A>
void strided_adjoint_terms(int P, const Axis* ax, const AxisShift<A>* sh, bool grad, const T* g,
                           int64_t ps, int64_t rs, int d, int r0, int rows,
                           StridedAdjointScratch<T, A>* s) {
  auto push = [](std::vector<std::pair<int, int>>* v) {
    return [v](int j, int q) { v->emplace_back(j, q); };
  };
  s->depth.clear();
  AxisShift<A> flat{};  // (2-D: depth 0, tap 0, weights 1 and slope 0)
  const AxisShift<A>& s0 = ax[0].present ? sh[0] : flat;
  if (ax[0].present) {
    AxisReads<A>(P, ax[0], &sh[0], grad, d, &s->folds[0]).reads(d, push(&s->depth));
  } else {
    flat.value[1] = flat.dx[1] = A(1), flat.has_dx[1] = true;
    s->depth.emplace_back(0, 1);
  }
  AxisReads<A> row_reads(P, ax[1], &sh[1], grad, r0, &s->folds[1]);
  const AxisShift<A>& s1 = sh[1];
  s->first.resize(static_cast<size_t>(rows) + 1);
  size_t n = 0;
  for (int r = 0; r < rows; ++r) {
    s->first[r] = static_cast<int>(n);
    s->row.clear();
    row_reads.reads(r0 + r, push(&s->row));
    if (s->terms.size() < n + s->depth.size() * s->row.size()) {
      s->terms.resize(2 * (n + s->depth.size() * s->row.size()));
    }
    for (const auto& [jd, qd] : s->depth) {
      for (const auto& [jr, qr] : s->row) {
        RowTerm<T, A>& e = s->terms[n++];
        e.g = g + jd * ps + jr * rs;
        e.dx = s0.dx[qd] * s1.dx[qr];
        e.value = s0.value[qd] * s1.value[qr];
        e.slope_f = s0.value[qd] * s1.slope[qr];
        e.slope_d = s0.slope[qd] * s1.value[qr];
        e.has_dx = s0.has_dx[qd] && s1.has_dx[qr];
      }
    }
  }
  s->first[rows] = static_cast<int>(n);
}

// One channel's input gradient, rows [r0, r0 + rows) of input plane d of dx
// (dxc: that plane, rows rs_x apart), from its rows of g read through the
// adjoint's padding. Where the padding folds reads back onto the array
// (folds_of), an element's gradient is its own position's adjoint plus
// that of each position folded onto it: rows and planes folded onto a row
// add their whole adjoint rows to it, columns folded onto a column their
// adjoint cells, in a fixed order.
template <Isa I, typename T, typename A>
void adjoint_direct_impl(int P, const Rows<T>* gp, const ChannelTables<A>* ct,
                         const DirectScratch<T>* scr, int d, T* dxc, int64_t rs_x, int r0,
                         int rows) {
  const Rows<T>& g = *gp;
  using V = Vec8<A>;
  const int Q = adjoint_padding(P);
  const int W = g.W, m0 = ct->m[0], m1 = ct->m[1], m2 = ct->m[2];
  if (nan_shift(ct->f)) {
    for (int r = r0; r < r0 + rows; ++r) fill_nan(dxc + r * rs_x, 1, W, ct->f);
    return;
  }
  const T* zeros = scr->zeros;
  std::vector<std::pair<int, int>>* folds = scr->folds;
  with_lattice3(ct->f[0], ct->f[1], ct->f[2], [&](auto lat_d, auto lat_f, auto lat_w) {
    const Stencil<A> sd = value_stencil(ct->f[0], lat_d), sf = value_stencil(ct->f[1], lat_f),
                     sw = value_stencil(ct->f[2], lat_w);
    folds_of(P, g.D, m0, m0, lat_d ? 0 : 1, &folds[0]);
    folds_of(P, g.H, m1, m1, lat_f ? 0 : 1, &folds[1]);
    folds_of(P, W, m2, m2, lat_w ? 0 : 1, &folds[2]);
    // column taps -1 .. 0, 0 alone at the lattice
    const Columns cols(scr->cache, Q, W, -m2, lat_w ? 0 : -1, 0);
    // The adjoint at position (j0, j1, every column) stored to `out`, or
    // added to it, then its folded columns added.
    auto adjoint_row = [&](int j0, int j1, T* out, auto add) {  // (add: a bool_constant)
      const T* gr[2][2];  // g at plane j0 - m0 + p, row j1 - m1 + q, p, q = 0, -1
      for (int p = 0; p < (lat_d ? 1 : 2); ++p) {
        for (int q = 0; q < (lat_f ? 1 : 2); ++q) {
          gr[p][q] = g.at(Q, j0 - m0 - p, j1 - m1 - q, zeros);
        }
      }
      // the adjoint from its taps rd(row of g, column tap), a vector or a cell
      auto adjoint = [&](const auto& rd) {
        return apply_adjoint(sd, 0, [&](int p) {
          return apply_adjoint(sw, 0, [&](int c) {
            return apply_adjoint(sf, 0, [&](int q) { return rd(gr[-p][-q], c); });
          });
        });
      };
      for_each_vector<I>(cols, g.last, false, [&](int w, const auto& rd) {
        V v = adjoint(rd);
        if constexpr (add) {  // (a last vector overlapping the one before: its new lanes)
          const V old = widen8<I>(out + w, false);
          v = w % kGroup ? lanes_from(old + v, kGroup - w % kGroup, old) : old + v;
        }
        narrow8<I>(out + w, v, false);
      });
      for (const auto& [j, i] : folds[2]) {  // (Q answers zero outside the row)
        store(out + i, load<A>(out + i) + adjoint([&](const T* row, int c) {
          const int k = j - m2 + c;
          return k >= 0 && k < W ? load<A>(row + k) : A(0);
        }));
      }
    };
    for (int r = r0; r < r0 + rows; ++r) {
      T* out = dxc + r * rs_x;
      adjoint_row(d, r, out, std::false_type{});
      for_each_row_folded_onto(folds, d, r, [&](int j0, int j1) {
        adjoint_row(j0, j1, out, std::true_type{});
      });
    }
  });
}
JAXSHIFT_ISA_VERSIONS(adjoint_direct)

// Whether tap (p, q, c) (offsets on the three axes) is one that d out /
// d shift reads for some axis (the slope's stencil on it, the value's on the
// others; the depth axis's only where `three`), for lattice tests l*.
constexpr bool in_stencil(bool lattice, bool slope, int o) {
  // (the offsets do not depend on the fraction: any off the lattice)
  return has_tap(slope ? slope_stencil<float>(lattice) : value_stencil(0.5f, lattice), o);
}
constexpr bool deriv_tap(bool three, bool ld, bool lf, bool lw, int p, int q, int c) {
  bool read = false;
  for (int a = three ? 0 : 1; a < 3; ++a) {
    read = read || (in_stencil(ld, a == 0, p) && in_stencil(lf, a == 1, q) &&
                    in_stencil(lw, a == 2, c));
  }
  return read;
}

// One channel's shift-gradient sums over output rows [r0, r0 + rows) of
// output plane d, from its rows of x (through padding P) and g's plane d
// (gc, rows rs_g apart), exact tables ct: adds the sum for axis a to acc[a]
// (axis 0 only where Three, a 3-D call). Per axis 8 lanes by column (a
// row's last vector, where it overlaps the one before, only its new lanes),
// then the lanes in order: the same order on any number of threads.
template <Isa I, typename T, typename A, typename Three, typename LatD, typename LatF,
          typename LatW>
void shift_grad_direct_impl(int P, const Rows<T>* xp, const T* gc, int64_t rs_g,
                            const ChannelTables<A>* ct, const DirectScratch<T>* scr, Three,
                            LatD lat_d, LatF lat_f, LatW lat_w, int d, int r0, int rows,
                            A* acc) {
  using V = Vec8<A>;
  const Rows<T>& x = *xp;
  const int W = x.W, m0 = ct->m[0], m1 = ct->m[1], m2 = ct->m[2];
  const Stencil<A> value[3] = {value_stencil(ct->f[0], lat_d), value_stencil(ct->f[1], lat_f),
                               value_stencil(ct->f[2], lat_w)};
  const Stencil<A> slope[3] = {slope_stencil<A>(lat_d), slope_stencil<A>(lat_f),
                               slope_stencil<A>(lat_w)};
  Stencil<A> s0[3], s1[3], s2[3];  // the stencils of d out / d shift on axis 0, 1, 2
  deriv_stencils<3>(value, slope, 0, s0);
  deriv_stencils<3>(value, slope, 1, s1);
  deriv_stencils<3>(value, slope, 2, s2);
  const T* zeros = scr->zeros;
  // Taps -1 .. 1 at the lattice (the slope's), else 0 .. 1; depth 0 in 2-D.
  constexpr bool three = Three::value, ld = LatD::value, lf = LatF::value, lw = LatW::value;
  constexpr int plo = three && ld ? -1 : 0, phi = three ? 1 : 0, qlo = lf ? -1 : 0,
                clo = lw ? -1 : 0;
  const Columns cols(scr->cache, P, W, m2, clo, 1);
  // d out / d shift at a column from its taps X(p, q, c): stencils sa
  // (depth outermost, then columns, then rows)
  auto deriv = [](const Stencil<A>* sa, const auto& X) {
    return apply(sa[0], 0, [&](int p) {
      return apply(sa[2], 0, [&](int c) {
        return apply(sa[1], 0, [&](int q) { return X(p, q, c); });
      });
    });
  };
  V sum[3] = {};
  for (int r = r0; r < r0 + rows; ++r) {
    const T* xr[3][3];  // rows (plane d + m0 + p, row r + m1 + q), p, q = -1 .. 1
    for (int p = plo; p <= phi; ++p) {
      for (int q = qlo; q <= 1; ++q) {
        xr[p + 1][q + 1] = x.at(P, d + m0 + p, r + m1 + q, zeros);
      }
    }
    const T* go = gc + r * rs_g;
    for_each_vector<I>(cols, x.last, false, [&](int w, const auto& rd) JAXSHIFT_INLINE {
      V xv[3][3][3];  // each tap read once: the sums' stencils share them (gathers are not merged)
      for (int p = plo; p <= phi; ++p) {
        for (int q = qlo; q <= 1; ++q) {
          for (int c = clo; c <= 1; ++c) {
            if (deriv_tap(three, ld, lf, lw, p, q, c)) {
              xv[p + 1][q + 1][c + 1] = rd(xr[p + 1][q + 1], c);
            }
          }
        }
      }
      auto X = [&](int p, int q, int c) { return xv[p + 1][q + 1][c + 1]; };
      const V gv = widen8<I>(go + w, false);
      V t[3] = {};
      if constexpr (three) t[0] = gv * deriv(s0, X);
      t[1] = gv * deriv(s1, X);
      t[2] = gv * deriv(s2, X);
      if (w % kGroup != 0) {  // a row's last vector overlapping the one before: its new lanes
        for (V& v : t) v = lanes_from(v, kGroup - w % kGroup);
      }
      for (int a = three ? 0 : 1; a < 3; ++a) sum[a] += t[a];
    });
  }
  for (int a = three ? 0 : 1; a < 3; ++a) {
    for (int l = 0; l < kGroup; ++l) acc[a] += sum[a][l];
  }
}
JAXSHIFT_ISA_VERSIONS(shift_grad_direct)

// One channel's input gradient and shift-gradient sums in one pass: P
// folding nothing (zeros, periodic: the adjoint's padding is P), the
// channel's exact shift not NaN (3-D: off every lattice; 2-D: LatF, LatW
// say whether it is on the rows', the columns' lattice), and its rounded
// tables the exact ones (`up` null) or sparse mode's moves by m or m + 1
// per axis (up[a]: the move is one cell beyond m on axis a). The sums in
// their adjoint form, as the channels-last lanes' backward_row,
// backward3_row and transposed_slopes (cpu/lanes.h): the sum over outputs q
// of g[q] times d out / d shift at q equals the sum over inputs p of x[p]
// times the transposed stencil on g around p - m, and that reads the rows
// of g the input gradient reads: rows r - m1 (a) and r - m1 - 1 (b) of
// planes d - m0 (0) and d - m0 - 1 (1, a 3-D call), columns j - m2 (k) and
// j - m2 - 1 (l); on the rows' lattice also row r - m1 + 1 (u, the slope's
// tap -1), on the columns' lattice column j - m2 + 1. So x is read where it
// lies, one contiguous load a vector, instead of its taps in a second pass
// over the rows. Rows [r0, r0 + rows) of input plane d of dx (dxc) and x
// (xc), rows rs_x apart; the sums over them (8 lanes by column, a row's
// last vector where it overlaps the one before only its new lanes, then the
// lanes in order) add to acc[0] (depth, 3-D), acc[1] (rows), acc[2]
// (columns). Rows under 8 cells (2-D float32: run_backward's
// direct_one_pass_all) as one vector each, the forward's one_vector_rows'
// way: g's rows read 8 cells (the row ending within 8 cells of g's end:
// its W alone); x read and dx written 8 cells where the rows are
// contiguous and the 8 cells are the call's rows (the cells past the row
// are written again with the rows after it; the last rows: their W
// alone); the sums take lanes under W.
template <Isa I, typename T, typename A, typename Three, typename LatF, typename LatW>
void backward_direct_impl(int P, const Rows<T>* gp, const T* xc, const ChannelTables<A>* ct,
                          const int* up, const DirectScratch<T>* scr, Three, LatF, LatW, int d,
                          T* dxc, int64_t rs_x, int r0, int rows, A* acc) {
  using V = Vec8<A>;
  constexpr bool three = Three::value, lat_f = LatF::value, lat_w = LatW::value;
  static_assert(!three || (!lat_f && !lat_w), "3-D: off every lattice");
  const Rows<T>& g = *gp;
  const int m0 = ct->m[0], m1 = ct->m[1], m2 = ct->m[2];
  const V w1d = splat<V>(ct->f[0]), w0d = splat<V>(A(1) - ct->f[0]);
  const V w1f = splat<V>(ct->f[1]), w0f = splat<V>(A(1) - ct->f[1]);
  const V w1w = splat<V>(ct->f[2]), w0w = splat<V>(A(1) - ct->f[2]);
  const V half = splat<V>(A(0.5)), mhalf = splat<V>(A(-0.5));
  const bool moves = up != nullptr;
  const bool up_d = moves && up[0], up_f = moves && up[1], up_w = moves && up[2];
  // column taps -1 .. 0, and 1 on the columns' lattice
  const int W = g.W;
  const Columns cols(scr->cache, P, W, -m2, -1, lat_w ? 1 : 0);
  V sd = {}, sf = {}, sw = {};
  const T *ga0, *gb0, *gu0, *ga1, *gb1, *xr;  // row r's (set below)
  T* out;
  // Rows under 8 cells: g's rows read by short_rd; `whole`: x's and dx's 8
  // cells from the row are the call's rows.
  i32x8 perm[3] = {}, mask[3] = {};
  bool whole = true;
  auto short_rd = [&](const T* row, int t) {
    V v = {};
    if constexpr (sizeof(T) == 4) {  // (32-bit storage alone: run_backward)
      v = row + kGroup <= g.last + 1 ? widen8<I>(row, false) : load_head<V>(row, W);
    }
    return permuted(v, perm[t + 1], mask[t + 1]);
  };
  // (one lambda, its row kind told by its reader's type: a second layer of
  // lambdas left GCC's AVX2 version calling one out of line, compiled for
  // the baseline, whose vector return then broke the ABI)
  auto body = [&](int w, const auto& rd) JAXSHIFT_INLINE {
    constexpr bool short_row =
        std::is_same_v<std::decay_t<decltype(rd)>, decltype(short_rd)> && sizeof(T) == 4;
    const V a0k = rd(ga0, 0), a0l = rd(ga0, -1), b0k = rd(gb0, 0), b0l = rd(gb0, -1);
    V xv;
    if constexpr (short_row) {
      xv = whole ? widen8<I>(xr, false) : load_head<V>(xr, W);
    } else {
      xv = widen8<I>(xr + w, false);
    }
    auto store = [&](V v) {
      if constexpr (short_row) {
        if (!whole) return store_head(out, v, W);
      }
      narrow8<I>(out + w, v, false);
    };
    // (a row's last vector overlapping the one before: its new lanes; a
    // short row: its W)
    auto add = [&](V* sum, V t) {
      if constexpr (short_row) {
        *sum += lanes_from(V{}, W, t);
      } else {
        *sum += w % kGroup ? lanes_from(t, kGroup - w % kGroup) : t;
      }
    };
    auto moved = [&](V ak, V al, V bk, V bl) {
      return up_w ? (up_f ? bl : al) : (up_f ? bk : ak);
    };
    if constexpr (lat_f || lat_w) {  // 2-D, a lattice: lanes.h's transposed_slopes
      // the rows' value and slope at column tap c (0: k, -1: l, 1: the lattice's)
      auto vf = [&](V a, V b) { return lat_f ? w0f * a : w0f * a + w1f * b; };
      auto sl = [&](V u, V a, V b) { return lat_f ? half * u + mhalf * b : a - b; };
      const V uk = lat_f ? rd(gu0, 0) : V{}, ul = lat_f ? rd(gu0, -1) : V{};
      const V vk = vf(a0k, b0k), vl = vf(a0l, b0l);
      V dxv = w0w * vk, tf = w0w * sl(uk, a0k, b0k), tw;
      if constexpr (lat_w) {
        tw = half * vf(rd(ga0, 1), rd(gb0, 1)) + mhalf * vl;
      } else {
        dxv = dxv + w1w * vl;
        tf = tf + w1w * sl(ul, a0l, b0l);
        tw = vk - vl;
      }
      store(moves ? moved(a0k, a0l, b0k, b0l) : dxv);
      add(&sf, xv * tf);
      add(&sw, xv * tw);
      return;
    }
    // (lanes.h's plain terms, backward_row's and backward3_row's algebra)
    const V r0k = w0f * a0k + w1f * b0k, r0l = w0f * a0l + w1f * b0l;
    const PlainTerms<V> t0 = plain_terms(w0w, w1w, a0k, a0l, b0k, b0l, r0k, r0l);
    if constexpr (three) {
      const V a1k = rd(ga1, 0), a1l = rd(ga1, -1), b1k = rd(gb1, 0), b1l = rd(gb1, -1);
      const V r1k = w0f * a1k + w1f * b1k, r1l = w0f * a1l + w1f * b1l;
      const PlainTerms<V> t =
          depth3(w0d, w1d, t0, plain_terms(w0w, w1w, a1k, a1l, b1k, b1l, r1k, r1l));
      const V dxv = !moves ? t.value
                           : up_d ? moved(a1k, a1l, b1k, b1l) : moved(a0k, a0l, b0k, b0l);
      store(dxv);
      add(&sd, xv * t.slope_d);
      add(&sf, xv * t.slope_f);
      add(&sw, xv * t.slope_w);
    } else {
      store(moves ? moved(a0k, a0l, b0k, b0l) : t0.value);
      add(&sf, xv * t0.slope_f);
      add(&sw, xv * t0.slope_w);
    }
  };
  // Rows of one vector (W == 8; W < 8 of 32-bit storage) of float lanes:
  // each column tap's permutation and mask read once, not looked up at
  // each read as for_each_vector's edges do. (Column taps -1 .. 0 leave no
  // row of 8 inside: its vector is always an edge.)
  const bool one_vector = sizeof(A) == 4 && (W == kGroup || (sizeof(T) == 4 && W < kGroup));
  for (int t = -1; t <= cols.hi && one_vector; ++t) {
    cols.one_vector(t, &perm[t + 1], &mask[t + 1]);
  }
  for (int r = r0; r < r0 + rows; ++r) {
    ga0 = g.at(P, d - m0, r - m1, scr->zeros);
    gb0 = g.at(P, d - m0, r - m1 - 1, scr->zeros);
    gu0 = lat_f ? g.at(P, d - m0, r - m1 + 1, scr->zeros) : nullptr;
    ga1 = three ? g.at(P, d - m0 - 1, r - m1, scr->zeros) : nullptr;
    gb1 = three ? g.at(P, d - m0 - 1, r - m1 - 1, scr->zeros) : nullptr;
    xr = xc + r * rs_x;
    out = dxc + r * rs_x;
    if constexpr (sizeof(A) == 4) {
      if (one_vector && W == kGroup) {
        body(0, [&](const T* row, int t) {
          return permuted(widen8<I>(row, false), perm[t + 1], mask[t + 1]);
        });
        continue;
      }
      if constexpr (sizeof(T) == 4) {
        if (one_vector) {  // (the zeros row has 8 cells or more: direct_scratch)
          whole = rs_x == W && (r0 + rows - r) * W >= kGroup;
          body(0, short_rd);
          continue;
        }
      }
    }
    for_each_vector<I>(cols, g.last, false, body);
  }
  if constexpr (three) {
    for (int l = 0; l < kGroup; ++l) acc[0] += sd[l];
  }
  for (int l = 0; l < kGroup; ++l) acc[1] += sf[l];
  for (int l = 0; l < kGroup; ++l) acc[2] += sw[l];
}
JAXSHIFT_ISA_VERSIONS(backward_direct)

}  // namespace jaxshift
