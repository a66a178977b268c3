// cpu_amx.h: --precision bf16 on CPUs with AMX (Intel Xeon 4th generation and later): the direct
// conv3x3 on tile registers (TDPBF16PS), and bf16x3 (near-fp32 from three bf16 products).
//
// One tiny batch-reduce micro-kernel (as oneDNN's brgemm), a driver that knows convolutions:
//   C (32 x 32 fp32) = sum over i < n of A_i (32 x 32 bf16) x B_i (32 x 32 bf16)
// A_i: 32 rows of 32 bf16 values, row r at a + a_off[i] + r * lda_elems (two 16-row tiles);
// B_i: a VNNI-2 panel at b + i * b_stride: 16 pair rows of 32 columns x 2 bf16, 128 bytes a row
// (row k holds, for each column j, the pair (B[2k][j], B[2k+1][j]); two 16-column tiles).
// For the conv, rows are output pixels along the padded image, i runs over (tap, 32-channel
// chunk), B_i is that tap's and chunk's weight panel: no im2col buffer is built.
//
// The same source (cpu_kernel_amx.cpp) is built twice: with the AMX intrinsics into the library
// (amx_hw_kernels, called only where cpu_amx_usable()), and against the scalar tile emulator of
// tests/amx_emu/ into the test binaries (amx_emu_kernels), so every CI machine runs the kernel.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace tl {
namespace cpu {

struct AmxBrgemm {
  int n;                   // batch length
  const uint16_t* a;       // A base
  const int64_t* a_off;    // [n] element offsets of A_i from a
  int64_t lda;             // elements between A rows
  const uint16_t* b;       // B_0
  int64_t b_stride;        // elements between B_i and B_{i+1}
  float* c;                // C row 0 (stored, not accumulated)
  int64_t ldc;             // floats between C rows
};

// bf16x3: C (32 x 16) = sum_i Ah_i Bh_i + Ah_i Bl_i + Al_i Bh_i over the 16-column half `half`
// of the panels; A hi/lo share a_off, B hi/lo share b_stride.
struct AmxBrgemm3 {
  int n;
  const uint16_t *a_hi, *a_lo;
  const int64_t* a_off;
  int64_t lda;
  const uint16_t *b_hi, *b_lo;
  int64_t b_stride;
  int half;                // 0: columns 0-15, 1: columns 16-31
  float* c;
  int64_t ldc;
};

struct AmxKernels {
  const char* name;  // "amx" (the CPU's tiles) or "amx-emulator" (tests)
  void (*configure)();  // LDTILECFG: all 8 tiles 16 rows x 64 bytes (per thread, before any tile use)
  void (*release)();    // TILERELEASE (before the thread leaves the AMX region)
  void (*brgemm)(const AmxBrgemm&);
  void (*brgemm3)(const AmxBrgemm3&);
  // fp32 -> bf16, round to nearest even, subnormal inputs as zero (VCVTNEPS2BF16's rule).
  void (*to_bf16)(const float* x, uint16_t* y, long n);
  // hi = bf16(x), lo = bf16(x - hi), both as to_bf16.
  void (*split_bf16)(const float* x, uint16_t* hi, uint16_t* lo, long n);
  // Tests: one TDPBF16PS, C (16 x 16 fp32, loaded and stored) += A (16 x 32 bf16) B (VNNI 16 x 16 pairs).
  void (*tile_dot)(const uint16_t* a, const uint16_t* b, float* c);
  // Benchmarks: iters x 4 TDPBF16PS on tiles already loaded (2 A, 2 B, 4 C: the micro-kernel's
  // blocking), kAmxPeakFlops flop each iteration; the TDPBF16PS ceiling of one thread.
  float (*peak_loop)(long iters);
};
constexpr double kAmxPeakFlops = 4.0 * 16 * 16 * 32 * 2;

const AmxKernels& amx_hw_kernels();   // the library's build (needs cpu_amx_usable())
const AmxKernels& amx_emu_kernels();  // test binaries only (tests/amx_emu)
// The kernels the AMX path uses: the override, else the hardware's where cpu_amx_usable(), else null.
const AmxKernels* amx_kernels();
void set_amx_kernels(const AmxKernels* k);  // tests: force one (the emulator); nullptr: automatic

// Which --precision bf16 path this CPU runs: AMX tiles (direct conv), else AVX512_BF16 (Winograd
// F(2x2) with bf16 planes), else none (refused with the fix).
enum class Bf16Path { None, Avx512Bf16, Amx };
Bf16Path bf16_path();
const char* bf16_path_name(Bf16Path p);  // one line for --help, tl_inspect and the progress line

// Conv weights packed once (per model load) into the tiles' layout: [cb][tap][kc] panels of
// 16 pair rows x 32 columns x 2 (cin padded to 32, cout to 32, with zeros); lo: bf16x3's remainders.
struct AmxConvWeights {
  int cin = 0, cout = 0, cin_pad = 0, cout_pad = 0;
  bool x3 = false;
  std::vector<uint16_t> hi, lo;
  std::vector<float> bias;
  int nkc() const { return cin_pad / 32; }
  int ncb() const { return cout_pad / 32; }
};
constexpr int64_t kAmxPanelElems = 16 * 32 * 2;  // one (tap, chunk, 32 columns) panel
// w [3][3][cin][cout] HWIO, b [cout].
std::shared_ptr<AmxConvWeights> amx_pack_conv(const float* w, const float* b, int cin, int cout, bool x3);
// x [n,h,w,cin] -> y [n,h,w,cout] (fp32, + bias, optional ReLU) on the packed weights.
void conv3x3_amx(const float* x, const AmxConvWeights& W, float* y, int n, int h, int wd, bool relu);

// Layers 1.. of a conv stack at bf16 on AMX tiles with the activations kept as padded bf16 between
// layers: each conv's epilogue rounds its ReLU output straight into the next layer's input layout,
// and max-pools run on the rounded values. Bit-identical to the layers one by one through
// conv3x3_amx (rounding to nearest even commutes with ReLU and max), at a third of the memory
// traffic. x [n,h,w,cin] fp32 -> y fp32 (the last layer's output, pooled when it pools).
struct AmxStackLayer {
  const AmxConvWeights* w;
  bool pool_after;
};
void conv3x3_amx_stack(const float* x, int n, int h, int wd, const std::vector<AmxStackLayer>& layers, float* y);

// The scalar rounding both builds implement (tests and references): nearest even, subnormals to
// signed zero, NaN kept quiet.
uint16_t bf16_round(float f);
inline float bf16_value(uint16_t h) {
  union {
    uint32_t u;
    float f;
  } v;
  v.u = (uint32_t)h << 16;
  return v.f;
}

}  // namespace cpu
}  // namespace tl
