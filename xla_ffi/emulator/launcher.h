// What the emulated handlers of both families share (emulator/walk.cc,
// emulator/tiled.cc; emulator/handlers.cc holds the library's C functions):
// the settings, the launcher of cuda/runtime.cuh on the emulator, and the
// handlers' bodies, generic over a family type.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "cuda/phased.h"
#include "emulator/emulator.h"
#include "ffi/common.h"

namespace jaxshift {
namespace emu {

struct Settings {
  bool record = false;
  // JAXSHIFT_EMULATED_INDEX64=1: 64-bit offsets on every shape (the path the
  // GPU takes past 2^31 elements per sample), from the first call.
  bool index64 = getenv("JAXSHIFT_EMULATED_INDEX64") && getenv("JAXSHIFT_EMULATED_INDEX64")[0] == '1';
  std::mutex mu;
  std::map<std::string, Stats> stats;
};
inline Settings& settings() {  // one instance for the whole library
  static Settings s;
  return s;
}

inline void add_stats(const std::string& name, const Stats& s) {
  Settings& st = settings();
  std::lock_guard<std::mutex> lock(st.mu);
  st.stats[name] += s;
}

inline Buffer buffer(const char* name, const ffi::AnyBuffer& b, bool writable) {
  const uintptr_t lo = reinterpret_cast<uintptr_t>(b.untyped_data());
  return Buffer{name, lo, lo + b.size_bytes(), writable};
}

// The launcher of cuda/runtime.cuh, on the emulator.
class EmuLauncher {
 public:
  EmuLauncher(std::vector<Buffer> buffers, bool record)
      : buffers_(std::move(buffers)), record_(record) {}

  void* scratch(size_t bytes) {
    owned_.emplace_back(bytes / 16 + 1);
    void* p = owned_.back().data();
    const uintptr_t lo = reinterpret_cast<uintptr_t>(p);
    buffers_.push_back(Buffer{"scratch", lo, lo + bytes, true});
    return p;
  }

  template <class K>
  ffi::Error launch(const typename K::Args& a) {
    const std::string name = std::string(K::kName) + (K::kIndex64 ? " (64-bit)" : "");
    Emulator e(buffers_, record_);
    try {
      Scope scope(&e);
      e.launch<K>(a);
    } catch (const EmuError& err) {
      return ffi::Error::Internal("jaxshift (cuda-emulated, " + name + "): " + err.what());
    }
    if (record_) add_stats(name, e.stats);
    return ffi::Error::Success();
  }

 private:
  std::vector<Buffer> buffers_;
  bool record_;
  std::vector<std::vector<phased::Vec16>> owned_;
};

struct Config {
  bool record, index64;
};
inline Config config() {
  Settings& st = settings();
  std::lock_guard<std::mutex> lock(st.mu);
  return Config{st.record, st.index64};
}

// The handlers of a family F: a type with static forward<T, P>(l, geo,
// buffers, channels_last, move_or_shift_grad, index64) and backward<T, P>
// (emulator/walk.cc, emulator/tiled.cc), each family in its own
// translation unit so that the two compile in parallel.
template <class F>
ffi::Error ForwardImpl(ffi::AnyBuffer x, ffi::AnyBuffer m, ffi::AnyBuffer f,
                       ffi::Result<ffi::AnyBuffer> y, int64_t padding, bool channels_last,
                       ffi::Span<const int64_t> strides, ffi::Span<const int64_t> present,
                       bool move) {
  return forward_call(x, m, f, *y, padding, channels_last, strides, present, move,
                      [&](const Options& opt, const Geometry& geo) -> ffi::Error {
    const Config cfg = config();
    EmuLauncher l({buffer("x", x, false), buffer("m", m, false), buffer("f", f, false),
                   buffer("y", *y, true)},
                  cfg.record);
    return dispatch(x.element_type(), opt.padding, [&](auto t, auto p) {
      using T = decltype(t);
      return F::template forward<T, decltype(p)::value>(
          l, geo, forward_buffers<T>(x, m, f, *y), channels_last, move, cfg.index64);
    });
  });
}

template <class F>
ffi::Error BackwardImpl(ffi::AnyBuffer x, ffi::AnyBuffer g, ffi::AnyBuffer m_r,
                        ffi::AnyBuffer f_r, ffi::AnyBuffer m_u, ffi::AnyBuffer f_u,
                        ffi::Result<ffi::AnyBuffer> dx, ffi::Result<ffi::AnyBuffer> ds,
                        int64_t padding, bool channels_last, ffi::Span<const int64_t> strides,
                        ffi::Span<const int64_t> present, bool shift_grad) {
  return backward_call(x, g, m_r, f_r, m_u, f_u, *dx, *ds, padding, channels_last, strides,
                       present, [&](const Options& opt, const Geometry& geo) -> ffi::Error {
    const Config cfg = config();
    EmuLauncher l({buffer("x", x, false), buffer("g", g, false), buffer("m_r", m_r, false),
                   buffer("f_r", f_r, false), buffer("m_u", m_u, false), buffer("f_u", f_u, false),
                   buffer("dx", *dx, true), buffer("ds", *ds, true)},
                  cfg.record);
    return dispatch(x.element_type(), opt.padding, [&](auto t, auto p) {
      using T = decltype(t);
      return F::template backward<T, decltype(p)::value>(
          l, geo, backward_buffers<T>(x, g, m_r, f_r, m_u, f_u, *dx, *ds), channels_last,
          shift_grad, cfg.index64);
    });
  });
}

}  // namespace emu
}  // namespace jaxshift

// Defines and exports the emulated targets of a CUDA family,
// jaxshift_{forward,backward}_cuda_emulated_<family>, from the family's own
// launch code (namespace jaxshift::<family>, cuda/<family>/launch.h, which the
// including file includes): emulator/walk.cc, emulator/tiled.cc.
#define JAXSHIFT_EMULATED_FAMILY(family)                                                    \
  namespace jaxshift {                                                                      \
  namespace emu {                                                                           \
  struct family##_family {                                                                  \
    template <typename T, int P>                                                            \
    static ffi::Error forward(EmuLauncher& l, const Geometry& geo, const ForwardBuffers<T>& b, \
                              bool last, bool move, bool index64) {                         \
      return ::jaxshift::family::forward<T, P>(l, geo, b, last, move, index64);             \
    }                                                                                       \
    template <typename T, int P>                                                            \
    static ffi::Error backward(EmuLauncher& l, const Geometry& geo,                         \
                               const BackwardBuffers<T>& b, bool last, bool shift_grad,     \
                               bool index64) {                                              \
      return ::jaxshift::family::backward<T, P>(l, geo, b, last, shift_grad, index64);      \
    }                                                                                       \
  };                                                                                        \
  }                                                                                         \
  }                                                                                         \
  XLA_FFI_DEFINE_HANDLER_SYMBOL(                                                            \
      jaxshift_forward_cuda_emulated_##family,                                              \
      jaxshift::emu::ForwardImpl<jaxshift::emu::family##_family>,                           \
      jaxshift::forward_signature(xla::ffi::Ffi::Bind()));                                  \
  XLA_FFI_DEFINE_HANDLER_SYMBOL(                                                            \
      jaxshift_backward_cuda_emulated_##family,                                             \
      jaxshift::emu::BackwardImpl<jaxshift::emu::family##_family>,                          \
      jaxshift::backward_signature(xla::ffi::Ffi::Bind()));                                 \
  JAXSHIFT_EXPORT_HANDLER(cuda_emulated_##family, forward)                                  \
  JAXSHIFT_EXPORT_HANDLER(cuda_emulated_##family, backward)
