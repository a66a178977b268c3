// conv_backward.cu: the backward passes of conv3x3 and of the 2x2 max-pool (fine-tuning, Grad-CAM).
//
// conv3x3 (the CPU's cpu_backward.cpp says the same in its words):
//   dx = the forward conv3x3 kernel run on dy with the flipped kernel wf[ky,kx,co,ci] = w[2-ky,2-kx,ci,co]
//   dw[t,ci,co] = sum_p x_t[p,ci] dy[p,co]: 64x64 tiles of one tap per block, the pixels in slices
//        (grid.z = 9 taps x slices) whose partial tiles a second kernel sums in slice order, so the
//        result is the same on every run (no atomics)
//   db[co] = sum_p dy[p,co]: partial sums per slice, summed in slice order by the same kernel
// max-pool: one thread per input element; the element receives its window's gradient when it is the
// window's first maximum in PyTorch's order (a NaN wins), else zero.
#include <algorithm>
#include <vector>

#include "host/core/device.h"
#include "host/ops/cuda_ops.h"
#include "common.cuh"

namespace tl {
namespace cuda {

namespace {

constexpr int WT = 64, WK = 16, WTHREADS = 256;  // dw tiles: 64 ci x 64 co, 16 pixels per step, 4x4 per thread

// Device scratch that grows on demand and lives for the process (one set per device): the flipped
// kernel, a zero bias and the partial sums. Each device is driven by one host thread at a time.
float* scratch(int slot, size_t floats) {
  struct Buf {
    float* p = nullptr;
    size_t n = 0;
  };
  static Buf bufs[16][4];
  Buf& b = bufs[current_device() & 15][slot];
  if (b.n < floats) {
    if (b.p) cuda::free(b.p);
    b.p = (float*)cuda::malloc(floats * sizeof(float));
    b.n = floats;
  }
  return b.p;
}

__global__ void flip_weights_kernel(const float* __restrict__ w, float* __restrict__ wf, int cin, int cout) {
  const int64_t total = (int64_t)9 * cin * cout;
  GRID_STRIDE(i, total) {
    // i indexes wf [t][co][ci]
    const int ci = (int)(i % cin);
    const int64_t r = i / cin;
    const int co = (int)(r % cout);
    const int t = (int)(r / cout);
    wf[i] = w[((int64_t)(8 - t) * cin + ci) * cout + co];
  }
}

__global__ void fill_kernel(float* p, float v, int64_t n) {
  GRID_STRIDE(i, n) { p[i] = v; }
}

// part[s][t][ci][co] = sum over slice s of the pixels of x_t[p, ci] dy[p, co].
__global__ void __launch_bounds__(WTHREADS)
conv_dw_kernel(const float* __restrict__ x, const float* __restrict__ dy, float* __restrict__ part, int n, int h,
               int wd, int cin, int cout, int64_t slice) {
  __shared__ float Xs[WK][WT];
  __shared__ float Ds[WK][WT];
  const int t = blockIdx.z % 9, s = blockIdx.z / 9;
  const int ty = t / 3 - 1, tx = t % 3 - 1;
  const int ci0 = blockIdx.y * WT, co0 = blockIdx.x * WT;
  const int64_t P = (int64_t)n * h * wd;
  const int64_t p_begin = s * slice, p_end = P < p_begin + slice ? P : p_begin + slice;
  const int tid = threadIdx.x;
  const int tr = tid / 16, tc = tid % 16;  // this thread's 4 ci (rows) and 4 co (columns)
  float acc[4][4] = {};
  for (int64_t p0 = p_begin; p0 < p_end; p0 += WK) {
    // Load 16 pixels x 64 channels of x_t and of dy: 1024 values each, 4 per thread, channels fastest.
    for (int k = 0; k < 4; k++) {
      const int e = tid + k * WTHREADS;
      const int r = e / WT, c = e % WT;
      const int64_t p = p0 + r;
      float xv = 0.0f, dv = 0.0f;
      if (p < p_end) {
        const int px = (int)(p % wd);
        const int64_t q = p / wd;
        const int py = (int)(q % h);
        const int64_t img = q / h;
        const int yy = py + ty, xx = px + tx;
        if (ci0 + c < cin && yy >= 0 && yy < h && xx >= 0 && xx < wd)
          xv = x[((img * h + yy) * wd + xx) * cin + ci0 + c];
        if (co0 + c < cout) dv = dy[p * cout + co0 + c];
      }
      Xs[r][c] = xv;
      Ds[r][c] = dv;
    }
    __syncthreads();
    for (int r = 0; r < WK; r++) {
      float a[4], b[4];
      for (int i = 0; i < 4; i++) a[i] = Xs[r][tr * 4 + i];
      for (int j = 0; j < 4; j++) b[j] = Ds[r][tc * 4 + j];
      for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
    __syncthreads();
  }
  float* out = part + ((int64_t)s * 9 + t) * cin * cout;
  for (int i = 0; i < 4; i++) {
    const int ci = ci0 + tr * 4 + i;
    if (ci >= cin) continue;
    for (int j = 0; j < 4; j++) {
      const int co = co0 + tc * 4 + j;
      if (co < cout) out[(int64_t)ci * cout + co] = acc[i][j];
    }
  }
}

// part[s][co] = sum over slice s of dy[p, co], in pixel order.
__global__ void conv_db_kernel(const float* __restrict__ dy, float* __restrict__ part, int64_t P, int cout,
                               int64_t slice) {
  const int co = blockIdx.x * blockDim.x + threadIdx.x;
  const int s = blockIdx.y;
  if (co >= cout) return;
  const int64_t p_end = P < (s + 1) * slice ? P : (s + 1) * slice;
  float acc = 0.0f;
  for (int64_t p = s * slice; p < p_end; p++) acc += dy[p * cout + co];
  part[(int64_t)s * cout + co] = acc;
}

// out[i] = sum_s part[s][i], s in order.
__global__ void sum_slices_kernel(const float* __restrict__ part, float* __restrict__ out, int64_t len, int slices) {
  GRID_STRIDE(i, len) {
    float acc = part[i];
    for (int s = 1; s < slices; s++) acc += part[(int64_t)s * len + i];
    out[i] = acc;
  }
}

__global__ void maxpool2x2_backward_kernel(const float* __restrict__ x, const float* __restrict__ dy,
                                           float* __restrict__ dx, int n, int h, int w, int c) {
  const int oh = h / 2, ow = w / 2;
  const int64_t total = (int64_t)n * h * w * c;
  GRID_STRIDE(i, total) {
    const int ch = (int)(i % c);
    int64_t r = i / c;
    const int xx = (int)(r % w);
    r /= w;
    const int yy = (int)(r % h);
    const int64_t img = r / h;
    const int oy = yy / 2, ox = xx / 2;
    float g = 0.0f;
    if (oy < oh && ox < ow) {
      const int64_t row = (int64_t)w * c;
      const float* p = x + ((img * h + 2 * oy) * (int64_t)w + 2 * ox) * c + ch;
      const int64_t off[4] = {0, c, row, row + c};
      int best = 0;
      float m = p[0];
      for (int k = 1; k < 4 && !isnan(m); k++) {
        const float v = p[off[k]];
        if (v > m || isnan(v)) {
          m = v;
          best = k;
        }
      }
      if (best == (yy - 2 * oy) * 2 + (xx - 2 * ox)) g = dy[((img * oh + oy) * (int64_t)ow + ox) * c + ch];
    }
    dx[i] = g;
  }
}

// Pixel slices for the reductions: enough blocks to fill a large GPU, at least 1,024 pixels a slice.
int slices_for(int64_t P, int64_t blocks_per_slice) {
  int64_t s = (512 + blocks_per_slice - 1) / blocks_per_slice;
  s = std::min<int64_t>(s, (P + 1023) / 1024);
  return (int)std::max<int64_t>(1, std::min<int64_t>(s, 64));
}

}  // namespace

void conv3x3_backward(const float* x, const float* w, const float* dy, float* dx, float* dw, float* db, int n, int h,
                      int wd, int cin, int cout) {
  const int64_t P = (int64_t)n * h * wd;
  if (dx) {
    const int64_t wn = (int64_t)9 * cin * cout;
    float* wf = scratch(0, (size_t)wn);
    float* zero = scratch(1, (size_t)cin);
    TL_LAUNCH(flip_weights_kernel, element_grid(wn), kElementThreads, 0, compute_stream())(w, wf, cin, cout);
    CUDA_CHECK_LAUNCH();
    TL_LAUNCH(fill_kernel, element_grid(cin), kElementThreads, 0, compute_stream())(zero, 0.0f, (int64_t)cin);
    CUDA_CHECK_LAUNCH();
    conv3x3(dy, wf, zero, dx, n, h, wd, cout, cin, false);
  }
  if (dw) {
    const int gx = (cout + WT - 1) / WT, gy = (cin + WT - 1) / WT;
    const int slices = slices_for(P, (int64_t)gx * gy * 9);
    const int64_t slice = (P + slices - 1) / slices;
    const int64_t len = (int64_t)9 * cin * cout;
    float* part = slices > 1 ? scratch(2, (size_t)(len * slices)) : dw;
    if (P > 0) {
      TL_LAUNCH(conv_dw_kernel, dim3(gx, gy, 9 * slices), WTHREADS, 0, compute_stream())(x, dy, part, n, h, wd, cin,
                                                                                         cout, slice);
    } else {
      TL_LAUNCH(fill_kernel, element_grid(len), kElementThreads, 0, compute_stream())(part, 0.0f, len);
    }
    CUDA_CHECK_LAUNCH();
    if (slices > 1) {
      TL_LAUNCH(sum_slices_kernel, element_grid(len), kElementThreads, 0, compute_stream())(part, dw, len, slices);
      CUDA_CHECK_LAUNCH();
    }
  }
  if (db) {
    const int slices = slices_for(P, (cout + 255) / 256);
    const int64_t slice = (P + slices - 1) / slices;
    float* part = scratch(3, (size_t)cout * slices);
    TL_LAUNCH(conv_db_kernel, dim3((cout + 255) / 256, slices), 256, 0, compute_stream())(dy, part, P, cout, slice);
    CUDA_CHECK_LAUNCH();
    TL_LAUNCH(sum_slices_kernel, element_grid(cout), kElementThreads, 0, compute_stream())(part, db, (int64_t)cout,
                                                                                          slices);
    CUDA_CHECK_LAUNCH();
  }
}

void maxpool2x2_backward(const float* x, const float* dy, float* dx, int n, int h, int w, int c) {
  const int64_t total = (int64_t)n * h * w * c;
  if (total == 0) return;
  TL_LAUNCH(maxpool2x2_backward_kernel, element_grid(total), kElementThreads, 0, compute_stream())(x, dy, dx, n, h, w,
                                                                                                  c);
  CUDA_CHECK_LAUNCH();
}

}  // namespace cuda
}  // namespace tl
