// cuda_api.h: the boundary between host C++ (g++) and the CUDA code in kernels/ (nvcc).
//
// Host code never includes CUDA headers. With CUDA these functions are defined in kernels/*.cu;
// with `make CUDA=0` they come from host/cuda_stub.cpp, where available() is false and the
// rest report that the binary was built without CUDA.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace tl {
namespace cuda {

bool compiled();                          // built with nvcc
bool available(std::string* why = nullptr);  // a usable GPU is present
std::string device_description();        // "NVIDIA H100 80GB HBM3 (sm_90, 79.1 GiB)"

void* malloc(size_t bytes);
void free(void* p);
void* malloc_host(size_t bytes);  // pinned
void free_host(void* p);
void memcpy_h2d(void* dst, const void* src, size_t bytes);
void memcpy_d2h(void* dst, const void* src, size_t bytes);
void memcpy_d2d(void* dst, const void* src, size_t bytes);
void memset0(void* dst, size_t bytes);
void synchronize();

// Asynchronous copies for the caching pipeline: on a second stream, ordered against the
// compute stream with events (copy_done before compute reads, compute_done before reuse).
void memcpy_h2d_async_copy_stream(void* dst, const void* src, size_t bytes);
void memcpy_d2h_async_compute_stream(void* dst, const void* src, size_t bytes);
void compute_waits_for_copy();   // the compute stream waits for the copies issued so far
void copy_waits_for_compute();   // the copy stream waits for the compute issued so far
void sync_compute_stream();
// Events on the compute stream, to wait for one batch's results while the next one runs.
void* event_create();
void event_record(void* ev);
void event_sync(void* ev);
void event_destroy(void* ev);

// Benchmark timing with CUDA events on the compute stream (milliseconds between start and stop).
void timer_start();
float timer_stop_ms();
// Peak fp32 FLOP/s and memory bytes/s of device 0 from its attributes (0 when unknown).
void device_peaks(double* flops, double* bytes_per_s);

// NVTX ranges (named in Nsight Systems / Compute); no-ops without CUDA.
void range_push(const char* name);
void range_pop();

// Op kernels: pointers are device pointers; layouts as in host/ops.h.
void conv3x3(const float* x, const float* w, const float* b, float* y, int n, int h, int wd, int cin,
             int cout, bool relu);
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
// dst[i][:] = src[idx[i]][:] as float32 (src fp32 or fp16); idx is a host array of n rows.
void gather_rows(const void* src, bool src_f16, const int64_t* idx, int n, int64_t d, float* dst);

}  // namespace cuda
}  // namespace tl
