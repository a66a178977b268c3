// activation.cu: ReLU, its backward, and the fp32 -> fp16 cast used for fp16 shards.
#include <cuda_fp16.h>

#include "../host/cuda_api.h"
#include "common.cuh"

namespace tl {
namespace cuda {

namespace {
constexpr int kThreads = 256;
inline unsigned grid_for(int64_t n) {
  unsigned b = blocks_for(n, kThreads);
  return b > 65535u * 16u ? 65535u * 16u : b;
}
#define GRID_STRIDE(i, n) \
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

__global__ void relu_kernel(const float* __restrict__ x, float* __restrict__ y, int64_t n) {
  GRID_STRIDE(i, n) { y[i] = x[i] > 0.0f ? x[i] : 0.0f; }
}
__global__ void relu_backward_kernel(const float* __restrict__ y, const float* __restrict__ dy, float* __restrict__ dx,
                                     int64_t n) {
  GRID_STRIDE(i, n) { dx[i] = y[i] > 0.0f ? dy[i] : 0.0f; }
}
__global__ void f32_to_f16_kernel(const float* __restrict__ x, __half* __restrict__ y, int64_t n) {
  GRID_STRIDE(i, n) { y[i] = __float2half_rn(x[i]); }
}
}  // namespace

void relu(const float* x, float* y, int64_t n) {
  if (n <= 0) return;
  relu_kernel<<<grid_for(n), kThreads, 0, compute_stream()>>>(x, y, n);
  CUDA_CHECK_LAUNCH();
}

void relu_backward(const float* y, const float* dy, float* dx, int64_t n) {
  if (n <= 0) return;
  relu_backward_kernel<<<grid_for(n), kThreads, 0, compute_stream()>>>(y, dy, dx, n);
  CUDA_CHECK_LAUNCH();
}

void f32_to_f16(const float* x, uint16_t* y, int64_t n) {
  if (n <= 0) return;
  f32_to_f16_kernel<<<grid_for(n), kThreads, 0, compute_stream()>>>(x, reinterpret_cast<__half*>(y), n);
  CUDA_CHECK_LAUNCH();
}

}  // namespace cuda
}  // namespace tl
