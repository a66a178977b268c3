// ops.h: every op behind one interface; the tensors' device picks the CPU implementation
// (cpu_ops.h) or the CUDA kernel (kernels/*.cu via cuda_ops.h). All tensors of one call must be
// on the same device. Shapes are checked here, once, for both implementations.
//
// Layouts: activations NHWC; conv weights HWIO [3][3][cin][cout]; dense weights [in][out].
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "host/core/tensor.h"

namespace tl {
namespace ops {

// x [n,h,w,cin], w [3,3,cin,cout], b [cout] -> y [n,h,w,cout]; stride 1, zero padding 1.
// precision (tensor.h): fp32 anywhere; tf32 and bf16 on the GPU's tensor cores (kernels 3 and 4);
// bf16 also on CPUs with AVX512_BF16 (Winograd with bf16 planes, cpu_ops.h).
// The fp32 GPU kernel is number 1 unless TL_CUDA_CONV_FP32=2 picks the 8x8-per-thread one.
// prepared (optional): the weights packed once for the kernel that runs them (prepare_conv3x3).
struct PreparedConv;
void conv3x3(const Tensor& x, const Tensor& w, const Tensor& b, Tensor& y, bool relu,
             Precision precision = Precision::FP32, const PreparedConv* prepared = nullptr);
// w and b packed once (per model load) for the kernel conv3x3 will run at this precision: on AMX
// CPUs the bf16 tile panels (bf16, and fp32 under TL_CONV=amx3). Null where that kernel packs per
// call or needs nothing. Valid while w and b are unchanged (prepare again after an update).
std::shared_ptr<PreparedConv> prepare_conv3x3(const Tensor& w, const Tensor& b, Precision precision);
// A run of conv3x3+ReLU layers (each optionally followed by a 2x2 max-pool) at bf16 on AMX tiles,
// the activations kept as bf16 between them (cpu_amx.h: bit-identical to the layers one by one).
// x: the first layer's input; y: the last layer's (pooled) output. False, doing nothing, unless every
// layer was prepared for AMX bf16.
bool conv3x3_stack_bf16(const Tensor& x, const std::vector<const PreparedConv*>& layers,
                        const std::vector<bool>& pool_after, Tensor& y);
// The GPU kernel number conv3x3 uses at this precision.
int cuda_conv_variant(Precision precision);
// Which convolution runs on d at this precision, for --help, tl_inspect and the progress line:
// brief ("bf16 AMX", "fp32 Winograd", "bf16 GPU k4") or in words.
std::string conv_path(Device d, Precision precision, bool brief);
// Tests and benchmarks: the fp32 GPU kernel (1 or 2; 0: TL_CUDA_CONV_FP32's, default 1).
void set_cuda_fp32_conv(int kernel);
// conv3x3's gradients. x [n,h,w,cin]: its input; w: its kernel; dy [n,h,w,cout]: the gradient at its
// output before the ReLU (for a fused conv+ReLU, relu_backward(y, dy, dy) first). dx [n,h,w,cin],
// dw [3,3,cin,cout], db [cout]; each may be null (the first layer needs no dx, Grad-CAM no dw or db).
// dx is a forward conv of dy with the flipped kernel, at this precision (bf16: on the AMX tiles where
// present); dw and db are fp32 sums.
void conv3x3_backward(const Tensor& x, const Tensor& w, const Tensor& dy, Tensor* dx, Tensor* dw, Tensor* db,
                      Precision precision = Precision::FP32);
// x [n,h,w,c] the pool's input, dy [n,h/2,w/2,c] -> dx [n,h,w,c]: each window's gradient goes to its
// first maximum in PyTorch's order (row by row; a NaN wins), zero elsewhere.
void maxpool2x2_backward(const Tensor& x, const Tensor& dy, Tensor& dx);
void relu(const Tensor& x, Tensor& y);  // y may be x
void relu_backward(const Tensor& y, const Tensor& dy, Tensor& dx);
// x [n,h,w,c] -> y [n,h/2,w/2,c] (floor, as Keras MaxPooling2D with 'valid' padding)
void maxpool2x2(const Tensor& x, Tensor& y);
// x [m,k], w [k,n], b [n] -> y [m,n] = x w + b, optional ReLU
void dense(const Tensor& x, const Tensor& w, const Tensor& b, Tensor& y, bool relu);
// dw = x^T dy, db = sum_rows dy, dx = dy w^T (dx may be null: the first layer needs none)
void dense_backward(const Tensor& x, const Tensor& w, const Tensor& dy, Tensor* dx, Tensor& dw, Tensor& db);
// dense_backward's dw (not stored) applied by RMSprop to w and its state v as it is computed, and
// db = column sums of dy: bit-identical to dense_backward then rmsprop (CPU tensors only).
// With x_next (the next batch [m', k]; k >= 1024), also that batch's partial sums through the
// updated w into next_partials ([dense_partial_blocks(k) * m', n]), from which dense_from_partials
// gives its forward, bit-identical to dense(), without another pass over w.
void dense_backward_rmsprop(const Tensor& x, const Tensor& dy, Tensor& w, Tensor& v, Tensor& db, float lr, float rho,
                            float eps, const Tensor* x_next = nullptr, Tensor* next_partials = nullptr);
// The number of 512-row blocks dense() sums k in on the CPU (0: k < 1024, one GEMM).
int dense_partial_blocks(int k);
// y [m,n] = relu(b + the partial sums P [dense_partial_blocks(k) * m, n]) (CPU tensors only).
void dense_from_partials(const Tensor& P, int k, const Tensor& b, Tensor& y, bool relu);
// Inverted dropout with the mask dropout_keep(seed, step, i); the backward pass is the same call on dy.
void dropout(const Tensor& x, Tensor& y, float rate, uint64_t seed, uint64_t step);
// z [m] logits, y [m] labels -> prob [m], loss [m] per sample, dz [m] = (prob - y)/m (dz may be null)
void sigmoid_bce(const Tensor& z, const Tensor& y, Tensor& prob, Tensor& loss, Tensor* dz);
// RMSprop as tf.keras 2.x computes it (epsilon outside the square root).
void rmsprop(Tensor& w, const Tensor& g, Tensor& v, float lr, float rho, float eps);
// fp32 -> fp16 (round to nearest even)
void to_f16(const Tensor& x, Tensor& y);

// dst [n, d] float32 = rows idx[0..n) of src [N, d] (fp32 or fp16), on src's device.
void gather_rows(const Tensor& src, const std::vector<int64_t>& idx, Tensor& dst);

// A named profiler range (NVTX on the CUDA path) for the lifetime of the object.
struct Range {
  explicit Range(const char* name);
  ~Range();
};

}  // namespace ops
}  // namespace tl
