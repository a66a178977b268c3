// AVX2+FMA build of the micro-kernel (compiled with -mavx2 -mfma; called only when the CPU has both).
// Tile: 6 rows x 16 columns = 12 ymm accumulators, 2 ymm for B, 1 for the broadcast.
#include <immintrin.h>

#include "host/ops/cpu_kernels.h"

namespace tl {
namespace cpu {

namespace {

inline __m256i lane_mask(int valid) {  // lanes < valid are set
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(valid), idx);
}

template <bool STEP1, bool PADDED>
inline void tile_body(const TileArgs& p, __m256i m0, __m256i m1) {
  constexpr int MR = 6;
  __m256 c0[MR], c1[MR];
  // Every loop over the MR rows is unrolled (#pragma GCC unroll): left rolled, GCC
  // keeps c0/c1 as arrays in memory and stores all 12 accumulators each k step (measured: the
  // micro-kernel in L1 at 34 GFLOP/s a thread; unrolled, 90). Same FMAs in the same order: same bits.
  if (!p.load_c) {
    __m256 b0 = p.bias ? _mm256_maskload_ps(p.bias, m0) : _mm256_setzero_ps();
    __m256 b1 = p.bias ? _mm256_maskload_ps(p.bias + 8, m1) : _mm256_setzero_ps();
    #pragma GCC unroll 6
    for (int i = 0; i < MR; i++) {
      c0[i] = b0;
      c1[i] = b1;
    }
  } else {
    #pragma GCC unroll 6
    for (int i = 0; i < MR; i++) {
      if (i < p.mr) {
        c0[i] = _mm256_maskload_ps(p.c + i * p.ldc, m0);
        c1[i] = _mm256_maskload_ps(p.c + i * p.ldc + 8, m1);
      } else {
        c0[i] = _mm256_setzero_ps();
        c1[i] = _mm256_setzero_ps();
      }
    }
  }
  const ptrdiff_t as = STEP1 ? 1 : p.a_step;
  for (int t = 0; t < p.taps; t++) {
    const float* const* ap = p.a + t * MR;
    const float* a[MR];
    #pragma GCC unroll 6
    for (int i = 0; i < MR; i++) a[i] = ap[i];
    const float* b = p.b + t * p.b_tap_step;
    for (int k = 0; k < p.kc; k++) {
      __m256 b0, b1;
      if (PADDED) {
        b0 = _mm256_loadu_ps(b);
        b1 = _mm256_loadu_ps(b + 8);
      } else {
        b0 = _mm256_maskload_ps(b, m0);
        b1 = _mm256_maskload_ps(b + 8, m1);
      }
#pragma GCC unroll 6
      for (int i = 0; i < MR; i++) {
        __m256 av = _mm256_broadcast_ss(&a[i][k * as]);
        c0[i] = _mm256_fmadd_ps(av, b0, c0[i]);
        c1[i] = _mm256_fmadd_ps(av, b1, c1[i]);
      }
      b += p.b_step;
    }
  }
  const __m256 zero = _mm256_setzero_ps();
  #pragma GCC unroll 6
  for (int i = 0; i < MR; i++) {
    if (i < p.mr) {
      __m256 v0 = c0[i], v1 = c1[i];
      if (p.relu) {
        v0 = _mm256_max_ps(v0, zero);
        v1 = _mm256_max_ps(v1, zero);
      }
      _mm256_maskstore_ps(p.c + i * p.ldc, m0, v0);
      _mm256_maskstore_ps(p.c + i * p.ldc + 8, m1, v1);
    }
  }
}

}  // namespace

void tile_avx2(const TileArgs& p) {
  const int nr = p.nr;
  __m256i m0 = lane_mask(nr), m1 = lane_mask(nr - 8);
  bool padded = p.b_padded || nr == 16;
  if (p.a_step == 1) {
    if (padded)
      tile_body<true, true>(p, m0, m1);
    else
      tile_body<true, false>(p, m0, m1);
  } else {
    if (padded)
      tile_body<false, true>(p, m0, m1);
    else
      tile_body<false, false>(p, m0, m1);
  }
}

// Peak-throughput probe for the benchmark: 12 independent FMA chains (they and the two constants
// fit the 16 ymm registers; 24 spilled to the stack and measured a third less), 192 flops per
// iteration.
float fma_loop_avx2(long iters) {
  __m256 acc[12];
#pragma GCC unroll 12
  for (int i = 0; i < 12; i++) acc[i] = _mm256_setzero_ps();
  const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
  for (long it = 0; it < iters; it++) {
#pragma GCC unroll 12
    for (int i = 0; i < 12; i++) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
  }
  __m256 s = acc[0];
#pragma GCC unroll 12
  for (int i = 1; i < 12; i++) s = _mm256_add_ps(s, acc[i]);
  return [&] { float t[8]; _mm256_storeu_ps(t, s); return t[0] + t[1] + t[2] + t[3] + t[4] + t[5] + t[6] + t[7]; }();
}

void rmsprop_avx2(float* w, float* v, const float* g, long n, float lr, float rho, float one_minus_rho, float eps) {
  const __m256 vrho = _mm256_set1_ps(rho), vomr = _mm256_set1_ps(one_minus_rho), vlr = _mm256_set1_ps(lr),
               veps = _mm256_set1_ps(eps);
  long i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 gi = _mm256_loadu_ps(g + i);
    const __m256 vi = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(v + i), vrho), _mm256_mul_ps(vomr, _mm256_mul_ps(gi, gi)));
    const __m256 step = _mm256_mul_ps(vlr, _mm256_div_ps(gi, _mm256_add_ps(_mm256_sqrt_ps(vi), veps)));
    _mm256_storeu_ps(v + i, vi);
    _mm256_storeu_ps(w + i, _mm256_sub_ps(_mm256_loadu_ps(w + i), step));
  }
  rmsprop_generic(w + i, v + i, g + i, n - i, lr, rho, one_minus_rho, eps);
}

}  // namespace cpu
}  // namespace tl
