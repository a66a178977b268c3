// dropout.cu: inverted dropout. The keep mask is the same pure function of (seed, step, index)
// as on the CPU (host/ops/dropout_mask.h, one definition for both), so both devices drop the same units.
#include "host/ops/cuda_ops.h"
#include "common.cuh"
#include "host/ops/dropout_mask.h"

namespace tl {
namespace cuda {

namespace {
__global__ void dropout_kernel(const float* __restrict__ x, float* __restrict__ y, int64_t n, float rate, float scale,
                               uint64_t key) {
  GRID_STRIDE(i, n) { y[i] = dropout_keep_keyed(key, (uint64_t)i, rate) ? __fmul_rn(x[i], scale) : 0.0f; }
}
}  // namespace

void dropout(const float* x, float* y, int64_t n, float rate, uint64_t seed, uint64_t step) {
  if (n <= 0) return;
  if (rate <= 0.0f) {
    if (x != y) CUDA_CHECK(cudaMemcpyAsync(y, x, sizeof(float) * (size_t)n, cudaMemcpyDeviceToDevice, compute_stream()));
    return;
  }
  TL_LAUNCH(dropout_kernel, element_grid(n), kElementThreads, 0, compute_stream())(
      x, y, n, rate, 1.0f / (1.0f - rate), dropout_call_key(seed, step));
  CUDA_CHECK_LAUNCH();
}

}  // namespace cuda
}  // namespace tl
