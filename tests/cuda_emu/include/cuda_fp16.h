// cuda_fp16.h (CUDA emulation, tests only): __half with the conversions the kernels use, written
// from the IEEE 754 binary16 definition: float -> half rounds to nearest, ties to even; overflow
// gives infinity; NaN gives the canonical quiet NaN 0x7fff as CUDA's __float2half_rn does.
#pragma once
#include <cstdint>
#include <cstring>

struct __half {
  uint16_t bits;
};

inline float __half2float(__half h) {
  const uint32_t s = (uint32_t)(h.bits & 0x8000) << 16, e = (h.bits >> 10) & 0x1f, m = h.bits & 0x3ff;
  uint32_t f;
  if (e == 0) {
    if (m == 0) {
      f = s;
    } else {  // subnormal: normalise
      int ee = -1;
      uint32_t mm = m;
      do {
        ee++;
        mm <<= 1;
      } while (!(mm & 0x400));
      f = s | (uint32_t)(127 - 15 - ee) << 23 | (mm & 0x3ff) << 13;
    }
  } else if (e == 31) {
    f = s | 0x7f800000u | m << 13;
  } else {
    f = s | (e + 127 - 15) << 23 | m << 13;
  }
  float out;
  memcpy(&out, &f, 4);
  return out;
}

inline __half __float2half_rn(float x) {
  uint32_t f;
  memcpy(&f, &x, 4);
  const uint16_t s = (uint16_t)((f >> 16) & 0x8000);
  const uint32_t a = f & 0x7fffffffu;
  if (a > 0x7f800000u) return __half{0x7fff};           // NaN
  if (a >= 0x477ff000u) return __half{(uint16_t)(s | 0x7c00)};  // rounds past 65504: infinity
  if (a < 0x38800000u) {                                // below the smallest normal half: subnormal or 0
    if (a < 0x33000000u) return __half{s};              // under half the smallest subnormal: +-0
    const uint32_t e = a >> 23, m = (a & 0x7fffff) | 0x800000;
    const int shift = 126 - (int)e;  // 14 + (112 - e) + ... : mantissa bits to drop for a 2^-24 unit
    const uint32_t q = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    const uint32_t r = q + (rem > half || (rem == half && (q & 1)));
    return __half{(uint16_t)(s | r)};
  }
  const uint32_t q = (a - 0x38000000u) >> 13, rem = a & 0x1fff;  // rebias exponent by 112
  const uint32_t r = q + (rem > 0x1000 || (rem == 0x1000 && (q & 1)));
  return __half{(uint16_t)(s | r)};
}
