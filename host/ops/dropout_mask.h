// dropout_mask.h: the dropout keep-mask, one definition for the CPU op (cpu_ops.cpp) and the CUDA
// kernel (kernels/dropout.cu): a pure function of (seed, step, index), so both devices drop the same
// units and the backward pass needs no stored mask. The per-call part (seed, step) is mixed once.
#pragma once
#include <cstdint>

#ifdef __CUDACC__
#define TL_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define TL_HOST_DEVICE inline
#endif

namespace tl {

// splitmix64's finaliser.
TL_HOST_DEVICE uint64_t dropout_mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
// The mixed (seed, step) of one dropout call.
TL_HOST_DEVICE uint64_t dropout_call_key(uint64_t seed, uint64_t step) {
  return dropout_mix(seed + 0x9E3779B97F4A7C15ull * (step + 1));
}
// Element i is kept when a uniform 24-bit draw in [0, 1) is >= rate.
TL_HOST_DEVICE bool dropout_keep_keyed(uint64_t key, uint64_t i, float rate) {
  const uint64_t h = dropout_mix(key ^ (i * 0xD1B54A32D192ED03ull));
  return (float)(h >> 40) * (1.0f / 16777216.0f) >= rate;
}
TL_HOST_DEVICE bool dropout_keep(uint64_t seed, uint64_t step, uint64_t i, float rate) {
  return dropout_keep_keyed(dropout_call_key(seed, step), i, rate);
}

}  // namespace tl
