// test_emu.cpp: the CUDA emulation's own semantics, on small kernels written here (linked into the
// emulation's test binary only): barriers are real and divergent ones are reported, shared memory is
// per block, queued work runs only when waited for and in stream order, events order two streams,
// pageable and pinned copies keep CUDA's meaning, launch limits and bad copies are errors, and the
// cuBLAS SGEMM emulation honours transposes and leading dimensions.
#include <doctest/doctest.h>

#include <thread>
#include <vector>

#include "cublas_v2.h"
#include "cuda_runtime.h"
#include "mma.h"
#include "kernels/common.cuh"

namespace {

// Each thread writes its slot, then (after the barrier) reads its neighbour's: correct only if the
// barrier holds every thread until all have written.
__global__ void rotate_kernel(const int* in, int* out, int n) {
  __shared__ int s[256];
  const int t = threadIdx.x;
  s[t] = in[blockIdx.x * n + t] * 10;
  __syncthreads();
  out[blockIdx.x * n + t] = s[(t + 1) % n];
}

__global__ void divergent_barrier_kernel(int* out) {
  if (threadIdx.x < 16) return;  // these threads never reach the barrier
  __syncthreads();
  out[threadIdx.x] = 1;
}

__global__ void fill_kernel(float* p, float v, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) p[i] = v;
}

template <class T>
T* dev_alloc(size_t n) {
  T* p = nullptr;
  REQUIRE(cudaMalloc(&p, n * sizeof(T)) == cudaSuccess);
  return p;
}

}  // namespace

TEST_CASE("[cuda] emulator: barriers are real, shared memory is per block, divergent barriers are reported") {
  const int n = 64, blocks = 3;
  std::vector<int> in(n * blocks), out(n * blocks, -1);
  for (int i = 0; i < n * blocks; i++) in[i] = i;
  int *din = dev_alloc<int>(in.size()), *dout = dev_alloc<int>(out.size());
  REQUIRE(cudaMemcpy(din, in.data(), in.size() * 4, cudaMemcpyHostToDevice) == cudaSuccess);
  TL_LAUNCH(rotate_kernel, blocks, n, 0, nullptr)(din, dout, n);
  REQUIRE(cudaGetLastError() == cudaSuccess);
  REQUIRE(cudaMemcpy(out.data(), dout, out.size() * 4, cudaMemcpyDeviceToHost) == cudaSuccess);
  for (int b = 0; b < blocks; b++)
    for (int t = 0; t < n; t++) CHECK(out[b * n + t] == in[b * n + (t + 1) % n] * 10);

  TL_LAUNCH(divergent_barrier_kernel, 1, 32, 0, nullptr)(dout);
  const cudaError_t e = cudaDeviceSynchronize();  // the fault surfaces where the work is waited for
  CHECK(e == cudaErrorLaunchFailure);
  const std::string msg = cudaGetErrorString(e);
  CHECK(msg.find("divergent_barrier_kernel block (0,0,0)") != std::string::npos);
  CHECK(msg.find("16 threads exited without reaching it") != std::string::npos);
  CHECK(cudaDeviceSynchronize() == cudaErrorLaunchFailure);  // sticky, as on a GPU
  cuda_emu::clear_fault();
  cudaFree(din);
  cudaFree(dout);
}

TEST_CASE("[cuda] emulator: work runs only when waited for, in stream order; events order two streams") {
  cudaStream_t a, b;
  REQUIRE(cudaStreamCreateWithFlags(&a, cudaStreamNonBlocking) == cudaSuccess);
  REQUIRE(cudaStreamCreateWithFlags(&b, cudaStreamNonBlocking) == cudaSuccess);
  const int n = 300;
  float* d = dev_alloc<float>(n);
  float* pinned = nullptr;
  REQUIRE(cudaMallocHost(&pinned, n * sizeof(float)) == cudaSuccess);
  // A pinned destination: the copy happens when the stream runs, not at the call.
  for (int i = 0; i < n; i++) pinned[i] = -1.0f;
  TL_LAUNCH(fill_kernel, 2, 256, 0, a)(d, 3.0f, n);
  REQUIRE(cudaMemcpyAsync(pinned, d, n * sizeof(float), cudaMemcpyDeviceToHost, a) == cudaSuccess);
  CHECK(pinned[0] == -1.0f);  // nothing has run yet
  REQUIRE(cudaStreamSynchronize(a) == cudaSuccess);
  CHECK(pinned[0] == 3.0f);
  CHECK(pinned[n - 1] == 3.0f);
  // A pinned source is read when the copy runs: changing it before then changes what arrives.
  for (int i = 0; i < n; i++) pinned[i] = 5.0f;
  REQUIRE(cudaMemcpyAsync(d, pinned, n * sizeof(float), cudaMemcpyHostToDevice, b) == cudaSuccess);
  pinned[7] = 6.0f;
  // Stream a waits for b's copy through an event, then reads d.
  cudaEvent_t ev;
  REQUIRE(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming) == cudaSuccess);
  REQUIRE(cudaEventRecord(ev, b) == cudaSuccess);
  REQUIRE(cudaStreamWaitEvent(a, ev, 0) == cudaSuccess);
  std::vector<float> host(n, 0.0f);  // pageable: the copy completes before the call returns
  REQUIRE(cudaMemcpyAsync(host.data(), d, n * sizeof(float), cudaMemcpyDeviceToHost, a) == cudaSuccess);
  CHECK(host[0] == 5.0f);
  CHECK(host[7] == 6.0f);
  // Without the event, a's copy would not see b's work: b's queue still holds its copy.
  for (int i = 0; i < n; i++) pinned[i] = 9.0f;
  REQUIRE(cudaMemcpyAsync(d, pinned, n * sizeof(float), cudaMemcpyHostToDevice, b) == cudaSuccess);
  REQUIRE(cudaMemcpyAsync(host.data(), d, n * sizeof(float), cudaMemcpyDeviceToHost, a) == cudaSuccess);
  CHECK(host[0] == 5.0f);  // the missing synchronisation shows as stale data
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  // A pageable source is staged at the call: later changes do not travel.
  std::vector<float> src(n, 1.0f);
  REQUIRE(cudaMemcpyAsync(d, src.data(), n * sizeof(float), cudaMemcpyHostToDevice, a) == cudaSuccess);
  src.assign(n, 2.0f);
  REQUIRE(cudaMemcpyAsync(host.data(), d, n * sizeof(float), cudaMemcpyDeviceToHost, a) == cudaSuccess);
  CHECK(host[0] == 1.0f);
  cudaEventDestroy(ev);
  cudaFreeHost(pinned);
  cudaFree(d);
  cudaStreamDestroy(a);
  cudaStreamDestroy(b);
}

TEST_CASE("[cuda] emulator: launch limits, copies outside allocations, fresh memory is NaN") {
  float* d = dev_alloc<float>(10);
  float first;
  REQUIRE(cudaMemcpy(&first, d, 4, cudaMemcpyDeviceToHost) == cudaSuccess);
  CHECK(first != first);  // never written: NaN
  TL_LAUNCH(fill_kernel, 1, 2048, 0, nullptr)(d, 1.0f, 10);
  cudaError_t e = cudaGetLastError();
  CHECK(e == cudaErrorInvalidConfiguration);
  CHECK(std::string(cudaGetErrorString(e)).find("more than 1024 threads per block") != std::string::npos);
  TL_LAUNCH(fill_kernel, dim3(1, 70000), 32, 0, nullptr)(d, 1.0f, 10);
  CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration);
  TL_LAUNCH(fill_kernel, 1, 32, 64 * 1024, nullptr)(d, 1.0f, 10);
  CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration);
  std::vector<float> host(11);
  CHECK(cudaMemcpy(host.data(), d, 11 * sizeof(float), cudaMemcpyDeviceToHost) == cudaErrorInvalidValue);
  CHECK(cudaMemcpy(d, host.data(), 4, cudaMemcpyDeviceToHost) == cudaErrorInvalidValue);  // wrong direction
  cudaFree(d);
}

TEST_CASE("[cuda] emulator: several devices; a stream or memory of another device is an error, as on GPUs") {
  setenv("TL_EMU_DEVICES", "2", 1);
  int n = 0;
  REQUIRE(cudaGetDeviceCount(&n) == cudaSuccess);
  CHECK(n == 2);
  CHECK(cudaSetDevice(2) == cudaErrorInvalidValue);
  REQUIRE(cudaSetDevice(1) == cudaSuccess);
  cudaStream_t s1;
  REQUIRE(cudaStreamCreate(&s1) == cudaSuccess);
  float* d1 = dev_alloc<float>(4);
  int cur = -1;
  // The current device is per host thread.
  std::thread([&] { cudaGetDevice(&cur); }).join();
  CHECK(cur == 0);
  REQUIRE(cudaSetDevice(0) == cudaSuccess);
  TL_LAUNCH(fill_kernel, 1, 32, 0, s1)(d1, 1.0f, 4);  // device 1's stream while device 0 is current
  cudaError_t e = cudaGetLastError();
  CHECK(e == cudaErrorInvalidResourceHandle);
  CHECK(std::string(cudaGetErrorString(e)).find("stream of device 1 while device 0 is current") != std::string::npos);
  float h[4] = {0, 0, 0, 0};
  CHECK(cudaMemcpyAsync(d1, h, sizeof h, cudaMemcpyHostToDevice, nullptr) == cudaErrorInvalidValue);  // d1 is device 1's
  REQUIRE(cudaSetDevice(1) == cudaSuccess);
  TL_LAUNCH(fill_kernel, 1, 32, 0, s1)(d1, 2.0f, 4);
  CHECK(cudaGetLastError() == cudaSuccess);
  REQUIRE(cudaMemcpy(h, d1, sizeof h, cudaMemcpyDeviceToHost) == cudaSuccess);
  CHECK(h[3] == 2.0f);
  cudaFree(d1);
  cudaStreamDestroy(s1);
  cudaSetDevice(0);
  setenv("TL_EMU_DEVICES", "1", 1);
}

TEST_CASE("[cuda] emulator: cuBLAS SGEMM honours transposes, leading dimensions, alpha and beta") {
  // Column-major A (3 x 2, lda 4), B (2 x 2, ldb 3), C (3 x 2, ldc 5); padding entries must be untouched.
  const float A[8] = {1, 2, 3, 99, 4, 5, 6, 99};  // A = [[1,4],[2,5],[3,6]]
  const float B[6] = {1, -1, 99, 2, 0.5f, 99};    // B = [[1,2],[-1,0.5]]
  float C[10];
  for (int i = 0; i < 10; i++) C[i] = 100.0f + i;
  float *dA = dev_alloc<float>(8), *dB = dev_alloc<float>(6), *dC = dev_alloc<float>(10);
  cudaMemcpy(dA, A, sizeof A, cudaMemcpyHostToDevice);
  cudaMemcpy(dB, B, sizeof B, cudaMemcpyHostToDevice);
  cudaMemcpy(dC, C, sizeof C, cudaMemcpyHostToDevice);
  cublasHandle_t h;
  REQUIRE(cublasCreate(&h) == CUBLAS_STATUS_SUCCESS);
  const float alpha = 2.0f, beta = 1.0f;
  REQUIRE(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 3, 2, 2, &alpha, dA, 4, dB, 3, &beta, dC, 5) == CUBLAS_STATUS_SUCCESS);
  cudaMemcpy(C, dC, sizeof C, cudaMemcpyDeviceToHost);
  // A B = [[-3, 4], [-3, 6.5], [-3, 9]]; C = 2 A B + C0 (C0 column j starts at 100 + 5 j)
  const float want[10] = {94, 95, 96, 103, 104, 113, 119, 125, 108, 109};
  for (int i = 0; i < 10; i++) CHECK(C[i] == want[i]);
  // op = T on both: C2 (2 x 2) = A^T A^T... here A^T (2 x 3) times B' with B' = A (3 x 2): A^T A.
  const float zero = 0.0f, one = 1.0f;
  REQUIRE(cublasSgemm(h, CUBLAS_OP_T, CUBLAS_OP_N, 2, 2, 3, &one, dA, 4, dA, 4, &zero, dC, 2) == CUBLAS_STATUS_SUCCESS);
  cudaMemcpy(C, dC, 4 * sizeof(float), cudaMemcpyDeviceToHost);
  CHECK(C[0] == 14.0f);  // [1,2,3].[1,2,3]
  CHECK(C[1] == 32.0f);  // [4,5,6].[1,2,3]
  CHECK(C[2] == 32.0f);
  CHECK(C[3] == 77.0f);
  CHECK(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 3, 2, 2, &one, dA, 2, dB, 3, &zero, dC, 5) == CUBLAS_STATUS_INVALID_VALUE);
  cublasDestroy(h);
  cudaFree(dA);
  cudaFree(dB);
  cudaFree(dC);
}

// ---------------------------------------------------------------- warp matrix functions (mma.h)
namespace {
using namespace nvcuda;

// One warp: D = A B + C for 16x16x16 bf16 (A row-major, B column-major), stored row-major.
__global__ void wmma_bf16_kernel(const __nv_bfloat16* a, const __nv_bfloat16* b, const float* c, float* d) {
  wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> fa;
  wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> fb;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
  wmma::load_matrix_sync(fa, a, 16);
  wmma::load_matrix_sync(fb, b, 16);
  wmma::load_matrix_sync(acc, c, 16, wmma::mem_row_major);
  wmma::mma_sync(acc, fa, fb, acc);
  wmma::store_matrix_sync(d, acc, 16, wmma::mem_row_major);
}

// One warp: 16x16x8 tf32 from fp32 memory; convert: round the A operand with __float_to_tf32 first.
__global__ void wmma_tf32_kernel(const float* a, const float* b, float* d, int convert, int offset) {
  wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fa;
  wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fb;
  wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc;
  wmma::fill_fragment(acc, 0.0f);
  wmma::load_matrix_sync(fa, a + offset, 8);
  wmma::load_matrix_sync(fb, b, 16);
  if (convert)
    for (int i = 0; i < fa.num_elements; i++) fa.x[i] = wmma::__float_to_tf32(fa.x[i]);
  wmma::mma_sync(acc, fa, fb, acc);
  wmma::store_matrix_sync(d, acc, 16, wmma::mem_row_major);
}
}  // namespace

TEST_CASE("[cuda] emulator: WMMA bf16 and tf32 products, tf32 operand rounding, and the alignment rule") {
  // bf16: small integers (exact in bf16 and in the fp32 sums), so the result is exact.
  std::vector<__nv_bfloat16> ha(256), hb(256);
  std::vector<float> hc(256), want(256);
  for (int i = 0; i < 256; i++) {
    ha[i] = __float2bfloat16((float)((i * 7) % 11 - 5));
    hb[i] = __float2bfloat16((float)((i * 5) % 9 - 4));
    hc[i] = (float)(i % 13);
  }
  for (int r = 0; r < 16; r++)
    for (int c = 0; c < 16; c++) {
      float s = hc[r * 16 + c];
      for (int k = 0; k < 16; k++)  // B column-major: element (k, c) at c * 16 + k
        s += __bfloat162float(ha[r * 16 + k]) * __bfloat162float(hb[c * 16 + k]);
      want[r * 16 + c] = s;
    }
  __nv_bfloat16 *da = dev_alloc<__nv_bfloat16>(256), *db = dev_alloc<__nv_bfloat16>(256);
  float *dc = dev_alloc<float>(256), *dd = dev_alloc<float>(256);
  REQUIRE(cudaMemcpy(da, ha.data(), 512, cudaMemcpyHostToDevice) == cudaSuccess);
  REQUIRE(cudaMemcpy(db, hb.data(), 512, cudaMemcpyHostToDevice) == cudaSuccess);
  REQUIRE(cudaMemcpy(dc, hc.data(), 1024, cudaMemcpyHostToDevice) == cudaSuccess);
  TL_LAUNCH(wmma_bf16_kernel, 1, 32, 0, nullptr)(da, db, dc, dd);
  std::vector<float> got(256);
  REQUIRE(cudaMemcpy(got.data(), dd, 1024, cudaMemcpyDeviceToHost) == cudaSuccess);
  CHECK(got == want);  // every lane stored its share: no element left NaN

  // tf32: A = 1 + 3 * 2^-12 (0.75 of a tf32 step past 1), B = identity-like column of ones in row 0.
  std::vector<float> a(16 * 8 + 8, 0.0f), b(8 * 16, 0.0f);
  for (int r = 0; r < 16; r++) a[r * 8] = 1.0f + 3.0f / 4096.0f;
  for (int c = 0; c < 16; c++) b[c] = 1.0f;
  float *fa = dev_alloc<float>(a.size()), *fb = dev_alloc<float>(b.size());
  REQUIRE(cudaMemcpy(fa, a.data(), a.size() * 4, cudaMemcpyHostToDevice) == cudaSuccess);
  REQUIRE(cudaMemcpy(fb, b.data(), b.size() * 4, cudaMemcpyHostToDevice) == cudaSuccess);
  for (int convert : {0, 1}) {
    TL_LAUNCH(wmma_tf32_kernel, 1, 32, 0, nullptr)(fa, fb, dd, convert, 0);
    REQUIRE(cudaMemcpy(got.data(), dd, 1024, cudaMemcpyDeviceToHost) == cudaSuccess);
    // Unconverted: the tensor cores read 10 mantissa bits (truncation) -> 1; rounded to nearest -> 1 + 2^-10.
    CHECK(got[0] == (convert ? 1.0f + 1.0f / 1024.0f : 1.0f));
    CHECK(got[15 * 16 + 15] == got[0]);
  }
  // A pointer that is not 256-bit aligned is a kernel fault, reported where the work is waited for.
  TL_LAUNCH(wmma_tf32_kernel, 1, 32, 0, nullptr)(fa, fb, dd, 0, 4);
  const cudaError_t e = cudaDeviceSynchronize();
  CHECK(e == cudaErrorLaunchFailure);
  CHECK(std::string(cudaGetErrorString(e)).find("load_matrix_sync: the pointer is not 256-bit aligned") != std::string::npos);
  cuda_emu::clear_fault();
  // __float_to_tf32 rounds to nearest, ties away from zero; bf16 conversion to nearest even.
  CHECK(wmma::__float_to_tf32(1.0f + 1.0f / 2048.0f) == 1.0f + 1.0f / 1024.0f);     // a tie: away from zero
  CHECK(wmma::__float_to_tf32(-(1.0f + 1.0f / 2048.0f)) == -(1.0f + 1.0f / 1024.0f));
  CHECK(__bfloat162float(__float2bfloat16(1.0f + 1.0f / 256.0f)) == 1.0f);            // a tie: to even
  CHECK(__bfloat162float(__float2bfloat16(1.0f + 3.0f / 256.0f)) == 1.0f + 1.0f / 64.0f);
  for (void* p : {(void*)da, (void*)db, (void*)dc, (void*)dd, (void*)fa, (void*)fb}) cudaFree(p);
}
