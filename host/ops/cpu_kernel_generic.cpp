// Portable build of the micro-kernel for x86-64 CPUs without AVX2+FMA (and other targets).
// Plain C++ the compiler vectorises with the baseline ISA. Without FMA hardware each step is a
// multiply then an add, so results can differ from the AVX2/AVX-512 builds in the last bits.
#include "host/ops/cpu_kernels.h"
#include "host/ops/cpu_ops.h"

namespace tl {
namespace cpu {

void tile_generic(const TileArgs& p) {
  constexpr int MR = 4, NR = 8;
  float acc[MR][NR];
  for (int i = 0; i < MR; i++)
    for (int j = 0; j < NR; j++) {
      if (!p.load_c)
        acc[i][j] = (p.bias && j < p.nr) ? p.bias[j] : 0.0f;
      else
        acc[i][j] = (i < p.mr && j < p.nr) ? p.c[i * p.ldc + j] : 0.0f;
    }
  for (int t = 0; t < p.taps; t++) {
    const float* const* a = p.a + t * MR;
    const float* b = p.b + t * p.b_tap_step;
    for (int k = 0; k < p.kc; k++) {
      float bv[NR];
      for (int j = 0; j < NR; j++) bv[j] = (p.b_padded || j < p.nr) ? b[j] : 0.0f;
      for (int i = 0; i < MR; i++) {
        float av = a[i][k * p.a_step];
        for (int j = 0; j < NR; j++) acc[i][j] += av * bv[j];
      }
      b += p.b_step;
    }
  }
  for (int i = 0; i < p.mr; i++)
    for (int j = 0; j < p.nr; j++) {
      float v = acc[i][j];
      if (p.relu) v = v > 0.0f ? v : 0.0f;
      p.c[i * p.ldc + j] = v;
    }
}

// Peak-throughput probe: 24 independent chains of 8 lanes, 384 flops per iteration.
float fma_loop_generic(long iters) {
  float acc[24][8] = {};
  for (long it = 0; it < iters; it++)
    for (int i = 0; i < 24; i++)
      for (int j = 0; j < 8; j++) acc[i][j] = acc[i][j] * 0.999999f + 1e-7f;
  float s = 0;
  for (int i = 0; i < 24; i++)
    for (int j = 0; j < 8; j++) s += acc[i][j];
  return s;
}

void rmsprop_generic(float* w, float* v, const float* g, long n, float lr, float rho, float one_minus_rho, float eps) {
  for (long i = 0; i < n; i++) rmsprop_update(w[i], v[i], g[i], lr, rho, one_minus_rho, eps);
}

}  // namespace cpu
}  // namespace tl
