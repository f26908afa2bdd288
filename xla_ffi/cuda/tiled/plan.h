// The tiled family's plan (cuda/tiled/kernels.h has the kernels): how a
// call is cut into items (one sample, a block of channels, a tile of
// outputs), the shared-memory layout of an item, each item's shift tables in
// shared memory, and the window of input positions its channels read.
// Shared by the GPU launcher and the emulator (cuda/tiled/launch.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "core/geometry.h"
#include "core/padding.h"
#include "core/stencils.h"
#include "cuda/phased.h"

namespace jaxshift {
namespace tiled {

using namespace ::jaxshift::phased;  // NOLINT: the family's vocabulary

constexpr size_t kSmemBudget = 96 * 1024;  // bytes per block: two blocks per SM on Hopper

// Launch geometry.
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

}  // namespace tiled
}  // namespace jaxshift
