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

// Row `row` of the tables (table_row's index).
template <typename A>
ChannelTables<A> tables_row(const Tables& tab, int64_t row) {
  const A* f = static_cast<const A*>(tab.f);
  ChannelTables<A> r;
  for (int a = 0; a < 3; ++a) {
    r.m[a] = tab.m[row * 3 + a];
    r.f[a] = f[row * 3 + a];
  }
  return r;
}

template <typename A>
ChannelTables<A> channel_tables(const Geometry& geo, const Tables& tab, int64_t n, int64_t c) {
  return tables_row<A>(tab, table_row(geo, n, c));
}

}  // namespace jaxshift
