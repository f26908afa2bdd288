// CPU XLA FFI handlers: decode and check the buffers (ffi/common.h), then run
// the kernels of cpu/kernels.h on XLA's intra-op thread pool.
#include <cstddef>
#include <cstdint>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "cpu/isa.h"
#include "cpu/kernels.h"
#include "ffi/common.h"

namespace jaxshift {
namespace {

// Asks Linux to back the whole 2 MiB pages inside an output the kernel is
// about to write in full with transparent huge pages (MADV_HUGEPAGE; a no-op
// where THP is off or the pages already exist). XLA's large outputs are
// often fresh mappings, and on first touch every 4 KiB page faults: on the
// 2-core VM a 32 MiB first write took 25 ms in 4 KiB pages against 5-14 ms
// in huge pages and 2.6 ms hot (benchmarks/NOTES.md, v8). Outputs under
// 4 MiB are left as they are.
void advise_huge_pages(void* data, size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t{2} << 20;
  if (bytes < 2 * kHuge) return;
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(data) + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(data) + bytes) & ~(kHuge - 1);
  madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);  // >= one huge page
#else
  (void)data;
  (void)bytes;
#endif
}

ffi::Error ForwardImpl(ffi::ThreadPool pool, ffi::AnyBuffer x, ffi::AnyBuffer m, ffi::AnyBuffer f,
                       ffi::Result<ffi::AnyBuffer> y, int64_t padding, bool channels_last,
                       ffi::Span<const int64_t> strides, ffi::Span<const int64_t> present,
                       bool move) {
  return forward_call(x, m, f, *y, padding, channels_last, strides, present, move,
                      [&](const Options& opt, const Geometry& geo) -> ffi::Error {
    const Tables tab{m.typed_data<int32_t>(), f.untyped_data()};
    advise_huge_pages(y->untyped_data(), y->size_bytes());
    const CallBytes bytes(static_cast<int64_t>(x.size_bytes() + y->size_bytes()));
    return dispatch(x.element_type(), opt.padding, [&](auto t, auto p) {
      using T = decltype(t);
      run_forward<T, decltype(p)::value>(pool, geo, static_cast<const T*>(x.untyped_data()), tab,
                                         static_cast<T*>(y->untyped_data()), move);
      return ffi::Error::Success();
    });
  });
}

ffi::Error BackwardImpl(ffi::ThreadPool pool, ffi::AnyBuffer x, ffi::AnyBuffer g,
                        ffi::AnyBuffer m_r, ffi::AnyBuffer f_r, ffi::AnyBuffer m_u,
                        ffi::AnyBuffer f_u, ffi::Result<ffi::AnyBuffer> dx,
                        ffi::Result<ffi::AnyBuffer> ds, int64_t padding, bool channels_last,
                        ffi::Span<const int64_t> strides, ffi::Span<const int64_t> present,
                        bool shift_grad) {
  return backward_call(x, g, m_r, f_r, m_u, f_u, *dx, *ds, padding, channels_last, strides,
                       present, [&](const Options& opt, const Geometry& geo) -> ffi::Error {
    const Tables rounded{m_r.typed_data<int32_t>(), f_r.untyped_data()};
    const Tables exact{m_u.typed_data<int32_t>(), f_u.untyped_data()};
    advise_huge_pages(dx->untyped_data(), dx->size_bytes());
    const CallBytes bytes(static_cast<int64_t>(x.size_bytes() + g.size_bytes() + dx->size_bytes()));
    return dispatch(x.element_type(), opt.padding, [&](auto t, auto p) {
      using T = decltype(t);
      run_backward<T, decltype(p)::value>(
          pool, geo, static_cast<const T*>(x.untyped_data()),
          static_cast<const T*>(g.untyped_data()), rounded, exact, shift_grad,
          static_cast<T*>(dx->untyped_data()),
          static_cast<typename Acc<T>::type*>(ds->untyped_data()));
      return ffi::Error::Success();
    });
  });
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
JAXSHIFT_EXPORT_CONTRACT(cpu)

// For the tests: selects the instruction set of the staged loops (0: baseline,
// 1: AVX2 + FMA, capped at what the CPU has; < 0 only asks) and returns the
// one in use.
extern "C" __attribute__((visibility("default"))) int jaxshift_cpu_select_isa(int request) {
  return jaxshift::select_isa(request);
}

// For the tests and benchmarks/column_tiles.py: sets the channel lanes'
// column tiles' L1 budget in bytes (0: no tiles; < 0 only asks) and returns
// the one in use.
extern "C" __attribute__((visibility("default"))) int64_t jaxshift_cpu_tile_budget(
    int64_t request) {
  return jaxshift::tile_budget(request);
}

// For the tests and benchmarks: turns the channel lanes' window rows on (1)
// or off (0; < 0 only asks) and returns the setting in use.
extern "C" __attribute__((visibility("default"))) int64_t jaxshift_cpu_windows(int64_t request) {
  return jaxshift::windows(request);
}

// For the tests: sets the bytes a task needs to count as long, whose caller
// leaves it to the pool's threads (cpu/parallel.h; 0: every task of two or
// more; < 0 only asks) and returns the one in use.
extern "C" __attribute__((visibility("default"))) int64_t jaxshift_cpu_long_task_bytes(
    int64_t request) {
  return jaxshift::long_task_bytes(request);
}
