// pool.cu: 2x2 max-pool, stride 2, NHWC, floor of odd sizes (Keras 'valid').
// One thread per output element, channels fastest so a warp reads contiguous memory.
#include "host/ops/cuda_ops.h"
#include "common.cuh"

namespace tl {
namespace cuda {

namespace {
__global__ void maxpool2x2_kernel(const float* __restrict__ x, float* __restrict__ y, int n, int h, int w, int c) {
  const int oh = h / 2, ow = w / 2;
  const int64_t total = (int64_t)n * oh * ow * c;
  GRID_STRIDE(i, total) {
    const int ch = (int)(i % c);
    int64_t r = i / c;
    const int ox = (int)(r % ow);
    r /= ow;
    const int oy = (int)(r % oh);
    const int64_t img = r / oh;
    const float* p = x + ((img * h + 2 * oy) * (int64_t)w + 2 * ox) * c + ch;
    const int64_t row = (int64_t)w * c;
    float a0 = p[0], a1 = p[c], b0 = p[row], b1 = p[row + c];
    float m0 = a0 > a1 ? a0 : a1;
    float m1 = b0 > b1 ? b0 : b1;
    y[i] = m0 > m1 ? m0 : m1;
  }
}
}  // namespace

void maxpool2x2(const float* x, float* y, int n, int h, int w, int c) {
  const int64_t total = (int64_t)n * (h / 2) * (w / 2) * c;
  if (total == 0) return;
  TL_LAUNCH(maxpool2x2_kernel, element_grid(total), kElementThreads, 0, compute_stream())(x, y, n, h, w, c);
  CUDA_CHECK_LAUNCH();
}

}  // namespace cuda
}  // namespace tl
