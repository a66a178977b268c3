// dropout.cu: inverted dropout. The keep mask is the same pure function of (seed, step, index)
// as on the CPU (host/ops/cpu_ops.h: dropout_keep), so both devices drop the same units.
#include "host/ops/cuda_ops.h"
#include "common.cuh"

namespace tl {
namespace cuda {

namespace {
__device__ __forceinline__ uint64_t mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
__global__ void dropout_kernel(const float* __restrict__ x, float* __restrict__ y, int64_t n, float rate, float scale,
                               uint64_t seed_mix) {
  GRID_STRIDE(i, n) {
    const uint64_t hsh = mix(seed_mix ^ ((uint64_t)i * 0xD1B54A32D192ED03ull));
    const float u = (float)(hsh >> 40) * (1.0f / 16777216.0f);
    y[i] = u >= rate ? __fmul_rn(x[i], scale) : 0.0f;
  }
}
}  // namespace

void dropout(const float* x, float* y, int64_t n, float rate, uint64_t seed, uint64_t step) {
  if (n <= 0) return;
  if (rate <= 0.0f) {
    if (x != y) CUDA_CHECK(cudaMemcpyAsync(y, x, sizeof(float) * (size_t)n, cudaMemcpyDeviceToDevice, compute_stream()));
    return;
  }
  uint64_t z = seed + 0x9E3779B97F4A7C15ull * (step + 1);  // as dropout_keep, first round on the host
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z = z ^ (z >> 31);
  TL_LAUNCH(dropout_kernel, element_grid(n), kElementThreads, 0, compute_stream())(x, y, n, rate, 1.0f / (1.0f - rate), z);
  CUDA_CHECK_LAUNCH();
}

}  // namespace cuda
}  // namespace tl
