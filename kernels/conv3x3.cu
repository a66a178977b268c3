// conv3x3.cu: 3x3 convolution, stride 1, zero padding 1, bias and optional fused ReLU, as an
// implicit GEMM over NHWC activations and HWIO weights:
//   Y[m][co] = b[co] + sum_kk A[m][kk] * W[kk][co],  m = (n, y, x),  kk = (tap, ci)
// where A[m][kk] = X[n][y+dy][x+dx][ci] (zero outside the image) is never materialised.
// Tiles of 128 pixels x 64 output channels per 256-thread block, 8 x 4 outputs per thread,
// K staged through shared memory 8 at a time. fp32 FFMA throughout (no TF32), so results match
// the CPU reference to rounding.
#include "host/ops/cuda_ops.h"
#include "common.cuh"

namespace tl {
namespace cuda {

namespace {

constexpr int BM = 128, BN = 64, BK = 8, THREADS = 256;
constexpr int TM = 8, TN = 4;  // outputs per thread: TM pixels x TN channels

// VEC4: cin % 4 == 0, so the 4 consecutive kk a thread loads are 4 channels of one tap: one float4.
template <bool VEC4>
__global__ void __launch_bounds__(THREADS)
conv3x3_kernel(const float* __restrict__ x, const float* __restrict__ w, const float* __restrict__ b,
               float* __restrict__ y, int n, int h, int wd, int cin, int cout, int relu) {
  __shared__ __align__(16) float As[BK][BM];
  __shared__ __align__(16) float Bs[BK][BN];

  const int64_t M = (int64_t)n * h * wd;
  const int K = 9 * cin;
  const int64_t m0 = (int64_t)blockIdx.x * BM;
  const int n0 = blockIdx.y * BN;
  const int tid = threadIdx.x;
  const int tx = tid % 16, ty = tid / 16;  // tx: channel group, ty: pixel group

  // A loader: each thread loads row a_row of the tile, 4 consecutive kk starting at a_k.
  const int a_row = tid % BM;
  const int a_k = (tid / BM) * 4;
  const int64_t am = m0 + a_row;
  const bool a_valid_row = am < M;
  int ay = 0, ax = 0;
  int64_t a_img_base = 0;  // offset of image n in x
  if (a_valid_row) {
    ax = (int)(am % wd);
    int64_t r = am / wd;
    ay = (int)(r % h);
    a_img_base = (r / h) * (int64_t)h * wd * cin;
  }
  // B loader: each thread loads 2 consecutive channels of row b_k.
  const int b_k = tid / 32;
  const int b_col = (tid % 32) * 2;

  float acc[TM][TN];
#pragma unroll
  for (int i = 0; i < TM; i++)
#pragma unroll
    for (int j = 0; j < TN; j++) acc[i][j] = 0.0f;

  for (int k0 = 0; k0 < K; k0 += BK) {
    if (VEC4) {
      const int kk = k0 + a_k;
      float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
      if (a_valid_row && kk < K) {
        const int tap = kk / cin, ci = kk - tap * cin;
        const int yy = ay + tap / 3 - 1, xx = ax + tap % 3 - 1;
        if (yy >= 0 && yy < h && xx >= 0 && xx < wd)
          v = *reinterpret_cast<const float4*>(x + a_img_base + ((int64_t)yy * wd + xx) * cin + ci);
      }
      As[a_k + 0][a_row] = v.x;
      As[a_k + 1][a_row] = v.y;
      As[a_k + 2][a_row] = v.z;
      As[a_k + 3][a_row] = v.w;
    } else {
#pragma unroll
      for (int q = 0; q < 4; q++) {
        const int kk = k0 + a_k + q;
        float v = 0.0f;
        if (a_valid_row && kk < K) {
          const int tap = kk / cin, ci = kk - tap * cin;
          const int yy = ay + tap / 3 - 1, xx = ax + tap % 3 - 1;
          if (yy >= 0 && yy < h && xx >= 0 && xx < wd) v = x[a_img_base + ((int64_t)yy * wd + xx) * cin + ci];
        }
        As[a_k + q][a_row] = v;
      }
    }
#pragma unroll
    for (int q = 0; q < 2; q++) {
      const int kk = k0 + b_k, co = n0 + b_col + q;
      Bs[b_k][b_col + q] = (kk < K && co < cout) ? w[(int64_t)kk * cout + co] : 0.0f;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < BK; kk++) {
      float a[TM], bv[TN];
#pragma unroll
      for (int i = 0; i < TM; i++) a[i] = As[kk][ty * TM + i];
#pragma unroll
      for (int j = 0; j < TN; j++) bv[j] = Bs[kk][tx * TN + j];
#pragma unroll
      for (int i = 0; i < TM; i++)
#pragma unroll
        for (int j = 0; j < TN; j++) acc[i][j] = fmaf(a[i], bv[j], acc[i][j]);
    }
    __syncthreads();
  }

#pragma unroll
  for (int i = 0; i < TM; i++) {
    const int64_t m = m0 + ty * TM + i;
    if (m >= M) continue;
#pragma unroll
    for (int j = 0; j < TN; j++) {
      const int co = n0 + tx * TN + j;
      if (co >= cout) continue;
      float v = acc[i][j] + b[co];
      if (relu) v = v > 0.0f ? v : 0.0f;
      y[m * cout + co] = v;
    }
  }
}

}  // namespace

void conv3x3(const float* x, const float* w, const float* b, float* y, int n, int h, int wd, int cin, int cout,
             bool relu) {
  const int64_t M = (int64_t)n * h * wd;
  if (M == 0 || cout == 0) return;
  dim3 grid((unsigned)((M + BM - 1) / BM), (unsigned)((cout + BN - 1) / BN));
  // float4 loads need cin % 4 == 0 and a 16-byte aligned x (cudaMalloc gives 256 bytes).
  if (cin % 4 == 0 && ((uintptr_t)x & 15) == 0)
    TL_LAUNCH(conv3x3_kernel<true>, grid, THREADS, 0, compute_stream())(x, w, b, y, n, h, wd, cin, cout, relu ? 1 : 0);
  else
    TL_LAUNCH(conv3x3_kernel<false>, grid, THREADS, 0, compute_stream())(x, w, b, y, n, h, wd, cin, cout, relu ? 1 : 0);
  CUDA_CHECK_LAUNCH();
}

}  // namespace cuda
}  // namespace tl
