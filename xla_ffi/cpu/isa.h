// The instruction sets the CPU kernel's SIMD loops are compiled for, and the
// SIMD pieces that depend on them (transposes, prefetch).
//
// The library is built for the baseline of its architecture, so one build
// runs on any x86-64 CPU. On x86-64 each SIMD loop of cpu/staged.h is
// compiled a second time for AVX2 + FMA (JAXSHIFT_ISA_VERSIONS): a
// `flatten`ed copy of the loop, so everything it calls is compiled for that
// target and no AVX2 code leaks into the baseline path. The loops depend on
// the storage type and the lattice tests only, never on the padding, so each
// is compiled once per type, not once per (type, padding).
#pragma once

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#include <xmmintrin.h>
#endif
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define JAXSHIFT_X86_AVX2 1
#endif

namespace jaxshift {

enum class Isa : int { kBase = 0, kAvx2 = 1 };

// The widest instruction set this CPU offers.
inline Isa best_isa() {
#if defined(JAXSHIFT_X86_AVX2)
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::kAvx2;
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

// Defines name(isa, args...), which runs name_impl(args...) compiled for
// `isa`: the baseline as written or, on x86-64, a copy compiled for AVX2 +
// FMA with everything it calls inlined. The copy is a template over the
// argument types only, so it is instantiated once per distinct signature.
#if defined(JAXSHIFT_X86_AVX2)
#define JAXSHIFT_ISA_VERSIONS(name)                                                          \
  template <typename... Args>                                                               \
  __attribute__((noinline, flatten, target("avx2,fma"))) void name##_avx2(Args... args) {   \
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

#if defined(__SSE2__)
// dst row i, column j = src row j, column i, for 4x4 floats (row strides in elements).
inline void transpose4x4(const float* src, int64_t ss, float* dst, int64_t ds) {
  __m128 v0 = _mm_loadu_ps(src), v1 = _mm_loadu_ps(src + ss);
  __m128 v2 = _mm_loadu_ps(src + 2 * ss), v3 = _mm_loadu_ps(src + 3 * ss);
  _MM_TRANSPOSE4_PS(v0, v1, v2, v3);
  _mm_storeu_ps(dst, v0);
  _mm_storeu_ps(dst + ds, v1);
  _mm_storeu_ps(dst + 2 * ds, v2);
  _mm_storeu_ps(dst + 3 * ds, v3);
}
#endif

#if defined(JAXSHIFT_X86_AVX2)
// dst row i, column j = src row j, column i, for 8x8 floats (row strides in elements).
__attribute__((target("avx2"))) inline void transpose8x8(const float* src, int64_t ss, float* dst,
                                                         int64_t ds) {
  __m256 r[8], t[8];
  for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + i * ss);
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    r[i] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
    r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
    r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
    r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int i = 0; i < 4; ++i) {
    _mm256_storeu_ps(dst + i * ds, _mm256_permute2f128_ps(r[i], r[i + 4], 0x20));
    _mm256_storeu_ps(dst + (i + 4) * ds, _mm256_permute2f128_ps(r[i], r[i + 4], 0x31));
  }
}
#endif

// Asks for the lines of the `count` pixels kPrefetch pixels past `a` (pixel
// stride ws), to read or to write: a channels-last block reads one line of
// every pixel, a stride the hardware prefetchers follow too late (about 10 %
// of a forward+backward on the 2-core CI machine). Past the end of the array
// a prefetch is harmless.
constexpr int kPrefetch = 32;

template <typename T>
void prefetch_pixels(const T* a, int64_t ws, int count, bool read) {
#if defined(__GNUC__)
  for (int k = 0; k < count; ++k) {
    // An address, not a pointer into the array (it may lie past its end).
    const void* p = reinterpret_cast<const void*>(
        reinterpret_cast<uintptr_t>(a) + static_cast<uintptr_t>((k + kPrefetch) * ws * sizeof(T)));
    if (read) {
      __builtin_prefetch(p, 0);
    } else {
      __builtin_prefetch(p, 1);
    }
  }
#endif
}

}  // namespace jaxshift
