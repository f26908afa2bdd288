// The tiled CUDA kernels (forward and fused deterministic backward), written
// once for nvcc (the real kernels, shift_cuda.cu) and for the host compiler
// (the emulator, emulator.h and cuda_emulated.cc).
//
// A kernel is a struct with `kPhases` phase functions
//   phase(ph, args, item, tid, smem)
// separated by block barriers: on the GPU, block b runs items b, b + grid,
// ... and for each item every phase with __syncthreads() after it; the
// emulator runs the same loops with every thread of a phase in turn. State
// that crosses a barrier lives in shared memory, never in a thread's
// registers (the emulator would lose it, and so does the GPU if a thread
// exits a phase early). Every memory access goes through the tracked
// functions below (gld/gst/sld/sst and float16.h's load/store), which the
// emulator checks (bounds, alignment, shared-memory races and reads of
// unstaged shared memory) and records for the memory-access model.
//
// One item is one sample, a block of channels (16 channels-last, 8 for
// volumes; one channels-first) and a tile of outputs. Phase 0 copies the
// block's shift tables to shared memory; phase 1 computes the window of
// extended input positions that the block's channels read (the union over
// its channels, at most `cap` positions per axis) and stages it through the
// padding with 16-byte loads where the layout allows; phase 2 computes the
// outputs from the window with shift_core.h's stencils (no padding logic and
// no division per element); a channel whose offsets do not fit the window
// (far shifts) takes shift_core.h's element-wise functions instead, reading
// global memory (the per-channel fallback). The backward stages x (for the
// shift gradient) and the output cotangent g (for the input gradient, unit
// strides) and reduces the shift-gradient sums per block in a fixed order
// into per-tile partial sums (no atomics); `finish_shift_grad` adds the tiles
// in order.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "shift_core.h"

namespace jaxshift {
namespace tiled {

constexpr int kThreads = 256;
constexpr size_t kSmemBudget = 96 * 1024;  // bytes per block: two blocks per SM on Hopper

struct alignas(16) Vec16 {
  uint32_t w[4];
};

// ---------------------------------------------------------------------------
// Tracked memory access.
template <typename T>
JS_HD T gld(const T* p JS_SITE) {
  JS_TRACK(kGlobal, p, sizeof(T), false);
  return *p;
}
template <typename T>
JS_HD void gst(T* p, T v JS_SITE) {
  JS_TRACK(kGlobal, p, sizeof(T), true);
  *p = v;
}
JS_HD void gld16(const void* p, Vec16* v JS_SITE) {
  JS_TRACK(kGlobal, p, 16, false);
#if defined(__CUDA_ARCH__)
  const uint4 u = __ldg(reinterpret_cast<const uint4*>(p));
  v->w[0] = u.x;
  v->w[1] = u.y;
  v->w[2] = u.z;
  v->w[3] = u.w;
#else
  memcpy(v, p, 16);
#endif
}
// A 4-, 8- or 16-byte vector (channels-first rows whose length allows no wider).
JS_HD void gldn(const void* p, Vec16* v, int bytes JS_SITE) {
  JS_TRACK(kGlobal, p, bytes, false);
#if defined(__CUDA_ARCH__)
  if (bytes == 16) {
    const uint4 u = __ldg(reinterpret_cast<const uint4*>(p));
    v->w[0] = u.x;
    v->w[1] = u.y;
    v->w[2] = u.z;
    v->w[3] = u.w;
  } else if (bytes == 8) {
    const uint2 u = __ldg(reinterpret_cast<const uint2*>(p));
    v->w[0] = u.x;
    v->w[1] = u.y;
  } else {
    v->w[0] = __ldg(reinterpret_cast<const unsigned int*>(p));
  }
#else
  memcpy(v, p, bytes);
#endif
}
JS_HD void sstn(void* p, const Vec16& v, int bytes JS_SITE) {
  JS_TRACK(kShared, p, bytes, true);
#if defined(__CUDA_ARCH__)
  if (bytes == 16) {
    *reinterpret_cast<uint4*>(p) = make_uint4(v.w[0], v.w[1], v.w[2], v.w[3]);
  } else if (bytes == 8) {
    *reinterpret_cast<uint2*>(p) = make_uint2(v.w[0], v.w[1]);
  } else {
    *reinterpret_cast<unsigned int*>(p) = v.w[0];
  }
#else
  memcpy(p, &v, bytes);
#endif
}
template <typename S>
JS_HD S sld(const S* p JS_SITE) {
  JS_TRACK(kShared, p, sizeof(S), false);
  return *p;
}
template <typename S>
JS_HD void sst(S* p, S v JS_SITE) {
  JS_TRACK(kShared, p, sizeof(S), true);
  *p = v;
}
JS_HD void sst16(void* p, const Vec16& v JS_SITE) {
  JS_TRACK(kShared, p, 16, true);
#if defined(__CUDA_ARCH__)
  *reinterpret_cast<uint4*>(p) = make_uint4(v.w[0], v.w[1], v.w[2], v.w[3]);
#else
  memcpy(p, &v, 16);
#endif
}

template <typename T>
JS_HD T zero_of() {
  T z;
  memset(&z, 0, sizeof(T));
  return z;
}

template <int P>
JS_HD int pad_fast(int e, int L) {
  return (e >= 0 && e < L) ? e : pad_index<P>(e, L);
}

// Visits a 3-D index range in steps of `step` (linear order, last axis
// fastest) from `start`, with two divisions at construction and none after.
struct Counter3 {
  int e[3], s[3], i[3];
  JS_HD Counter3(const int* ext, int start, int step) {
    for (int a = 0; a < 3; ++a) e[a] = ext[a];
    i[2] = start % e[2];
    i[1] = (start / e[2]) % e[1];
    i[0] = start / (e[2] * e[1]);
    s[2] = step % e[2];
    s[1] = (step / e[2]) % e[1];
    s[0] = step / (e[2] * e[1]);
  }
  JS_HD bool more() const { return i[0] < e[0]; }
  JS_HD void next() {
    i[2] += s[2];
    int c = i[2] >= e[2];
    if (c) i[2] -= e[2];
    i[1] += s[1] + c;
    c = i[1] >= e[1];
    if (c) i[1] -= e[1];
    i[0] += s[0] + c;
  }
};

// ---------------------------------------------------------------------------
// Launch geometry, shared by the GPU launcher and the emulator.
struct Plan {
  bool last;          // channels-last
  int cb;             // channels per item
  int V;              // elements per 16-byte global load (1: scalar staging)
  int pitch;          // channels-first: the most elements a shared row may take
  int cycle;          // elements of T in one cycle of the 32 banks (128 bytes)
  int T[3];           // output tile per axis
  int S[3];           // window positions beyond the tile's span per axis
  int cap[3];         // window capacity per axis
  int64_t ntile[3];   // tiles per axis
  int64_t tiles;      // tiles per sample (the backward's partial sums per sample)
  int64_t cblocks;    // channel blocks
  int64_t items;      // N * cblocks * tiles
  int64_t grid;       // blocks launched
  bool index64;       // 64-bit offsets within a sample
  size_t off_info, off_win, off_win2, off_red, smem;  // shared layout (bytes)
};

JS_HD int ceil_div_int(int64_t a, int64_t b) { return static_cast<int>((a + b - 1) / b); }

// Whether offsets below n may use 32-bit index math (a margin of 2^24 for the
// taps and halos around them); the v1 and tiled kernels share the bound.
inline bool fits_int32(int64_t n) { return n < (int64_t{1} << 31) - (int64_t{1} << 24); }

// The shift tables of one channel of the block, in shared memory.
template <typename A>
struct Chan {
  int state;  // kValid | kNan
  int m[3];   // offsets (exact tables in the backward)
  int mr[3];  // backward: rounded offsets
  A f[3];
  A fr[3];
};
constexpr int kValid = 1, kNan = 2;

// The block's window: extended positions [lo, lo + size) per axis;
// channels-first rows start at the aligned position qa, hold nu vectors and
// lie `pitch` elements apart.
struct Win {
  int lo[3], size[3];
  int qa, nu, pitch;
};

inline size_t round16(size_t b) { return (b + 15) / 16 * 16; }

// Shared bytes of a plan (and its layout).
inline void layout_smem(Plan* p, bool backward, int tsize, int asize) {
  const size_t chan = round16(static_cast<size_t>(p->cb) * (7 * 4 + 6 * asize + 8));
  const size_t info = round16(2 * sizeof(Win));
  const size_t win = round16(p->last ? static_cast<size_t>(p->cap[0]) * p->cap[1] * p->cap[2] *
                                           p->cb * asize
                                     : static_cast<size_t>(p->cap[0]) * p->cap[1] * p->pitch *
                                           tsize);
  p->off_info = chan;
  p->off_win = chan + info;
  p->off_win2 = p->off_win + win;
  p->off_red = p->off_win2 + (backward ? win : 0);
  p->smem = p->off_red + (backward ? round16(static_cast<size_t>(kThreads + 32) * 3 * asize) : 0);
}

// Chooses tiles for a call: square-ish tiles of about 1k-4k outputs per
// item, halved on the axis with the widest window until the shared memory
// fits kSmemBudget. `aligned`: x (and g) start on 16-byte boundaries.
inline Plan make_plan(const Geometry& geo, bool last, bool backward, int tsize, int asize,
                      bool aligned, bool force_index64) {
  Plan p;
  memset(&p, 0, sizeof(p));
  p.last = last;
  int nd = 0;
  for (int a = 0; a < 3; ++a) nd += geo.ax[a].present;
  p.cb = last ? (nd == 3 ? 8 : 16) : 1;
  const int vmax = 16 / tsize;
  p.cycle = 128 / tsize;
  if (last) {
    p.V = (aligned && (geo.C * tsize) % 16 == 0 && p.cb % vmax == 0) ? vmax : 1;
  } else {
    // The widest of 16, 8 and 4 bytes that every row start keeps aligned.
    p.V = 1;
    for (int vb = 16; vb >= 4 && p.V == 1; vb /= 2) {
      if (vb > tsize && aligned && (static_cast<int64_t>(geo.ax[2].L) * tsize) % vb == 0) {
        p.V = vb / tsize;
      }
    }
  }
  // Channels-first tiles take whole rows where they can (a row is contiguous).
  const int tmax_last[4] = {1, 512, 32, 8}, tmax_first[4] = {1, 4096, 64, 16};
  for (int a = 0; a < 3; ++a) {
    const Axis& ax = geo.ax[a];
    if (!ax.present) {
      p.T[a] = 1;
      p.S[a] = 0;
      continue;
    }
    const int tmax = last ? tmax_last[nd] : (a == 2 ? (nd == 1 ? 4096 : 64) : tmax_first[nd]);
    const int64_t pieces = (ax.Lo + tmax - 1) / tmax;
    p.T[a] = ceil_div_int(ax.Lo, pieces);
    p.S[a] = nd == 3 ? 6 : 8;
  }
  for (;;) {
    int64_t cap[3];
    for (int a = 0; a < 3; ++a) {
      cap[a] = geo.ax[a].present ? static_cast<int64_t>(p.T[a] - 1) * geo.ax[a].t + 1 + p.S[a] : 1;
    }
    // A row: the window (cap + V - 1 elements from the aligned start, in
    // whole vectors) and up to one bank cycle more (make_window's pitch).
    const int64_t pitch =
        last ? 0 : (cap[2] + p.V - 1 + p.V - 1) / p.V * p.V + p.cycle;
    const int64_t win = last ? cap[0] * cap[1] * cap[2] * p.cb * asize : cap[0] * cap[1] * pitch * tsize;
    // Halve the axis with the widest window (channels-first: the rows last).
    int widest = -1;
    for (int a = 0; a < 3; ++a) {
      if (p.T[a] > 1 && (widest < 0 || cap[a] > cap[widest])) widest = a;
    }
    if (!last && widest == 2 && (p.T[0] > 1 || p.T[1] > 1)) widest = p.T[1] > 1 ? 1 : 0;
    if (win * (backward ? 2 : 1) <= static_cast<int64_t>(kSmemBudget) - 8192 || widest < 0) {
      for (int a = 0; a < 3; ++a) p.cap[a] = static_cast<int>(cap[a]);
      p.pitch = static_cast<int>(pitch);
      break;
    }
    p.T[widest] = (p.T[widest] + 1) / 2;
  }
  p.tiles = 1;
  for (int a = 0; a < 3; ++a) {
    p.ntile[a] = (geo.ax[a].Lo + p.T[a] - 1) / p.T[a];
    p.tiles *= p.ntile[a];
  }
  p.cblocks = (geo.C + p.cb - 1) / p.cb;
  p.items = geo.N * p.cblocks * p.tiles;
  p.grid = p.items < (int64_t{1} << 24) ? p.items : (int64_t{1} << 24);
  p.index64 = force_index64 || !fits_int32(geo.sx_n) || !fits_int32(geo.sy_n);
  layout_smem(&p, backward, tsize, asize);
  return p;
}

// One item: sample, first channel, output tile origin and extent.
struct Item {
  int64_t n, c0, tile;
  int o0[3], Tn[3];
};

JS_HD Item decode_item(const Geometry& geo, const Plan& p, int64_t item) {
  Item it;
  int64_t t[3];
  int64_t r = item;
  for (int a = 2; a >= 0; --a) {
    t[a] = r % p.ntile[a];
    r /= p.ntile[a];
  }
  it.c0 = (r % p.cblocks) * p.cb;
  it.n = r / p.cblocks;
  it.tile = (t[0] * p.ntile[1] + t[1]) * p.ntile[2] + t[2];
  for (int a = 0; a < 3; ++a) {
    it.o0[a] = static_cast<int>(t[a] * p.T[a]);
    const int rest = geo.ax[a].Lo - it.o0[a];
    it.Tn[a] = rest < p.T[a] ? rest : p.T[a];
  }
  return it;
}

// Phase 0 of both kernels: thread k < cb copies channel c0 + k's tables.
template <typename A>
JS_HD void load_chan(const Geometry& geo, const Plan& p, const Item& it, int tid,
                     const int32_t* m, const A* f, const int32_t* mr, const A* fr, Chan<A>* ch) {
  if (tid >= p.cb) return;
  const int64_t c = it.c0 + tid;
  Chan<A>* o = ch + tid;
  const bool valid = c < geo.C;
  const int64_t row = valid ? table_row(geo, it.n, c) * 3 : 0;
  A fv[3], frv[3];
  for (int a = 0; a < 3; ++a) {
    sst(&o->m[a], valid ? static_cast<int>(gld(m + row + a)) : 0);
    fv[a] = valid ? gld(f + row + a) : A(0);
    sst(&o->f[a], fv[a]);
    sst(&o->mr[a], valid && mr ? static_cast<int>(gld(mr + row + a)) : 0);
    frv[a] = valid && fr ? gld(fr + row + a) : A(0);
    sst(&o->fr[a], frv[a]);
  }
  const bool nan = valid && (nan_shift(fv) || nan_shift(frv));
  sst(&o->state, (valid ? kValid : 0) | (nan ? kNan : 0));
}

// The window that covers reads at positions o*t + sign*m + d, d in
// [dmin, dmax], for outputs o of the tile and the block's near channels
// (|m| <= S), clipped to the capacity. `rounded`: use the rounded offsets;
// `with_zero`: also cover the tile itself (sign*m == 0).
template <typename A>
JS_HD Win make_window(const Geometry& geo, const Plan& p, const Item& it, const Chan<A>* ch,
                      bool rounded, int sign, int dmin, int dmax, bool with_zero) {
  Win w;
  for (int a = 0; a < 3; ++a) {
    const Axis& ax = geo.ax[a];
    if (!ax.present) {
      w.lo[a] = 0;
      w.size[a] = 1;
      continue;
    }
    int mn = with_zero ? 0 : 1 << 30, mx = with_zero ? 0 : -(1 << 30);
    for (int k = 0; k < p.cb; ++k) {
      const int st = sld(&ch[k].state);
      if (st != kValid) continue;
      const int m = sign * sld(rounded ? &ch[k].mr[a] : &ch[k].m[a]);
      if (m < -p.S[a] || m > p.S[a]) continue;
      mn = m < mn ? m : mn;
      mx = m > mx ? m : mx;
    }
    if (mn > mx) mn = mx = 0;
    w.lo[a] = it.o0[a] * ax.t + mn + dmin;
    const int64_t need = static_cast<int64_t>(it.Tn[a] - 1) * ax.t + (mx - mn) + (dmax - dmin) + 1;
    w.size[a] = need < p.cap[a] ? static_cast<int>(need) : p.cap[a];
  }
  if (p.last) {
    w.qa = 0;
    w.nu = 0;
    w.pitch = 0;
  } else {
    w.qa = floor_div(w.lo[2], p.V) * p.V;
    w.nu = (w.lo[2] + w.size[2] - w.qa + p.V - 1) / p.V;
    // The pitch: at least nu vectors, and congruent to the tile's row length
    // modulo one bank cycle (M elements: 128 bytes), so that lanes reading
    // consecutive outputs across a row end still meet distinct banks.
    // (16-bit elements: one more word, so that the two halves of a word never
    // belong to two rows.)
    const int M = p.cycle;
    const int gap = M == 64 ? 2 : 0;
    const int want = (it.Tn[2] + gap + p.V - 1) / p.V * p.V % M;
    int pitch = w.nu * p.V;
    pitch += ((want - pitch % M) % M + M) % M;
    w.pitch = pitch;
  }
  return w;
}

// Whether a channel with offsets sign*m reads only inside the window.
JS_HD bool fits(const Geometry& geo, const Win& w, const Item& it, const int* m, int sign,
                int dmin, int dmax) {
  for (int a = 0; a < 3; ++a) {
    const Axis& ax = geo.ax[a];
    if (!ax.present) continue;
    const int64_t first = static_cast<int64_t>(it.o0[a]) * ax.t + sign * m[a] + dmin;
    const int64_t last = static_cast<int64_t>(it.o0[a] + it.Tn[a] - 1) * ax.t + sign * m[a] + dmax;
    if (first < w.lo[a] || last > w.lo[a] + w.size[a] - 1) return false;
  }
  return true;
}

JS_HD void store_win(Win* dst, const Win& w) {
  for (int a = 0; a < 3; ++a) {
    sst(&dst->lo[a], w.lo[a]);
    sst(&dst->size[a], w.size[a]);
  }
  sst(&dst->qa, w.qa);
  sst(&dst->nu, w.nu);
  sst(&dst->pitch, w.pitch);
}
JS_HD Win read_win(const Win* src) {
  Win w;
  for (int a = 0; a < 3; ++a) {
    w.lo[a] = sld(&src->lo[a]);
    w.size[a] = sld(&src->size[a]);
  }
  w.qa = sld(&src->qa);
  w.nu = sld(&src->nu);
  w.pitch = sld(&src->pitch);
  return w;
}

// Units a thread loads before it stores any: 4 x 16 bytes in flight per
// thread (staging would otherwise wait one memory latency per unit).
constexpr int kBatch = 4;

// Stores a staged 16-byte unit of channels-last values (widened to A).
template <typename T, typename A>
JS_HD void store_unit(A* d, const Vec16& v, int tid) {
  if constexpr (sizeof(T) == sizeof(A)) {
    sst16(d, v);
  } else {  // 16-bit storage: 8 values widen to 32 bytes of floats
    T e[16 / sizeof(T)];
    memcpy(e, &v, 16);
    for (int h0 = 0; h0 < 2; ++h0) {
      // Swizzle the two halves by lane bit 2: the 8 lanes of a quarter-warp
      // then store to 8 distinct 16-byte bank groups.
      const int h = h0 ^ ((tid >> 2) & 1);
      Vec16 o;
      float q[4];
      for (int j = 0; j < 4; ++j) q[j] = widen<float>(e[h * 4 + j]);
      memcpy(&o, q, 16);
      sst16(d + h * 4, o);
    }
  }
}

// Stages the window of `tensor` through padding Q into `win`: channels-last
// as [pixel][cb] values of A, channels-first as rows of T, w.pitch apart.
// `output_grid`: the tensor is on the output grid (g: lengths Lo, strides sy),
// else on the input grid (x: L, sx).
template <int Q, typename T, typename I>
JS_HD void stage(const Geometry& geo, const Plan& p, const Win& w, const Item& it, int tid,
                 const T* tensor, bool output_grid, void* win) {
  using A = typename Acc<T>::type;
  int len[3];
  int64_t st[3];
  for (int a = 0; a < 3; ++a) {
    len[a] = output_grid ? geo.ax[a].Lo : geo.ax[a].L;
    st[a] = output_grid ? geo.ax[a].sy : geo.ax[a].sx;
  }
  const T* src = tensor + it.n * (output_grid ? geo.sy_n : geo.sx_n) +
                 it.c0 * (output_grid ? geo.sy_c : geo.sx_c);
  if (p.last) {
    A* out = static_cast<A*>(win);
    const int vpp = p.cb / p.V;  // units per pixel, a power of two
    const int lane = tid % vpp;
    Counter3 px(w.size, tid / vpp, kThreads / vpp);
    const int64_t c = it.c0 + static_cast<int64_t>(lane) * p.V;
    while (px.more()) {
      Vec16 v[kBatch];
      A* dst[kBatch];
      int n = 0;
      for (; n < kBatch && px.more(); px.next()) {
        I off = 0;
        bool zero = c >= geo.C;
        for (int a = 0; a < 3; ++a) {
          const int s = geo.ax[a].present ? pad_fast<Q>(w.lo[a] + px.i[a], len[a]) : 0;
          zero = zero || s < 0;
          off += static_cast<I>(s) * static_cast<I>(st[a]);
        }
        A* d = out + (((px.i[0] * w.size[1]) + px.i[1]) * w.size[2] + px.i[2]) * p.cb + lane * p.V;
        const T* s = src + off + lane * p.V;
        if (p.V > 1 && (zero || c + p.V <= geo.C)) {  // whole vectors (zeros: padding)
          if (zero) {
            memset(&v[n], 0, sizeof(Vec16));
          } else {
            gld16(s, &v[n]);
          }
          dst[n++] = d;
        } else {  // scalar staging (unaligned channels, a partial block)
          for (int j = 0; j < p.V; ++j) {
            const bool ok = !zero && c + j < geo.C;
            sst(d + j, ok ? load<A>(s + j) : A(0));
          }
        }
      }
      for (int j = 0; j < n; ++j) store_unit<T, A>(dst[j], v[j], tid);
    }
    return;
  }
  T* out = static_cast<T*>(win);
  // Units over whole pitches (those past nu idle): consecutive lanes store
  // to consecutive 16-byte slots.
  const int ext[3] = {w.size[0], w.size[1], w.pitch / p.V};
  const int bytes = p.V * static_cast<int>(sizeof(T));
  Counter3 u(ext, tid, kThreads);
  while (u.more()) {
    Vec16 v[kBatch];
    T* dst[kBatch];
    int n = 0;
    for (; n < kBatch && u.more(); u.next()) {
      if (u.i[2] >= w.nu) continue;
      I off = 0;
      bool zero = false;
      for (int a = 0; a < 2; ++a) {
        const int s = geo.ax[a].present ? pad_fast<Q>(w.lo[a] + u.i[a], len[a]) : 0;
        zero = zero || s < 0;
        off += static_cast<I>(s) * static_cast<I>(st[a]);
      }
      const T* row = src + off;
      const int q = w.qa + u.i[2] * p.V;
      T* d = out + (u.i[0] * w.size[1] + u.i[1]) * w.pitch + u.i[2] * p.V;
      if (p.V == 1) {
        const int s = zero ? -1 : pad_fast<Q>(q, len[2]);
        sst(d, s < 0 ? zero_of<T>() : gld(row + static_cast<I>(s) * static_cast<I>(st[2])));
        continue;
      }
      if (zero) {
        memset(&v[n], 0, sizeof(Vec16));
      } else if (q >= 0 && q + p.V <= len[2]) {
        gldn(row + static_cast<I>(q) * static_cast<I>(st[2]), &v[n], bytes);
      } else {  // a vector across the row's end: gathered, stored whole
        T e[16 / sizeof(T)];
        for (int j = 0; j < p.V; ++j) {
          const int s = pad_fast<Q>(q + j, len[2]);
          e[j] = s < 0 ? zero_of<T>() : gld(row + static_cast<I>(s) * static_cast<I>(st[2]));
        }
        memcpy(&v[n], e, sizeof(T) * p.V);
      }
      dst[n++] = d;
    }
    for (int j = 0; j < n; ++j) sstn(dst[j], v[j], bytes);
  }
}

// The per-channel fallback (far shifts, folded edges, strided input
// gradients): shift_core.h's element-wise functions, reading global memory.
// Not inlined on the GPU: one copy per (dtype, padding) serves every layout
// and index width (inlined, they tripled the tiled kernels' compile time).
template <int P, typename A, typename T>
JS_HD_NOINLINE A fallback_forward(const T* x, const Axis* ax, const int* o, const int* m,
                                  const A* f) {
  return forward_value<P, A>(x, ax, o, m, f);
}
template <int P, typename T>
JS_HD_NOINLINE void fallback_move(const T* x, T* y, const Axis* ax, const int* o, const int* m) {
  const T* from = move_source<P>(x, ax, o, m);
  if (from) {
    copy_element(y, from);
  } else {
    store(y, typename Acc<T>::type(0));
  }
}
template <int P, typename A, typename T>
JS_HD_NOINLINE A fallback_adjoint(const T* g, const Axis* ax, const int* i, const int* m,
                                  const A* f) {
  return adjoint_value<P, A>(g, ax, i, m, f);
}
template <int P, typename A, typename T>
JS_HD_NOINLINE void fallback_deriv(const T* x, const Axis* ax, const int* o, const int* m,
                                   const A* f, A* d) {
  deriv_values<P, A>(x, ax, o, m, f, d);
}

// A reader of window-local position (j0, j1, j2) of channel lane `lane`.
template <typename T, bool kLast>
struct WinReader {
  using A = typename Acc<T>::type;
  const void* win;
  int s1, s2, cb, pitch, lane;
  JS_HD A operator()(int j0, int j1, int j2) const {
    if (kLast) {
      return sld(static_cast<const A*>(win) + ((j0 * s1 + j1) * s2 + j2) * cb + lane);
    }
    return widen<A>(sld(static_cast<const T*>(win) + (j0 * s1 + j1) * pitch + j2));
  }
};

template <typename T, bool kLast>
JS_HD WinReader<T, kLast> reader(const Plan& p, const Win& w, const void* win, int lane) {
  return WinReader<T, kLast>{win, w.size[1], w.size[2], p.cb, w.pitch, lane};
}

// Window-local origin of an axis (channels-first rows start at qa).
template <bool kLast>
JS_HD int win_origin(const Win& w, int a) {
  return (!kLast && a == 2) ? w.qa : w.lo[a];
}

// sum over the three stencils' taps (tensor product) of rd(k + d).
template <typename A, typename R>
JS_HD A tensor3(const Stencil<A>* s, const int* k, const R& rd) {
  return apply(s[0], k[0], [&](int j0) -> A {
    return apply(s[1], k[1], [&](int j1) -> A {
      return apply(s[2], k[2], [&](int j2) -> A { return rd(j0, j1, j2); });
    });
  });
}

// The transpose: sum over taps of rd(j - d) (shift_core.h, apply_adjoint).
template <typename A, typename R>
JS_HD A tensor3_adjoint(const Stencil<A>* s, const int* j, const R& rd) {
  return apply_adjoint(s[0], j[0], [&](int p0) -> A {
    return apply_adjoint(s[1], j[1], [&](int p1) -> A {
      return apply_adjoint(s[2], j[2], [&](int p2) -> A { return rd(p0, p1, p2); });
    });
  });
}

// Thread roles: channels-last, lane = channel within the block and `slot`
// one of kThreads / cb pixel slots; channels-first, every thread is a slot.
struct Role {
  int lane, slot, slots;
};
JS_HD Role role(const Plan& p, int tid) {
  return p.last ? Role{tid % p.cb, tid / p.cb, kThreads / p.cb} : Role{0, tid, kThreads};
}

// What every phase of an item sees: the item, and shared memory's tables,
// window descriptions and first window.
template <typename A>
struct View {
  Item it;
  Chan<A>* ch;
  Win* info;
  unsigned char* win;
};
template <typename A>
JS_HD View<A> view(const Geometry& geo, const Plan& p, int64_t item, unsigned char* smem) {
  return View<A>{decode_item(geo, p, item), reinterpret_cast<Chan<A>*>(smem),
                 reinterpret_cast<Win*>(smem + p.off_info), smem + p.off_win};
}

// The channel a thread computes (its role's lane), or false past C.
template <typename A>
struct Lane {
  Role r;
  int64_t c;
  const Chan<A>* cc;
  int state;
};
template <typename A>
JS_HD bool lane_of(const Geometry& geo, const Plan& p, const Item& it, int tid, const Chan<A>* ch,
                   Lane<A>* l) {
  l->r = role(p, tid);
  l->c = it.c0 + l->r.lane;
  if (l->c >= geo.C) return false;
  l->cc = ch + l->r.lane;
  l->state = sld(&l->cc->state);
  return true;
}

// ---------------------------------------------------------------------------
// Forward.
template <typename T, int P, bool kLast, typename I>
struct Forward {
  using A = typename Acc<T>::type;
  struct Args {
    Geometry geo;
    Plan plan;
    const T* x;
    const int32_t* m;
    const A* f;
    T* y;
    bool move;
  };
  static constexpr int kPhases = 3;
  static constexpr const char* kName = kLast ? "tiled_forward_nhwc" : "tiled_forward_nchw";
  static constexpr bool kIndex64 = sizeof(I) == 8;

  JS_HD static void phase(int ph, const Args& a, int64_t item, int tid, unsigned char* smem) {
    const Geometry& geo = a.geo;
    const Plan& p = a.plan;
    const View<A> v = view<A>(geo, p, item, smem);
    const Item& it = v.it;
    Chan<A>* ch = v.ch;
    Win* info = v.info;
    void* win = v.win;
    const int dmax = a.move ? 0 : 1;
    if (ph == 0) {
      load_chan<A>(geo, p, it, tid, a.m, a.f, nullptr, nullptr, ch);
    } else if (ph == 1) {
      const Win w = make_window<A>(geo, p, it, ch, false, 1, 0, dmax, false);
      if (tid == 0) store_win(info, w);
      stage<P, T, I>(geo, p, w, it, tid, a.x, false, win);
    } else {
      compute(a, it, tid, ch, read_win(info), win);
    }
  }

  JS_HD static void compute(const Args& a, const Item& it, int tid, const Chan<A>* ch,
                            const Win& w, const void* win) {
    const Geometry& geo = a.geo;
    const Plan& p = a.plan;
    Lane<A> l;
    if (!lane_of(geo, p, it, tid, ch, &l)) return;
    const Role& r = l.r;
    const int64_t c = l.c;
    const Chan<A>* cc = l.cc;
    const int state = l.state;
    int m[3];
    A f[3];
    for (int k = 0; k < 3; ++k) {
      m[k] = sld(&cc->m[k]);
      f[k] = sld(&cc->f[k]);
    }
    const bool in_window = state == kValid && fits(geo, w, it, m, 1, 0, a.move ? 0 : 1);
    Stencil<A> s[3];
    int base[3];
    for (int k = 0; k < 3; ++k) {
      s[k] = value_stencil(f[k], at_lattice(f[k]));
      base[k] = m[k] - win_origin<kLast>(w, k);
    }
    const WinReader<T, kLast> rd = reader<T, kLast>(p, w, win, r.lane);
    T* yc = a.y + it.n * geo.sy_n + c * geo.sy_c;
    const T* xc = a.x + it.n * geo.sx_n + c * geo.sx_c;
    for (Counter3 q(it.Tn, r.slot, r.slots); q.more(); q.next()) {
      int o[3];
      I off = 0;
      for (int k = 0; k < 3; ++k) {
        o[k] = it.o0[k] + q.i[k];
        off += static_cast<I>(o[k]) * static_cast<I>(geo.ax[k].sy);
      }
      T* yp = yc + off;
      if (in_window) {
        int kk[3];
        for (int k = 0; k < 3; ++k) kk[k] = o[k] * geo.ax[k].t + base[k];
        if (a.move) {
          store(yp, rd(kk[0], kk[1], kk[2]));
        } else {
          store(yp, tensor3<A>(s, kk, rd));
        }
      } else if (a.move && !(state & kNan)) {  // far shift: the element-wise functions
        fallback_move<P>(xc, yp, geo.ax, o, m);
      } else {
        store(yp, fallback_forward<P, A>(xc, geo.ax, o, m, f));
      }
    }
  }
};

// ---------------------------------------------------------------------------
// Fused backward: dx (input grid, rounded tables) and the shift-gradient
// partial sums (output grid, exact tables) of one item.
template <typename T, int P, bool kLast, typename I>
struct Backward {
  using A = typename Acc<T>::type;
  struct Args {
    Geometry geo;
    Plan plan;
    const T* x;
    const T* g;
    const int32_t* m_r;
    const A* f_r;
    const int32_t* m_u;
    const A* f_u;
    T* dx;
    A* partial;  // (N, tiles, C, 3)
    bool shift_grad;
    bool unit;   // unit strides on every axis: dx from the staged g window
  };
  static constexpr int kPhases = 5;
  static constexpr const char* kName = kLast ? "tiled_backward_nhwc" : "tiled_backward_nchw";
  static constexpr bool kIndex64 = sizeof(I) == 8;
  static constexpr int Q = adjoint_padding(P);

  JS_HD static void phase(int ph, const Args& a, int64_t item, int tid, unsigned char* smem) {
    const Geometry& geo = a.geo;
    const Plan& p = a.plan;
    const View<A> v = view<A>(geo, p, item, smem);
    const Item& it = v.it;
    Chan<A>* ch = v.ch;
    Win* info = v.info;
    void* xwin = v.win;
    void* gwin = smem + p.off_win2;
    A* red = reinterpret_cast<A*>(smem + p.off_red);
    if (ph == 0) {
      load_chan<A>(geo, p, it, tid, a.m_u, a.f_u, a.m_r, a.f_r, ch);
    } else if (ph == 1) {
      const Win wx = make_window<A>(geo, p, it, ch, false, 1, -1, 1, false);
      const Win wg = make_window<A>(geo, p, it, ch, true, -1, -1, 0, true);
      if (tid == 0) {
        store_win(info, wx);
        store_win(info + 1, wg);
      }
      if (a.shift_grad) stage<P, T, I>(geo, p, wx, it, tid, a.x, false, xwin);
      if (a.unit) stage<Q, T, I>(geo, p, wg, it, tid, a.g, true, gwin);
    } else if (ph == 2) {
      A s[3] = {A(0), A(0), A(0)};
      compute(a, it, tid, ch, read_win(info), read_win(info + 1), xwin, gwin, s);
      for (int k = 0; k < 3; ++k) sst(red + tid * 3 + k, s[k]);
    } else if (a.shift_grad) {
      reduce(a, it, tid, ph, ch, red);
    }
  }

  // Fixed-order sums of the threads' partial sums: channels-last, lane k
  // adds its slots in order (phase 3); channels-first, 32 threads add 8
  // values each (phase 3) and thread 0 the 32 results (phase 4).
  JS_HD static void reduce(const Args& a, const Item& it, int tid, int ph, const Chan<A>* ch,
                           A* red) {
    const Geometry& geo = a.geo;
    const Plan& p = a.plan;
    A* red2 = red + kThreads * 3;
    A t[3] = {A(0), A(0), A(0)};
    if (p.last) {
      if (ph != 3 || tid >= p.cb || !(sld(&ch[tid].state) & kValid)) return;
      for (int s = 0; s < kThreads / p.cb; ++s) {
        for (int k = 0; k < 3; ++k) t[k] += sld(red + (s * p.cb + tid) * 3 + k);
      }
    } else if (ph == 3) {
      if (tid >= 32) return;
      for (int s = 0; s < kThreads / 32; ++s) {
        for (int k = 0; k < 3; ++k) t[k] += sld(red + (s * 32 + tid) * 3 + k);
      }
      for (int k = 0; k < 3; ++k) sst(red2 + tid * 3 + k, t[k]);
      return;
    } else {
      if (tid != 0 || !(sld(&ch[0].state) & kValid)) return;
      for (int s = 0; s < 32; ++s) {
        for (int k = 0; k < 3; ++k) t[k] += sld(red2 + s * 3 + k);
      }
    }
    const int64_t c = it.c0 + (p.last ? tid : 0);
    A* out = a.partial + ((it.n * p.tiles + it.tile) * geo.C + c) * 3;
    for (int k = 0; k < 3; ++k) gst(out + k, t[k]);
  }

  JS_HD static void compute(const Args& a, const Item& it, int tid, const Chan<A>* ch,
                            const Win& wx, const Win& wg, const void* xwin, const void* gwin,
                            A* sums) {
    const Geometry& geo = a.geo;
    const Plan& p = a.plan;
    Lane<A> l;
    if (!lane_of(geo, p, it, tid, ch, &l)) return;
    const Role& r = l.r;
    const int64_t c = l.c;
    const Chan<A>* cc = l.cc;
    const int state = l.state;
    int mu[3], mr[3];
    A fu[3], fr[3];
    for (int k = 0; k < 3; ++k) {
      mu[k] = sld(&cc->m[k]);
      fu[k] = sld(&cc->f[k]);
      mr[k] = sld(&cc->mr[k]);
      fr[k] = sld(&cc->fr[k]);
    }
    const T* xc = a.x + it.n * geo.sx_n + c * geo.sx_c;
    const T* gc = a.g + it.n * geo.sy_n + c * geo.sy_c;
    T* dc = a.dx + it.n * geo.sx_n + c * geo.sx_c;
    const WinReader<T, kLast> xr = reader<T, kLast>(p, wx, xwin, r.lane);
    const WinReader<T, kLast> gr = reader<T, kLast>(p, wg, gwin, r.lane);

    // The input gradient over the tile's inputs: [o0 t, (o0 + Tn) t), to L
    // on the last tile.
    const bool nan = state & kNan;
    const bool g_in = a.unit && state == kValid && fits(geo, wg, it, mr, -1, -1, 0);
    int lo[3], hi[3], i0[3], ext[3];
    Stencil<A> sv[3];
    for (int k = 0; k < 3; ++k) {
      const Axis& ax = geo.ax[k];
      simple_interval<P>(ax, mr[k], &lo[k], &hi[k]);
      if (!ax.present) lo[k] = hi[k] = 0;
      i0[k] = it.o0[k] * ax.t;
      const int end = it.o0[k] + it.Tn[k] == ax.Lo ? ax.L : (it.o0[k] + it.Tn[k]) * ax.t;
      ext[k] = end - i0[k];
      sv[k] = value_stencil(fr[k], at_lattice(fr[k]));
    }
    for (Counter3 q(ext, r.slot, r.slots); q.more(); q.next()) {
      int i[3];
      I off = 0;
      bool simple = true;
      for (int k = 0; k < 3; ++k) {
        i[k] = i0[k] + q.i[k];
        off += static_cast<I>(i[k]) * static_cast<I>(geo.ax[k].sx);
        simple = simple && i[k] >= lo[k] && i[k] <= hi[k];
      }
      A v;
      if (nan) {
        v = nan_value(fr);
      } else if (g_in && simple) {
        int j[3];
        for (int k = 0; k < 3; ++k) j[k] = i[k] - mr[k] - win_origin<kLast>(wg, k);
        v = tensor3_adjoint<A>(sv, j, gr);
      } else {
        v = fallback_adjoint<P, A>(gc, geo.ax, i, mr, fr);
      }
      store(dc + off, v);
    }
    if (!a.shift_grad || state != kValid) return;

    // The shift-gradient sums over the tile's outputs.
    const bool x_in = fits(geo, wx, it, mu, 1, -1, 1);
    const bool g_tile = a.unit && fits(geo, wg, it, mu, 0, 0, 0);  // g(o) from the window
    Stencil<A> vs[3], ss[3];
    int base[3], gbase[3];
    for (int k = 0; k < 3; ++k) {
      vs[k] = value_stencil(fu[k], at_lattice(fu[k]));
      ss[k] = slope_stencil<A>(at_lattice(fu[k]));
      base[k] = mu[k] - win_origin<kLast>(wx, k);
      gbase[k] = -win_origin<kLast>(wg, k);
    }
    for (Counter3 q(it.Tn, r.slot, r.slots); q.more(); q.next()) {
      int o[3];
      I off = 0;
      for (int k = 0; k < 3; ++k) {
        o[k] = it.o0[k] + q.i[k];
        off += static_cast<I>(o[k]) * static_cast<I>(geo.ax[k].sy);
      }
      const A gv = g_tile ? gr(o[0] + gbase[0], o[1] + gbase[1], o[2] + gbase[2])
                          : load<A>(gc + off);
      A d[3];
      if (x_in) {
        int kk[3];
        for (int k = 0; k < 3; ++k) kk[k] = o[k] * geo.ax[k].t + base[k];
        for (int k = 0; k < 3; ++k) {
          if (!geo.ax[k].present) {
            d[k] = A(0);
            continue;
          }
          Stencil<A> s3[3] = {vs[0], vs[1], vs[2]};
          s3[k] = ss[k];
          d[k] = tensor3<A>(s3, kk, xr);
        }
      } else {
        fallback_deriv<P, A>(xc, geo.ax, o, mu, fu, d);
      }
      for (int k = 0; k < 3; ++k) sums[k] += gv * d[k];
    }
  }
};

// ds[n, c, a]: the partial sums of sample n's `parts` tiles in order; a
// channel whose shift is NaN gets NaN (shift_core.h, the NaN rule).
template <typename A>
JS_HD void finish_shift_grad(const Geometry& geo, const A* partial, int64_t parts, const A* f,
                             A* ds, int64_t i) {
  const int64_t k = i % 3, c = (i / 3) % geo.C, n = i / (3 * geo.C);
  A acc = A(0);
  for (int64_t t = 0; t < parts; ++t) acc += gld(partial + ((n * parts + t) * geo.C + c) * 3 + k);
  const A* fr = f + table_row(geo, n, c) * 3;
  const A fv[3] = {gld(fr), gld(fr + 1), gld(fr + 2)};
  if (nan_shift(fv)) acc = nan_value(fv);
  gst(ds + i, acc);
}

}  // namespace tiled
}  // namespace jaxshift
