#include "host/ops/cpu_ops.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "host/core/common.h"
#include "host/core/cpu_features.h"
#include "host/ops/cpu_amx.h"
#include "host/ops/cpu_kernels.h"
#include "host/core/threads.h"

namespace tl {
namespace cpu {

// ---------------------------------------------------------------------------------------------
// Run-time ISA choice.

namespace {
alignas(64) float g_zeros[kZeros];

#if defined(TL_HAVE_X86_KERNELS)
const Kernels k_avx512 = {"avx512", 14, 32, tile_avx512, fma_loop_avx512, 2 * 24 * 16, rmsprop_avx512};
const Kernels k_avx2 = {"avx2", 6, 16, tile_avx2, fma_loop_avx2, 2 * 12 * 8, rmsprop_avx2};
#endif
const Kernels k_generic = {"generic", 4, 8, tile_generic, fma_loop_generic, 2 * 24 * 8, rmsprop_generic};

bool cpu_has(const char* isa) {
#if defined(__x86_64__) && defined(TL_HAVE_X86_KERNELS)
  __builtin_cpu_init();
  if (!strcmp(isa, "avx512")) return __builtin_cpu_supports("avx512f");
  if (!strcmp(isa, "avx2")) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
  return !strcmp(isa, "generic");
}
}  // namespace

const float* zeros() { return g_zeros; }

const Kernels* kernels_for(const char* isa) {
  if (!cpu_has(isa)) return nullptr;
#if defined(TL_HAVE_X86_KERNELS)
  if (!strcmp(isa, "avx512")) return &k_avx512;
  if (!strcmp(isa, "avx2")) return &k_avx2;
#endif
  if (!strcmp(isa, "generic")) return &k_generic;
  return nullptr;
}

namespace {
const Kernels* g_override = nullptr;
}

void set_kernels(const Kernels* k) { g_override = k; }

const Kernels& kernels() {
  if (g_override) return *g_override;
  static const Kernels* chosen = [] {
    if (const char* e = getenv("TL_ISA")) {
      const Kernels* k = kernels_for(e);
      if (k) return k;
      fprintf(stderr, "warning: TL_ISA=%s is not available on this CPU; choosing automatically\n", e);
    }
    for (const char* isa : {"avx512", "avx2", "generic"})
      if (const Kernels* k = kernels_for(isa)) return k;
    return &k_generic;
  }();
  return *chosen;
}

// ---------------------------------------------------------------------------------------------
// conv3x3 as an implicit GEMM: rows = output pixels, columns = output channels,
// reduction = (input-channel block, tap, channel). Input rows are read in place (NHWC keeps
// a pixel's channels contiguous); padding taps point at a zero buffer. Weights are packed per
// call into [cout/NR][tap][cin][NR] panels (zero padded), a small cost next to the conv.

namespace {

struct Scratch {
  std::vector<float, std::allocator<float>> buf;
  float* get(size_t n) {
    if (buf.size() < n + 16) buf.resize(n + 16);
    uintptr_t p = (uintptr_t)buf.data();
    return (float*)((p + 63) & ~(uintptr_t)63);
  }
};
Scratch& packed_weights_scratch() {
  static thread_local Scratch s;
  return s;
}

}  // namespace

namespace {
ConvAlgo g_conv_algo = ConvAlgo::Auto;
}

void set_conv_algo(ConvAlgo a) { g_conv_algo = a; }

namespace {
// set_conv_algo's choice, else TL_CONV's, else Auto.
ConvAlgo forced_conv_algo() {
  ConvAlgo a = g_conv_algo;
  if (a == ConvAlgo::Auto) {
    static const char* env = getenv("TL_CONV");
    if (env && !strcmp(env, "direct")) a = ConvAlgo::Direct;
    if (env && !strcmp(env, "winograd")) a = ConvAlgo::Winograd;
    if (env && !strcmp(env, "winograd4")) a = ConvAlgo::Winograd4;
    if (env && !strcmp(env, "amx3")) a = ConvAlgo::Amx3;
  }
  return a;
}
}  // namespace

ConvAlgo conv_algo_for(int cin, int cout, int h, int w) {
  ConvAlgo a = forced_conv_algo();
  if (a == ConvAlgo::Amx3 && !amx_kernels()) a = ConvAlgo::Auto;  // bf16x3 needs AMX tiles
  // Winograd's GEMMs need enough channels to beat the transforms' memory traffic; the first
  // VGG layer (3 input channels) stays direct.
  // F(4x4) saves 44% of F(2x2)'s GEMM work but its transforms cost more per channel and its 4x4
  // tiles waste work on small images (14 = 3.5 tiles): measured on VGG16 (bench/RESULTS.md), it
  // wins from 128 channels on 28-pixel images and larger, and loses or ties below.
  if (a == ConvAlgo::Auto && cin >= 128 && cout >= 128 && (h == 0 || std::min(h, w) >= 28)) a = ConvAlgo::Winograd4;
  // F(2x2) also wins on the first layer (3 input channels: K = 27 leaves the direct micro-kernel
  // mostly idle): 1.3-1.9x on block1_conv1 here (bench/RESULTS.md section 10).
  if (a == ConvAlgo::Auto) a = cout >= 16 ? ConvAlgo::Winograd : ConvAlgo::Direct;
  return a;
}

void conv3x3(const float* x, const float* w, const float* b, float* y, int n, int h, int wd, int cin,
             int cout, bool relu, bool bf16) {
  // bf16: Winograd F(2x2) planes on every layer. F(4x4) in bf16 is 1.2x faster here but its larger
  // transform coefficients magnify the operands' rounding: 1.65e-2 against 7.2e-3 relative L2 on
  // the whole base (bench/RESULTS.md section 11); only TL_CONV=winograd4 asks for it.
  // AMX CPUs: the direct conv on tiles (weights packed here when the caller has not packed them
  // once: ops::prepare_conv3x3).
  if (bf16 && amx_kernels()) return conv3x3_amx(x, *amx_pack_conv(w, b, cin, cout, false), y, n, h, wd, relu);
  if (bf16)
    return conv3x3_winograd(x, w, b, y, n, h, wd, cin, cout, relu, forced_conv_algo() == ConvAlgo::Winograd4 ? 4 : 2,
                            true);
  const ConvAlgo a = conv_algo_for(cin, cout, h, wd);
  if (a == ConvAlgo::Amx3) return conv3x3_amx(x, *amx_pack_conv(w, b, cin, cout, true), y, n, h, wd, relu);
  if (a == ConvAlgo::Winograd) return conv3x3_winograd(x, w, b, y, n, h, wd, cin, cout, relu, 2);
  if (a == ConvAlgo::Winograd4) return conv3x3_winograd(x, w, b, y, n, h, wd, cin, cout, relu, 4);
  conv3x3_direct(x, w, b, y, n, h, wd, cin, cout, relu);
}

void conv3x3_direct(const float* x, const float* w, const float* b, float* y, int n, int h, int wd, int cin,
                    int cout, bool relu) {
  const Kernels& K = kernels();
  const int MR = K.mr, NR = K.nr;
  const int ncb = (cout + NR - 1) / NR;
  const size_t panel = (size_t)9 * cin * NR;  // floats per output-channel block
  float* wp = packed_weights_scratch().get(panel * ncb);
  parallel_for(ncb, [&](int64_t cb) {
    float* dst = wp + panel * cb;
    int c0 = (int)cb * NR, cols = std::min(NR, cout - c0);
    for (int t = 0; t < 9; t++)
      for (int ci = 0; ci < cin; ci++) {
        const float* src = w + ((size_t)t * cin + ci) * cout + c0;
        float* d = dst + ((size_t)t * cin + ci) * NR;
        for (int j = 0; j < cols; j++) d[j] = src[j];
        for (int j = cols; j < NR; j++) d[j] = 0.0f;
      }
  });

  // The whole reduction in one pass up to 512 channels (a 9*512*32-float panel fits a 1-2 MB L2;
  // measured faster than 128/256-channel blocks on the 512-channel layers), blocks of 128 beyond.
  const int KC = cin <= 512 ? cin : 128;
  const int64_t M = (int64_t)n * h * wd;
  const int64_t ntiles = (M + MR - 1) / MR;
  const int TPC = 8;  // tiles per task
  const int64_t nchunks = (ntiles + TPC - 1) / TPC;
  TL_ASSERT(KC <= kZeros);
  parallel_for(nchunks * ncb, [&](int64_t task) {
    const int64_t chunk = task / ncb;
    const int cb = (int)(task % ncb);
    const int c0 = cb * NR, cols = std::min(NR, cout - c0);
    const float* ptrs[9 * kMaxMR];
    int pn[kMaxMR], py[kMaxMR], px[kMaxMR];
    for (int kb = 0; kb < cin; kb += KC) {
      const int kc = std::min(KC, cin - kb);
      for (int64_t tile = chunk * TPC; tile < std::min(ntiles, (chunk + 1) * TPC); tile++) {
        const int64_t m0 = tile * MR;
        const int mr = (int)std::min<int64_t>(MR, M - m0);
        for (int i = 0; i < MR; i++) {
          int64_t m = m0 + std::min(i, mr - 1);
          px[i] = (int)(m % wd);
          int64_t r = m / wd;
          py[i] = (int)(r % h);
          pn[i] = (int)(r / h);
        }
        for (int t = 0; t < 9; t++) {
          const int dy = t / 3 - 1, dx = t % 3 - 1;
          for (int i = 0; i < MR; i++) {
            int yy = py[i] + dy, xx = px[i] + dx;
            ptrs[t * MR + i] = (yy < 0 || yy >= h || xx < 0 || xx >= wd)
                                   ? g_zeros
                                   : x + (((int64_t)pn[i] * h + yy) * wd + xx) * cin + kb;
          }
        }
        TileArgs a;
        a.taps = 9;
        a.kc = kc;
        a.a = ptrs;
        a.a_step = 1;
        a.b = wp + panel * cb + (size_t)kb * NR;
        a.b_step = NR;
        a.b_tap_step = (ptrdiff_t)cin * NR;
        a.b_padded = true;
        a.c = y + m0 * cout + c0;
        a.ldc = cout;
        a.mr = mr;
        a.nr = cols;
        a.bias = b ? b + c0 : nullptr;
        a.load_c = kb > 0;
        a.relu = relu && kb + kc >= cin;
        K.tile(a);
      }
    }
  });
}

// ---------------------------------------------------------------------------------------------
// GEMM for the dense layers, with the same micro-kernel (taps = 1).

void gemm(int m, int n, int k, const float* A, int lda, bool ta, const float* B, int ldb, bool tb, float* C,
          int ldc, const float* bias, bool accumulate, bool relu) {
  if (m <= 0 || n <= 0) return;
  const Kernels& K = kernels();
  const int MR = K.mr, NR = K.nr;
  if (k <= 0) {  // empty reduction: C = bias (or unchanged)
    for (int i = 0; i < m; i++)
      for (int j = 0; j < n; j++) {
        float v = accumulate ? C[(size_t)i * ldc + j] : (bias ? bias[j] : 0.0f);
        C[(size_t)i * ldc + j] = relu && !(v > 0.0f) ? 0.0f : v;
      }
    return;
  }
  const int KC = 256;
  const int ncb = (n + NR - 1) / NR;
  const int64_t ntiles = (m + MR - 1) / MR;
  const int TPC = 16;
  const int64_t nchunks = (ntiles + TPC - 1) / TPC;
  const int nt = num_threads();
  std::vector<std::vector<float>> packs(tb ? nt : 0);
  for (auto& p : packs) p.resize((size_t)KC * NR);
  parallel_for_t(nchunks * ncb, [&](int64_t task, int thread) {
    const int cb = (int)(task % ncb);
    const int64_t chunk = task / ncb;
    const int c0 = cb * NR, cols = std::min(NR, n - c0);
    const float* ptrs[kMaxMR];
    for (int kb = 0; kb < k; kb += KC) {
      const int kc = std::min(KC, k - kb);
      const float* bp;
      ptrdiff_t b_step;
      bool padded;
      if (tb) {  // B(kk, j) = B[j*ldb + kk]: gather into [kc][NR]
        float* pk = packs[thread].data();
        for (int j = 0; j < NR; j++) {
          if (j < cols) {
            const float* src = B + (size_t)(c0 + j) * ldb + kb;
            for (int kk = 0; kk < kc; kk++) pk[(size_t)kk * NR + j] = src[kk];
          } else {
            for (int kk = 0; kk < kc; kk++) pk[(size_t)kk * NR + j] = 0.0f;
          }
        }
        bp = pk;
        b_step = NR;
        padded = true;
      } else {
        bp = B + (size_t)kb * ldb + c0;
        b_step = ldb;
        padded = false;
      }
      for (int64_t tile = chunk * TPC; tile < std::min(ntiles, (chunk + 1) * TPC); tile++) {
        const int64_t m0 = tile * MR;
        const int mr = (int)std::min<int64_t>(MR, m - m0);
        for (int i = 0; i < MR; i++) {
          int64_t row = m0 + std::min(i, mr - 1);  // rows past the end repeat a valid row
          ptrs[i] = ta ? A + (size_t)kb * lda + row : A + (size_t)row * lda + kb;
        }
        TileArgs a;
        a.taps = 1;
        a.kc = kc;
        a.a = ptrs;
        a.a_step = ta ? lda : 1;
        a.b = bp;
        a.b_step = b_step;
        a.b_tap_step = 0;
        a.b_padded = padded;
        a.c = C + m0 * ldc + c0;
        a.ldc = ldc;
        a.mr = mr;
        a.nr = cols;
        a.bias = bias ? bias + c0 : nullptr;
        a.load_c = accumulate || kb > 0;
        a.relu = relu && kb + kc >= k;
        K.tile(a);
      }
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Dense layers with a long reduction (the head's first layer: k = 25088) sum k in blocks of
// kDenseBlock rows: P_b = x[:, block b] w[block b, :], each element one FMA chain from zero in k
// order, then y = relu(bias + P_0 + P_1 + ...) in block order. The same partial sums come out of
// the fused gradient-and-update pass (dense_backward_rmsprop with x_next), so a forward from them
// is bit-identical to dense(). Results depend on neither the thread count nor the batch size.

namespace {
constexpr int kDenseBlock = 512;  // rows of w per partial sum
constexpr int kDenseChunk = 56;   // rows of w per micro-kernel call (4 tiles of 14 rows)
constexpr int kDenseRows = 64;    // rows of x per pass in dense(): bounds the partial sums' memory

// P[m,n] (+)= x[:, rows] w[rows, :] for x rows of stride ldx (x points at the first k column), w
// rows of n floats; single-threaded. first: P starts from zero, else the chains continue.
void partial_rows(const Kernels& K, const float* x, int64_t ldx, int m, const float* w, int rows, int n, float* P,
                  bool first) {
  const float* ptrs[kMaxMR];
  for (int c0 = 0; c0 < n; c0 += K.nr)
    for (int m0 = 0; m0 < m; m0 += K.mr) {
      const int mr = std::min(K.mr, m - m0);
      for (int i = 0; i < K.mr; i++) ptrs[i] = x + (int64_t)(m0 + std::min(i, mr - 1)) * ldx;
      TileArgs a;
      a.taps = 1;
      a.kc = rows;
      a.a = ptrs;
      a.a_step = 1;
      a.b = w + c0;
      a.b_step = n;
      a.b_tap_step = 0;
      a.b_padded = false;
      a.c = P + (int64_t)m0 * n + c0;
      a.ldc = n;
      a.mr = mr;
      a.nr = std::min(K.nr, n - c0);
      a.bias = nullptr;
      a.load_c = !first;
      a.relu = false;
      K.tile(a);
    }
}

// The partial sums of rows [r0, r1) of block b (r0 = the block's start begins its chains).
void block_partial(const Kernels& K, const float* x, int64_t ldx, int m, const float* w, int n, int64_t block_start,
                   int64_t r0, int64_t r1, float* Pb) {
  partial_rows(K, x + r0, ldx, m, w + r0 * n, (int)(r1 - r0), n, Pb, r0 == block_start);
}
}  // namespace

int dense_partial_blocks(int k) { return k >= 2 * kDenseBlock ? (k + kDenseBlock - 1) / kDenseBlock : 0; }

void dense_from_partials(const float* P, int m, int k, int n, const float* bias, bool relu, float* y) {
  const int nb = dense_partial_blocks(k);
  TL_ASSERT(nb > 0);
  parallel_for(m, [&](int64_t i) {
    float* yr = y + i * n;
    for (int j = 0; j < n; j++) yr[j] = bias ? bias[j] : 0.0f;
    for (int b = 0; b < nb; b++) {
      const float* pr = P + ((int64_t)b * m + i) * n;
      for (int j = 0; j < n; j++) yr[j] += pr[j];
    }
    if (relu)
      for (int j = 0; j < n; j++) yr[j] = yr[j] > 0.0f ? yr[j] : 0.0f;
  });
}

void dense_partials(const float* x, const float* w, float* P, int m, int k, int n) {
  const int nb = dense_partial_blocks(k);
  TL_ASSERT(nb > 0);
  const Kernels& K = kernels();
  parallel_for(nb, [&](int64_t b) {
    const int64_t b0 = b * kDenseBlock, b1 = std::min<int64_t>(k, b0 + kDenseBlock);
    for (int64_t r = b0; r < b1; r += kDenseChunk)
      block_partial(K, x, k, m, w, n, b0, r, std::min<int64_t>(b1, r + kDenseChunk), P + b * (int64_t)m * n);
  });
}

void dense(const float* x, const float* w, const float* b, float* y, int m, int k, int n, bool relu) {
  const int nb = dense_partial_blocks(k);
  if (!nb || m <= 0 || n <= 0) {
    gemm(m, n, k, x, k, false, w, n, false, y, n, b, false, relu);
    return;
  }
  static thread_local std::vector<float> P;  // kept between calls: no 2.5 MB allocation per forward
  P.resize((size_t)nb * std::min(m, kDenseRows) * n);
  for (int r0 = 0; r0 < m; r0 += kDenseRows) {
    const int mc = std::min(kDenseRows, m - r0);
    dense_partials(x + (int64_t)r0 * k, w, P.data(), mc, k, n);
    dense_from_partials(P.data(), mc, k, n, b, relu, y + (int64_t)r0 * n);
  }
}

namespace {
// db[n] = the sum over the rows of dy [m, n], in row order.
void column_sums(const float* dy, int m, int n, float* db) {
  for (int j = 0; j < n; j++) db[j] = 0.0f;
  for (int i = 0; i < m; i++)
    for (int j = 0; j < n; j++) db[j] += dy[(size_t)i * n + j];
}
}  // namespace

void dense_backward(const float* x, const float* w, const float* dy, float* dx, float* dw, float* db, int m,
                    int k, int n) {
  // dw[k,n] = x^T[k,m] dy[m,n]
  gemm(k, n, m, x, k, true, dy, n, false, dw, n, nullptr, false, false);
  if (db) column_sums(dy, m, n, db);
  // dx[m,k] = dy[m,n] w^T[n,k]
  if (dx) gemm(m, k, n, dy, n, false, w, n, true, dx, k, nullptr, false, false);
}

// ---------------------------------------------------------------------------------------------
// Element-wise ops: split into fixed chunks, each a simple loop the compiler vectorises.

namespace {
template <typename F>
void chunked(int64_t n, F f) {
  const int64_t chunk = 1 << 16;
  int64_t tasks = (n + chunk - 1) / chunk;
  parallel_for(tasks, [&](int64_t t) {
    int64_t s = t * chunk, e = std::min(n, s + chunk);
    f(s, e);
  });
}
}  // namespace

void relu(const float* x, float* y, int64_t n) {
  chunked(n, [&](int64_t s, int64_t e) {
    for (int64_t i = s; i < e; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
  });
}

void relu_backward(const float* y, const float* dy, float* dx, int64_t n) {
  chunked(n, [&](int64_t s, int64_t e) {
    for (int64_t i = s; i < e; i++) dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
  });
}

void maxpool2x2(const float* x, float* y, int n, int h, int w, int c) {
  const int oh = h / 2, ow = w / 2;
  parallel_for((int64_t)n * oh, [&](int64_t r) {
    const int64_t img = r / oh;
    const int oy = (int)(r % oh);
    const float* r0 = x + ((img * h + 2 * oy) * (int64_t)w) * c;
    const float* r1 = r0 + (int64_t)w * c;
    float* out = y + ((img * oh + oy) * (int64_t)ow) * c;
    for (int ox = 0; ox < ow; ox++) {
      const float* a = r0 + (int64_t)2 * ox * c;
      const float* b = r1 + (int64_t)2 * ox * c;
      float* o = out + (int64_t)ox * c;
      for (int ch = 0; ch < c; ch++) {
        float m0 = a[ch] > a[ch + c] ? a[ch] : a[ch + c];
        float m1 = b[ch] > b[ch + c] ? b[ch] : b[ch + c];
        o[ch] = m0 > m1 ? m0 : m1;
      }
    }
  });
}

void dropout(const float* x, float* y, int64_t n, float rate, uint64_t seed, uint64_t step) {
  if (rate <= 0.0f) {
    if (x != y) memcpy(y, x, (size_t)n * sizeof(float));
    return;
  }
  const float scale = 1.0f / (1.0f - rate);
  const uint64_t key = dropout_call_key(seed, step);
  chunked(n, [&](int64_t s, int64_t e) {
    for (int64_t i = s; i < e; i++) y[i] = dropout_keep_keyed(key, (uint64_t)i, rate) ? x[i] * scale : 0.0f;
  });
}

void sigmoid_bce(const float* z, const float* y, float* prob, float* loss, float* dz, int n) {
  for (int i = 0; i < n; i++) {
    const float zi = z[i], yi = y[i];
    const float e = expf(-fabsf(zi));  // in (0, 1]: never overflows
    const float p = zi >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
    if (prob) prob[i] = p;
    if (loss) loss[i] = (zi > 0.0f ? zi : 0.0f) - zi * yi + log1pf(e);
    if (dz) dz[i] = (p - yi) / (float)n;
  }
}

void rmsprop(float* w, const float* g, float* v, int64_t n, float lr, float rho, float eps) {
  const float one_minus_rho = 1.0f - rho;
  const Kernels& K = kernels();
  chunked(n, [&](int64_t s, int64_t e) { K.rmsprop(w + s, v + s, g + s, (long)(e - s), lr, rho, one_minus_rho, eps); });
}

void dense_backward_rmsprop(const float* x, const float* dy, float* w, float* v, float* db, int m, int k, int n,
                            float lr, float rho, float eps, const float* x_next, int m_next, float* next_partials) {
  // The GEMM dw[k,n] = x^T dy of dense_backward, tile by tile exactly as gemm() computes it (same
  // tiles, same k blocks, same chains), each tile's gradient applied to w and v while it is in
  // registers' reach instead of being stored: the 40 MB gradient is never written or read back.
  if (db) column_sums(dy, m, n, db);
  if (k <= 0 || n <= 0) return;
  const bool ahead = x_next && next_partials && m_next > 0;
  TL_ASSERT(!ahead || dense_partial_blocks(k) > 0);
  const float one_minus_rho = 1.0f - rho;
  if (m <= 0) {  // an empty batch: a zero gradient, as gemm() gives
    chunked((int64_t)k * n, [&](int64_t s, int64_t e) {
      for (int64_t i = s; i < e; i++) rmsprop_update(w[i], v[i], 0.0f, lr, rho, one_minus_rho, eps);
    });
    if (ahead) dense_partials(x_next, w, next_partials, m_next, k, n);
    return;
  }
  const Kernels& K = kernels();
  const int MR = K.mr, NR = K.nr;
  const int KC = 256;
  const int ncb = (n + NR - 1) / NR;
  // A task: rows of w (contiguous in memory), MR at a time: their gradient, every column block, into
  // a buffer that stays in L1/L2, then one streaming pass of RMSprop over those rows of w and v.
  // With the next batch (x_next), a task is one block of dense()'s partial sums: every kDenseChunk
  // rows, just updated and still in cache, also go into the next batch's partial sums for the block,
  // so the next forward through w needs no pass over it.
  const int64_t task_rows = ahead ? kDenseBlock : MR;
  const int64_t ntasks = (k + task_rows - 1) / task_rows;
  std::vector<std::vector<float>> bufs(num_threads());
  parallel_for_t(ntasks, [&](int64_t task, int thread) {
    std::vector<float>& g = bufs[thread];
    g.resize((size_t)MR * ncb * NR);
    const int64_t t0 = task * task_rows, t1 = std::min<int64_t>(k, t0 + task_rows);
    int64_t fwd_from = t0;
    for (int64_t r0 = t0; r0 < t1; r0 += MR) {
      const int mr = (int)std::min<int64_t>(MR, t1 - r0);
      const float* ptrs[kMaxMR];
      for (int cb = 0; cb < ncb; cb++) {
        const int c0 = cb * NR, cols = std::min(NR, n - c0);
        for (int kb = 0; kb < m; kb += KC) {
          const int kc = std::min(KC, m - kb);
          for (int i = 0; i < MR; i++) ptrs[i] = x + (size_t)kb * k + (r0 + std::min(i, mr - 1));
          TileArgs a;
          a.taps = 1;
          a.kc = kc;
          a.a = ptrs;
          a.a_step = k;
          a.b = dy + (size_t)kb * n + c0;
          a.b_step = n;
          a.b_tap_step = 0;
          a.b_padded = false;
          a.c = g.data() + c0;
          a.ldc = n;
          a.mr = mr;
          a.nr = cols;
          a.bias = nullptr;
          a.load_c = kb > 0;
          a.relu = false;
          K.tile(a);
        }
      }
      float* wr = w + (size_t)r0 * n;
      float* vr = v + (size_t)r0 * n;
      const float* gr = g.data();
      K.rmsprop(wr, vr, gr, (long)mr * n, lr, rho, one_minus_rho, eps);
      const int64_t r1 = r0 + mr;
      if (ahead && (r1 - fwd_from >= kDenseChunk || r1 == t1)) {
        block_partial(K, x_next, k, m_next, w, n, t0, fwd_from, r1, next_partials + task * (int64_t)m_next * n);
        fwd_from = r1;
      }
    }
  });
}

uint16_t half_from_float(float f) {
  uint32_t x;
  memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t absx = x & 0x7FFFFFFFu;
  if (absx > 0x7F800000u) return 0x7FFFu;  // NaN: the canonical quiet NaN, as CUDA's __float2half_rn gives
  if (absx == 0x7F800000u) return (uint16_t)(sign | 0x7C00u);  // inf
  if (absx >= 0x477FF000u) return (uint16_t)(sign | 0x7C00u);  // rounds to >= 65520: overflow to inf
  if (absx < 0x38800000u) {  // below the smallest normal half (2^-14): subnormal or zero
    if (absx < 0x33000000u) return (uint16_t)sign;  // < 2^-25: rounds to zero
    const uint32_t e = absx >> 23;
    const uint32_t mant = (absx & 0x7FFFFFu) | 0x800000u;
    const uint32_t shift = 126 - e;  // 14 + (127 - e) - 1 ... puts the value in units of 2^-24
    uint32_t q = mant >> shift, rem = mant & ((1u << shift) - 1), halfway = 1u << (shift - 1);
    if (rem > halfway || (rem == halfway && (q & 1))) q++;
    return (uint16_t)(sign | q);
  }
  uint32_t h = ((absx - 0x38000000u) >> 13);  // rebias exponent 127 -> 15
  uint32_t rem = absx & 0x1FFFu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1))) h++;
  return (uint16_t)(sign | h);
}

float float_from_half(uint16_t hv) {
  const uint32_t sign = (uint32_t)(hv & 0x8000u) << 16;
  uint32_t e = (hv >> 10) & 0x1Fu, m = hv & 0x3FFu, x;
  if (e == 0) {
    if (m == 0) {
      x = sign;
    } else {  // subnormal: normalise
      e = 1;
      while (!(m & 0x400u)) {
        m <<= 1;
        e--;
      }
      m &= 0x3FFu;
      x = sign | ((e + 112) << 23) | (m << 13);
    }
  } else if (e == 31) {
    x = sign | 0x7F800000u | (m << 13);
  } else {
    x = sign | ((e + 112) << 23) | (m << 13);
  }
  float f;
  memcpy(&f, &x, 4);
  return f;
}

void f32_to_f16(const float* x, uint16_t* y, int64_t n) {
  chunked(n, [&](int64_t s, int64_t e) {
    for (int64_t i = s; i < e; i++) y[i] = half_from_float(x[i]);
  });
}

void f16_to_f32(const uint16_t* x, float* y, int64_t n) {
  chunked(n, [&](int64_t s, int64_t e) {
    for (int64_t i = s; i < e; i++) y[i] = float_from_half(x[i]);
  });
}

}  // namespace cpu
}  // namespace tl
