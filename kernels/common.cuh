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

// Checks the launch just made (configuration errors) without synchronising.
#define CUDA_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())

cudaStream_t compute_stream();
cudaStream_t copy_stream();
cublasHandle_t cublas();

inline unsigned blocks_for(int64_t n, int threads) { return (unsigned)((n + threads - 1) / threads); }

}  // namespace cuda
}  // namespace tl
