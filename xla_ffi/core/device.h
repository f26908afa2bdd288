// Qualifiers for code shared by the CPU (host compiler) and CUDA (nvcc)
// builds: JS_HD marks a function callable on both, inlined.
#pragma once

#if defined(__CUDACC__)
#define JS_HD __host__ __device__ __forceinline__
#define JS_HD_NOINLINE __host__ __device__ __noinline__
#define JS_UNROLL _Pragma("unroll")
#else
#define JS_HD inline
#define JS_HD_NOINLINE inline
#define JS_UNROLL _Pragma("GCC unroll 4")
#endif

// Keeps a function out of the CPU's hot loops that call it only near the
// edges (on the GPU: inlined as JS_HD).
#if defined(__CUDACC__)
#define JS_CPU_NOINLINE JS_HD
#else
#define JS_CPU_NOINLINE __attribute__((noinline))
#endif

// Memory-access hooks for the host emulator of the CUDA kernels
// (emulator/, built with JAXSHIFT_EMULATE into its own library): every global
// and shared access of the kernels' code goes through a function that takes
// the call site's line (`JS_SITE`) and reports it with `JS_TRACK` to
// `emu::track`, which the emulator defines (emulator/emulator.h). In every
// other build the hooks are nothing.
#if defined(JAXSHIFT_EMULATE) && !defined(__CUDACC__)
namespace jaxshift {
namespace emu {
enum Space : int { kGlobal = 0, kShared = 1 };
inline void track(int space, const void* p, int bytes, bool is_store, int line, const char* file);
}  // namespace emu
}  // namespace jaxshift
#define JS_SITE , int site_line = __builtin_LINE(), const char* site_file = __builtin_FILE()
#define JS_TRACK(space, p, bytes, is_store)                                                \
  ::jaxshift::emu::track(::jaxshift::emu::space, p, static_cast<int>(bytes), is_store, site_line, \
                         site_file)
#else
#define JS_SITE
#define JS_TRACK(space, p, bytes, is_store) \
  do {                                      \
  } while (0)
#endif
