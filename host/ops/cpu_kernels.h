// cpu_kernels.h: the one register-blocked micro-kernel behind the CPU conv3x3 and dense ops,
// in three builds chosen at run time: AVX-512 (14x32 tile), AVX2+FMA (6x16) and portable C++.
//
// A tile computes C[i][j] for i < mr rows and j < nr columns:
//   C[i][j] = init[j] + sum over taps t, k < kc of A_t[i][k] * B_t[k][j]
// where A_t row i is a[t*MR + i][k * a_step] and B_t row k is b[t * b_tap_step + k * b_step + j].
// init is the bias (or zero) when load_c is false, otherwise the current C. ReLU is applied to the
// stored result when relu is set. Each C element is one sequential chain of fused multiply-adds
// over (tap, k), so the result does not depend on the tile sizes, the ISA or the thread count.
#pragma once
#include <cstddef>
#include <cstdint>

namespace tl {
namespace cpu {

struct TileArgs {
  int taps;                 // 1 for a plain GEMM, 9 for conv3x3
  int kc;                   // reduction length per tap
  const float* const* a;    // [taps][MR] row pointers (rows >= mr point at zeros)
  ptrdiff_t a_step;         // element stride along k within a row
  const float* b;           // B for tap 0, k 0, column 0
  ptrdiff_t b_step;         // stride between k rows of B
  ptrdiff_t b_tap_step;     // stride between taps of B
  bool b_padded;            // B rows are readable up to NR columns (packed); else mask to nr
  float* c;                 // C row 0, column 0
  ptrdiff_t ldc;
  int mr, nr;               // valid rows and columns of this tile
  const float* bias;        // init when !load_c (nullptr: zero)
  bool load_c;
  bool relu;
};

struct Kernels {
  const char* isa;  // "avx512", "avx2", "generic"
  int mr, nr;
  void (*tile)(const TileArgs&);
  float (*fma_loop)(long iters);  // benchmark probe of the peak FMA rate
  int fma_loop_flops;             // flops per iteration of fma_loop
  // RMSprop on n weights: rmsprop_update (cpu_ops.h) element by element, vectorised; bit-identical
  // in every build (separate multiplies and adds, IEEE square root and division).
  void (*rmsprop)(float* w, float* v, const float* g, long n, float lr, float rho, float one_minus_rho, float eps);
};

const Kernels& kernels();  // best for this CPU (TL_ISA=avx512|avx2|generic overrides)
const Kernels* kernels_for(const char* isa);  // nullptr when this CPU cannot run it
void set_kernels(const Kernels* k);  // tests and benchmarks: force one build (nullptr: automatic)
const float* zeros();      // a 64-byte aligned buffer of kZeros zeros
constexpr int kZeros = 8192;

void tile_avx512(const TileArgs&);
void tile_avx2(const TileArgs&);
void tile_generic(const TileArgs&);
float fma_loop_avx512(long iters);
float fma_loop_avx2(long iters);
float fma_loop_generic(long iters);
void rmsprop_avx512(float* w, float* v, const float* g, long n, float lr, float rho, float one_minus_rho, float eps);
void rmsprop_avx2(float* w, float* v, const float* g, long n, float lr, float rho, float one_minus_rho, float eps);
void rmsprop_generic(float* w, float* v, const float* g, long n, float lr, float rho, float one_minus_rho, float eps);
constexpr int kMaxMR = 14;

// --precision bf16 (AVX512_BF16 CPUs, cpu_has_avx512_bf16()): C[i][j] = sum over k < 2 kp of A[i][k] B[k][j]
// with bf16 operands, each product exact and summed in fp32 by VDPBF16PS, two per step. A rows:
// bf16 channel pairs (2p, 2p+1) in one 32-bit word each; B: a panel [kp][kBf16NR][2] (the pair of
// rows 2p, 2p+1 of column j together). C (mr x nr valid, ldc) is stored, not accumulated.
struct Bf16TileArgs {
  int kp;                     // reduction length in channel pairs
  const uint32_t* const* a;   // kBf16MR row pointers (rows >= mr repeat a valid row)
  const uint16_t* b;
  float* c;
  ptrdiff_t ldc;
  int mr, nr;
};
constexpr int kBf16MR = 14, kBf16NR = 32;
void tile_bf16_avx512(const Bf16TileArgs&);
void to_bf16_avx512(const float* x, uint16_t* y, long n);  // round to nearest even (VCVTNEPS2BF16)

}  // namespace cpu
}  // namespace tl
