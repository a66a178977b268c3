// loss.cu: sigmoid + binary cross-entropy from the logit, stable for any z:
//   prob = sigmoid(z), loss = max(z,0) - z*y + log1p(exp(-|z|)), dz = (prob - y) / n
// Per-sample losses go back to the host, which sums them in order (as the CPU path does).
#include "host/ops/cuda_ops.h"
#include "common.cuh"

namespace tl {
namespace cuda {

namespace {
__global__ void sigmoid_bce_kernel(const float* __restrict__ z, const float* __restrict__ y, float* __restrict__ prob,
                                   float* __restrict__ loss, float* __restrict__ dz, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float zi = z[i], yi = y[i];
  const float e = expf(-fabsf(zi));
  const float p = zi >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
  if (prob) prob[i] = p;
  if (loss) loss[i] = __fsub_rn(zi > 0.0f ? zi : 0.0f, __fmul_rn(zi, yi)) + log1pf(e);
  if (dz) dz[i] = (p - yi) / (float)n;
}
}  // namespace

void sigmoid_bce(const float* z, const float* y, float* prob, float* loss, float* dz, int n) {
  if (n <= 0) return;
  TL_LAUNCH(sigmoid_bce_kernel, blocks_for(n, 256), 256, 0, compute_stream())(z, y, prob, loss, dz, n);
  CUDA_CHECK_LAUNCH();
}

}  // namespace cuda
}  // namespace tl
