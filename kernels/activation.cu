// activation.cu: ReLU, its backward, and the fp32 -> fp16 cast used for fp16 shards.
#include <cuda_fp16.h>

#include "host/ops/cuda_ops.h"
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
__global__ void gather_rows_kernel(const void* __restrict__ src, int f16, const int64_t* __restrict__ idx, int n,
                                   int64_t d, float* __restrict__ dst) {
  GRID_STRIDE(i, (int64_t)n * d) {
    const int64_t r = i / d, c = i - r * d;
    const int64_t s = idx[r] * d + c;
    dst[i] = f16 ? __half2float(reinterpret_cast<const __half*>(src)[s]) : reinterpret_cast<const float*>(src)[s];
  }
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

void gather_rows(const void* src, bool src_f16, const int64_t* idx, int n, int64_t d, float* dst) {
  if (n <= 0 || d <= 0) return;
  // The index list travels with the launch's stream order through a small device buffer.
  static int64_t* dev_idx = nullptr;
  static int cap = 0;
  if (n > cap) {
    if (dev_idx) CUDA_CHECK(cudaFree(dev_idx));
    CUDA_CHECK(cudaMalloc(&dev_idx, sizeof(int64_t) * (size_t)n));
    cap = n;
  }
  CUDA_CHECK(cudaMemcpyAsync(dev_idx, idx, sizeof(int64_t) * (size_t)n, cudaMemcpyHostToDevice, compute_stream()));
  gather_rows_kernel<<<grid_for((int64_t)n * d), kThreads, 0, compute_stream()>>>(src, src_f16 ? 1 : 0, dev_idx, n, d, dst);
  CUDA_CHECK_LAUNCH();
  // The host array may change after we return: wait for the small copy.
  CUDA_CHECK(cudaStreamSynchronize(compute_stream()));
}

}  // namespace cuda
}  // namespace tl
