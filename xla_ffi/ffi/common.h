// FFI glue shared by every library's handlers (CPU, both CUDA families, the
// emulator): buffer checks, the geometry of a call, the one dispatch over
// dtype and padding, the handler signatures and exports. The math is in
// core/; Python (jaxshift/_src/layout.py) owns shapes and layouts, and these
// checks only make sure that what arrives is what it promised.
#pragma once

#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>

#include "core/float16.h"
#include "core/geometry.h"
#include "core/padding.h"
#include "xla/ffi/api/ffi.h"

namespace jaxshift {

namespace ffi = xla::ffi;

// Attributes common to both handlers.
struct Options {
  int padding;
  bool channels_last;
  int t[3];         // canonical strides: min(stride, L), 1 where absent
  bool present[3];  // which canonical axes are spatial axes of x
};

inline ffi::Error invalid(const std::string& msg) {
  return ffi::Error::InvalidArgument("jaxshift: " + msg);
}

inline ffi::Error parse_options(int64_t padding, bool channels_last,
                                ffi::Span<const int64_t> strides,
                                ffi::Span<const int64_t> present, Options* opt) {
  if (padding < 0 || padding >= kNumPaddings) return invalid("unknown padding code");
  if (strides.size() != 3) return invalid("`strides` must have 3 entries");
  if (present.size() != 3) return invalid("`present` must have 3 entries");
  opt->padding = static_cast<int>(padding);
  opt->channels_last = channels_last;
  for (int a = 0; a < 3; ++a) {
    // Python passes min(stride, L), at most kMaxAxisLength.
    if (strides[a] < 1 || strides[a] > kMaxAxisLength) return invalid("stride out of range");
    opt->t[a] = static_cast<int>(strides[a]);
    opt->present[a] = present[a] != 0;
  }
  return ffi::Error::Success();
}

// Builds the geometry from x (input side) and y (output side) buffers, both
// rank 5 in the canonical layout, and checks the tables' shape (G, C, 3).
inline ffi::Error make_geometry(ffi::AnyBuffer::Dimensions xd, ffi::AnyBuffer::Dimensions yd,
                                ffi::AnyBuffer::Dimensions md, const Options& opt,
                                Geometry* geo) {
  if (xd.size() != 5 || yd.size() != 5) return invalid("x and y must be rank 5");
  const int c_axis = opt.channels_last ? 4 : 1;
  const int s0 = opt.channels_last ? 1 : 2;
  geo->N = xd[0];
  geo->C = xd[c_axis];
  if (yd[0] != geo->N || yd[c_axis] != geo->C) return invalid("x/y batch or channels differ");
  if (md.size() != 3 || md[1] != geo->C || md[2] != 3) return invalid("tables must be (G, C, 3)");
  const int64_t G = md[0];
  if (G < 1 || geo->N % G != 0) return invalid("batch not divisible by shift groups");
  geo->per_group = geo->N / G;
  for (int a = 0; a < 3; ++a) {
    const int64_t L = xd[s0 + a], Lo = yd[s0 + a];
    if (L < 1 || L > kMaxAxisLength) return invalid("spatial length out of range");
    if (Lo != (L + opt.t[a] - 1) / opt.t[a]) return invalid("output length != ceil(L/stride)");
    if (!opt.present[a] && (L != 1 || opt.t[a] != 1))
      return invalid("an absent axis must have length 1 and stride 1");
    geo->ax[a].L = static_cast<int>(L);
    geo->ax[a].Lo = static_cast<int>(Lo);
    geo->ax[a].t = opt.t[a];
    geo->ax[a].present = opt.present[a];
  }
  // Element strides of row-major buffers.
  int64_t sx[5], sy[5];
  sx[4] = sy[4] = 1;
  for (int d = 3; d >= 0; --d) {
    sx[d] = sx[d + 1] * xd[d + 1];
    sy[d] = sy[d + 1] * yd[d + 1];
  }
  geo->sx_n = sx[0];
  geo->sy_n = sy[0];
  geo->sx_c = sx[c_axis];
  geo->sy_c = sy[c_axis];
  for (int a = 0; a < 3; ++a) {
    geo->ax[a].sx = sx[s0 + a];
    geo->ax[a].sy = sy[s0 + a];
  }
  return ffi::Error::Success();
}

// An integer x (2, 4 or 8 bytes) is moved as the float storage of its
// width: a move copies bits and does no arithmetic, so its elements come
// through unchanged (Python widens 1-byte integers and bool to 2 bytes).
inline ffi::DataType storage_of(ffi::DataType t) {
  switch (t) {
    case ffi::DataType::S16: case ffi::DataType::U16: return ffi::DataType::F16;
    case ffi::DataType::S32: case ffi::DataType::U32: return ffi::DataType::F32;
    case ffi::DataType::S64: case ffi::DataType::U64: return ffi::DataType::F64;
    default: return t;
  }
}
inline bool is_integer(ffi::DataType t) { return storage_of(t) != t; }

inline ffi::DataType acc_of(ffi::DataType t) {
  return storage_of(t) == ffi::DataType::F64 ? ffi::DataType::F64 : ffi::DataType::F32;
}

inline ffi::Error check_tables(const ffi::AnyBuffer& m, const ffi::AnyBuffer& f,
                               ffi::DataType want) {
  if (m.element_type() != ffi::DataType::S32) return invalid("offset table must be int32");
  if (f.element_type() != want) return invalid("fraction table has the wrong dtype");
  if (m.dimensions().size() != 3 || f.dimensions().size() != 3) return invalid("tables rank");
  for (int d = 0; d < 3; ++d) {
    if (m.dimensions()[d] != f.dimensions()[d]) return invalid("table shapes differ");
  }
  return ffi::Error::Success();
}

// Checks every buffer of a forward call and fills `opt` and `geo`.
inline ffi::Error prepare_forward(const ffi::AnyBuffer& x, const ffi::AnyBuffer& m,
                                  const ffi::AnyBuffer& f, const ffi::AnyBuffer& y,
                                  int64_t padding, bool channels_last,
                                  ffi::Span<const int64_t> strides,
                                  ffi::Span<const int64_t> present, bool move, Options* opt,
                                  Geometry* geo) {
  if (auto e = parse_options(padding, channels_last, strides, present, opt); e.failure())
    return e;
  if (x.element_type() != y.element_type()) return invalid("x and y dtypes differ");
  if (is_integer(x.element_type()) && !move)
    return invalid("an integer x takes only moves (move=True)");
  if (auto e = check_tables(m, f, acc_of(x.element_type())); e.failure()) return e;
  return make_geometry(x.dimensions(), y.dimensions(), m.dimensions(), *opt, geo);
}

// Checks every buffer of a backward call and fills `opt` and `geo`.
inline ffi::Error prepare_backward(const ffi::AnyBuffer& x, const ffi::AnyBuffer& g,
                                   const ffi::AnyBuffer& m_r, const ffi::AnyBuffer& f_r,
                                   const ffi::AnyBuffer& m_u, const ffi::AnyBuffer& f_u,
                                   const ffi::AnyBuffer& dx, const ffi::AnyBuffer& ds,
                                   int64_t padding, bool channels_last,
                                   ffi::Span<const int64_t> strides,
                                   ffi::Span<const int64_t> present, Options* opt,
                                   Geometry* geo) {
  if (auto e = parse_options(padding, channels_last, strides, present, opt); e.failure())
    return e;
  if (is_integer(x.element_type())) return invalid("the backward takes a floating x");
  const ffi::DataType acc = acc_of(x.element_type());
  if (g.element_type() != x.element_type() || dx.element_type() != x.element_type())
    return invalid("x, g and dx dtypes differ");
  if (auto e = check_tables(m_r, f_r, acc); e.failure()) return e;
  if (auto e = check_tables(m_u, f_u, acc); e.failure()) return e;
  for (int d = 0; d < 3; ++d) {
    if (m_r.dimensions()[d] != m_u.dimensions()[d]) return invalid("table shapes differ");
  }
  if (auto e = make_geometry(x.dimensions(), g.dimensions(), m_r.dimensions(), *opt, geo);
      e.failure())
    return e;
  if (dx.dimensions().size() != 5) return invalid("dx must have the shape of x");
  for (int d = 0; d < 5; ++d) {
    if (dx.dimensions()[d] != x.dimensions()[d]) return invalid("dx must have the shape of x");
  }
  if (ds.element_type() != acc || ds.dimensions().size() != 3 || ds.dimensions()[0] != geo->N ||
      ds.dimensions()[1] != geo->C || ds.dimensions()[2] != 3)
    return invalid("ds must be (N, C, 3) in the accumulation dtype");
  return ffi::Error::Success();
}

// The body of every handler: checks the buffers, and unless the call is
// empty returns run(opt, geo).
template <typename Run>
ffi::Error forward_call(const ffi::AnyBuffer& x, const ffi::AnyBuffer& m, const ffi::AnyBuffer& f,
                        const ffi::AnyBuffer& y, int64_t padding, bool channels_last,
                        ffi::Span<const int64_t> strides, ffi::Span<const int64_t> present,
                        bool move, const Run& run) {
  Options opt;
  Geometry geo;
  if (auto e = prepare_forward(x, m, f, y, padding, channels_last, strides, present, move, &opt,
                               &geo);
      e.failure())
    return e;
  if (y.element_count() == 0) return ffi::Error::Success();
  return run(opt, geo);
}

template <typename Run>
ffi::Error backward_call(const ffi::AnyBuffer& x, const ffi::AnyBuffer& g,
                         const ffi::AnyBuffer& m_r, const ffi::AnyBuffer& f_r,
                         const ffi::AnyBuffer& m_u, const ffi::AnyBuffer& f_u,
                         const ffi::AnyBuffer& dx, const ffi::AnyBuffer& ds, int64_t padding,
                         bool channels_last, ffi::Span<const int64_t> strides,
                         ffi::Span<const int64_t> present, const Run& run) {
  Options opt;
  Geometry geo;
  if (auto e = prepare_backward(x, g, m_r, f_r, m_u, f_u, dx, ds, padding, channels_last,
                                strides, present, &opt, &geo);
      e.failure())
    return e;
  if (x.element_count() == 0) return ffi::Error::Success();
  return run(opt, geo);
}

// Calls fn(T{}) for the storage type T of `dtype` (an integer's:
// storage_of): the one dtype switch.
template <typename Fn>
ffi::Error with_dtype(ffi::DataType dtype, const Fn& fn) {
  switch (storage_of(dtype)) {
    case ffi::DataType::F32: return fn(float{});
    case ffi::DataType::F64: return fn(double{});
    case ffi::DataType::F16: return fn(Half{});
    case ffi::DataType::BF16: return fn(BFloat16{});
    default:
      return invalid("x must be float16, bfloat16, float32 or float64 (or, for a move, an "
                     "integer of 2, 4 or 8 bytes)");
  }
}

template <int P>
using PaddingT = std::integral_constant<int, P>;

// Calls fn(PaddingT<P>{}) for the padding code (core/padding.h,
// for_padding), or says that the code is unknown.
template <typename Fn>
ffi::Error with_padding(int padding, const Fn& fn) {
  if (padding < 0 || padding >= kNumPaddings) return invalid("unknown padding code");
  return for_padding(padding, fn);
}

// Calls fn(T{}, PaddingT<P>{}) for the call's dtype and padding: every
// handler's body is one generic lambda, `[&](auto t, auto p) { using T =
// decltype(t); constexpr int P = decltype(p)::value; ... }`.
template <typename Fn>
ffi::Error dispatch(ffi::DataType dtype, int padding, const Fn& fn) {
  return with_dtype(dtype, [&](auto t) {
    return with_padding(padding, [&](auto p) { return fn(t, p); });
  });
}

// The typed buffers of a call (core/geometry.h) from the handler's.
template <typename T>
ForwardBuffers<T> forward_buffers(const ffi::AnyBuffer& x, const ffi::AnyBuffer& m,
                                  const ffi::AnyBuffer& f, ffi::AnyBuffer& y) {
  using A = typename Acc<T>::type;
  return ForwardBuffers<T>{static_cast<const T*>(x.untyped_data()), m.typed_data<int32_t>(),
                           static_cast<const A*>(f.untyped_data()),
                           static_cast<T*>(y.untyped_data())};
}

template <typename T>
BackwardBuffers<T> backward_buffers(const ffi::AnyBuffer& x, const ffi::AnyBuffer& g,
                                    const ffi::AnyBuffer& m_r, const ffi::AnyBuffer& f_r,
                                    const ffi::AnyBuffer& m_u, const ffi::AnyBuffer& f_u,
                                    ffi::AnyBuffer& dx, ffi::AnyBuffer& ds) {
  using A = typename Acc<T>::type;
  return BackwardBuffers<T>{
      static_cast<const T*>(x.untyped_data()),  static_cast<const T*>(g.untyped_data()),
      m_r.typed_data<int32_t>(),                static_cast<const A*>(f_r.untyped_data()),
      m_u.typed_data<int32_t>(),                static_cast<const A*>(f_u.untyped_data()),
      static_cast<T*>(dx.untyped_data()),       static_cast<A*>(ds.untyped_data())};
}

// The handler signatures, after the platform's context arguments.
template <typename Binding>
auto forward_signature(Binding b) {
  return std::move(b).template Arg<ffi::AnyBuffer>()  // x
      .template Arg<ffi::AnyBuffer>()      // m: (G, C, 3) int32 offsets
      .template Arg<ffi::AnyBuffer>()      // f: (G, C, 3) fractions
      .template Ret<ffi::AnyBuffer>()      // y
      .template Attr<int64_t>("padding")
      .template Attr<bool>("channels_last")
      .template Attr<ffi::Span<const int64_t>>("strides")
      .template Attr<ffi::Span<const int64_t>>("present")
      .template Attr<bool>("move");
}

template <typename Binding>
auto backward_signature(Binding b) {
  return std::move(b).template Arg<ffi::AnyBuffer>()  // x
      .template Arg<ffi::AnyBuffer>()      // g: output cotangent
      .template Arg<ffi::AnyBuffer>()      // m, rounded (input gradient)
      .template Arg<ffi::AnyBuffer>()      // f, rounded
      .template Arg<ffi::AnyBuffer>()      // m, exact (shift gradient)
      .template Arg<ffi::AnyBuffer>()      // f, exact
      .template Ret<ffi::AnyBuffer>()      // dx
      .template Ret<ffi::AnyBuffer>()      // ds: (N, C, 3) per-sample sums
      .template Attr<int64_t>("padding")
      .template Attr<bool>("channels_last")
      .template Attr<ffi::Span<const int64_t>>("strides")
      .template Attr<ffi::Span<const int64_t>>("present")
      .template Attr<bool>("shift_grad");
}

}  // namespace jaxshift

// Exports `jaxshift_<family>_<which>_ptr()`, which jaxshift/_src/ffi.py calls
// through ctypes to get the handler (the handler symbols themselves are hidden).
#define JAXSHIFT_EXPORT_HANDLER(family, which)                               \
  extern "C" __attribute__((visibility("default"))) void*                    \
      jaxshift_##family##_##which##_ptr() {                                  \
    return reinterpret_cast<void*>(jaxshift_##which##_##family);             \
  }

// Exports what Python must agree with, asked of each library (ctypes) rather
// than read from these headers: `jaxshift_<library>_padding_name(code)` (the
// name of a padding code, null past the last) and
// `jaxshift_<library>_max_axis_length()` (tests/test_layout.py).
#define JAXSHIFT_EXPORT_CONTRACT(library)                                                    \
  extern "C" __attribute__((visibility("default"))) const char*                            \
      jaxshift_##library##_padding_name(int code) {                                        \
    return code >= 0 && code < ::jaxshift::kNumPaddings ? ::jaxshift::kPaddingNames[code]  \
                                                        : nullptr;                         \
  }                                                                                        \
  extern "C" __attribute__((visibility("default"))) int64_t                                \
      jaxshift_##library##_max_axis_length() {                                             \
    return ::jaxshift::kMaxAxisLength;                                                     \
  }
