// cpu_ops.h: the CPU implementation of every op. Multi-threaded (threads.h) and vectorised
// (cpu_kernels.h); each output element is computed by one task in a fixed order, so results do
// not depend on the thread count. Layouts as in ops.h.
#pragma once
#include "host/ops/dropout_mask.h"
#include <cstddef>
#include <cstdint>

namespace tl {
namespace cpu {

// x [n,h,w,cin] NHWC, w [3,3,cin,cout] HWIO, b [cout] -> y [n,h,w,cout]; stride 1, zero pad 1.
// Winograd F(4x4,3x3) from 128 input and output channels on images of 28 pixels and more, F(2x2,3x3)
// from 16 output channels, else direct (TL_CONV=direct|winograd|winograd4, or set_conv_algo, forces one).
// bf16 (--precision bf16; needs AMX or AVX512_BF16, cpu_amx.h's bf16_path()): on AMX CPUs the direct
// conv on tiles (cpu_amx.h); else Winograd F(2x2) on every layer with the planes' GEMMs in bf16
// (operands rounded to nearest even, fp32 sums); F(4x4) only when forced (TL_CONV).
// TL_CONV=amx3 (ConvAlgo::Amx3): fp32 as bf16x3 on AMX tiles (three bf16 products per term).
void conv3x3(const float* x, const float* w, const float* b, float* y, int n, int h, int wd, int cin,
             int cout, bool relu, bool bf16 = false);
void conv3x3_direct(const float* x, const float* w, const float* b, float* y, int n, int h, int wd, int cin,
                    int cout, bool relu);
// m: the output tile, 2 for F(2x2,3x3) or 4 for F(4x4,3x3).
void conv3x3_winograd(const float* x, const float* w, const float* b, float* y, int n, int h, int wd, int cin,
                      int cout, bool relu, int m = 2, bool bf16 = false);
// conv3x3's weight gradient dw [3,3,cin,cout] = sum over pixels of x_tap dy, in the Winograd F(2x2)
// domain: dU = sum over tiles of (B^T d B) (A dy A^T), 16 GEMMs [cin x tiles] [tiles x cout] (2.25x
// fewer multiplies than the 9 per-tap GEMMs), then dw = G^T dU G: exactly the gradient of
// conv3x3_winograd's own formula.
void conv3x3_weight_grad_winograd(const float* x, const float* dy, float* dw, int n, int h, int wd, int cin,
                                  int cout);
enum class ConvAlgo { Auto, Direct, Winograd, Winograd4, Amx3 };
void set_conv_algo(ConvAlgo a);
// The algorithm conv3x3 uses for a layer (h, w: its size; 0: large).
ConvAlgo conv_algo_for(int cin, int cout, int h = 0, int w = 0);

// C[m,n] = op(A)[m,k] op(B)[k,n] (+ bias[n] | + C when accumulate), optional ReLU.
// op(A) = A (row-major, lda) or A^T when ta (A stored [k][lda]); likewise B with tb.
void gemm(int m, int n, int k, const float* a, int lda, bool ta, const float* b, int ldb, bool tb, float* c,
          int ldc, const float* bias, bool accumulate, bool relu);

// conv3x3's backward (cpu_backward.cpp): dy [n,h,w,cout] is the gradient at the conv's output before
// its ReLU (relu_backward first for a fused conv+ReLU). dx [n,h,w,cin], dw [3,3,cin,cout], db [cout];
// any may be null. dx is the forward conv of dy with the flipped kernel (flip_conv_weights), bf16 as
// conv3x3's; dw and db are fp32 sums.
void conv3x3_backward(const float* x, const float* w, const float* dy, float* dx, float* dw, float* db, int n,
                      int h, int wd, int cin, int cout, bool bf16 = false);
// wf[ky,kx,co,ci] = w[2-ky,2-kx,ci,co]: the kernel whose forward conv is the input gradient.
void flip_conv_weights(const float* w, float* wf, int cin, int cout);
// dx [n,h,w,c] = dy [n,h/2,w/2,c] routed to each window's first maximum in PyTorch's order (row by
// row; a NaN wins), zero elsewhere (and on the odd last row and column).
void maxpool2x2_backward(const float* x, const float* dy, float* dx, int n, int h, int w, int c);

void relu(const float* x, float* y, int64_t n);
void relu_backward(const float* y, const float* dy, float* dx, int64_t n);  // dx = dy * (y > 0)
void maxpool2x2(const float* x, float* y, int n, int h, int w, int c);      // floor(h/2), floor(w/2)

// x [m,k], w [k,n], b [n] -> y [m,n] (see dense_partial_blocks for k >= 1024)
void dense(const float* x, const float* w, const float* b, float* y, int m, int k, int n, bool relu);
// dw = x^T dy, db = column sums of dy, dx = dy w^T (dx may be null)
void dense_backward(const float* x, const float* w, const float* dy, float* dx, float* dw, float* db, int m,
                    int k, int n);

// One RMSprop step of one weight (tf.keras 2.x: epsilon outside the square root); the formula the
// micro-kernel builds' rmsprop (cpu_kernels.h) vectorise, operation for operation.
inline void rmsprop_update(float& w, float& v, float g, float lr, float rho, float one_minus_rho, float eps) {
  const float vi = v * rho + one_minus_rho * (g * g);
  v = vi;
  w = w - lr * (g / (__builtin_sqrtf(vi) + eps));
}

// dense_backward's dw = x^T dy (x [m,k], dy [m,n]) fused with rmsprop on w [k,n] and its state v:
// the gradient is applied tile by tile and never stored. db (optional) = column sums of dy. The
// results are bit-identical to dense_backward followed by rmsprop.
// With x_next [m_next, k] (the next batch), it also leaves that batch's partial sums through the
// updated w in next_partials (dense_partial_blocks(k) * m_next * n floats; k must allow them), so
// dense_from_partials gives the next forward bit-identically to dense() without reading w again.
void dense_backward_rmsprop(const float* x, const float* dy, float* w, float* v, float* db, int m, int k, int n,
                            float lr, float rho, float eps, const float* x_next = nullptr, int m_next = 0,
                            float* next_partials = nullptr);

// dense() with k >= 1024 sums k in blocks of 512 rows: partial sums P [blocks][m][n], each one
// chain of FMAs from zero in k order, then y = relu(bias + P_0 + P_1 + ...) in block order.
// dense_partial_blocks: the number of blocks (0: k too short, dense() is one GEMM).
int dense_partial_blocks(int k);
void dense_partials(const float* x, const float* w, float* P, int m, int k, int n);
void dense_from_partials(const float* P, int m, int k, int n, const float* bias, bool relu, float* y);

// Inverted dropout: y = x / (1 - rate) where kept, else 0. The mask is a pure function of
// (seed, step, index) (dropout_keep), so the backward pass is the same call on dy.
void dropout(const float* x, float* y, int64_t n, float rate, uint64_t seed, uint64_t step);

// Per element: prob = sigmoid(z); loss = max(z,0) - z*y + log1p(exp(-|z|)); dz = (prob - y) / n.
void sigmoid_bce(const float* z, const float* y, float* prob, float* loss, float* dz, int n);

// v = rho*v + (1-rho)*g*g; w = w - lr * (g / (sqrt(v) + eps))   (tf.keras 2.x / PyTorch RMSprop)
void rmsprop(float* w, const float* g, float* v, int64_t n, float lr, float rho, float eps);

void f32_to_f16(const float* x, uint16_t* y, int64_t n);
void f16_to_f32(const uint16_t* x, float* y, int64_t n);
uint16_t half_from_float(float f);  // round to nearest even, like __float2half_rn
float float_from_half(uint16_t h);

}  // namespace cpu

}  // namespace tl
