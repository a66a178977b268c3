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
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    const float gi = g[i];
    const float vi = __fadd_rn(__fmul_rn(v[i], rho), __fmul_rn(one_minus_rho, __fmul_rn(gi, gi)));
    v[i] = vi;
    w[i] = __fsub_rn(w[i], __fmul_rn(lr, __fdiv_rn(gi, __fadd_rn(__fsqrt_rn(vi), eps))));
  }
}
}  // namespace

void rmsprop(float* w, const float* g, float* v, int64_t n, float lr, float rho, float eps) {
  if (n <= 0) return;
  unsigned blocks = blocks_for(n, 256);
  if (blocks > 65535u * 16u) blocks = 65535u * 16u;
  rmsprop_kernel<<<blocks, 256, 0, compute_stream()>>>(w, g, v, n, lr, rho, 1.0f - rho, eps);
  CUDA_CHECK_LAUNCH();
}

}  // namespace cuda
}  // namespace tl
