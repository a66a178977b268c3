// runtime.cu: device discovery, memory, streams, cuBLAS handle and NVTX ranges.
#include <nvtx3/nvToolsExt.h>

#include <mutex>

#include "host/core/device.h"
#include "common.cuh"

namespace tl {
namespace cuda {

namespace {
struct State {
  cudaStream_t compute = nullptr, copy = nullptr;
  cudaEvent_t copy_done = nullptr, compute_done = nullptr;
  cublasHandle_t blas = nullptr;
};
constexpr int kMaxDevices = 16;
// One State per device, created the first time a thread uses that device.
State& state() {
  static State states[kMaxDevices];
  static std::once_flag once[kMaxDevices];
  int d = 0;
  CUDA_CHECK(cudaGetDevice(&d));
  if (d < 0 || d >= kMaxDevices) ::tl::fail("CUDA device %d: at most %d devices are supported", d, kMaxDevices);
  State& s = states[d];
  std::call_once(once[d], [&s] {
    CUDA_CHECK(cudaStreamCreateWithFlags(&s.compute, cudaStreamNonBlocking));
    CUDA_CHECK(cudaStreamCreateWithFlags(&s.copy, cudaStreamNonBlocking));
    CUDA_CHECK(cudaEventCreateWithFlags(&s.copy_done, cudaEventDisableTiming));
    CUDA_CHECK(cudaEventCreateWithFlags(&s.compute_done, cudaEventDisableTiming));
    CUBLAS_CHECK(cublasCreate(&s.blas));
    CUBLAS_CHECK(cublasSetStream(s.blas, s.compute));
    // Plain fp32 (no TF32) so results can be compared with the CPU reference.
    CUBLAS_CHECK(cublasSetMathMode(s.blas, CUBLAS_DEFAULT_MATH));
  });
  return s;
}
}  // namespace

cudaStream_t compute_stream() { return state().compute; }

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}
void set_device(int d) {
  const int n = device_count();
  if (d < 0 || d >= n) ::tl::fail("CUDA device %d does not exist (%d device%s here)", d, n, n == 1 ? "" : "s");
  CUDA_CHECK(cudaSetDevice(d));
}
int current_device() {
  int d = 0;
  CUDA_CHECK(cudaGetDevice(&d));
  return d;
}

namespace {
unsigned g_element_grid_cap = 65535u * 16u;
}
unsigned element_grid_cap() { return g_element_grid_cap; }
void set_element_grid_cap(unsigned blocks) { g_element_grid_cap = blocks ? blocks : 65535u * 16u; }

void check_launch(const char* file, int line) {
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) ::tl::fail("CUDA launch error at %s:%d: %s", file, line, cudaGetErrorString(e));
  static const bool sync_each = [] {
    const char* v = getenv("TL_CUDA_SYNC");
    return v && *v && *v != '0';
  }();
  if (sync_each) {
    e = cudaDeviceSynchronize();
    if (e != cudaSuccess) ::tl::fail("CUDA error in the kernel launched at %s:%d (TL_CUDA_SYNC=1): %s", file, line, cudaGetErrorString(e));
  }
}

bool emulated() {
#ifdef TL_CUDA_EMULATION
  return true;
#else
  return false;
#endif
}
cudaStream_t copy_stream() { return state().copy; }
cublasHandle_t cublas() { return state().blas; }

bool compiled() { return true; }

bool available(std::string* why) {
  int count = 0;
  cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    if (why) {
      if (e == cudaErrorNoDevice)
        *why = "no CUDA device found";
      else if (e == cudaErrorInsufficientDriver)
        *why = "no NVIDIA driver, or one too old for this CUDA 13 build";
      else
        *why = cudaGetErrorString(e);
    }
    cudaGetLastError();
    return false;
  }
  if (count == 0) {
    if (why) *why = "no CUDA device found";
    return false;
  }
  cudaDeviceProp p;
  if (cudaGetDeviceProperties(&p, 0) != cudaSuccess) {
    if (why) *why = "cannot read the device's properties";
    return false;
  }
  if (p.major * 10 + p.minor < TL_CUDA_MIN_SM) {
    if (why)
      *why = strfmt("%s is sm_%d%d but this build targets sm_%d and newer; rebuild with make CUDA_ARCH=%d%d",
                    p.name, p.major, p.minor, TL_CUDA_MIN_SM, p.major, p.minor);
    return false;
  }
  return true;
}

std::string device_description() {
  cudaDeviceProp p;
  CUDA_CHECK(cudaGetDeviceProperties(&p, 0));
  return strfmt("%s (sm_%d%d, %.1f GiB, %d SMs)", p.name, p.major, p.minor, p.totalGlobalMem / 1073741824.0,
                p.multiProcessorCount);
}

void* malloc(size_t bytes) {
  void* p = nullptr;
  cudaError_t e = cudaMalloc(&p, bytes);
  if (e != cudaSuccess) {
    cudaGetLastError();
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    fail("out of GPU memory allocating %s (%s free of %s); use a smaller --batch", human_bytes((double)bytes).c_str(),
         human_bytes((double)free_b).c_str(), human_bytes((double)total_b).c_str());
  }
  return p;
}

void free(void* p) {
  if (p) cudaFree(p);
}

void* malloc_host(size_t bytes) {
  void* p = nullptr;
  CUDA_CHECK(cudaMallocHost(&p, bytes));
  return p;
}

void free_host(void* p) {
  if (p) cudaFreeHost(p);
}

// Synchronous copies are ordered after the work already queued on the compute stream.
void memcpy_h2d(void* dst, const void* src, size_t bytes) {
  CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, compute_stream()));
  CUDA_CHECK(cudaStreamSynchronize(compute_stream()));
}
void memcpy_d2h(void* dst, const void* src, size_t bytes) {
  CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, compute_stream()));
  CUDA_CHECK(cudaStreamSynchronize(compute_stream()));
}
void memcpy_d2d(void* dst, const void* src, size_t bytes) {
  CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, compute_stream()));
}
void memset0(void* dst, size_t bytes) { CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes, compute_stream())); }
void synchronize() { CUDA_CHECK(cudaDeviceSynchronize()); }

void memcpy_h2d_async_copy_stream(void* dst, const void* src, size_t bytes) {
  CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, copy_stream()));
}
void memcpy_d2h_async_compute_stream(void* dst, const void* src, size_t bytes) {
  CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, compute_stream()));
}
void compute_waits_for_copy() {
  State& s = state();
  CUDA_CHECK(cudaEventRecord(s.copy_done, s.copy));
  CUDA_CHECK(cudaStreamWaitEvent(s.compute, s.copy_done, 0));
}
void copy_waits_for_compute() {
  State& s = state();
  CUDA_CHECK(cudaEventRecord(s.compute_done, s.compute));
  CUDA_CHECK(cudaStreamWaitEvent(s.copy, s.compute_done, 0));
}
void sync_compute_stream() { CUDA_CHECK(cudaStreamSynchronize(compute_stream())); }

void* event_create() {
  cudaEvent_t e;
  CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  return (void*)e;
}
void event_record(void* ev) { CUDA_CHECK(cudaEventRecord((cudaEvent_t)ev, compute_stream())); }
void event_sync(void* ev) { CUDA_CHECK(cudaEventSynchronize((cudaEvent_t)ev)); }
void event_destroy(void* ev) {
  if (ev) cudaEventDestroy((cudaEvent_t)ev);
}

namespace {
cudaEvent_t g_t0 = nullptr, g_t1 = nullptr;
}
void timer_start() {
  if (!g_t0) {
    CUDA_CHECK(cudaEventCreate(&g_t0));
    CUDA_CHECK(cudaEventCreate(&g_t1));
  }
  CUDA_CHECK(cudaEventRecord(g_t0, compute_stream()));
}
float timer_stop_ms() {
  CUDA_CHECK(cudaEventRecord(g_t1, compute_stream()));
  CUDA_CHECK(cudaEventSynchronize(g_t1));
  float ms = 0;
  CUDA_CHECK(cudaEventElapsedTime(&ms, g_t0, g_t1));
  return ms;
}

void device_peaks(double* flops, double* bytes_per_s) {
  int sms = 0, clock_khz = 0, mem_khz = 0, bus_bits = 0, major = 0;
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
  cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0);
  if (cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, 0) != cudaSuccess) clock_khz = 0;
  if (cudaDeviceGetAttribute(&mem_khz, cudaDevAttrMemoryClockRate, 0) != cudaSuccess) mem_khz = 0;
  if (cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, 0) != cudaSuccess) bus_bits = 0;
  cudaGetLastError();
  int minor = 0;
  cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, 0);
  cudaGetLastError();
  // FP32 lanes per SM: 64 on sm_60, sm_70/72/75 and sm_80 (A100); 128 on sm_61, sm_86/87/89, sm_90 and later.
  const int cc = major * 10 + minor;
  const int fp32_lanes = (cc == 60 || (cc >= 70 && cc < 80) || cc == 80) ? 64 : 128;
  *flops = 2.0 * sms * fp32_lanes * (clock_khz * 1e3);
  *bytes_per_s = 2.0 * (mem_khz * 1e3) * (bus_bits / 8.0);  // double data rate
}

void range_push(const char* name) { nvtxRangePushA(name); }
void range_pop() { nvtxRangePop(); }

}  // namespace cuda
}  // namespace tl
