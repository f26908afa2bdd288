// The shift tables of a CPU call, and one channel's row of them.
#pragma once

#include <cstdint>

#include "core/geometry.h"

namespace jaxshift {

// The (G, C, 3) tables as the handler received them; f has the accumulation
// type of the call.
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
  const int64_t base = table_row(geo, n, c) * 3;
  const A* f = static_cast<const A*>(tab.f);
  ChannelTables<A> r;
  for (int a = 0; a < 3; ++a) {
    r.m[a] = tab.m[base + a];
    r.f[a] = f[base + a];
  }
  return r;
}

}  // namespace jaxshift
