// What both CUDA kernel families (cuda/walk/, cuda/tiled/) share, written once
// for nvcc and for the host emulator (emulator/): the launch constants, the
// phased-kernel contract, the tracked memory accesses, and the two small
// kernels that end a backward (the shift gradient's finish, a zero fill).
//
// A phased kernel is a struct K with
//   struct Args { <plan> plan; ... };  plan.items, plan.grid, plan.smem
//   static constexpr int kPhases; kName; bool kIndex64;
//   static void phase(int ph, const Args&, int64_t item, int tid, unsigned char* smem);
// On the GPU (cuda/runtime.cuh, phased_kernel) block b of plan.grid blocks of
// kThreads threads runs items b, b + grid, ... and for each item every phase
// with a block barrier after it; the emulator runs the same loops with every
// thread of a phase in turn. State that crosses a barrier lives in shared
// memory, never in a thread's registers (the emulator would lose it, and so
// does the GPU if a thread leaves a phase early). Every memory access goes
// through the tracked functions below (gld/gst/sld/sst and core/float16.h's
// load/store), which the emulator checks (bounds, alignment, shared-memory
// races and reads of unwritten shared memory) and records for the
// memory-access model. Host-compilable: no CUDA runtime here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "core/device.h"
#include "core/float16.h"
#include "core/geometry.h"
#include "core/partials.h"

namespace jaxshift {
namespace phased {

constexpr int kThreads = 256;                 // threads per block, every kernel
constexpr int kLanes = 32;                    // a warp; 2-D blocks are kLanes x kRows
constexpr int kRows = kThreads / kLanes;      // (tx = tid % kLanes, ty = tid / kLanes)
constexpr int64_t kMaxGrid = int64_t{1} << 24;  // blocks launched at most; items loop

// Whether offsets below n may use 32-bit index math (a margin of 2^24 for the
// taps and halos around them); every kernel of both families uses this bound.
inline bool fits_int32(int64_t n) { return n < (int64_t{1} << 31) - (int64_t{1} << 24); }

// The launch of a kernel whose items need no other plan: `items` items,
// `smem` bytes of shared memory per block.
struct Launch {
  int64_t items, grid;
  size_t smem;
};
inline Launch launch_of(int64_t items, size_t smem) {
  return Launch{items, items < kMaxGrid ? items : kMaxGrid, smem};
}

// A kernel type as a value (launch code choosing among instances).
template <class K>
struct KernelTag {
  using type = K;
};

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

// The shift tables of sample n, channel c (core/geometry.h, table_row).
template <typename A>
JS_HD void load_tables(const Geometry& geo, const int32_t* m, const A* f, int64_t n, int64_t c,
                       int* mo, A* fo) {
  const int64_t row = table_row(geo, n, c) * 3;
  for (int a = 0; a < 3; ++a) {
    mo[a] = gld(m + row + a);
    fo[a] = gld(f + row + a);
  }
}

// ---------------------------------------------------------------------------
// The kernels that end a backward: one thread per element of ds.
template <typename A>
struct FinishShiftGrad {
  struct Args {
    Launch plan;
    Geometry geo;
    const A* partial;  // (N, parts, C, 3)
    int64_t parts;
    const A* f;        // exact tables
    A* ds;
  };
  static constexpr int kPhases = 1;
  static constexpr const char* kName = "shift_grad_finish";
  static constexpr bool kIndex64 = false;
  JS_HD static void phase(int, const Args& a, int64_t item, int tid, unsigned char*) {
    const int64_t i = item * kThreads + tid;
    if (i < a.geo.N * a.geo.C * 3) finish_shift_grad(a.geo, a.partial, a.parts, a.f, a.ds, i);
  }
};

template <typename A>
struct FillZero {
  struct Args {
    Launch plan;
    A* p;
    int64_t count;
  };
  static constexpr int kPhases = 1;
  static constexpr const char* kName = "fill_zero";
  static constexpr bool kIndex64 = false;
  JS_HD static void phase(int, const Args& a, int64_t item, int tid, unsigned char*) {
    const int64_t i = item * kThreads + tid;
    if (i < a.count) gst(a.p + i, A(0));
  }
};

// ds from the partial sums, or zero where the call wants no shift gradient
// (`partial` null), through launcher `l` (cuda/runtime.cuh, emulator/).
template <typename A, class L>
auto finish(L& l, const Geometry& geo, const A* partial, int64_t parts, const A* f, A* ds) {
  const int64_t n = geo.N * geo.C * 3;
  const Launch plan = launch_of((n + kThreads - 1) / kThreads, 0);
  if (!partial) return l.template launch<FillZero<A>>(typename FillZero<A>::Args{plan, ds, n});
  return l.template launch<FinishShiftGrad<A>>(
      typename FinishShiftGrad<A>::Args{plan, geo, partial, parts, f, ds});
}

}  // namespace phased
}  // namespace jaxshift
