// The instruction sets the CPU kernel's SIMD loops are compiled for.
//
// The library is built for the baseline of its architecture, so one build
// runs on any x86-64 CPU. On x86-64 each SIMD loop of cpu/staged.h is
// compiled a second time for AVX2 + FMA + F16C (JAXSHIFT_ISA_VERSIONS): a
// `flatten`ed copy of the loop, so everything it calls is compiled for that
// target and no AVX2 code leaks into the baseline path. The loops depend on
// the storage type and the lattice tests only, never on the padding, so each
// is compiled once per type, not once per (type, padding).
#pragma once

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#if defined(__unix__)
#include <unistd.h>
#endif

// JAXSHIFT_BASELINE_ONLY (the sanitized library, CMakeLists.txt): the
// baseline alone, no AVX2 copies.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(JAXSHIFT_BASELINE_ONLY)
#define JAXSHIFT_X86_AVX2 1
#endif

namespace jaxshift {

enum class Isa : int { kBase = 0, kAvx2 = 1 };

// The widest instruction set this CPU offers.
inline Isa best_isa() {
#if defined(JAXSHIFT_X86_AVX2)
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
      __builtin_cpu_supports("f16c")) {
    return Isa::kAvx2;
  }
#endif
  return Isa::kBase;
}

// The instruction set the SIMD loops run: the best this CPU has, unless
// JAXSHIFT_CPU_ISA=baseline was set at the first call, or select_isa() chose.
inline std::atomic<int>& isa_in_use() {
  static std::atomic<int> isa{[] {
    const char* env = std::getenv("JAXSHIFT_CPU_ISA");
    if (env != nullptr && std::strcmp(env, "baseline") == 0) return static_cast<int>(Isa::kBase);
    return static_cast<int>(best_isa());
  }()};
  return isa;
}

inline Isa current_isa() { return static_cast<Isa>(isa_in_use().load(std::memory_order_relaxed)); }

// Selects the instruction set (capped at what the CPU has) and returns it;
// `request` < 0 only returns it. Exported for the tests (shift_cpu.cc).
inline int select_isa(int request) {
  if (request >= 0) {
    const int best = static_cast<int>(best_isa());
    isa_in_use().store(request < best ? request : best);
  }
  return isa_in_use().load();
}

// Sets a setting the tests and benchmarks change at run time (`request` >=
// 0) and returns the value in use.
inline int64_t set_or_ask(std::atomic<int64_t>& setting, int64_t request) {
  if (request >= 0) setting.store(request);
  return setting.load();
}

// The budget of the column tiles where they pay: 32 KB of a 48 KB L1.
inline constexpr int64_t kTileBudget = int64_t{32} << 10;

// The column tiles' default budget on this CPU: kTileBudget where its L1
// data cache holds 48 KB or more, else none. Measured on two CPUs
// (benchmarks/NOTES.md): an Intel Xeon with a 48 KB L1, where the tiles
// took 0.67-0.93x the untiled time (v16), and an AMD EPYC (Zen 3) with a
// 32 KB L1, where they took 1.0-1.6x in every row measured (v39): there a
// tile of 16 columns, the least, already fills L1, and pays its extra column
// and first rows for nothing. Unknown sizes (sysconf's 0 or -1): no tiles.
inline int64_t default_tile_budget() {
#if defined(_SC_LEVEL1_DCACHE_SIZE)
  return sysconf(_SC_LEVEL1_DCACHE_SIZE) >= (48 << 10) ? kTileBudget : 0;
#else
  return 0;
#endif
}

// The L1 budget, in bytes, of the channel lanes' column tiles
// (cpu/lanes.h, tile_columns); 0: no tiles. Set through
// tile_budget(), exported for the tests and benchmarks/column_tiles.py.
inline std::atomic<int64_t>& tile_budget_in_use() {
  static std::atomic<int64_t> budget{default_tile_budget()};
  return budget;
}

// Sets the column tiles' budget (`request` >= 0) and returns the one in use.
inline int64_t tile_budget(int64_t request) { return set_or_ask(tile_budget_in_use(), request); }

// Whether the channel lanes' 2-D float32 forward takes window rows where a
// group's offsets allow (cpu/lanes.h, window_row; 0: gathers everywhere, as
// before v40). Set through windows(), exported for the tests and
// benchmarks/column_tiles.py --setting windows.
inline std::atomic<int64_t>& windows_in_use() {
  static std::atomic<int64_t> on{1};
  return on;
}

// Turns the window rows on (1) or off (0) (`request` >= 0) and returns the
// setting in use.
inline int64_t windows(int64_t request) { return set_or_ask(windows_in_use(), request); }

// On a lambda (after its parameters) that a version's loops call: inlined
// wherever it is called. `flatten` (below) left some large loop bodies of
// the AVX2 versions out of line, compiled for the baseline (slow, and a
// vector returned across them breaks the ABI: a crash);
// tests/test_ffi.py::test_avx2_versions_inline_their_loops lists any
// out-of-line AVX2 code in the library.
#define JAXSHIFT_INLINE __attribute__((always_inline))

// Defines name(isa, args...), which runs name_impl(args...) compiled for
// `isa`: the baseline as written or, on x86-64, a copy compiled for AVX2 +
// FMA + F16C (float16 conversions: staged.h widen8, narrow8) with everything
// it calls inlined. The copy is a template over the
// argument types only, so it is instantiated once per distinct signature.
#if defined(JAXSHIFT_X86_AVX2)
#define JAXSHIFT_ISA_VERSIONS(name)                                                          \
  template <typename... Args>                                                               \
  __attribute__((noinline, flatten, target("avx2,fma,f16c"))) void name##_avx2(Args... args) { \
    name##_impl<Isa::kAvx2>(args...);                                                       \
  }                                                                                         \
  template <typename... Args>                                                               \
  void name(Isa isa, Args... args) {                                                        \
    if (isa == Isa::kAvx2) {                                                                \
      name##_avx2(args...);                                                                 \
    } else {                                                                                \
      name##_impl<Isa::kBase>(args...);                                                     \
    }                                                                                       \
  }
#else
#define JAXSHIFT_ISA_VERSIONS(name)                                                          \
  template <typename... Args>                                                               \
  void name(Isa, Args... args) {                                                            \
    name##_impl<Isa::kBase>(args...);                                                       \
  }
#endif

}  // namespace jaxshift
