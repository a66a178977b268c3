// common.cuh: error checks, launch helpers and the shared streams/handles of the CUDA backend.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "host/core/common.h"

namespace tl {
namespace cuda {

// Every CUDA runtime and cuBLAS call goes through these: a failure throws tl::Error naming the
// source file and line, like llm.c's cudaCheck.
#define CUDA_CHECK(call)                                                                              \
  do {                                                                                                \
    cudaError_t err_ = (call);                                                                        \
    if (err_ != cudaSuccess)                                                                          \
      ::tl::fail("CUDA error at %s:%d: %s (%s)", __FILE__, __LINE__, cudaGetErrorString(err_), #call); \
  } while (0)

#define CUBLAS_CHECK(call)                                                                              \
  do {                                                                                                  \
    cublasStatus_t st_ = (call);                                                                        \
    if (st_ != CUBLAS_STATUS_SUCCESS)                                                                   \
      ::tl::fail("cuBLAS error at %s:%d: status %d (%s)", __FILE__, __LINE__, (int)st_, #call);         \
  } while (0)

// Every launch: kernel<<<grid, block, shared, stream>>>(args) under nvcc; under the CPU emulation
// of the tests (tests/cuda_emu), the same launch queued on the emulated stream.
#ifdef TL_CUDA_EMULATION
#define TL_LAUNCH(kernel, grid, block, shared, stream) ::cuda_emu::launch(#kernel, kernel, grid, block, shared, stream)
#else
#define TL_LAUNCH(kernel, grid, block, shared, stream) kernel<<<grid, block, shared, stream>>>
#endif

// Checks the launch just made (configuration errors); with TL_CUDA_SYNC=1 also waits for it, so a
// fault names the kernel that caused it instead of a later call.
void check_launch(const char* file, int line);
#define CUDA_CHECK_LAUNCH() ::tl::cuda::check_launch(__FILE__, __LINE__)

cudaStream_t compute_stream();
cudaStream_t copy_stream();
cublasHandle_t cublas();

inline unsigned blocks_for(int64_t n, int threads) { return (unsigned)((n + threads - 1) / threads); }

// Grid for an element-wise kernel with a grid-stride loop: one thread per element up to a cap of
// 65535 * 16 blocks, past which each thread takes several elements.
constexpr int kElementThreads = 256;
unsigned element_grid_cap();  // 65535 * 16, or what set_element_grid_cap() set (tests)
inline unsigned element_grid(int64_t n) {
  const unsigned b = blocks_for(n, kElementThreads), cap = element_grid_cap();
  return b > cap ? cap : b;
}
#define GRID_STRIDE(i, n) \
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

}  // namespace cuda
}  // namespace tl
