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
#include "host/ops/cpu_ops.h"

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

void set_amx_kernels(const AmxKernels* k) {
  g_amx_override = k;
  cpu_set_bf16_emulated(k != nullptr);
}

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

// A batch in the tiles' input layout: per image (h+2) x (w+2) pixels (a zero border) of c_pad bf16
// channels, then the slack that the last 32-position block reads past the image.
struct Padded {
  int n, h, w, c_pad;
  int pw() const { return w + 2; }
  int64_t positions() const { return (int64_t)h * pw(); }  // output positions per image (padded numbering)
  int64_t blocks() const { return (positions() + 31) / 32; }
  int64_t img_px() const { return (int64_t)(h + 2) * pw() + (blocks() * 32 - positions()) + 2; }
  size_t elems() const { return (size_t)n * img_px() * c_pad; }
  // Element offset of pixel (y, x) (border coordinates: 1..h, 1..w inside) of image img.
  size_t at(int img, int y, int x) const { return ((size_t)img * img_px() + (size_t)y * pw() + x) * c_pad; }
};

// Reused per calling thread: padded bf16 buffers (the input's hi and lo, the stack's ping-pong pair).
std::vector<uint16_t>& scratch(int which, size_t elems) {
  static thread_local std::vector<uint16_t> s[4];
  if (s[which].size() < elems) s[which].resize(elems);
  return s[which];
}

// Zeroes g's border pixels and slack (the interior is written by the caller).
void zero_border(const Padded& g, uint16_t* buf) {
  parallel_for((int64_t)g.n * (g.h + 2), [&](int64_t task) {
    const int img = (int)(task / (g.h + 2)), r = (int)(task % (g.h + 2));
    if (r == 0 || r == g.h + 1) {
      memset(buf + g.at(img, r, 0), 0, (size_t)g.pw() * g.c_pad * 2);
    } else {
      memset(buf + g.at(img, r, 0), 0, (size_t)g.c_pad * 2);
      memset(buf + g.at(img, r, g.w + 1), 0, (size_t)g.c_pad * 2);
    }
    if (r == g.h + 1) {
      const size_t tail0 = g.at(img, g.h + 2, 0);
      memset(buf + tail0, 0, ((size_t)g.img_px() - (size_t)(g.h + 2) * g.pw()) * g.c_pad * 2);
    }
  });
}

// x [n,h,w,cin] fp32 -> g's interior (bf16, channels zero-padded); hi and lo (bf16x3) when lo.
void pad_input(const AmxKernels& K, const float* x, int cin, const Padded& g, uint16_t* hi, uint16_t* lo) {
  zero_border(g, hi);
  if (lo) zero_border(g, lo);
  parallel_for((int64_t)g.n * g.h, [&](int64_t task) {
    const int img = (int)(task / g.h), r = (int)(task % g.h);
    const float* src = x + (((size_t)img * g.h + r) * g.w) * cin;
    const size_t d0 = g.at(img, r + 1, 1);
    if (cin == g.c_pad) {  // the row's pixels are contiguous in both layouts
      if (lo)
        K.split_bf16(src, hi + d0, lo + d0, (long)g.w * cin);
      else
        K.to_bf16(src, hi + d0, (long)g.w * cin);
      return;
    }
    for (int px = 0; px < g.w; px++) {
      const size_t d = d0 + (size_t)px * g.c_pad;
      if (lo)
        K.split_bf16(src + (size_t)px * cin, hi + d, lo + d, cin);
      else
        K.to_bf16(src + (size_t)px * cin, hi + d, cin);
      memset(hi + d + cin, 0, (size_t)(g.c_pad - cin) * 2);
      if (lo) memset(lo + d + cin, 0, (size_t)(g.c_pad - cin) * 2);
    }
  });
}

// The convolution's blocks: for each (column block, image, 32-position row block) the micro-kernel
// makes C (32 positions x 32 channels), and sink(C, img, p0, c0) writes it out. Tasks are column-block
// major, kMB row blocks each, so that consecutive tasks reuse one weight panel (9 x cin_pad x 32 bf16:
// 295 KB at 512 channels) from L2.
template <class Sink>
void run_blocks(const AmxKernels& K, const uint16_t* hi, const uint16_t* lo, const Padded& g, const AmxConvWeights& W,
                const Sink& sink) {
  TL_ASSERT(g.c_pad == W.cin_pad);
  const int nkc = W.nkc(), nb = 9 * nkc, pw = g.pw();
  // The batch: (tap, chunk) in that order, matching the panels' order within a column block.
  std::vector<int64_t> off((size_t)nb);
  for (int t = 0; t < 9; t++)
    for (int kc = 0; kc < nkc; kc++) off[(size_t)t * nkc + kc] = ((int64_t)(t / 3) * pw + t % 3) * g.c_pad + kc * 32;
  constexpr int kMB = 4;
  const int64_t nmb = g.blocks(), runs = (nmb + kMB - 1) / kMB;
  parallel_for((int64_t)W.ncb() * g.n * runs, [&](int64_t task) {
    const int cb = (int)(task / ((int64_t)g.n * runs));
    const int img = (int)(task / runs % g.n);
    const int64_t run = task % runs;
    alignas(64) float C[32 * 32];
    std::vector<int64_t> aoff((size_t)nb);
    const size_t panel0 = (size_t)cb * nb * kAmxPanelElems;
    K.configure();  // per task: the configuration is per thread, and released below
    for (int64_t mb = run * kMB; mb < std::min(nmb, (run + 1) * kMB); mb++) {
      const int64_t p0 = mb * 32, base = ((int64_t)img * g.img_px() + p0) * g.c_pad;
      for (int i = 0; i < nb; i++) aoff[(size_t)i] = base + off[(size_t)i];
      if (W.x3) {
        for (int half = 0; half < 2; half++) {
          const AmxBrgemm3 a = {nb, hi, lo, aoff.data(), g.c_pad, W.hi.data() + panel0, W.lo.data() + panel0,
                                kAmxPanelElems, half, C + 16 * half, 32};
          K.brgemm3(a);
        }
      } else {
        const AmxBrgemm a = {nb, hi, aoff.data(), g.c_pad, W.hi.data() + panel0, kAmxPanelElems, C, 32};
        K.brgemm(a);
      }
      sink(C, img, p0, cb * 32);
    }
    K.release();
  });
}

// For each valid output pixel of C's 32 positions: fn(row of C, image, y, x) (padded numbering dropped).
template <class Fn>
void for_each_pixel(const Padded& g, int64_t p0, const Fn& fn) {
  for (int r = 0; r < 32; r++) {
    const int64_t p = p0 + r;
    if (p >= g.positions()) break;
    const int yy = (int)(p / g.pw()), xx = (int)(p % g.pw());
    if (xx < g.w) fn(r, yy, xx);
  }
}

inline float bias_relu(float c, float b, bool relu) {
  const float v = c + b;
  return relu && !(v > 0.0f) ? 0.0f : v;
}

// C + bias (ReLU) -> y [n,h,w,cout] fp32.
auto fp32_sink(const Padded& g, const AmxConvWeights& W, bool relu, float* y) {
  return [&g, &W, relu, y](const float* C, int img, int64_t p0, int c0) {
    const int cols = std::min(32, W.cout - c0);
    for_each_pixel(g, p0, [&](int r, int yy, int xx) {
      float* out = y + (((size_t)img * g.h + yy) * g.w + xx) * W.cout + c0;
      for (int j = 0; j < cols; j++) out[j] = bias_relu(C[r * 32 + j], W.bias[c0 + j], relu);
    });
  };
}

// C + bias (ReLU) -> the next layer's padded bf16 input (out: g's geometry with c_pad = cout_pad);
// channels past cout are written as zeros.
auto bf16_sink(const AmxKernels& K, const Padded& out_g, const AmxConvWeights& W, bool relu, uint16_t* out) {
  return [&K, &out_g, &W, relu, out](const float* C, int img, int64_t p0, int c0) {
    const int cols = std::min(32, W.cout - c0);
    for_each_pixel(out_g, p0, [&](int r, int yy, int xx) {
      float v[32];
      for (int j = 0; j < 32; j++) v[j] = j < cols ? bias_relu(C[r * 32 + j], W.bias[c0 + j], relu) : 0.0f;
      K.to_bf16(v, out + out_g.at(img, yy + 1, xx + 1) + c0, 32);
    });
  };
}

// 2x2 max-pool of padded bf16 (floor) into the next padded buffer, borders zeroed.
void maxpool_bf16(const Padded& in, const uint16_t* x, const Padded& out, uint16_t* y) {
  zero_border(out, y);
  parallel_for((int64_t)out.n * out.h, [&](int64_t task) {
    const int img = (int)(task / out.h), r = (int)(task % out.h);
    for (int px = 0; px < out.w; px++) {
      const uint16_t* a = x + in.at(img, 2 * r + 1, 2 * px + 1);
      const uint16_t* b = a + in.c_pad;
      const uint16_t* c = a + (size_t)in.pw() * in.c_pad;
      const uint16_t* d = c + in.c_pad;
      uint16_t* o = y + out.at(img, r + 1, px + 1);
      for (int k = 0; k < in.c_pad; k++) {
        // bf16 compares as its float value (rounding is monotonic: this is the pool of the rounded values)
        const float m = std::max(std::max(bf16_value(a[k]), bf16_value(b[k])), std::max(bf16_value(c[k]), bf16_value(d[k])));
        o[k] = bf16_round(m);
      }
    }
  });
}

}  // namespace

void conv3x3_amx(const float* x, const AmxConvWeights& W, float* y, int n, int h, int wd, bool relu) {
  const AmxKernels* K = amx_kernels();
  TL_ASSERT(K);
  const Padded g = {n, h, wd, W.cin_pad};
  uint16_t* hi = scratch(0, g.elems()).data();
  uint16_t* lo = W.x3 ? scratch(1, g.elems()).data() : nullptr;
  pad_input(*K, x, W.cin, g, hi, lo);
  run_blocks(*K, hi, lo, g, W, fp32_sink(g, W, relu, y));
}

void conv3x3_amx_stack(const float* x, int n, int h, int wd, const std::vector<AmxStackLayer>& layers, float* y) {
  const AmxKernels* K = amx_kernels();
  TL_ASSERT(K && !layers.empty());
  Padded g = {n, h, wd, layers[0].w->cin_pad};
  int cur = 2;  // scratch 2 and 3 ping-pong
  uint16_t* a = scratch(cur, g.elems()).data();
  pad_input(*K, x, layers[0].w->cin, g, a, nullptr);
  for (size_t i = 0; i < layers.size(); i++) {
    const AmxConvWeights& W = *layers[i].w;
    TL_ASSERT(!W.x3 && W.cin_pad == g.c_pad);
    if (i + 1 == layers.size()) {  // the last layer's output (the features) stays fp32
      if (!layers[i].pool_after) return run_blocks(*K, a, nullptr, g, W, fp32_sink(g, W, true, y));
      static thread_local std::vector<float> full;
      full.resize((size_t)n * g.h * g.w * W.cout);
      run_blocks(*K, a, nullptr, g, W, fp32_sink(g, W, true, full.data()));
      return maxpool2x2(full.data(), y, n, g.h, g.w, W.cout);
    }
    const Padded og = {n, g.h, g.w, W.cout_pad};
    uint16_t* b = scratch(cur ^ 1, og.elems()).data();
    zero_border(og, b);
    run_blocks(*K, a, nullptr, g, W, bf16_sink(*K, og, W, true, b));
    cur ^= 1;
    a = b;
    g = og;
    if (layers[i].pool_after) {
      const Padded pg = {n, g.h / 2, g.w / 2, g.c_pad};
      uint16_t* p = scratch(cur ^ 1, pg.elems()).data();
      maxpool_bf16(g, a, pg, p);
      cur ^= 1;
      a = p;
      g = pg;
    }
  }
}

}  // namespace cpu
}  // namespace tl
