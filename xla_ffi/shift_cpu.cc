// CPU XLA FFI handlers: decode and check the buffers (ffi_common.h), then run
// the kernels of cpu/kernels.h on XLA's intra-op thread pool.
#include <cstdint>

#include "cpu/isa.h"
#include "cpu/kernels.h"
#include "ffi_common.h"

namespace jaxshift {
namespace {

struct Forward {
  template <typename T, int P>
  static ffi::Error Run(ffi::ThreadPool& pool, const Geometry& geo, const void* x, Tables tab,
                        void* y, bool move) {
    run_forward<T, P>(pool, geo, static_cast<const T*>(x), tab, static_cast<T*>(y), move);
    return ffi::Error::Success();
  }
};

struct Backward {
  template <typename T, int P>
  static ffi::Error Run(ffi::ThreadPool& pool, const Geometry& geo, const void* x, const void* g,
                        Tables rounded, Tables exact, bool shift_grad, void* dx, void* ds) {
    run_backward<T, P>(pool, geo, static_cast<const T*>(x), static_cast<const T*>(g), rounded,
                       exact, shift_grad, static_cast<T*>(dx),
                       static_cast<typename Acc<T>::type*>(ds));
    return ffi::Error::Success();
  }
};

ffi::Error ForwardImpl(ffi::ThreadPool pool, ffi::AnyBuffer x, ffi::AnyBuffer m, ffi::AnyBuffer f,
                       ffi::Result<ffi::AnyBuffer> y, int64_t padding, bool channels_last,
                       ffi::Span<const int64_t> strides, ffi::Span<const int64_t> present,
                       bool move) {
  return forward_call(x, m, f, *y, padding, channels_last, strides, present,
                      [&](const Options& opt, const Geometry& geo) -> ffi::Error {
    Tables tab{m.typed_data<int32_t>(), f.untyped_data()};
    return dispatch<Forward>(x.element_type(), opt.padding, pool, geo, x.untyped_data(), tab,
                             y->untyped_data(), move);
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
    Tables rounded{m_r.typed_data<int32_t>(), f_r.untyped_data()};
    Tables exact{m_u.typed_data<int32_t>(), f_u.untyped_data()};
    return dispatch<Backward>(x.element_type(), opt.padding, pool, geo, x.untyped_data(),
                              g.untyped_data(), rounded, exact, shift_grad, dx->untyped_data(),
                              ds->untyped_data());
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

// For the tests: selects the instruction set of the staged loops (0: baseline,
// 1: AVX2 + FMA, capped at what the CPU has; < 0 only asks) and returns the
// one in use.
extern "C" __attribute__((visibility("default"))) int jaxshift_cpu_select_isa(int request) {
  return jaxshift::select_isa(request);
}
