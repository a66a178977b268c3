// The AMX micro-kernels of cpu_amx.h, in one source built two ways:
//   library:  -mamx-tile -mamx-bf16 -mavx512f -mavx512bf16 -> amx_hw_kernels() (the CPU's tiles)
//   tests:    -DTL_AMX_EMULATION against tests/amx_emu/   -> amx_emu_kernels() (scalar stand-ins)
// Tile numbers are literals (the intrinsics need constants). Tiles: tmm0-3 the C blocks, tmm4-5
// the A tiles, tmm6-7 the B tiles (bf16x3: tmm0-1 C, tmm2-5 A hi/lo, tmm6-7 B hi/lo).
#if defined(TL_AMX_EMULATION)
#include "tests/amx_emu/amx_emu.h"
#define TL_AMX_NS amx_emu_build
#define TL_AMX_NAME "amx-emulator"
#define TL_AMX_GETTER amx_emu_kernels
#else
#include <immintrin.h>
#define TL_AMX_NS amx_hw_build
#define TL_AMX_NAME "amx"
#define TL_AMX_GETTER amx_hw_kernels
#endif

#include <cstring>

#include "host/ops/cpu_amx.h"

namespace tl {
namespace cpu {
namespace TL_AMX_NS {
namespace {

void configure() {
  alignas(64) uint8_t cfg[64];
  memset(cfg, 0, sizeof cfg);
  cfg[0] = 1;  // palette 1
  for (int t = 0; t < 8; t++) {
    cfg[16 + 2 * t] = 64;  // colsb (little-endian uint16): 64 bytes a row
    cfg[48 + t] = 16;      // rows
  }
  _tile_loadconfig(cfg);
}

void release() { _tile_release(); }

void brgemm(const AmxBrgemm& p) {
  const long sa = (long)(p.lda * 2), sb = 128, sc = (long)(p.ldc * 4);
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  for (int i = 0; i < p.n; i++) {
    const uint16_t* a = p.a + p.a_off[i];
    const uint16_t* b = p.b + (int64_t)i * p.b_stride;
    _tile_loadd(4, a, sa);
    _tile_loadd(6, b, sb);
    _tile_loadd(7, b + 32, sb);
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_loadd(5, a + 16 * p.lda, sa);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
  }
  _tile_stored(0, p.c, sc);
  _tile_stored(1, p.c + 16, sc);
  _tile_stored(2, p.c + 16 * p.ldc, sc);
  _tile_stored(3, p.c + 16 * p.ldc + 16, sc);
}

void brgemm3(const AmxBrgemm3& p) {
  const long sa = (long)(p.lda * 2), sb = 128, sc = (long)(p.ldc * 4);
  const int64_t col = p.half ? 32 : 0;  // bf16 elements: 16 columns x 2
  _tile_zero(0);
  _tile_zero(1);
  for (int i = 0; i < p.n; i++) {
    const int64_t ao = p.a_off[i], bo = (int64_t)i * p.b_stride + col;
    _tile_loadd(6, p.b_hi + bo, sb);
    _tile_loadd(7, p.b_lo + bo, sb);
    _tile_loadd(2, p.a_hi + ao, sa);
    _tile_loadd(3, p.a_lo + ao, sa);
    _tile_dpbf16ps(0, 2, 6);  // hi x hi
    _tile_dpbf16ps(0, 2, 7);  // hi x lo
    _tile_dpbf16ps(0, 3, 6);  // lo x hi
    _tile_loadd(4, p.a_hi + ao + 16 * p.lda, sa);
    _tile_loadd(5, p.a_lo + ao + 16 * p.lda, sa);
    _tile_dpbf16ps(1, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(1, 5, 6);
  }
  _tile_stored(0, p.c, sc);
  _tile_stored(1, p.c + 16 * p.ldc, sc);
}

#if defined(TL_AMX_EMULATION)
void to_bf16(const float* x, uint16_t* y, long n) {
  for (long i = 0; i < n; i++) y[i] = bf16_round(x[i]);
}
#else
// VCVTNEPS2BF16: nearest even, subnormal inputs as zero, no MXCSR dependence: bf16_round's rule.
void to_bf16(const float* x, uint16_t* y, long n) {
  long i = 0;
  for (; i + 16 <= n; i += 16)
    _mm256_storeu_si256((__m256i*)(y + i), (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(x + i)));
  if (i < n) {
    const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
    const __m256i v = (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, x + i));
    _mm256_mask_storeu_epi16(y + i, m, v);
  }
}
#endif

void split_bf16(const float* x, uint16_t* hi, uint16_t* lo, long n) {
  constexpr long kChunk = 256;
  float rest[kChunk];
  for (long i0 = 0; i0 < n; i0 += kChunk) {
    const long m = n - i0 < kChunk ? n - i0 : kChunk;
    to_bf16(x + i0, hi + i0, m);
    for (long i = 0; i < m; i++) rest[i] = x[i0 + i] - bf16_value(hi[i0 + i]);
    to_bf16(rest, lo + i0, m);
  }
}

void tile_dot(const uint16_t* a, const uint16_t* b, float* c) {
  configure();
  _tile_loadd(0, c, 64);
  _tile_loadd(4, a, 64);
  _tile_loadd(6, b, 64);
  _tile_dpbf16ps(0, 4, 6);
  _tile_stored(0, c, 64);
  release();
}

float peak_loop(long iters) {
  alignas(64) static const uint16_t ones[16 * 32] = {};
  alignas(64) float c[16 * 16];
  configure();
  _tile_loadd(4, ones, 64);
  _tile_loadd(5, ones, 64);
  _tile_loadd(6, ones, 64);
  _tile_loadd(7, ones, 64);
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  for (long i = 0; i < iters; i++) {
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
  }
  _tile_stored(0, c, 64);
  release();
  return c[0];
}

}  // namespace
}  // namespace TL_AMX_NS

const AmxKernels& TL_AMX_GETTER() {
  static const AmxKernels k = {TL_AMX_NAME,        TL_AMX_NS::configure, TL_AMX_NS::release,
                               TL_AMX_NS::brgemm,  TL_AMX_NS::brgemm3,   TL_AMX_NS::to_bf16,
                               TL_AMX_NS::split_bf16, TL_AMX_NS::tile_dot,   TL_AMX_NS::peak_loop};
  return k;
}

}  // namespace cpu
}  // namespace tl
