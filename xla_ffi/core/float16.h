// The storage types and their conversions: the FFI hands 16-bit floats over
// as raw bits; every computation happens in the accumulation type Acc<T>
// (float, or double for double), through load() and store().
#pragma once

#include <cstdint>
#include <cstring>

#include "core/device.h"

namespace jaxshift {

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

// A value already loaded, in the accumulation type.
template <typename A>
JS_HD A widen(float v) { return static_cast<A>(v); }
template <typename A>
JS_HD A widen(double v) { return static_cast<A>(v); }
template <typename A>
JS_HD A widen(Half v) { return static_cast<A>(to_float(v)); }
template <typename A>
JS_HD A widen(BFloat16 v) { return static_cast<A>(to_float(v)); }

// Element access (tracked by the emulator, device.h; nothing elsewhere).
template <typename A, typename T>
JS_HD A load(const T* p JS_SITE) {
  JS_TRACK(kGlobal, p, sizeof(T), false);
  return widen<A>(*p);
}

JS_HD void store(float* p, float v JS_SITE) {
  JS_TRACK(kGlobal, p, 4, true);
  *p = v;
}
JS_HD void store(double* p, double v JS_SITE) {
  JS_TRACK(kGlobal, p, 8, true);
  *p = v;
}
JS_HD void store(Half* p, float v JS_SITE) {
  JS_TRACK(kGlobal, p, 2, true);
  *p = from_float_half(v);
}
JS_HD void store(BFloat16* p, float v JS_SITE) {
  JS_TRACK(kGlobal, p, 2, true);
  *p = from_float_bf16(v);
}

// A move's element as raw bits in the accumulation type (16-bit storage
// zero-extended into a float's bits; no conversion, so every bit pattern,
// NaN payloads included, comes back unchanged), and back.
template <typename A>
JS_HD A widen_bits(float v) { return v; }
template <typename A>
JS_HD A widen_bits(double v) { return v; }
template <typename A>
JS_HD A widen_bits(Half v) { return bits_to_float(v.bits); }
template <typename A>
JS_HD A widen_bits(BFloat16 v) { return bits_to_float(v.bits); }
template <typename A, typename T>
JS_HD A load_bits(const T* p JS_SITE) {
  JS_TRACK(kGlobal, p, sizeof(T), false);
  return widen_bits<A>(*p);
}
template <typename T>
JS_HD void store_bits(T* p, T v JS_SITE) {  // float, double: the value is its bits
  JS_TRACK(kGlobal, p, sizeof(T), true);
  *p = v;
}
JS_HD void store_bits(Half* p, float v JS_SITE) {
  JS_TRACK(kGlobal, p, 2, true);
  *p = Half{static_cast<uint16_t>(float_to_bits(v))};
}
JS_HD void store_bits(BFloat16* p, float v JS_SITE) {
  JS_TRACK(kGlobal, p, 2, true);
  *p = BFloat16{static_cast<uint16_t>(float_to_bits(v))};
}

// An element copied as it is (integer moves: no arithmetic on the value).
template <typename T>
JS_HD void copy_element(T* dst, const T* src JS_SITE) {
  JS_TRACK(kGlobal, src, sizeof(T), false);
  JS_TRACK(kGlobal, dst, sizeof(T), true);
  *dst = *src;
}

}  // namespace jaxshift
