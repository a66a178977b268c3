// cuda_stub.cpp: the CUDA backend of a CPU-only build (make CUDA=0). available() says why not;
// anything else is unreachable through resolve_device() and reports the build if called.
#include "host/core/common.h"
#include "host/ops/cuda_ops.h"

namespace tl {
namespace cuda {

namespace {
[[noreturn]] void no_cuda() { fail("this binary was built without CUDA (make CUDA=0); rebuild with nvcc on the PATH"); }
}  // namespace

bool emulated() { return false; }
void set_element_grid_cap(unsigned) {}
bool compiled() { return false; }
bool available(std::string* why) {
  if (why) *why = "built without CUDA";
  return false;
}
std::string device_description() { return "none (built without CUDA)"; }
int device_count() { return 0; }
void set_device(int) { ::tl::fail("built without CUDA (make CUDA=0): no GPU to select"); }
int current_device() { return -1; }
void* malloc(size_t) { no_cuda(); }
void free(void*) {}
void* malloc_host(size_t) { no_cuda(); }
void free_host(void*) {}
void memcpy_h2d(void*, const void*, size_t) { no_cuda(); }
void memcpy_d2h(void*, const void*, size_t) { no_cuda(); }
void memcpy_d2d(void*, const void*, size_t) { no_cuda(); }
void memset0(void*, size_t) { no_cuda(); }
void synchronize() {}
void memcpy_h2d_async_copy_stream(void*, const void*, size_t) { no_cuda(); }
void memcpy_d2h_async_compute_stream(void*, const void*, size_t) { no_cuda(); }
void compute_waits_for_copy() { no_cuda(); }
void copy_waits_for_compute() { no_cuda(); }
void sync_compute_stream() {}
void* event_create() { no_cuda(); }
void event_record(void*) { no_cuda(); }
void event_sync(void*) { no_cuda(); }
void event_destroy(void*) {}
void timer_start() { no_cuda(); }
float timer_stop_ms() { no_cuda(); }
void device_peaks(double* f, double* b) { *f = *b = 0; }
void range_push(const char*) {}
void range_pop() {}
void conv3x3(const float*, const float*, const float*, float*, int, int, int, int, int, bool) { no_cuda(); }
void conv3x3_variant(int, const float*, const float*, const float*, float*, int, int, int, int, int, bool) { no_cuda(); }
void relu(const float*, float*, int64_t) { no_cuda(); }
void relu_backward(const float*, const float*, float*, int64_t) { no_cuda(); }
void maxpool2x2(const float*, float*, int, int, int, int) { no_cuda(); }
void conv3x3_backward(const float*, const float*, const float*, float*, float*, float*, int, int, int, int, int) {
  no_cuda();
}
void maxpool2x2_backward(const float*, const float*, float*, int, int, int, int) { no_cuda(); }
void dense(const float*, const float*, const float*, float*, int, int, int, bool) { no_cuda(); }
void dense_backward(const float*, const float*, const float*, float*, float*, float*, int, int, int) { no_cuda(); }
void dropout(const float*, float*, int64_t, float, uint64_t, uint64_t) { no_cuda(); }
void sigmoid_bce(const float*, const float*, float*, float*, float*, int) { no_cuda(); }
void rmsprop(float*, const float*, float*, int64_t, float, float, float) { no_cuda(); }
void f32_to_f16(const float*, uint16_t*, int64_t) { no_cuda(); }
void gather_rows(const void*, bool, const int64_t*, int64_t*, int, int64_t, float*) { no_cuda(); }

}  // namespace cuda
}  // namespace tl
