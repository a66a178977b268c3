// activation.cu: ReLU, its backward, and the fp32 -> fp16 cast used for fp16 shards.
#include <cuda_fp16.h>

#include "host/ops/cuda_ops.h"
#include "common.cuh"

namespace tl {
namespace cuda {

namespace {

// x == y (in place) is allowed: no __restrict__.
__global__ void relu_kernel(const float* x, float* y, int64_t n) {
  GRID_STRIDE(i, n) { y[i] = x[i] > 0.0f ? x[i] : 0.0f; }
}
__global__ void relu_backward_kernel(const float* y, const float* dy, float* dx, int64_t n) {
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
  TL_LAUNCH(relu_kernel, element_grid(n), kElementThreads, 0, compute_stream())(x, y, n);
  CUDA_CHECK_LAUNCH();
}

void relu_backward(const float* y, const float* dy, float* dx, int64_t n) {
  if (n <= 0) return;
  TL_LAUNCH(relu_backward_kernel, element_grid(n), kElementThreads, 0, compute_stream())(y, dy, dx, n);
  CUDA_CHECK_LAUNCH();
}

void f32_to_f16(const float* x, uint16_t* y, int64_t n) {
  if (n <= 0) return;
  TL_LAUNCH(f32_to_f16_kernel, element_grid(n), kElementThreads, 0, compute_stream())(x, reinterpret_cast<__half*>(y), n);
  CUDA_CHECK_LAUNCH();
}

void gather_rows(const void* src, bool src_f16, const int64_t* idx, int64_t* idx_dev, int n, int64_t d, float* dst) {
  if (n <= 0 || d <= 0) return;
  // From pageable memory, cudaMemcpyAsync stages the host array before it returns, so the caller may
  // reuse idx at once and nothing waits; idx_dev is the caller's, ordered by the compute stream.
  CUDA_CHECK(cudaMemcpyAsync(idx_dev, idx, sizeof(int64_t) * (size_t)n, cudaMemcpyHostToDevice, compute_stream()));
  TL_LAUNCH(gather_rows_kernel, element_grid((int64_t)n * d), kElementThreads, 0, compute_stream())(
      src, src_f16 ? 1 : 0, idx_dev, n, d, dst);
  CUDA_CHECK_LAUNCH();
}

}  // namespace cuda
}  // namespace tl
