// AVX512_BF16 build of the bf16 micro-kernel behind --precision bf16 on the CPU (compiled with
// -mavx512f -mavx512bf16; called only when the CPU has AVX512_BF16, cpu_has_avx512_bf16()).
// Tile: 14 rows x 32 columns = 28 zmm fp32 accumulators; each VDPBF16PS adds two exact bf16
// products per lane, so one k step covers two input channels.
#include <immintrin.h>

#include <cstring>

#include "host/ops/cpu_kernels.h"

namespace tl {
namespace cpu {

void tile_bf16_avx512(const Bf16TileArgs& p) {
  constexpr int MR = kBf16MR;
  static_assert(kBf16NR == 32, "two zmm of 16 columns");
  __m512 c0[MR], c1[MR];
#pragma GCC unroll 14
  for (int i = 0; i < MR; i++) c0[i] = c1[i] = _mm512_setzero_ps();
  const uint32_t* a[MR];
#pragma GCC unroll 14
  for (int i = 0; i < MR; i++) a[i] = p.a[i];
  const uint16_t* b = p.b;
  for (int k = 0; k < p.kp; k++) {
    const __m512bh b0 = (__m512bh)_mm512_loadu_si512(b);
    const __m512bh b1 = (__m512bh)_mm512_loadu_si512(b + 32);
#pragma GCC unroll 14
    for (int i = 0; i < MR; i++) {
      const __m512bh av = (__m512bh)_mm512_set1_epi32((int)a[i][k]);
      c0[i] = _mm512_dpbf16_ps(c0[i], av, b0);
      c1[i] = _mm512_dpbf16_ps(c1[i], av, b1);
    }
    b += 64;
  }
  const int nr = p.nr;
  const __mmask16 m0 = nr >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nr) - 1);
  const __mmask16 m1 = nr >= 32 ? (__mmask16)0xFFFF : nr > 16 ? (__mmask16)((1u << (nr - 16)) - 1) : (__mmask16)0;
#pragma GCC unroll 14
  for (int i = 0; i < MR; i++) {
    if (i < p.mr) {
      _mm512_mask_storeu_ps(p.c + i * p.ldc, m0, c0[i]);
      _mm512_mask_storeu_ps(p.c + i * p.ldc + 16, m1, c1[i]);
    }
  }
}

void to_bf16_avx512(const float* x, uint16_t* y, long n) {
  long i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256bh v = _mm512_cvtneps_pbh(_mm512_loadu_ps(x + i));
    _mm256_storeu_si256((__m256i*)(y + i), (__m256i)v);
  }
  if (i < n) {
    const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
    const __m256bh v = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, x + i));
    uint16_t tail[16];
    _mm256_storeu_si256((__m256i*)tail, (__m256i)v);
    memcpy(y + i, tail, sizeof(uint16_t) * (size_t)(n - i));
  }
}

}  // namespace cpu
}  // namespace tl
