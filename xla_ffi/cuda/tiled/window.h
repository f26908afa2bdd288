// The tiled family's access helpers: staging an item's window of x or g
// into shared memory through the padding (16-byte loads where the layout
// allows), and reading it back by window-local position.
#pragma once

#include <cstdint>
#include <cstring>

#include "core/float16.h"
#include "core/geometry.h"
#include "core/padding.h"
#include "cuda/phased.h"
#include "cuda/tiled/plan.h"

namespace jaxshift {
namespace tiled {

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

// Units a thread loads before it stores any: 4 x 16 bytes in flight per
// thread (staging would otherwise wait one memory latency per unit).
constexpr int kBatch = 4;

// Stores a staged 16-byte unit of channels-last values (widened to A, or
// for a move their raw bits, widen_bits).
template <typename T, typename A>
JS_HD void store_unit(A* d, const Vec16& v, int tid, bool bits) {
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
      for (int j = 0; j < 4; ++j) {
        q[j] = bits ? widen_bits<float>(e[h * 4 + j]) : widen<float>(e[h * 4 + j]);
      }
      memcpy(&o, q, 16);
      sst16(d + h * 4, o);
    }
  }
}

// Stages the window of `tensor` through padding Q into `win`: channels-last
// as [pixel][cb] values of A, channels-first as rows of T, w.pitch apart.
// `output_grid`: the tensor is on the output grid (g: lengths Lo, strides sy),
// else on the input grid (x: L, sx). `bits`: a move's window, channels-last
// values staged as their raw bits (WinReader::bits reads them).
template <int Q, typename T, typename I>
JS_HD void stage(const Geometry& geo, const Plan& p, const Win& w, const Item& it, int tid,
                 const T* tensor, bool output_grid, void* win, bool bits = false) {
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
          const int s = geo.ax[a].present ? pad_index<Q>(w.lo[a] + px.i[a], len[a]) : 0;
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
            sst(d + j, ok ? (bits ? load_bits<A>(s + j) : load<A>(s + j)) : A(0));
          }
        }
      }
      for (int j = 0; j < n; ++j) store_unit<T, A>(dst[j], v[j], tid, bits);
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
        const int s = geo.ax[a].present ? pad_index<Q>(w.lo[a] + u.i[a], len[a]) : 0;
        zero = zero || s < 0;
        off += static_cast<I>(s) * static_cast<I>(st[a]);
      }
      const T* row = src + off;
      const int q = w.qa + u.i[2] * p.V;
      T* d = out + (u.i[0] * w.size[1] + u.i[1]) * w.pitch + u.i[2] * p.V;
      if (p.V == 1) {
        const int s = zero ? -1 : pad_index<Q>(q, len[2]);
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
          const int s = pad_index<Q>(q + j, len[2]);
          e[j] = s < 0 ? zero_of<T>() : gld(row + static_cast<I>(s) * static_cast<I>(st[2]));
        }
        memcpy(&v[n], e, sizeof(T) * p.V);
      }
      dst[n++] = d;
    }
    for (int j = 0; j < n; ++j) sstn(dst[j], v[j], bytes);
  }
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
  // The same element's raw bits, of a window staged with `bits` (moves).
  JS_HD A bits(int j0, int j1, int j2) const {
    if (kLast) return (*this)(j0, j1, j2);
    return widen_bits<A>(sld(static_cast<const T*>(win) + (j0 * s1 + j1) * pitch + j2));
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

}  // namespace tiled
}  // namespace jaxshift
