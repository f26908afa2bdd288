// The CPU kernels' entry points, one per direction, for every storage type T
// and padding P: each chooses a path (staged planes, walks, or the
// element-wise functions) and runs it on XLA's thread pool. Explicitly
// instantiated in cpu/forward.cc and cpu/backward.cc (compiled in parallel);
// shift_cpu.cc holds the handlers that call them.
#pragma once

#include <cstdint>

#include "cpu/tables.h"
#include "float16.h"
#include "shift_core.h"
#include "xla/ffi/api/ffi.h"

namespace jaxshift {

// y = shift(x) on the output grid. `move`: sparse/integer (a pure copy).
template <typename T, int P>
void run_forward(xla::ffi::ThreadPool& pool, const Geometry& geo, const T* x, Tables tab, T* y,
                 bool move);

// dx (input grid, rounded tables) and the per-sample shift gradient ds
// (N, C, 3) in the accumulation type (exact tables), zero if !shift_grad.
template <typename T, int P>
void run_backward(xla::ffi::ThreadPool& pool, const Geometry& geo, const T* x, const T* g,
                  Tables rounded, Tables exact, bool shift_grad, T* dx,
                  typename Acc<T>::type* ds);

// Calls M(T, P) for every storage type and padding.
#define JAXSHIFT_FOR_EACH_TYPE_AND_PADDING(M)                                      \
  M(float, kZeros) M(float, kBorder) M(float, kPeriodic) M(float, kReflect)        \
  M(float, kSymmetric) M(double, kZeros) M(double, kBorder) M(double, kPeriodic)   \
  M(double, kReflect) M(double, kSymmetric) M(Half, kZeros) M(Half, kBorder)       \
  M(Half, kPeriodic) M(Half, kReflect) M(Half, kSymmetric) M(BFloat16, kZeros)     \
  M(BFloat16, kBorder) M(BFloat16, kPeriodic) M(BFloat16, kReflect)                \
  M(BFloat16, kSymmetric)

}  // namespace jaxshift
