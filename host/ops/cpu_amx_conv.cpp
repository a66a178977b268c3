// The AMX convolution driver (cpu_amx.h): weight packing, the padded bf16 input, the blocking and
// the epilogue. It decides everything about the convolution; the micro-kernel only multiplies.
//
// Layout trick: the input is copied once per call into a zero-padded bf16 image of (h+2) x (w+2)
// pixels (channels padded to 32). Output pixel (y, x) is numbered p = y (w+2) + x, and for tap
// (dy, dx) its input pixel is p + dy (w+2) + dx: one constant offset per tap, so 32 consecutive p
// are one pair of A tiles with a single row stride for every tap. The two columns x = w, w+1 of
// each row are computed and dropped (2/(w+2) of the work: 12% at 14x14, 1% at 224x224).
#include <algorithm>
#include <cstring>

#include "host/core/common.h"
#include "host/core/cpu_features.h"
#include "host/core/threads.h"
#include "host/ops/cpu_amx.h"

namespace tl {
namespace cpu {

uint16_t bf16_round(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  if ((u & 0x7f800000u) == 0) return (uint16_t)((u >> 16) & 0x8000u);                  // zero, subnormal
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040u);          // NaN, quiet
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

namespace {
const AmxKernels* g_amx_override = nullptr;
}

void set_amx_kernels(const AmxKernels* k) { g_amx_override = k; }

const AmxKernels* amx_kernels() {
  if (g_amx_override) return g_amx_override;
#if defined(TL_HAVE_X86_KERNELS)
  if (cpu_amx_usable()) return &amx_hw_kernels();
#endif
  return nullptr;
}

Bf16Path bf16_path() {
  if (amx_kernels()) return Bf16Path::Amx;
  if (cpu_has_avx512_bf16()) return Bf16Path::Avx512Bf16;
  return Bf16Path::None;
}

const char* bf16_path_name(Bf16Path p) {
  switch (p) {
    case Bf16Path::Amx: return "AMX tiles (TDPBF16PS, direct conv)";
    case Bf16Path::Avx512Bf16: return "AVX512_BF16 (VDPBF16PS, Winograd F(2x2))";
    case Bf16Path::None: return "none (this CPU has neither AMX nor AVX512_BF16)";
  }
  return "?";
}

std::shared_ptr<AmxConvWeights> amx_pack_conv(const float* w, const float* b, int cin, int cout, bool x3) {
  const AmxKernels* K = amx_kernels();
  TL_ASSERT(K);
  auto W = std::make_shared<AmxConvWeights>();
  W->cin = cin;
  W->cout = cout;
  W->cin_pad = (cin + 31) / 32 * 32;
  W->cout_pad = (cout + 31) / 32 * 32;
  W->x3 = x3;
  W->bias.assign(b, b + cout);
  const int nkc = W->nkc(), ncb = W->ncb();
  const size_t elems = (size_t)ncb * 9 * nkc * kAmxPanelElems;
  W->hi.assign(elems, 0);
  if (x3) W->lo.assign(elems, 0);
  // Panel (cb, t, kc): element [k/2][j][k%2] = w[t][kc*32 + k][cb*32 + j] (VNNI-2 pairs).
  parallel_for((int64_t)ncb * 9, [&](int64_t task) {
    const int cb = (int)(task / 9), t = (int)(task % 9);
    float src[2 * 32];
    uint16_t hi[2 * 32], lo[2 * 32];
    for (int kc = 0; kc < nkc; kc++) {
      const size_t panel = (((size_t)cb * 9 + t) * nkc + kc) * kAmxPanelElems;
      for (int kp = 0; kp < 16; kp++) {
        for (int e = 0; e < 2; e++) {
          const int ci = kc * 32 + 2 * kp + e;
          for (int j = 0; j < 32; j++) {
            const int co = cb * 32 + j;
            src[2 * j + e] = ci < cin && co < cout ? w[((size_t)t * cin + ci) * cout + co] : 0.0f;
          }
        }
        if (x3)
          K->split_bf16(src, hi, lo, 64);
        else
          K->to_bf16(src, hi, 64);
        memcpy(&W->hi[panel + (size_t)kp * 64], hi, sizeof hi);
        if (x3) memcpy(&W->lo[panel + (size_t)kp * 64], lo, sizeof lo);
      }
    }
  });
  return W;
}

namespace {

// Reused per calling thread: the padded bf16 input (hi, and lo for bf16x3).
std::vector<uint16_t>& input_scratch(int which) {
  static thread_local std::vector<uint16_t> s[2];
  return s[which];
}

// x [n,h,w,cin] -> per image (h+2) x (w+2) pixels of cin_pad bf16 (zero border and channels), then
// `slack` zero pixels that the last row block may read past the image.
void pad_input(const AmxKernels& K, const float* x, int n, int h, int wd, int cin, int cin_pad, int64_t img_px,
               bool x3, uint16_t* hi, uint16_t* lo) {
  const int pw = wd + 2;
  parallel_for((int64_t)n * (h + 2), [&](int64_t task) {
    const int img = (int)(task / (h + 2)), r = (int)(task % (h + 2));
    const size_t row0 = ((size_t)img * img_px + (size_t)r * pw) * cin_pad;
    uint16_t* dh = hi + row0;
    uint16_t* dl = x3 ? lo + row0 : nullptr;
    const size_t row_elems = (size_t)pw * cin_pad;
    if (r == 0 || r == h + 1) {
      memset(dh, 0, row_elems * 2);
      if (dl) memset(dl, 0, row_elems * 2);
    } else {
      const float* src = x + (((size_t)img * h + (r - 1)) * wd) * cin;
      memset(dh, 0, (size_t)cin_pad * 2);  // left border pixel
      memset(dh + (size_t)(wd + 1) * cin_pad, 0, (size_t)cin_pad * 2);
      if (dl) {
        memset(dl, 0, (size_t)cin_pad * 2);
        memset(dl + (size_t)(wd + 1) * cin_pad, 0, (size_t)cin_pad * 2);
      }
      if (cin == cin_pad) {
        if (dl)
          K.split_bf16(src, dh + cin_pad, dl + cin_pad, (long)wd * cin);
        else
          K.to_bf16(src, dh + cin_pad, (long)wd * cin);
      } else {
        for (int px = 0; px < wd; px++) {
          uint16_t* ph = dh + (size_t)(px + 1) * cin_pad;
          if (dl)
            K.split_bf16(src + (size_t)px * cin, ph, dl + (size_t)(px + 1) * cin_pad, cin);
          else
            K.to_bf16(src + (size_t)px * cin, ph, cin);
          memset(ph + cin, 0, (size_t)(cin_pad - cin) * 2);
          if (dl) memset(dl + (size_t)(px + 1) * cin_pad + cin, 0, (size_t)(cin_pad - cin) * 2);
        }
      }
    }
    if (r == h + 1) {  // the slack after the image
      const size_t tail0 = ((size_t)img * img_px + (size_t)(h + 2) * pw) * cin_pad;
      const size_t tail = ((size_t)img_px - (size_t)(h + 2) * pw) * cin_pad;
      memset(hi + tail0, 0, tail * 2);
      if (x3) memset(lo + tail0, 0, tail * 2);
    }
  });
}

// C block (32 positions x `cols` channels from c0) + bias -> y, dropping the padded columns.
void epilogue(const float* C, int ldc, int64_t p0, int64_t P, int pw, int wd, int img, int h, const float* bias,
              int c0, int cols, int cout, bool relu, float* y) {
  for (int r = 0; r < 32; r++) {
    const int64_t p = p0 + r;
    if (p >= P) break;
    const int yy = (int)(p / pw), xx = (int)(p % pw);
    if (xx >= wd) continue;
    float* out = y + (((size_t)img * h + yy) * wd + xx) * cout + c0;
    const float* c = C + (size_t)r * ldc;
    for (int j = 0; j < cols; j++) {
      const float v = c[j] + bias[c0 + j];
      out[j] = relu && !(v > 0.0f) ? 0.0f : v;
    }
  }
}

}  // namespace

void conv3x3_amx(const float* x, const AmxConvWeights& W, float* y, int n, int h, int wd, bool relu) {
  const AmxKernels* Kp = amx_kernels();
  TL_ASSERT(Kp);
  const AmxKernels& K = *Kp;
  const int cin = W.cin, cout = W.cout, cin_pad = W.cin_pad, nkc = W.nkc(), ncb = W.ncb();
  const int pw = wd + 2;
  const int64_t P = (int64_t)h * pw;               // output positions per image (padded numbering)
  const int64_t nmb = (P + 31) / 32;               // 32-position row blocks per image
  const int64_t img_px = (int64_t)(h + 2) * pw + (nmb * 32 - P) + 2;  // + what the last block reads past
  std::vector<uint16_t>& hi = input_scratch(0);
  std::vector<uint16_t>& lo = input_scratch(1);
  const size_t in_elems = (size_t)n * img_px * cin_pad;
  if (hi.size() < in_elems) hi.resize(in_elems);
  if (W.x3 && lo.size() < in_elems) lo.resize(in_elems);
  pad_input(K, x, n, h, wd, cin, cin_pad, img_px, W.x3, hi.data(), W.x3 ? lo.data() : nullptr);

  // The batch: (tap, chunk) in that order, matching the panels' order within a column block.
  const int nb = 9 * nkc;
  std::vector<int64_t> off((size_t)nb);
  for (int t = 0; t < 9; t++)
    for (int kc = 0; kc < nkc; kc++) off[(size_t)t * nkc + kc] = ((int64_t)(t / 3) * pw + t % 3) * cin_pad + kc * 32;

  // Tasks: (column block, image, run of kMB row blocks), column-block major so that consecutive
  // tasks reuse one weight panel (9 x cin_pad x 32 bf16: 295 KB at 512 channels) from L2.
  constexpr int kMB = 4;
  const int64_t runs = (nmb + kMB - 1) / kMB;
  parallel_for((int64_t)ncb * n * runs, [&](int64_t task) {
    const int cb = (int)(task / ((int64_t)n * runs));
    const int img = (int)(task / runs % n);
    const int64_t run = task % runs;
    const int c0 = cb * 32, cols = std::min(32, cout - c0);
    alignas(64) float C[32 * 32];
    std::vector<int64_t> aoff((size_t)nb);
    K.configure();
    for (int64_t mb = run * kMB; mb < std::min(nmb, (run + 1) * kMB); mb++) {
      const int64_t p0 = mb * 32;
      const int64_t base = ((int64_t)img * img_px + p0) * cin_pad;
      for (int i = 0; i < nb; i++) aoff[(size_t)i] = base + off[(size_t)i];
      const size_t panel0 = (size_t)cb * nb * kAmxPanelElems;
      if (W.x3) {
        for (int half = 0; half < 2; half++) {
          const AmxBrgemm3 g = {nb, hi.data(), lo.data(), aoff.data(), cin_pad, W.hi.data() + panel0,
                                W.lo.data() + panel0, kAmxPanelElems, half, C + 16 * half, 32};
          K.brgemm3(g);
        }
      } else {
        const AmxBrgemm g = {nb, hi.data(), aoff.data(), cin_pad, W.hi.data() + panel0, kAmxPanelElems, C, 32};
        K.brgemm(g);
      }
      epilogue(C, 32, p0, P, pw, wd, img, h, W.bias.data(), c0, cols, cout, relu, y);
    }
    K.release();
  });
}

}  // namespace cpu
}  // namespace tl
