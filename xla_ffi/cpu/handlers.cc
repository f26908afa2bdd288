// CPU XLA FFI handlers: decode and check the buffers (ffi/common.h), then run
// the kernels of cpu/kernels.h on XLA's intra-op thread pool.
#include <cstdint>

#include "cpu/isa.h"
#include "cpu/kernels.h"
#include "ffi/common.h"

namespace jaxshift {
namespace {

ffi::Error ForwardImpl(ffi::ThreadPool pool, ffi::AnyBuffer x, ffi::AnyBuffer m, ffi::AnyBuffer f,
                       ffi::Result<ffi::AnyBuffer> y, int64_t padding, bool channels_last,
                       ffi::Span<const int64_t> strides, ffi::Span<const int64_t> present,
                       bool move) {
  return forward_call(x, m, f, *y, padding, channels_last, strides, present,
                      [&](const Options& opt, const Geometry& geo) -> ffi::Error {
    const Tables tab{m.typed_data<int32_t>(), f.untyped_data()};
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
