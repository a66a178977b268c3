// device.h: the CUDA device runtime seen from host C++ (memory, copies, streams, events, timing,
// NVTX); the op kernels' declarations are in host/ops/cuda_ops.h. Both are the boundary between
// host C++ (g++) and the CUDA code in kernels/ (nvcc).
//
// Host code never includes CUDA headers. With CUDA these functions are defined in kernels/*.cu;
// with `make CUDA=0` they come from host/ops/cuda_stub.cpp, where available() is false and the
// rest report that the binary was built without CUDA.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

namespace tl {
namespace cuda {

bool compiled();                          // built with nvcc
bool emulated();                          // the tests' CPU emulation of CUDA (tests/cuda_emu), not a GPU
bool available(std::string* why = nullptr);  // a usable GPU is present
std::string device_description();        // "NVIDIA H100 80GB HBM3 (sm_90, 79.1 GiB)"
// Several GPUs: every call below works on the calling host thread's current device (CUDA's rule);
// each device has its own streams, events and cuBLAS handle, created on first use.
int device_count();
void set_device(int d);
int current_device();

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

// Page-locked host memory owned by the object (freed with it, also when a constructor throws).
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  explicit PinnedBuffer(size_t bytes) : p_(malloc_host(bytes)) {}
  ~PinnedBuffer() { free_host(p_); }
  PinnedBuffer(PinnedBuffer&& o) noexcept : p_(o.p_) { o.p_ = nullptr; }
  PinnedBuffer& operator=(PinnedBuffer&& o) noexcept {
    std::swap(p_, o.p_);
    return *this;
  }
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  void* get() const { return p_; }

 private:
  void* p_ = nullptr;
};

// NVTX ranges (named in Nsight Systems / Compute); no-ops without CUDA.
void range_push(const char* name);
void range_pop();

}  // namespace cuda
}  // namespace tl
