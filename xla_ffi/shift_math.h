// The index, padding and interpolation core of jaxshift, shared by the CPU and
// CUDA kernels. Header-only, no FFI, CUDA-runtime or Python includes.
//
// Canonical problem (the Python side reshapes every call into it):
//   x   : N samples, C channels, 3 spatial axes (missing axes have length 1
//         and a zero shift), channels-last (N, A, B, W, C) or channels-first
//         (N, C, A, B, W); any element strides.
//   m, f: per (group, channel, axis) integer offset and fraction with
//         -shift == m + f, 0 <= f < 1 (see jaxshift/_src/spec.py); sample n
//         uses group n / samples_per_group.
// Along one axis, output o reads q = o*t + m + f, i.e.
//   out[o] = (1-f) P(k) + f P(k+1),   k = o*t + m,
// where P answers a read outside [0, L) through the padding rule.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define JS_HD __host__ __device__ __forceinline__
#define JS_UNROLL _Pragma("unroll")
#define JS_HD_NOINLINE __host__ __device__ __noinline__
#define JS_CPU_NOINLINE JS_HD
#else
#define JS_HD_NOINLINE inline
#define JS_CPU_NOINLINE __attribute__((noinline))
#define JS_HD inline
#define JS_UNROLL _Pragma("GCC unroll 4")
#endif

namespace jaxshift {

enum Padding : int {
  kZeros = 0,
  kBorder = 1,
  kPeriodic = 2,
  kReflect = 3,
  kSymmetric = 4,
};

// ---------------------------------------------------------------------------
// Storage types. The FFI hands 16-bit floats over as raw bits.
struct Half {
  uint16_t bits;
};
struct BFloat16 {
  uint16_t bits;
};

JS_HD float bits_to_float(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}
JS_HD uint32_t float_to_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}

JS_HD float to_float(Half h) {
  const uint32_t sign = (h.bits & 0x8000u) << 16;
  uint32_t exp = (h.bits >> 10) & 0x1f;
  uint32_t man = h.bits & 0x3ffu;
  if (exp == 0x1f) return bits_to_float(sign | 0x7f800000u | (man << 13));
  if (exp == 0) {
    if (man == 0) return bits_to_float(sign);
    // Subnormal: value = man * 2^-24.
    float v = static_cast<float>(man) * 5.9604644775390625e-8f;
    return sign ? -v : v;
  }
  return bits_to_float(sign | ((exp + 112) << 23) | (man << 13));
}

JS_HD Half from_float_half(float f) {
  // Round to nearest even, with overflow to inf and NaN kept quiet.
  uint32_t u = float_to_bits(f);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  u &= 0x7fffffffu;
  if (u >= 0x7f800000u) {  // inf or NaN
    return Half{static_cast<uint16_t>(sign | 0x7c00u | (u > 0x7f800000u ? 0x200u : 0u))};
  }
  if (u >= 0x477ff000u) return Half{static_cast<uint16_t>(sign | 0x7c00u)};  // >= 65520
  if (u < 0x38800000u) {  // below the smallest normal half: subnormal or zero
    // Scale so that one half-subnormal ulp (2^-24) becomes 1.0, then round.
    float v = bits_to_float(u) * 16777216.0f;
    float r = v + 12582912.0f - 12582912.0f;  // round half to even
    return Half{static_cast<uint16_t>(sign | static_cast<uint16_t>(r))};
  }
  const uint32_t lsb = (u >> 13) & 1u;
  u += 0xfffu + lsb;
  return Half{static_cast<uint16_t>(sign | ((u - 0x38000000u) >> 13))};
}

JS_HD float to_float(BFloat16 b) { return bits_to_float(static_cast<uint32_t>(b.bits) << 16); }

JS_HD BFloat16 from_float_bf16(float f) {
  uint32_t u = float_to_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return BFloat16{static_cast<uint16_t>((u >> 16) | 0x40u)};
  u += 0x7fffu + ((u >> 16) & 1u);
  return BFloat16{static_cast<uint16_t>(u >> 16)};
}

template <typename T>
struct Acc {  // accumulation type: float for 16/32-bit, double for 64-bit
  using type = float;
};
template <>
struct Acc<double> {
  using type = double;
};

template <typename A>
JS_HD A load(const float* p) { return static_cast<A>(*p); }
template <typename A>
JS_HD A load(const double* p) { return static_cast<A>(*p); }
template <typename A>
JS_HD A load(const Half* p) { return static_cast<A>(to_float(*p)); }
template <typename A>
JS_HD A load(const BFloat16* p) { return static_cast<A>(to_float(*p)); }

JS_HD void store(float* p, float v) { *p = v; }
JS_HD void store(double* p, double v) { *p = v; }
JS_HD void store(Half* p, float v) { *p = from_float_half(v); }
JS_HD void store(BFloat16* p, float v) { *p = from_float_bf16(v); }

// ---------------------------------------------------------------------------
// Padding: index i in [0, L), or -1 for a read answered by zero.
JS_HD int floor_mod(int a, int b) {
  const int r = a % b;
  return r < 0 ? r + b : r;
}
JS_HD int floor_div(int a, int b) {  // b > 0
  const int q = a / b;
  return (a % b != 0 && a < 0) ? q - 1 : q;
}

template <int P>
JS_HD int pad_index(int j, int L) {
  if (P == kZeros) return (j >= 0 && j < L) ? j : -1;
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

// One spatial axis: input length, output length, stride, element strides.
struct Axis {
  int L, Lo, t;
  int64_t sx, sy;
};

// Geometry of one call (see the top of this file).
struct Geometry {
  int64_t N, C;
  int64_t per_group;       // samples per shift group
  int64_t sx_n, sx_c;      // element strides of x (and dx)
  int64_t sy_n, sy_c;      // element strides of y (and g)
  Axis ax[3];
};

// Taps along one axis: two (index, weight) pairs.
template <typename A>
struct Taps {
  int i[2];
  A w[2];
};

// Interpolation taps for output o: P(k) with 1-f, P(k+1) with f.
template <int P, typename A>
JS_HD Taps<A> interp_taps(int o, const Axis& ax, int m, A f) {
  const int k = o * ax.t + m;
  Taps<A> r;
  r.i[0] = pad_index<P>(k, ax.L);
  r.i[1] = pad_index<P>(k + 1, ax.L);
  r.w[0] = A(1) - f;
  r.w[1] = f;
  return r;
}

// d out / d shift for output o. Off the lattice P(k) - P(k+1); at a lattice
// point (f == 0) the mean of the one-sided derivatives, (P(k-1) - P(k+1))/2.
template <int P, typename A>
JS_HD Taps<A> deriv_taps(int o, const Axis& ax, int m, A f) {
  const int k = o * ax.t + m;
  Taps<A> r;
  const bool lattice = (f == A(0));
  r.i[0] = pad_index<P>(lattice ? k - 1 : k, ax.L);
  r.i[1] = pad_index<P>(k + 1, ax.L);
  r.w[0] = lattice ? A(0.5) : A(1);
  r.w[1] = lattice ? A(-0.5) : A(-1);
  return r;
}

// sum_{a,b,c} w0[a] w1[b] w2[c] x[i0[a], i1[b], i2[c]]; taps with index -1
// (zeros) or weight 0 are skipped, so a pure integer move reads one element.
template <typename A, typename T>
JS_HD A gather3(const T* x, const Axis* ax, const Taps<A>& t0, const Taps<A>& t1,
                const Taps<A>& t2) {
  A acc = A(0);
JS_UNROLL
  for (int a = 0; a < 2; ++a) {
    if (t0.i[a] < 0 || t0.w[a] == A(0)) continue;
    const T* xa = x + t0.i[a] * ax[0].sx;
JS_UNROLL
    for (int b = 0; b < 2; ++b) {
      if (t1.i[b] < 0 || t1.w[b] == A(0)) continue;
      const T* xb = xa + t1.i[b] * ax[1].sx;
      const A wab = t0.w[a] * t1.w[b];
JS_UNROLL
      for (int c = 0; c < 2; ++c) {
        if (t2.i[c] < 0 || t2.w[c] == A(0)) continue;
        acc += wab * t2.w[c] * load<A>(xb + t2.i[c] * ax[2].sx);
      }
    }
  }
  return acc;
}

template <typename A>
JS_HD bool is_nan(A v) { return v != v; }

// Forward value at output (o0, o1, o2) of one (sample, channel); `x` points
// at the channel's origin. A NaN fraction (NaN shift) gives NaN.
template <int P, typename A, typename T>
JS_HD A forward_value(const T* x, const Axis* ax, const int* o, const int* m, const A* f) {
  if (is_nan(f[0]) || is_nan(f[1]) || is_nan(f[2])) return f[0] + f[1] + f[2];
  return gather3<A>(x, ax, interp_taps<P>(o[0], ax[0], m[0], f[0]),
                    interp_taps<P>(o[1], ax[1], m[1], f[1]),
                    interp_taps<P>(o[2], ax[2], m[2], f[2]));
}

// Integer move (sparse/integer forward): the one element output o copies, or
// null where `zeros` padding answers 0. No arithmetic on the values.
template <int P, typename T>
JS_HD const T* move_source(const T* x, const Axis* ax, const int* o, const int* m) {
  int64_t off = 0;
JS_UNROLL
  for (int a = 0; a < 3; ++a) {
    const int i = pad_index<P>(o[a] * ax[a].t + m[a], ax[a].L);
    if (i < 0) return nullptr;
    off += i * ax[a].sx;
  }
  return x + off;
}

// The three shift-derivative terms at output o: d out / d s_a for a = 0,1,2.
template <int P, typename A, typename T>
JS_HD void deriv_values(const T* x, const Axis* ax, const int* o, const int* m, const A* f,
                        A* d) {
  const Taps<A> i0 = interp_taps<P>(o[0], ax[0], m[0], f[0]);
  const Taps<A> i1 = interp_taps<P>(o[1], ax[1], m[1], f[1]);
  const Taps<A> i2 = interp_taps<P>(o[2], ax[2], m[2], f[2]);
  d[0] = gather3<A>(x, ax, deriv_taps<P>(o[0], ax[0], m[0], f[0]), i1, i2);
  d[1] = gather3<A>(x, ax, i0, deriv_taps<P>(o[1], ax[1], m[1], f[1]), i2);
  d[2] = gather3<A>(x, ax, i0, i1, deriv_taps<P>(o[2], ax[2], m[2], f[2]));
}

// ---------------------------------------------------------------------------
// Adjoint (input gradient) as a gather: for input index i, visit every
// (output o, weight w) whose forward read lands on i. An output o reads the
// extended positions e = o*t + m (weight 1-f) and e + 1 (weight f); input i
// is read through every e with pad(e) == i. Those e form at most two
// arithmetic progressions (or, for the clamped ends of `border`, a range),
// visited in a fixed order: the result is deterministic.
template <typename A, typename Fn>
JS_HD void visit_extended(int e, const Axis& ax, int m, A f, Fn& fn) {
  const int d0 = e - m;  // o*t == d0 for the k tap
  if (d0 % ax.t == 0) {
    const int o = d0 / ax.t;
    if (o >= 0 && o < ax.Lo) fn(o, A(1) - f);
  }
  if (f != A(0)) {
    const int d1 = d0 - 1;  // o*t == d1 for the k+1 tap
    if (d1 % ax.t == 0) {
      const int o = d1 / ax.t;
      if (o >= 0 && o < ax.Lo) fn(o, f);
    }
  }
}

template <typename A, typename Fn>
JS_HD void visit_progression(int base, int step, int lo, int hi, const Axis& ax, int m, A f,
                             Fn& fn) {
  for (int e = base + (floor_div(lo - base + step - 1, step)) * step; e <= hi; e += step) {
    visit_extended(e, ax, m, f, fn);
  }
}

// Not inlined on the GPU: three nested levels of it would otherwise grow the
// kernel (and ptxas time) exponentially.
template <int P, typename A, typename Fn>
JS_HD_NOINLINE void for_each_adjoint_tap(int i, const Axis& ax, int m, A f, Fn& fn) {
  const int lo = m;                           // first extended position read
  const int hi = (ax.Lo - 1) * ax.t + m + 1;  // last
  const int L = ax.L;
  if (P == kZeros) {
    if (i >= lo && i <= hi) visit_extended(i, ax, m, f, fn);
  } else if (P == kPeriodic) {
    visit_progression(i, L, lo, hi, ax, m, f, fn);
  } else if (L == 1 && (P == kBorder || P == kReflect)) {
    visit_progression(lo, 1, lo, hi, ax, m, f, fn);
  } else if (P == kBorder) {
    if (i == 0) {
      visit_progression(lo, 1, lo, hi < 0 ? hi : 0, ax, m, f, fn);
    } else if (i == L - 1) {
      visit_progression(L - 1, 1, lo > L - 1 ? lo : L - 1, hi, ax, m, f, fn);
    } else if (i >= lo && i <= hi) {
      visit_extended(i, ax, m, f, fn);
    }
  } else if (P == kReflect) {
    const int T = 2 * L - 2;
    visit_progression(i, T, lo, hi, ax, m, f, fn);
    if (i > 0 && i < L - 1) visit_progression(T - i, T, lo, hi, ax, m, f, fn);
  } else {  // kSymmetric
    const int T = 2 * L;
    visit_progression(i, T, lo, hi, ax, m, f, fn);
    visit_progression(T - 1 - i, T, lo, hi, ax, m, f, fn);
  }
}

// Input gradient at input (i0, i1, i2) of one (sample, channel); `g` points at
// the channel's origin in the output cotangent (strides ax[].sy).
template <int P, typename A, typename T>
JS_HD A adjoint_value(const T* g, const Axis* ax, const int* i, const int* m, const A* f) {
  if (is_nan(f[0]) || is_nan(f[1]) || is_nan(f[2])) return f[0] + f[1] + f[2];
  A acc = A(0);
  auto v0 = [&](int o0, A w0) {
    const T* g0 = g + o0 * ax[0].sy;
    auto v1 = [&](int o1, A w1) {
      const T* g1 = g0 + o1 * ax[1].sy;
      const A w01 = w0 * w1;
      auto v2 = [&](int o2, A w2) { acc += w01 * w2 * load<A>(g1 + o2 * ax[2].sy); };
      for_each_adjoint_tap<P>(i[2], ax[2], m[2], f[2], v2);
    };
    for_each_adjoint_tap<P>(i[1], ax[1], m[1], f[1], v1);
  };
  for_each_adjoint_tap<P>(i[0], ax[0], m[0], f[0], v0);
  return acc;
}


// `adjoint_value` kept out of the hot loops that only need it near the edges
// (on the CPU; the GPU build is unchanged).
template <int P, typename A, typename T>
JS_CPU_NOINLINE A adjoint_value_outlined(const T* g, const Axis* ax, const int* i, const int* m,
                                         const A* f) {
  return adjoint_value<P, A>(g, ax, i, m, f);
}

// ---------------------------------------------------------------------------
// Walks: the fast path for at most two spatial axes (axis 0 of length 1) and
// unit strides. One (sample, channel) and one index of the "fixed" axis; the
// other ("walk") axis is traversed in order with a sliding window, so each
// step costs one padded index and a few loads. `fa`/`wa` are the fixed and
// walking axes; `x`/`g` point at the channel's origin.

// The walks apply: at most two spatial axes (axis 0 of length 1), unit strides.
JS_HD bool walkable(const Geometry& geo) {
  return geo.ax[0].L == 1 && geo.ax[0].t == 1 && geo.ax[1].t == 1 && geo.ax[2].t == 1;
}

// The positions of one axis whose adjoint is the plain two-tap formula (no
// folding of reads from outside the axis): [lo, hi]. For zeros and periodic
// every position; for the mirrored and clamped paddings a conservative
// interior, whose complement the caller answers with `adjoint_value`.
template <int P>
JS_HD void simple_interval(const Axis& ax, int m, int* lo, int* hi) {
  if (P == kZeros || P == kPeriodic) {
    *lo = 0;
    *hi = ax.L - 1;
    return;
  }
  const int am = m < 0 ? -m : m;
  *lo = am + 1;
  *hi = ax.L - am - 3;
}

// g (or its fold for periodic) at output index j of an axis, as the adjoint
// sees it: outputs outside [0, Lo) do not exist.
template <int P>
JS_HD int adjoint_index(int j, const Axis& ax) {
  if (P == kPeriodic) return floor_mod(j, ax.L);
  return (j >= 0 && j < ax.Lo) ? j : -1;
}

template <int P, typename A, typename T>
JS_HD void forward_walk(const T* x, T* y, const Axis& fa, const Axis& wa, int of, int begin,
                        int end, int mf, A ff, int mw, A fw, bool move) {
  const int kf = of + mf;
  const int r0 = pad_index<P>(kf, fa.L);
  const int r1 = ff != A(0) ? pad_index<P>(kf + 1, fa.L) : -1;
  const T* x0 = r0 >= 0 ? x + r0 * fa.sx : nullptr;
  const T* x1 = r1 >= 0 ? x + r1 * fa.sx : nullptr;
  T* yo = y + static_cast<int64_t>(of) * fa.sy;
  if (move) {  // a pure copy: f == 0 on both axes
    for (int o = begin; o < end; ++o) {
      const int i = pad_index<P>(o + mw, wa.L);
      if (x0 && i >= 0) {
        yo[o * wa.sy] = x0[i * wa.sx];
      } else {
        store(yo + o * wa.sy, A(0));
      }
    }
    return;
  }
  const A wf0 = A(1) - ff;
  auto col = [&](int k) -> A {  // the fixed-axis interpolation at walk index k
    const int i = pad_index<P>(k, wa.L);
    if (i < 0) return A(0);
    A v = A(0);
    if (x0) v += wf0 * load<A>(x0 + i * wa.sx);
    if (x1) v += ff * load<A>(x1 + i * wa.sx);
    return v;
  };
  A prev = col(begin + mw);
  const A ww0 = A(1) - fw;
  for (int o = begin; o < end; ++o) {
    const A next = col(o + mw + 1);
    store(yo + o * wa.sy, fw == A(0) ? prev : ww0 * prev + fw * next);
    prev = next;
  }
}

// The shift-gradient part of `backward_walk`: sums over the walk of
// g * d out / d s for the fixed axis (d[0]) and the walking axis (d[1]).
// kFLat / kWLat: the fixed / walking axis is at a lattice point (f == 0).
template <int P, bool kFLat, bool kWLat, typename A, typename T>
JS_HD void shift_grad_walk(const T* x, const T* g, const Axis& fa, const Axis& wa, int i_f,
                           int begin, int end, int mf, A ff, int mw, A fw, A* d) {
  const int kf = i_f + mf;
  // Rows: interpolation uses kf, kf+1; the derivative uses (kf, kf+1) off the
  // lattice and (kf-1, kf+1) on it.
  const int rm = pad_index<P>(kf - 1, fa.L), r0 = pad_index<P>(kf, fa.L);
  const int r1 = pad_index<P>(kf + 1, fa.L);
  const T* xm = (kFLat && rm >= 0) ? x + rm * fa.sx : nullptr;
  const T* x0 = r0 >= 0 ? x + r0 * fa.sx : nullptr;
  const T* x1 = r1 >= 0 ? x + r1 * fa.sx : nullptr;
  const A wi0 = A(1) - ff;
  // XI(k): interpolation across the fixed axis; XD(k): its derivative.
  auto cols = [&](int k, A* xi, A* xd) {
    const int i = pad_index<P>(k, wa.L);
    const A a = (i >= 0 && x0) ? load<A>(x0 + i * wa.sx) : A(0);
    const A b = (i >= 0 && x1) ? load<A>(x1 + i * wa.sx) : A(0);
    if (kFLat) {
      const A c = (i >= 0 && xm) ? load<A>(xm + i * wa.sx) : A(0);
      *xi = a;
      *xd = A(0.5) * c - A(0.5) * b;
    } else {
      *xi = wi0 * a + ff * b;
      *xd = a - b;
    }
  };
  const A w0 = A(1) - fw;
  const T* go = g + static_cast<int64_t>(i_f) * fa.sy;
  A xi_m = A(0), xd_m = A(0), xi_0, xd_0, xi_1, xd_1;
  if (kWLat) cols(begin + mw - 1, &xi_m, &xd_m);
  cols(begin + mw, &xi_0, &xd_0);
  A df = A(0), dw = A(0);
  for (int o = begin; o < end; ++o) {
    cols(o + mw + 1, &xi_1, &xd_1);
    const A gv = load<A>(go + o * wa.sy);
    if (kWLat) {
      df += gv * xd_0;
      dw += gv * (A(0.5) * xi_m - A(0.5) * xi_1);
    } else {
      df += gv * (w0 * xd_0 + fw * xd_1);
      dw += gv * (xi_0 - xi_1);
    }
    xi_m = xi_0;
    xi_0 = xi_1;
    xd_0 = xd_1;
  }
  d[0] = df;
  d[1] = dw;
}

// Fused backward walk: writes dx along the walk (input grid) and returns the
// shift-gradient sums over the walk (output grid), d[0] for the fixed axis and
// d[1] for the walking one. (mr, fr): rounded tables (input gradient);
// (mu, fu): exact tables (shift gradient). Unit strides: L == Lo.
template <int P, typename A, typename T>
JS_HD void backward_walk(const T* x, const T* g, T* dx, const Axis* ax3, int af, int aw, int i_f,
                         int begin, int end, const int* mr, const A* fr, const int* mu,
                         const A* fu, bool shift_grad, A* d) {
  const Axis& fa = ax3[af];
  const Axis& wa = ax3[aw];
  // --- input gradient: dx[i] = sum_{a,b} wf_a ww_b g[i_f - m_f - a, i - m_w - b].
  int flo, fhi, wlo, whi;
  simple_interval<P>(fa, mr[af], &flo, &fhi);
  simple_interval<P>(wa, mr[aw], &wlo, &whi);
  const bool row_simple = i_f >= flo && i_f <= fhi;
  const int g0 = adjoint_index<P>(i_f - mr[af], fa);
  const int g1 = fr[af] != A(0) ? adjoint_index<P>(i_f - mr[af] - 1, fa) : -1;
  const T* gr0 = g0 >= 0 ? g + g0 * fa.sy : nullptr;
  const T* gr1 = g1 >= 0 ? g + g1 * fa.sy : nullptr;
  const A gf0 = A(1) - fr[af];
  auto gcol = [&](int j) -> A {  // the fixed-axis adjoint at output index j
    const int o = adjoint_index<P>(j, wa);
    if (o < 0) return A(0);
    A v = A(0);
    if (gr0) v += gf0 * load<A>(gr0 + o * wa.sy);
    if (gr1) v += fr[af] * load<A>(gr1 + o * wa.sy);
    return v;
  };
  T* dxo = dx + static_cast<int64_t>(i_f) * fa.sx;
  const A fw_r = fr[aw], gw0 = A(1) - fw_r;
  A prv = gcol(begin - mr[aw] - 1);  // G(i - m_w - 1), sliding
  A cur = gcol(begin - mr[aw]);      // G(i - m_w)
  for (int i = begin; i < end; ++i) {
    A v;
    // zeros and periodic: always the two-tap formula (the compiler drops the
    // fallback); the other paddings fold reads near the edges.
    if (P == kZeros || P == kPeriodic || (row_simple && i >= wlo && i <= whi)) {
      v = fw_r == A(0) ? cur : gw0 * cur + fw_r * prv;
    } else {
      int pos[3] = {0, 0, 0};
      pos[af] = i_f;
      pos[aw] = i;
      int m3[3] = {0, 0, 0};
      A f3[3] = {A(0), A(0), A(0)};
      m3[af] = mr[af];
      m3[aw] = mr[aw];
      f3[af] = fr[af];
      f3[aw] = fr[aw];
      v = adjoint_value_outlined<P, A>(g, ax3, pos, m3, f3);
    }
    store(dxo + i * wa.sx, v);
    prv = cur;
    cur = gcol(i + 1 - mr[aw]);
  }
  d[0] = d[1] = A(0);
  if (!shift_grad) return;
  // --- shift gradient along the walk, output o == i_f on the fixed axis. The
  // lattice flags are loop-invariant: one loop is compiled per combination.
  const bool f_lat = fu[af] == A(0), w_lat = fu[aw] == A(0);
  if (f_lat) {
    if (w_lat) {
      shift_grad_walk<P, true, true>(x, g, fa, wa, i_f, begin, end, mu[af], fu[af], mu[aw], fu[aw], d);
    } else {
      shift_grad_walk<P, true, false>(x, g, fa, wa, i_f, begin, end, mu[af], fu[af], mu[aw], fu[aw], d);
    }
  } else if (w_lat) {
    shift_grad_walk<P, false, true>(x, g, fa, wa, i_f, begin, end, mu[af], fu[af], mu[aw], fu[aw], d);
  } else {
    shift_grad_walk<P, false, false>(x, g, fa, wa, i_f, begin, end, mu[af], fu[af], mu[aw], fu[aw], d);
  }
}

}  // namespace jaxshift
