// cpu_backward.cpp: the backward passes of the convolution and the max-pool (fine-tuning, Grad-CAM).
//
// conv3x3 backward, for y = conv(x, w) + b (NHWC, HWIO, stride 1, zero padding 1):
//   dx[n,y,x,ci]  = sum_{ky,kx,co} dy[n, y+1-ky, x+1-kx, co] w[ky,kx,ci,co]
//                 = a forward conv3x3 of dy with the kernel turned half a turn and its channel axes
//                   swapped (wf[ky,kx,co,ci] = w[2-ky,2-kx,ci,co]), no bias: it runs on the forward
//                   conv's fast paths (Winograd, the AMX tiles under bf16).
//   dw[t,ci,co]   = sum_p x_t[p,ci] dy[p,co], p over the batch's pixels, x_t the input shifted by tap
//                   t (zero outside the image): one GEMM per tap on a gathered, transposed copy of x_t
//                   (both operands then run along the reduction), the pixels taken in blocks so the
//                   copy stays small. Where the forward conv would use Winograd (and both channel
//                   counts are at least 16), dw is computed in the F(2x2) domain instead:
//                   conv3x3_weight_grad_winograd, 16 GEMMs of 2.25x fewer multiplies in all (block5 at
//                   batch 32 on 2 AVX2 threads: 530 -> ~180 ms per layer).
//   db[co]        = sum_p dy[p,co], in pixel order.
// Each output element is one task's fixed-order sum, so results do not depend on the thread count.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "host/core/threads.h"
#include "host/ops/cpu_ops.h"

namespace tl {
namespace cpu {

namespace {
constexpr int64_t kPixelBlock = 4096;  // pixels per gathered block (a multiple of the GEMM's 256-deep panels)

// ST[ci, r] = x at pixel p0 + r shifted by tap (ty, tx), zeros outside the image: the shifted pixels
// transposed, so that the weight gradient's GEMM reads both operands along its reduction.
void gather_tap_t(const float* x, float* ST, int64_t ld, int64_t p0, int64_t rows, int h, int wd, int cin, int ty,
                  int tx) {
  const int CB = 64;  // channels per task: a 64 x rows block of ST
  parallel_for((cin + CB - 1) / CB, [&](int64_t blk) {
    const int c0 = (int)blk * CB, c1 = std::min(cin, c0 + CB);
    for (int64_t r = 0; r < rows; r++) {
      const int64_t p = p0 + r;
      const int px = (int)(p % wd);
      const int64_t q = p / wd;
      const int py = (int)(q % h);
      const int64_t img = q / h;
      const int yy = py + ty, xx = px + tx;
      const bool inside = yy >= 0 && yy < h && xx >= 0 && xx < wd;
      const float* src = inside ? x + ((img * h + yy) * wd + xx) * cin : nullptr;
      for (int c = c0; c < c1; c++) ST[(int64_t)c * ld + r] = inside ? src[c] : 0.0f;
    }
  });
}

// db[c] = sum over the rows of dy [m, c], in row order; columns in parallel blocks.
void bias_grad(const float* dy, int64_t m, int c, float* db) {
  const int CB = 64;
  parallel_for((c + CB - 1) / CB, [&](int64_t blk) {
    const int c0 = (int)blk * CB, c1 = std::min(c, c0 + CB);
    float acc[CB];
    for (int j = c0; j < c1; j++) acc[j - c0] = 0.0f;
    for (int64_t i = 0; i < m; i++)
      for (int j = c0; j < c1; j++) acc[j - c0] += dy[i * c + j];
    for (int j = c0; j < c1; j++) db[j] = acc[j - c0];
  });
}
}  // namespace

void flip_conv_weights(const float* w, float* wf, int cin, int cout) {
  parallel_for(9, [&](int64_t t) {
    const float* src = w + (size_t)(8 - t) * cin * cout;
    float* dst = wf + (size_t)t * cin * cout;
    for (int ci = 0; ci < cin; ci++)
      for (int co = 0; co < cout; co++) dst[(size_t)co * cin + ci] = src[(size_t)ci * cout + co];
  });
}

void conv3x3_backward(const float* x, const float* w, const float* dy, float* dx, float* dw, float* db, int n,
                      int h, int wd, int cin, int cout, bool bf16) {
  const int64_t P = (int64_t)n * h * wd;
  if (dx) {
    std::vector<float> wf((size_t)9 * cin * cout), zero((size_t)cin, 0.0f);
    flip_conv_weights(w, wf.data(), cin, cout);
    conv3x3(dy, wf.data(), zero.data(), dx, n, h, wd, cout, cin, false, bf16);
  }
  if (db) bias_grad(dy, P, cout, db);
  if (!dw) return;
  if (conv_algo_for(cin, cout, h, wd) != ConvAlgo::Direct && std::min(cin, cout) >= 16)
    return conv3x3_weight_grad_winograd(x, dy, dw, n, h, wd, cin, cout);
  const int64_t block = std::min<int64_t>(P, kPixelBlock);
  // Rows of the transposed copies padded off a multiple of 4 KB: the micro-kernel reads 6-14 of them at
  // once, and rows 16 KB apart alias in the L1 cache (measured: 1.8x slower).
  const int64_t ld = block + 16;
  std::vector<float> ST((size_t)ld * cin), DT((size_t)ld * cout);
  for (int64_t p0 = 0; p0 < P; p0 += kPixelBlock) {
    const int64_t rows = std::min(kPixelBlock, P - p0);
    // DT [cout, rows] = this block of dy transposed (the GEMM packs its panels from it).
    parallel_for((cout + 63) / 64, [&](int64_t blk) {
      const int c0 = (int)blk * 64, c1 = std::min(cout, c0 + 64);
      for (int64_t r = 0; r < rows; r++)
        for (int c = c0; c < c1; c++) DT[(size_t)c * ld + r] = dy[(p0 + r) * cout + c];
    });
    for (int t = 0; t < 9; t++) {
      gather_tap_t(x, ST.data(), ld, p0, rows, h, wd, cin, t / 3 - 1, t % 3 - 1);
      // dw[t] (+)= ST [cin, rows] DT^T [rows, cout]
      gemm(cin, cout, (int)rows, ST.data(), (int)ld, false, DT.data(), (int)ld, true, dw + (size_t)t * cin * cout,
           cout, nullptr, p0 > 0, false);
    }
  }
}

void maxpool2x2_backward(const float* x, const float* dy, float* dx, int n, int h, int w, int c) {
  const int oh = h / 2, ow = w / 2, rows = (h + 1) / 2;
  const int64_t row = (int64_t)w * c;
  parallel_for((int64_t)n * rows, [&](int64_t r) {
    const int64_t img = r / rows;
    const int oy = (int)(r % rows);
    float* d0 = dx + (img * h + 2 * oy) * row;
    float* d1 = 2 * oy + 1 < h ? d0 + row : nullptr;
    std::memset(d0, 0, sizeof(float) * (size_t)row);
    if (d1) std::memset(d1, 0, sizeof(float) * (size_t)row);
    if (oy >= oh) return;  // the odd last row: no window covers it
    const float* x0 = x + (img * h + 2 * oy) * row;
    const float* g = dy + ((img * oh + oy) * (int64_t)ow) * c;
    for (int ox = 0; ox < ow; ox++)
      for (int ch = 0; ch < c; ch++) {
        // The window in PyTorch's order; the first maximum (or the first NaN) takes the gradient.
        const int64_t off[4] = {(int64_t)2 * ox * c + ch, (int64_t)(2 * ox + 1) * c + ch,
                                row + (int64_t)2 * ox * c + ch, row + (int64_t)(2 * ox + 1) * c + ch};
        int best = 0;
        float m = x0[off[0]];
        for (int k = 1; k < 4 && !std::isnan(m); k++) {
          const float v = x0[off[k]];
          if (v > m || std::isnan(v)) {
            m = v;
            best = k;
          }
        }
        (best < 2 ? d0 : d1)[off[best] - (best < 2 ? 0 : row)] = g[(int64_t)ox * c + ch];
      }
  });
}

}  // namespace cpu
}  // namespace tl
