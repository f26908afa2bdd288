// The v1 walk kernels' forward (the CUDA default until the tiled kernels
// have passed on a GPU), with the launch indices passed in, so that the
// emulator can run the same code for the memory-access model
// (benchmarks/access_model.py). A block is 32 x 8 threads. Channels-last:
// tx = channel, ty = row; each thread walks a whole row (consecutive lanes
// touch consecutive channels, but each lane reads the pixel its channel's
// offset picks). Channels-first: tx = column, ty = channel; each thread
// walks down its column.
#pragma once

#include <algorithm>
#include <cstdint>

#include "tiled.h"
#include "walks.h"

namespace jaxshift {
namespace v1 {

constexpr int kLanes = 32;     // threads along the contiguous axis
constexpr int kWalkRows = 8;   // threads along the other axis

struct Index {
  int64_t block[3], grid[3];
  int tx, ty;
};

// The table row of sample n, channel c (shift_core.h, table_row).
template <typename A>
JS_HD void load_tables(const Geometry& geo, const int32_t* m, const A* f, int64_t n, int64_t c,
                       int* mo, A* fo) {
  const int64_t row = table_row(geo, n, c);
  for (int a = 0; a < 3; ++a) {
    mo[a] = tiled::gld(m + row * 3 + a);
    fo[a] = tiled::gld(f + row * 3 + a);
  }
}

struct WalkJob {
  int64_t n, c;
  int fixed, begin, end;  // index on the fixed axis; range on the walking axis
  bool valid;
};

// Channels-last: grid (row blocks, channel blocks, samples).
JS_HD WalkJob job_channels_last(const Geometry& geo, const Index& id, int64_t n, bool out) {
  WalkJob j;
  j.n = n;
  j.c = id.block[1] * kLanes + id.tx;
  j.fixed = static_cast<int>(id.block[0] * kWalkRows + id.ty);
  j.begin = 0;
  j.end = out ? geo.ax[2].Lo : geo.ax[2].L;
  j.valid = j.c < geo.C && j.fixed < (out ? geo.ax[1].Lo : geo.ax[1].L);
  return j;
}

// Channels-first: grid (sample x channel blocks of kWalkRows, column blocks).
JS_HD WalkJob job_channels_first(const Geometry& geo, const Index& id, int64_t ncb, bool out) {
  const int64_t cblocks = (geo.C + kWalkRows - 1) / kWalkRows;
  WalkJob j;
  j.n = ncb / cblocks;
  j.c = (ncb % cblocks) * kWalkRows + id.ty;
  j.fixed = static_cast<int>(id.block[1] * kLanes + id.tx);
  j.begin = 0;
  j.end = out ? geo.ax[1].Lo : geo.ax[1].L;
  j.valid = j.c < geo.C && j.fixed < (out ? geo.ax[2].Lo : geo.ax[2].L);
  return j;
}

// The forward walk kernel's grid.
inline void forward_grid(const Geometry& geo, bool channels_last, int64_t* grid) {
  if (channels_last) {
    grid[0] = (geo.ax[1].Lo + kWalkRows - 1) / kWalkRows;
    grid[1] = (geo.C + kLanes - 1) / kLanes;
    grid[2] = std::min<int64_t>(geo.N, 65535);
  } else {
    grid[0] = std::min<int64_t>(geo.N * ((geo.C + kWalkRows - 1) / kWalkRows), int64_t{1} << 30);
    grid[1] = (geo.ax[2].Lo + kLanes - 1) / kLanes;
    grid[2] = 1;
  }
}

template <typename T, int P, bool kChannelsLast>
JS_HD void forward_walk_thread(const Geometry& geo, const T* x, const int32_t* m,
                               const typename Acc<T>::type* f, T* y, bool move, const Index& id) {
  using A = typename Acc<T>::type;
  const int64_t outer =
      kChannelsLast ? geo.N : geo.N * ((geo.C + kWalkRows - 1) / kWalkRows);
  const int64_t first = kChannelsLast ? id.block[2] : id.block[0];
  const int64_t step = kChannelsLast ? id.grid[2] : id.grid[0];
  for (int64_t u = first; u < outer; u += step) {
    const WalkJob j = kChannelsLast ? job_channels_last(geo, id, u, true)
                                    : job_channels_first(geo, id, u, true);
    if (!j.valid) continue;
    int mo[3];
    A fo[3];
    load_tables(geo, m, f, j.n, j.c, mo, fo);
    const T* xc = x + j.n * geo.sx_n + j.c * geo.sx_c;
    T* yc = y + j.n * geo.sy_n + j.c * geo.sy_c;
    const int af = kChannelsLast ? 1 : 2, aw = kChannelsLast ? 2 : 1;
    if (nan_shift(fo)) {
      for (int o = j.begin; o < j.end; ++o)
        store(yc + j.fixed * geo.ax[af].sy + o * geo.ax[aw].sy, nan_value(fo));
      continue;
    }
    forward_walk<P, A>(xc, yc, geo.ax[af], geo.ax[aw], j.fixed, j.begin, j.end, mo[af], fo[af],
                       mo[aw], fo[aw], move);
  }
}

}  // namespace v1
}  // namespace jaxshift
