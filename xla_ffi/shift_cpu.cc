// CPU XLA FFI handlers: forward and fused backward of the shift, parallel over
// XLA's intra-op thread pool. Each handler decodes and checks its buffers,
// then loops over shift_math.h.
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
#include <type_traits>
#include <vector>

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
  const int64_t helpers = std::min<int64_t>(pool.num_threads(), n - 1);
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

// forward_walk with a branch-free interior: where every column the walk reads
// lies inside the array, pad_index is the identity and the row pointers are
// fixed, so the loop has no padding test and no loop-carried value, and the
// compiler vectorises it for contiguous (NCHW) rows. Same arithmetic as
// forward_walk; the edges, lattice rows and short rows go through it.
template <int P, typename A, typename T>
void forward_walk_fast(const T* x, T* y, const Axis& fa, const Axis& wa, int of, int mf, A ff,
                       int mw, A fw, bool move) {
  const int Lo = wa.Lo;
  const int lo = std::min(std::max(-mw, 0), Lo);
  const int hi = std::max(std::min(wa.L - 1 - mw, Lo), lo);  // reads o+mw, o+mw+1
  const int kf = of + mf;
  const int r0 = pad_index<P>(kf, fa.L);
  const int r1 = ff != A(0) ? pad_index<P>(kf + 1, fa.L) : -1;
  const bool fast = hi - lo >= 8 && r0 >= 0 && (move || (r1 >= 0 && fw != A(0)));
  if (!fast) {
    forward_walk<P, A>(x, y, fa, wa, of, 0, Lo, mf, ff, mw, fw, move);
    return;
  }
  forward_walk<P, A>(x, y, fa, wa, of, 0, lo, mf, ff, mw, fw, move);
  forward_walk<P, A>(x, y, fa, wa, of, hi, Lo, mf, ff, mw, fw, move);
  const int64_t sx = wa.sx, sy = wa.sy;
  const T* x0 = x + r0 * fa.sx + static_cast<int64_t>(mw) * sx;
  T* yo = y + static_cast<int64_t>(of) * fa.sy;
  if (move) {
    for (int o = lo; o < hi; ++o) yo[o * sy] = x0[o * sx];
    return;
  }
  const T* x1 = x + r1 * fa.sx + static_cast<int64_t>(mw) * sx;
  const A wf0 = A(1) - ff, ww0 = A(1) - fw;
  auto interior = [&](auto ux, auto uy) {  // element strides; compile-time 1 for NCHW
    for (int o = lo; o < hi; ++o) {
      A p = A(0), q = A(0);  // forward_walk's col(o + mw) and col(o + mw + 1)
      p += wf0 * load<A>(x0 + o * ux);
      p += ff * load<A>(x1 + o * ux);
      q += wf0 * load<A>(x0 + (o + 1) * ux);
      q += ff * load<A>(x1 + (o + 1) * ux);
      store(yo + o * uy, ww0 * p + fw * q);
    }
  };
  using One = std::integral_constant<int64_t, 1>;
  if (sx == 1 && sy == 1) {
    interior(One{}, One{});
  } else {
    interior(sx, sy);
  }
}

struct Forward {
  template <typename T, int P>
  static ffi::Error Run(ffi::ThreadPool& pool, const Geometry& geo, const void* xv, Tables tab,
                        void* yv, bool move) {
    using A = typename Acc<T>::type;
    const T* x = static_cast<const T*>(xv);
    T* y = static_cast<T*>(yv);
    const Axis* ax = geo.ax;
    if (walkable(geo)) {  // rows of axis 1, walking axis 2
      parallel_for(pool, geo.N * ax[1].Lo, [&](int64_t task) {
        const int64_t n = task / ax[1].Lo;
        const int row = static_cast<int>(task % ax[1].Lo);
        for (int64_t c = 0; c < geo.C; ++c) {
          const ChannelTables<A> ct = channel_tables<A>(geo, tab, n, c);
          const T* xc = x + n * geo.sx_n + c * geo.sx_c;
          T* yc = y + n * geo.sy_n + c * geo.sy_c;
          if (is_nan(ct.f[1]) || is_nan(ct.f[2])) {
            for (int o = 0; o < ax[2].Lo; ++o) store(yc + row * ax[1].sy + o * ax[2].sy, ct.f[1] + ct.f[2]);
            continue;
          }
          forward_walk_fast<P, A>(xc, yc, ax[1], ax[2], row, ct.m[1], ct.f[1], ct.m[2], ct.f[2],
                                  move);
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
        const ChannelTables<A> r = channel_tables<A>(geo, rounded, n, c);
        const ChannelTables<A> u = channel_tables<A>(geo, exact, n, c);
        const T* xc = x + n * geo.sx_n + c * geo.sx_c;
        const T* gc = g + n * geo.sy_n + c * geo.sy_c;
        T* dc = dx + n * geo.sx_n + c * geo.sx_c;
        A d[2] = {A(0), A(0)};
        if (is_nan(r.f[1]) || is_nan(r.f[2]) || is_nan(u.f[1]) || is_nan(u.f[2])) {
          const A nan = r.f[1] + r.f[2] + u.f[1] + u.f[2];
          for (int i = 0; i < ax[2].L; ++i) store(dc + row * ax[1].sx + i * ax[2].sx, nan);
        } else {
          backward_walk<P, A>(xc, gc, dc, ax, 1, 2, row, 0, ax[2].L, r.m, r.f, u.m, u.f,
                              shift_grad, d);
        }
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
