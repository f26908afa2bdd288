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
