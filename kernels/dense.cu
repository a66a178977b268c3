// dense.cu: dense layers through cuBLAS (fp32 SGEMM, no TF32), with row-major tensors mapped onto
// cuBLAS' column-major convention: a row-major [r][c] matrix is a column-major c x r matrix.
//   forward   y[m,n]  = x[m,k] w[k,n] + b     ->  y^T = w^T x^T
//   backward  dw[k,n] = x^T dy                ->  dw^T = dy^T x
//             dx[m,k] = dy w^T                ->  dx^T = w dy^T
//             db[n]   = column sums of dy (one thread per column, rows in order, like the CPU)
#include "host/ops/cuda_ops.h"
#include "common.cuh"

namespace tl {
namespace cuda {

namespace {
__global__ void broadcast_rows_kernel(const float* __restrict__ b, float* __restrict__ y, int m, int n) {
  GRID_STRIDE(i, (int64_t)m * n) { y[i] = b[i % n]; }
}
__global__ void relu_inplace_kernel(float* y, int64_t total) {
  GRID_STRIDE(i, total) { y[i] = y[i] > 0.0f ? y[i] : 0.0f; }
}
__global__ void column_sums_kernel(const float* __restrict__ dy, float* __restrict__ db, int m, int n) {
  const int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= n) return;
  float s = 0.0f;
  for (int i = 0; i < m; i++) s += dy[(int64_t)i * n + j];
  db[j] = s;
}
}  // namespace

void dense(const float* x, const float* w, const float* b, float* y, int m, int k, int n, bool relu) {
  if (m == 0 || n == 0) return;
  TL_LAUNCH(broadcast_rows_kernel, element_grid((int64_t)m * n), kElementThreads, 0, compute_stream())(b, y, m, n);
  CUDA_CHECK_LAUNCH();
  const float one = 1.0f;
  if (k > 0) CUBLAS_CHECK(cublasSgemm(cublas(), CUBLAS_OP_N, CUBLAS_OP_N, n, m, k, &one, w, n, x, k, &one, y, n));
  if (relu) {
    TL_LAUNCH(relu_inplace_kernel, element_grid((int64_t)m * n), kElementThreads, 0, compute_stream())(y, (int64_t)m * n);
    CUDA_CHECK_LAUNCH();
  }
}

void dense_backward(const float* x, const float* w, const float* dy, float* dx, float* dw, float* db, int m, int k,
                    int n) {
  const float one = 1.0f, zero = 0.0f;
  if (k > 0 && n > 0) {
    if (m > 0)
      CUBLAS_CHECK(cublasSgemm(cublas(), CUBLAS_OP_N, CUBLAS_OP_T, n, k, m, &one, dy, n, x, k, &zero, dw, n));
    else
      CUDA_CHECK(cudaMemsetAsync(dw, 0, sizeof(float) * (size_t)k * n, compute_stream()));
  }
  if (db && n > 0) {
    TL_LAUNCH(column_sums_kernel, blocks_for(n, 128), 128, 0, compute_stream())(dy, db, m, n);
    CUDA_CHECK_LAUNCH();
  }
  if (dx && m > 0 && k > 0) {
    if (n > 0)
      CUBLAS_CHECK(cublasSgemm(cublas(), CUBLAS_OP_T, CUBLAS_OP_N, k, m, n, &one, w, n, dy, n, &zero, dx, k));
    else
      CUDA_CHECK(cudaMemsetAsync(dx, 0, sizeof(float) * (size_t)m * k, compute_stream()));
  }
}

}  // namespace cuda
}  // namespace tl
