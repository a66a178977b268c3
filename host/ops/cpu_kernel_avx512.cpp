// AVX-512 build of the micro-kernel (compiled with -mavx512f; called only when the CPU has it).
// Tile: 14 rows x 32 columns = 28 zmm accumulators, 2 zmm for B, 1 for the broadcast.
#include <immintrin.h>

// GCC 12 reports a false "may be used uninitialized" inside _mm512_max_ps (_mm512_undefined_ps).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

#include "host/ops/cpu_kernels.h"

namespace tl {
namespace cpu {

namespace {

template <int MR, bool STEP1, bool PADDED>
inline void tile_body(const TileArgs& p, __mmask16 m0, __mmask16 m1) {
  __m512 c0[MR], c1[MR];
  if (!p.load_c) {
    __m512 b0 = p.bias ? _mm512_maskz_loadu_ps(m0, p.bias) : _mm512_setzero_ps();
    __m512 b1 = p.bias ? _mm512_maskz_loadu_ps(m1, p.bias + 16) : _mm512_setzero_ps();
#pragma GCC unroll 14
    for (int i = 0; i < MR; i++) {
      c0[i] = b0;
      c1[i] = b1;
    }
  } else {
#pragma GCC unroll 14
    for (int i = 0; i < MR; i++) {
      if (i < p.mr) {
        c0[i] = _mm512_maskz_loadu_ps(m0, p.c + i * p.ldc);
        c1[i] = _mm512_maskz_loadu_ps(m1, p.c + i * p.ldc + 16);
      } else {
        c0[i] = _mm512_setzero_ps();
        c1[i] = _mm512_setzero_ps();
      }
    }
  }
  const ptrdiff_t as = STEP1 ? 1 : p.a_step;
  for (int t = 0; t < p.taps; t++) {
    const float* const* ap = p.a + t * MR;
    const float* a[MR];
#pragma GCC unroll 14
    for (int i = 0; i < MR; i++) a[i] = ap[i];
    const float* b = p.b + t * p.b_tap_step;
    for (int k = 0; k < p.kc; k++) {
      __m512 b0, b1;
      if (PADDED) {
        b0 = _mm512_loadu_ps(b);
        b1 = _mm512_loadu_ps(b + 16);
      } else {
        b0 = _mm512_maskz_loadu_ps(m0, b);
        b1 = _mm512_maskz_loadu_ps(m1, b + 16);
      }
#pragma GCC unroll 14
      for (int i = 0; i < MR; i++) {
        __m512 av = _mm512_set1_ps(a[i][k * as]);
        c0[i] = _mm512_fmadd_ps(av, b0, c0[i]);
        c1[i] = _mm512_fmadd_ps(av, b1, c1[i]);
      }
      b += p.b_step;
    }
  }
  const __m512 zero = _mm512_setzero_ps();
#pragma GCC unroll 14
  for (int i = 0; i < MR; i++) {
    if (i < p.mr) {
      __m512 v0 = c0[i], v1 = c1[i];
      if (p.relu) {
        v0 = _mm512_max_ps(v0, zero);
        v1 = _mm512_max_ps(v1, zero);
      }
      _mm512_mask_storeu_ps(p.c + i * p.ldc, m0, v0);
      _mm512_mask_storeu_ps(p.c + i * p.ldc + 16, m1, v1);
    }
  }
}

}  // namespace

void tile_avx512(const TileArgs& p) {
  const int nr = p.nr;
  __mmask16 m0 = nr >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nr) - 1);
  __mmask16 m1 = nr >= 32 ? (__mmask16)0xFFFF : nr > 16 ? (__mmask16)((1u << (nr - 16)) - 1) : (__mmask16)0;
  bool padded = p.b_padded || nr == 32;
  if (p.a_step == 1) {
    if (padded)
      tile_body<14, true, true>(p, m0, m1);
    else
      tile_body<14, true, false>(p, m0, m1);
  } else {
    if (padded)
      tile_body<14, false, true>(p, m0, m1);
    else
      tile_body<14, false, false>(p, m0, m1);
  }
}

// Peak-throughput probe for the benchmark: 24 independent FMA chains, 768 flops per iteration.
float fma_loop_avx512(long iters) {
  __m512 acc[24];
  for (int i = 0; i < 24; i++) acc[i] = _mm512_setzero_ps();
  const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
  for (long it = 0; it < iters; it++) {
#pragma GCC unroll 24
    for (int i = 0; i < 24; i++) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
  }
  __m512 s = acc[0];
  for (int i = 1; i < 24; i++) s = _mm512_add_ps(s, acc[i]);
  return _mm512_reduce_add_ps(s);
}

void rmsprop_avx512(float* w, float* v, const float* g, long n, float lr, float rho, float one_minus_rho, float eps) {
  const __m512 vrho = _mm512_set1_ps(rho), vomr = _mm512_set1_ps(one_minus_rho), vlr = _mm512_set1_ps(lr),
               veps = _mm512_set1_ps(eps);
  for (long i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
    const __m512 gi = _mm512_maskz_loadu_ps(m, g + i);
    const __m512 vi = _mm512_add_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, v + i), vrho),
                                    _mm512_mul_ps(vomr, _mm512_mul_ps(gi, gi)));
    const __m512 step = _mm512_mul_ps(vlr, _mm512_div_ps(gi, _mm512_add_ps(_mm512_sqrt_ps(vi), veps)));
    _mm512_mask_storeu_ps(v + i, m, vi);
    _mm512_mask_storeu_ps(w + i, m, _mm512_sub_ps(_mm512_maskz_loadu_ps(m, w + i), step));
  }
}

}  // namespace cpu
}  // namespace tl
