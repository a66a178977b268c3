// optim.cu: RMSprop as tf.keras 2.x (and torch.optim.RMSprop) computes it:
//   v = rho*v + (1-rho)*g*g;  w = w - lr * (g / (sqrt(v) + eps))
// Written with explicitly rounded intrinsics (no FMA contraction), so every element is
// bit-identical to the CPU implementation.
#include "host/ops/cuda_ops.h"
#include "common.cuh"

namespace tl {
namespace cuda {

namespace {
__global__ void rmsprop_kernel(float* __restrict__ w, const float* __restrict__ g, float* __restrict__ v, int64_t n,
                               float lr, float rho, float one_minus_rho, float eps) {
  GRID_STRIDE(i, n) {
    const float gi = g[i];
    const float vi = __fadd_rn(__fmul_rn(v[i], rho), __fmul_rn(one_minus_rho, __fmul_rn(gi, gi)));
    v[i] = vi;
    w[i] = __fsub_rn(w[i], __fmul_rn(lr, __fdiv_rn(gi, __fadd_rn(__fsqrt_rn(vi), eps))));
  }
}
}  // namespace

void rmsprop(float* w, const float* g, float* v, int64_t n, float lr, float rho, float eps) {
  if (n <= 0) return;
  TL_LAUNCH(rmsprop_kernel, element_grid(n), kElementThreads, 0, compute_stream())(w, g, v, n, lr, rho, 1.0f - rho, eps);
  CUDA_CHECK_LAUNCH();
}

}  // namespace cuda
}  // namespace tl
