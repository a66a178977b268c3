// mma.h (CUDA emulation, tests only): the warp matrix functions (nvcuda::wmma) the kernels use,
// written from the CUDA C++ Programming Guide's description of them:
//   - fragments of shape m16n16k8 (precision::tf32 inputs) and m16n16k16 (__nv_bfloat16, __half
//     inputs), float accumulators; load_matrix_sync / store_matrix_sync with row- or column-major
//     memory, mma_sync (D = A B + C), fill_fragment, __float_to_tf32;
//   - the documented constraints are checked and a violation is a kernel fault: the pointer must be
//     256-bit aligned, ldm a multiple of 16 bytes; every thread of the warp must make the call (the
//     emulation cannot see the warp, so this one is not checked);
//   - tf32 operands that were not converted with __float_to_tf32 have their low 13 mantissa bits
//     ignored by mma_sync, as the tensor cores read them; products are exact and summed in fp32.
// How a fragment's elements map to lanes is unspecified by CUDA. Here an accumulator's element t of
// lane L is the tile's element L + 32 t (row-major), so each lane computes and stores only its own
// share, as on a GPU (a kernel that reads x[] of an accumulator must not assume any mapping); an
// A or B fragment holds the whole tile in every lane (num_elements = its size), of which a lane
// loads the rows (A) or columns (B) its accumulator elements need.
#pragma once
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "cuda_bf16.h"
#include "cuda_fp16.h"
#include "cuda_runtime.h"

namespace nvcuda {
namespace wmma {

struct row_major {};
struct col_major {};
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
namespace precision {
struct tf32 {};
}  // namespace precision
enum layout_t { mem_row_major, mem_col_major };

namespace emu {

template <class T>
struct storage {
  typedef T type;
};
template <>
struct storage<precision::tf32> {
  typedef float type;
};

inline float to_float(float v) { return v; }
inline float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
inline float to_float(__half v) { return __half2float(v); }

// The tensor cores read a tf32 operand's sign, exponent and 10 mantissa bits.
inline float tf32_operand(float v) {
  uint32_t b;
  memcpy(&b, &v, 4);
  b &= 0xffffe000u;
  memcpy(&v, &b, 4);
  return v;
}

inline int lane() {
  const unsigned linear = (threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x;
  return (int)(linear % 32);
}

inline void fault(const std::string& what) { throw std::runtime_error("wmma: " + what); }

template <class T>
void check_ptr(const void* p, unsigned ldm, const char* fn) {
  if ((uintptr_t)p % 32 != 0) fault(std::string(fn) + ": the pointer is not 256-bit aligned");
  if ((ldm * sizeof(T)) % 16 != 0) fault(std::string(fn) + ": ldm is not a multiple of 16 bytes");
}

// Does lane L own an accumulator element in row r / column c of an M x N tile?
inline bool owns_row(int L, int r, int N) {
  for (int c = 0; c < N; c++)
    if ((r * N + c) % 32 == L) return true;
  return false;
}
inline bool owns_col(int L, int c, int M, int N) {
  for (int r = 0; r < M; r++)
    if ((r * N + c) % 32 == L) return true;
  return false;
}

}  // namespace emu

template <class Use, int M, int N, int K, class T, class Layout = void>
class fragment;

// A: M x K, B: K x N, whole tile per lane.
template <int M, int N, int K, class T, class Layout>
class fragment<matrix_a, M, N, K, T, Layout> {
 public:
  typedef typename emu::storage<T>::type storage_element_type;
  enum { num_elements = M * K, rows = M, cols = K, acc_n = N };
  storage_element_type x[M * K];
};
template <int M, int N, int K, class T, class Layout>
class fragment<matrix_b, M, N, K, T, Layout> {
 public:
  typedef typename emu::storage<T>::type storage_element_type;
  enum { num_elements = K * N, rows = K, cols = N, acc_m = M };
  storage_element_type x[K * N];
};
// Accumulator: M x N, 1/32 per lane.
template <int M, int N, int K, class T>
class fragment<accumulator, M, N, K, T, void> {
 public:
  typedef T storage_element_type;
  enum { num_elements = M * N / 32 };
  T x[M * N / 32];
};

template <class Frag, class V>
inline void fill_fragment(Frag& f, const V& v) {
  for (int i = 0; i < (int)Frag::num_elements; i++) f.x[i] = v;
}

inline float __float_to_tf32(float in) {  // cvt.rna.tf32.f32: to nearest, ties away from zero
  uint32_t b;
  memcpy(&b, &in, 4);
  if ((b & 0x7f800000u) != 0x7f800000u) b = (b + 0x1000u) & 0xffffe000u;
  float out;
  memcpy(&out, &b, 4);
  return out;
}

template <int M, int N, int K, class T, class Layout, class P>
void load_matrix_sync(fragment<matrix_a, M, N, K, T, Layout>& a, const P* p, unsigned ldm) {
  typedef typename emu::storage<T>::type S;
  static_assert(std::is_same<S, P>::value, "load_matrix_sync: pointer type differs from the fragment's");
  emu::check_ptr<S>(p, ldm, "load_matrix_sync");
  const int L = emu::lane();
  for (int i = 0; i < M; i++) {
    if (!emu::owns_row(L, i, N)) continue;
    for (int k = 0; k < K; k++)
      a.x[i * K + k] = std::is_same<Layout, row_major>::value ? p[(size_t)i * ldm + k] : p[(size_t)k * ldm + i];
  }
}

template <int M, int N, int K, class T, class Layout, class P>
void load_matrix_sync(fragment<matrix_b, M, N, K, T, Layout>& b, const P* p, unsigned ldm) {
  typedef typename emu::storage<T>::type S;
  static_assert(std::is_same<S, P>::value, "load_matrix_sync: pointer type differs from the fragment's");
  emu::check_ptr<S>(p, ldm, "load_matrix_sync");
  const int L = emu::lane();
  for (int j = 0; j < N; j++) {
    if (!emu::owns_col(L, j, M, N)) continue;
    for (int k = 0; k < K; k++)
      b.x[k * N + j] = std::is_same<Layout, row_major>::value ? p[(size_t)k * ldm + j] : p[(size_t)j * ldm + k];
  }
}

template <int M, int N, int K>
void load_matrix_sync(fragment<accumulator, M, N, K, float>& c, const float* p, unsigned ldm, layout_t layout) {
  emu::check_ptr<float>(p, ldm, "load_matrix_sync");
  const int L = emu::lane();
  for (int t = 0; t < M * N / 32; t++) {
    const int e = L + 32 * t, i = e / N, j = e % N;
    c.x[t] = layout == mem_row_major ? p[(size_t)i * ldm + j] : p[(size_t)j * ldm + i];
  }
}

template <int M, int N, int K>
void store_matrix_sync(float* p, const fragment<accumulator, M, N, K, float>& c, unsigned ldm, layout_t layout) {
  emu::check_ptr<float>(p, ldm, "store_matrix_sync");
  const int L = emu::lane();
  for (int t = 0; t < M * N / 32; t++) {
    const int e = L + 32 * t, i = e / N, j = e % N;
    (layout == mem_row_major ? p[(size_t)i * ldm + j] : p[(size_t)j * ldm + i]) = c.x[t];
  }
}

template <int M, int N, int K, class T, class LA, class LB>
void mma_sync(fragment<accumulator, M, N, K, float>& d, const fragment<matrix_a, M, N, K, T, LA>& a,
              const fragment<matrix_b, M, N, K, T, LB>& b, const fragment<accumulator, M, N, K, float>& c) {
  static_assert((M == 16 && N == 16 && K == 8 && std::is_same<T, precision::tf32>::value) ||
                    (M == 16 && N == 16 && K == 16 && !std::is_same<T, precision::tf32>::value),
                "the emulation has the m16n16k8 tf32 and m16n16k16 16-bit shapes");
  const bool tf32 = std::is_same<T, precision::tf32>::value;
  const int L = emu::lane();
  for (int t = 0; t < M * N / 32; t++) {
    const int e = L + 32 * t, i = e / N, j = e % N;
    float s = c.x[t];
    for (int k = 0; k < K; k++) {
      float av = emu::to_float(a.x[i * K + k]), bv = emu::to_float(b.x[k * N + j]);
      if (tf32) av = emu::tf32_operand(av), bv = emu::tf32_operand(bv);
      s += av * bv;  // exact product (at most 11 + 11 significant bits), fp32 sum
    }
    d.x[t] = s;
  }
}

}  // namespace wmma
}  // namespace nvcuda
