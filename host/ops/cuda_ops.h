// cuda_ops.h: the op kernels of kernels/*.cu seen from host C++ (the device runtime is in
// host/core/device.h). With `make CUDA=0` they come from host/ops/cuda_stub.cpp.
#pragma once
#include <cstddef>
#include <cstdint>

#include "host/core/device.h"

namespace tl {
namespace cuda {

// Tests: caps the grid of the element-wise kernels at `blocks` (0: the default 65535 * 16), so their
// grid-stride loops take several rounds on small inputs.
void set_element_grid_cap(unsigned blocks);

// Op kernels: pointers are device pointers; layouts as in host/ops/ops.h.
void conv3x3(const float* x, const float* w, const float* b, float* y, int n, int h, int wd, int cin,
             int cout, bool relu);
// The numbered conv3x3 kernels (kernels/conv3x3.cu, kernels/conv3x3_tc.cu): 1 fp32 FFMA 128x64 tiles
// (the fp32 default), 2 fp32 FFMA 128x128 tiles 8x8 per thread, 3 TF32 tensor cores, 4 BF16 tensor
// cores. Same arguments as conv3x3.
void conv3x3_variant(int variant, const float* x, const float* w, const float* b, float* y, int n, int h, int wd,
                     int cin, int cout, bool relu);
// kernels/conv_backward.cu: conv3x3's gradients (dx, dw, db may be null) and the max-pool's.
void conv3x3_backward(const float* x, const float* w, const float* dy, float* dx, float* dw, float* db, int n, int h,
                      int wd, int cin, int cout);
void maxpool2x2_backward(const float* x, const float* dy, float* dx, int n, int h, int w, int c);
void relu(const float* x, float* y, int64_t n);
void relu_backward(const float* y, const float* dy, float* dx, int64_t n);
void maxpool2x2(const float* x, float* y, int n, int h, int w, int c);
void dense(const float* x, const float* w, const float* b, float* y, int m, int k, int n, bool relu);
void dense_backward(const float* x, const float* w, const float* dy, float* dx, float* dw, float* db,
                    int m, int k, int n);
void dropout(const float* x, float* y, int64_t n, float rate, uint64_t seed, uint64_t step);
void sigmoid_bce(const float* z, const float* y, float* prob, float* loss, float* dz, int n);
void rmsprop(float* w, const float* g, float* v, int64_t n, float lr, float rho, float eps);
void f32_to_f16(const float* x, uint16_t* y, int64_t n);
// dst[i][:] = src[idx[i]][:] as float32 (src fp32 or fp16); idx is a host array of n rows (free to
// reuse on return), uploaded through idx_dev, a device buffer of n int64 owned by the caller.
void gather_rows(const void* src, bool src_f16, const int64_t* idx, int64_t* idx_dev, int n, int64_t d, float* dst);

}  // namespace cuda
}  // namespace tl
