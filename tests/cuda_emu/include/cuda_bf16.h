// cuda_bf16.h (CUDA emulation, tests only): __nv_bfloat16 with the conversions the kernels use,
// written from the bfloat16 definition (the top 16 bits of an IEEE binary32): float -> bf16 rounds
// to nearest, ties to even (as __float2bfloat16 does); NaN stays a quiet NaN.
#pragma once
#include <cstdint>
#include <cstring>

struct __nv_bfloat16 {
  uint16_t bits;
};

inline float __bfloat162float(__nv_bfloat16 h) {
  const uint32_t f = (uint32_t)h.bits << 16;
  float out;
  memcpy(&out, &f, 4);
  return out;
}

inline __nv_bfloat16 __float2bfloat16(float x) {
  uint32_t f;
  memcpy(&f, &x, 4);
  if ((f & 0x7fffffffu) > 0x7f800000u) return __nv_bfloat16{(uint16_t)((f >> 16) | 0x40)};  // quiet NaN
  const uint32_t lsb = (f >> 16) & 1u;
  f += 0x7fffu + lsb;  // round to nearest even (overflow to infinity is the correct rounding)
  return __nv_bfloat16{(uint16_t)(f >> 16)};
}
inline __nv_bfloat16 __float2bfloat16_rn(float x) { return __float2bfloat16(x); }
