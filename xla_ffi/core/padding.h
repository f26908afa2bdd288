// The padding rules: how a read at position j of an axis of length L is
// answered (docs/semantics.md; jaxshift/_src/spec.py pad_index is the same
// rule in Python).
#pragma once

#include <type_traits>

#include "core/device.h"

namespace jaxshift {

// The padding codes, in the order of jaxshift.PADDINGS (jaxshift/_src/shapes.py);
// the compiled library reports its names (ffi/common.h, jaxshift_padding_name),
// which tests/test_layout.py compares with Python's.
enum Padding : int {
  kZeros = 0,
  kBorder = 1,
  kPeriodic = 2,
  kReflect = 3,
  kSymmetric = 4,
};
constexpr int kNumPaddings = 5;
constexpr const char* kPaddingNames[kNumPaddings] = {"zeros", "border", "periodic", "reflect",
                                                     "symmetric"};

// The longest axis (jaxshift/_src/shapes.py MAX_AXIS_LENGTH; the library
// reports it, ffi/common.h). With |m| <= 2 L + 2 and output positions
// o * t <= L - 1, every position below (taps, adjoint progressions) stays
// within 6 L of 0: far inside int, with a margin of 8 at this bound.
constexpr int kMaxAxisLength = 1 << 28;

JS_HD int floor_mod(int a, int b) {
  const int r = a % b;
  return r < 0 ? r + b : r;
}
JS_HD int floor_div(int a, int b) {  // b > 0
  const int q = a / b;
  return (a % b != 0 && a < 0) ? q - 1 : q;
}

// Index i in [0, L) that position j reads, or -1 for a read answered by zero.
// The interior (every rule's identity, where most reads are) is tested
// first: the periodic and mirrored rules' modulo is an integer division
// (the lanes' row and column terms took one a lane and row: their reflect
// forward ran 1.3-2x the time of zeros', benchmarks/NOTES.md, v20).
template <int P>
JS_HD int pad_index(int j, int L) {
  if (j >= 0 && j < L) return j;
  if (P == kZeros) return -1;
  if (P == kBorder || (P == kReflect && L == 1)) return j < 0 ? 0 : (j >= L ? L - 1 : j);
  if (P == kPeriodic) return floor_mod(j, L);
  if (P == kReflect) {
    const int T = 2 * L - 2;
    const int r = floor_mod(j, T);
    return r < L ? r : T - r;
  }
  const int T = 2 * L;  // kSymmetric
  const int r = floor_mod(j, T);
  return r < L ? r : T - 1 - r;
}

// pad_index with the padding a run-time value: for loops whose inner work
// does not depend on it (cpu/direct.h: an index per row and per channel),
// compiled once instead of once per padding.
JS_HD int pad_index_of(int P, int j, int L) {
  switch (P) {
    case kZeros: return pad_index<kZeros>(j, L);
    case kBorder: return pad_index<kBorder>(j, L);
    case kPeriodic: return pad_index<kPeriodic>(j, L);
    case kReflect: return pad_index<kReflect>(j, L);
    default: return pad_index<kSymmetric>(j, L);
  }
}

// Calls f(std::integral_constant<int, P>{}) for padding code p, one of the
// codes above (a caller that takes codes from outside checks them first:
// ffi/common.h, with_padding): the one padding switch, for host code that
// compiles a loop per padding or dispatches to one.
template <typename F>
decltype(auto) for_padding(int p, F&& f) {
  switch (p) {
    case kBorder: return f(std::integral_constant<int, kBorder>{});
    case kPeriodic: return f(std::integral_constant<int, kPeriodic>{});
    case kReflect: return f(std::integral_constant<int, kReflect>{});
    case kSymmetric: return f(std::integral_constant<int, kSymmetric>{});
    default: return f(std::integral_constant<int, kZeros>{});
  }
}

// The padding the adjoint reads the output cotangent g through: an output
// outside [0, Lo) does not exist (zero), except that a periodic axis wraps.
constexpr int adjoint_padding(int P) { return P == kPeriodic ? kPeriodic : kZeros; }

}  // namespace jaxshift
