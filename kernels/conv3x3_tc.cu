// conv3x3_tc.cu: the other conv3x3 kernels, numbered as bench_ops and bench/gpu_check.sh name them
// (kernel 1, the fp32 FFMA kernel of conv3x3.cu, stays the default fp32 path):
//   2  fp32 FFMA, 128 pixels x 128 channels per 256-thread block, 8 x 8 outputs per thread,
//      K staged 16 at a time in double-buffered shared memory, float4 loads and stores;
//   3  TF32 tensor cores (WMMA m16n16k8), operands rounded to tf32 (to nearest), fp32 accumulation;
//   4  BF16 tensor cores (WMMA m16n16k16), operands rounded to bf16 (to nearest even), fp32 accumulation.
// All three are implicit GEMMs over NHWC activations and HWIO weights (see conv3x3.cu), with one
// tile loader: the K loop walks the taps and, inside a tap, the input channels, so no integer
// division is left in it (the one per pixel row happens once, before the loop). While a step
// computes on one shared-memory buffer, the next step's tiles are loaded into registers and then
// stored into the other buffer: one barrier per step.
//
// FAST tiles (cin a multiple of the K step, cout of 4, 16-byte aligned pointers: every VGG16 layer
// but block1_conv1) move float4s; the general path loads element by element and tracks each
// column's (tap, channel) incrementally.
#include <cuda_bf16.h>
#include <mma.h>

#include "host/ops/cuda_ops.h"
#include "common.cuh"

namespace tl {
namespace cuda {

namespace {

constexpr int THREADS = 256;

__device__ __forceinline__ float4 zero4() { return make_float4(0.0f, 0.0f, 0.0f, 0.0f); }

// The pixels of rows first, first + RPP, ... of a tile: (y, x) and the offset of their image in x
// (-1 past the last pixel). The only divisions of the loaders, once per kernel.
template <int ITERS, int RPP>
__device__ __forceinline__ void pixel_rows(int64_t first, int64_t M, int h, int wd, int cin, int* py, int* px,
                                           int64_t* base) {
#pragma unroll
  for (int i = 0; i < ITERS; i++) {
    const int64_t m = first + i * RPP;
    base[i] = -1, py[i] = 0, px[i] = 0;
    if (m < M) {
      const int64_t q = m / wd;
      px[i] = (int)(m - q * wd);
      py[i] = (int)(q % h);
      base[i] = (q / h) * (int64_t)h * wd * cin;
    }
  }
}

// A loaded float4's 4 values into the tile: st(row, col..col+3, value).
template <class Store>
__device__ __forceinline__ void store_float4(Store& st, int row, int col, float4 v) {
  st(row, col + 0, v.x);
  st(row, col + 1, v.y);
  st(row, col + 2, v.z);
  st(row, col + 3, v.w);
}

// ---------------------------------------------------------------- tile loaders
// A: the BM x BK slice (pixels x K) of the implicit im2col matrix for the current step.
template <int BM, int BK, bool FAST>
struct ALoader;

template <int BM, int BK>
struct ALoader<BM, BK, true> {  // cin % BK == 0: a step is BK channels of one tap
  static constexpr int KV = BK / 4, RPP = THREADS / KV, ITERS = BM / RPP;
  static_assert(BK % 4 == 0 && THREADS % KV == 0 && BM % RPP == 0, "A tile shape");
  const float* x;
  int h, wd, cin, kq, row0, dy, dx, ci0;
  int py[ITERS], px[ITERS];
  int64_t base[ITERS];  // offset of the pixel's image in x; -1: a row past the last pixel
  float4 r[ITERS];

  __device__ void init(const float* x_, int64_t m0, int64_t M, int h_, int wd_, int cin_) {
    x = x_, h = h_, wd = wd_, cin = cin_;
    kq = threadIdx.x % KV, row0 = threadIdx.x / KV;
    dy = -1, dx = -1, ci0 = 0;
    pixel_rows<ITERS, RPP>(m0 + row0, M, h, wd, cin, py, px, base);
  }
  __device__ void load() {
#pragma unroll
    for (int i = 0; i < ITERS; i++) {
      const int yy = py[i] + dy, xx = px[i] + dx;
      r[i] = zero4();
      if (base[i] >= 0 && (unsigned)yy < (unsigned)h && (unsigned)xx < (unsigned)wd)
        r[i] = *reinterpret_cast<const float4*>(x + base[i] + ((int64_t)yy * wd + xx) * cin + ci0 + kq * 4);
    }
  }
  __device__ void next() {
    ci0 += BK;
    if (ci0 == cin) {
      ci0 = 0;
      if (++dx == 2) dx = -1, ++dy;
    }
  }
  template <class Store>
  __device__ void store(Store st) const {
#pragma unroll
    for (int i = 0; i < ITERS; i++) {
      store_float4(st, row0 + i * RPP, kq * 4, r[i]);
    }
  }
};

template <int BM, int BK>
struct ALoader<BM, BK, false> {  // any cin: each thread owns one K column of the tile
  static constexpr int RPP = THREADS / BK, ITERS = BM / RPP;
  static_assert(THREADS % BK == 0 && BM % RPP == 0, "A tile shape");
  const float* x;
  int h, wd, cin, kcol, row0, tap, ci, dy, dx;  // (tap, ci) of column kcol at the current step
  int py[ITERS], px[ITERS];
  int64_t base[ITERS];
  float r[ITERS];

  __device__ void init(const float* x_, int64_t m0, int64_t M, int h_, int wd_, int cin_) {
    x = x_, h = h_, wd = wd_, cin = cin_;
    kcol = threadIdx.x % BK, row0 = threadIdx.x / BK;
    tap = kcol / cin, ci = kcol - tap * cin;
    dy = tap / 3 - 1, dx = tap % 3 - 1;
    pixel_rows<ITERS, RPP>(m0 + row0, M, h, wd, cin, py, px, base);
  }
  __device__ void load() {
#pragma unroll
    for (int i = 0; i < ITERS; i++) {
      const int yy = py[i] + dy, xx = px[i] + dx;
      r[i] = 0.0f;
      if (tap < 9 && base[i] >= 0 && (unsigned)yy < (unsigned)h && (unsigned)xx < (unsigned)wd)
        r[i] = x[base[i] + ((int64_t)yy * wd + xx) * cin + ci];
    }
  }
  __device__ void next() {
    ci += BK;
    while (ci >= cin) {  // at most BK / cin + 1 rounds
      ci -= cin;
      ++tap;
      if (++dx == 2) dx = -1, ++dy;
    }
  }
  template <class Store>
  __device__ void store(Store st) const {
#pragma unroll
    for (int i = 0; i < ITERS; i++) st(row0 + i * RPP, kcol, r[i]);
  }
};

// B: the BK x BN slice of the weights [K][cout] for the current step (rows k0.., columns n0..).
template <int BK, int BN, bool FAST>
struct BLoader;

template <int BK, int BN>
struct BLoader<BK, BN, true> {  // cout % 4 == 0
  static constexpr int KV = BN / 4, RPP = THREADS / KV, ITERS = BK / RPP;
  static_assert(THREADS % KV == 0 && BK % RPP == 0, "B tile shape");
  const float* w;
  int K, cout, c4, r0, k0;
  bool colok;
  float4 r[ITERS];
  __device__ void init(const float* w_, int n0, int K_, int cout_) {
    w = w_, K = K_, cout = cout_, k0 = 0;
    c4 = threadIdx.x % KV, r0 = threadIdx.x / KV;
    colok = n0 + c4 * 4 < cout;
    w += n0 + c4 * 4;
  }
  __device__ void load() {
#pragma unroll
    for (int i = 0; i < ITERS; i++) {
      const int kk = k0 + r0 + i * RPP;
      r[i] = zero4();
      if (colok && kk < K) r[i] = *reinterpret_cast<const float4*>(w + (int64_t)kk * cout);
    }
  }
  __device__ void next() { k0 += BK; }
  template <class Store>
  __device__ void store(Store st) const {
#pragma unroll
    for (int i = 0; i < ITERS; i++) {
      store_float4(st, r0 + i * RPP, c4 * 4, r[i]);
    }
  }
};

template <int BK, int BN>
struct BLoader<BK, BN, false> {  // any cout
  static constexpr int RPP = THREADS / BN, ITERS = BK / RPP;
  static_assert(THREADS % BN == 0 && BK % RPP == 0, "B tile shape");
  const float* w;
  int K, cout, col, r0, k0;
  float r[ITERS];
  __device__ void init(const float* w_, int n0, int K_, int cout_) {
    w = w_, K = K_, cout = cout_, k0 = 0;
    col = n0 + threadIdx.x % BN, r0 = threadIdx.x / BN;
  }
  __device__ void load() {
#pragma unroll
    for (int i = 0; i < ITERS; i++) {
      const int kk = k0 + r0 + i * RPP;
      r[i] = (col < cout && kk < K) ? w[(int64_t)kk * cout + col] : 0.0f;
    }
  }
  __device__ void next() { k0 += BK; }
  template <class Store>
  __device__ void store(Store st) const {
#pragma unroll
    for (int i = 0; i < ITERS; i++) st(r0 + i * RPP, threadIdx.x % BN, r[i]);
  }
};

// Bias, ReLU and the store of 4 outputs of row m starting at channel co (float4 when vec).
__device__ __forceinline__ void store4(float* __restrict__ y, const float* __restrict__ b, int64_t m, int co,
                                       int cout, float4 v, bool relu, bool vec) {
  float o[4] = {v.x, v.y, v.z, v.w};
  if (vec && co + 3 < cout) {
#pragma unroll
    for (int j = 0; j < 4; j++) {
      o[j] += b[co + j];
      if (relu) o[j] = o[j] > 0.0f ? o[j] : 0.0f;
    }
    *reinterpret_cast<float4*>(y + m * cout + co) = make_float4(o[0], o[1], o[2], o[3]);
    return;
  }
#pragma unroll
  for (int j = 0; j < 4; j++) {
    if (co + j >= cout) break;
    float t = o[j] + b[co + j];
    if (relu) t = t > 0.0f ? t : 0.0f;
    y[m * cout + co + j] = t;
  }
}

// ---------------------------------------------------------------- kernel 2: fp32 FFMA, 8x8 per thread
namespace k2 {
constexpr int BM = 128, BN = 128, BK = 16, TM = 8, TN = 8, PAD = 4;

template <bool FAST>
__global__ void __launch_bounds__(THREADS)
conv3x3_ffma8x8_kernel(const float* __restrict__ x, const float* __restrict__ w, const float* __restrict__ b,
                       float* __restrict__ y, int n, int h, int wd, int cin, int cout, int relu, int vec_out) {
  __shared__ __align__(16) float As[2][BK][BM + PAD];
  __shared__ __align__(16) float Bs[2][BK][BN + PAD];
  const int64_t M = (int64_t)n * h * wd;
  const int K = 9 * cin, steps = (K + BK - 1) / BK;
  const int64_t m0 = (int64_t)blockIdx.x * BM;
  const int n0 = blockIdx.y * BN;
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;

  ALoader<BM, BK, FAST> la;
  BLoader<BK, BN, FAST> lb;
  la.init(x, m0, M, h, wd, cin);
  lb.init(w, n0, K, cout);
  float acc[TM][TN];
#pragma unroll
  for (int i = 0; i < TM; i++)
#pragma unroll
    for (int j = 0; j < TN; j++) acc[i][j] = 0.0f;

  int buf = 0;
  auto sta = [&](int row, int k, float v) { As[buf][k][row] = v; };
  auto stb = [&](int k, int col, float v) { Bs[buf][k][col] = v; };
  la.load();
  lb.load();
  la.store(sta);
  lb.store(stb);
  __syncthreads();
  for (int s = 0; s < steps; s++) {
    const int cur = s & 1;
    const bool more = s + 1 < steps;
    if (more) {
      la.next(), lb.next();
      la.load(), lb.load();
    }
#pragma unroll
    for (int kk = 0; kk < BK; kk++) {
      const float4 a0 = *reinterpret_cast<const float4*>(&As[cur][kk][ty * TM]);
      const float4 a1 = *reinterpret_cast<const float4*>(&As[cur][kk][ty * TM + 4]);
      const float4 b0 = *reinterpret_cast<const float4*>(&Bs[cur][kk][tx * TN]);
      const float4 b1 = *reinterpret_cast<const float4*>(&Bs[cur][kk][tx * TN + 4]);
      const float a[TM] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
      const float bv[TN] = {b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w};
#pragma unroll
      for (int i = 0; i < TM; i++)
#pragma unroll
        for (int j = 0; j < TN; j++) acc[i][j] = fmaf(a[i], bv[j], acc[i][j]);
    }
    if (more) {
      buf = cur ^ 1;
      la.store(sta);
      lb.store(stb);
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < TM; i++) {
    const int64_t m = m0 + ty * TM + i;
    if (m >= M) continue;
#pragma unroll
    for (int j = 0; j < TN; j += 4) {
      const int co = n0 + tx * TN + j;
      if (co >= cout) continue;
      store4(y, b, m, co, cout, make_float4(acc[i][j], acc[i][j + 1], acc[i][j + 2], acc[i][j + 3]), relu != 0,
             vec_out != 0);
    }
  }
}
}  // namespace k2

// ---------------------------------------------------------------- kernels 3, 4: tensor cores
namespace tc {
using namespace nvcuda;
constexpr int BM = 128, BN = 64;  // 8 warps: 4 along the pixels x 2 along the channels, 32 x 32 each

template <class T>
struct Kind;
template <>
struct Kind<float> {  // tf32
  static constexpr int BK = 16, WK = 8;
  typedef wmma::precision::tf32 P;
  static __device__ __forceinline__ float cvt(float v) { return wmma::__float_to_tf32(v); }
};
template <>
struct Kind<__nv_bfloat16> {
  static constexpr int BK = 32, WK = 16;
  typedef __nv_bfloat16 P;
  static __device__ __forceinline__ __nv_bfloat16 cvt(float v) { return __float2bfloat16(v); }
};

template <class T, bool FAST>
__global__ void __launch_bounds__(THREADS)
conv3x3_tc_kernel(const float* __restrict__ x, const float* __restrict__ w, const float* __restrict__ b,
                  float* __restrict__ y, int n, int h, int wd, int cin, int cout, int relu, int vec_out) {
  constexpr int BK = Kind<T>::BK, WK = Kind<T>::WK;
  // Rows padded by 16 bytes (bank spread); every fragment pointer stays 32-byte aligned, every
  // leading dimension a multiple of 16 bytes, as WMMA requires.
  constexpr int LDA = BK + 16 / (int)sizeof(T), LDB = BN + 16 / (int)sizeof(T), LDC = BN + 4;
  constexpr int A_ELEMS = BM * LDA, B_ELEMS = BK * LDB;
  constexpr int AB_BYTES = 2 * (A_ELEMS + B_ELEMS) * (int)sizeof(T), C_BYTES = BM * LDC * 4;
  constexpr int SMEM = AB_BYTES > C_BYTES ? AB_BYTES : C_BYTES;
  static_assert((A_ELEMS * sizeof(T)) % 32 == 0 && (B_ELEMS * sizeof(T)) % 32 == 0, "fragment alignment");
  __shared__ __align__(128) unsigned char smem[SMEM];
  T* const As = reinterpret_cast<T*>(smem);
  T* const Bs = As + 2 * A_ELEMS;

  const int64_t M = (int64_t)n * h * wd;
  const int K = 9 * cin, steps = (K + BK - 1) / BK;
  const int64_t m0 = (int64_t)blockIdx.x * BM;
  const int n0 = blockIdx.y * BN;
  const int warp = threadIdx.x / 32, wm = warp % 4, wn = warp / 4;

  ALoader<BM, BK, FAST> la;
  BLoader<BK, BN, FAST> lb;
  la.init(x, m0, M, h, wd, cin);
  lb.init(w, n0, K, cout);

  typedef typename Kind<T>::P P;
  wmma::fragment<wmma::accumulator, 16, 16, WK, float> acc[2][2];
#pragma unroll
  for (int i = 0; i < 2; i++)
#pragma unroll
    for (int j = 0; j < 2; j++) wmma::fill_fragment(acc[i][j], 0.0f);

  int buf = 0;
  auto sta = [&](int row, int k, float v) { As[buf * A_ELEMS + row * LDA + k] = Kind<T>::cvt(v); };
  auto stb = [&](int k, int col, float v) { Bs[buf * B_ELEMS + k * LDB + col] = Kind<T>::cvt(v); };
  la.load();
  lb.load();
  la.store(sta);
  lb.store(stb);
  __syncthreads();
  for (int s = 0; s < steps; s++) {
    const int cur = s & 1;
    const bool more = s + 1 < steps;
    if (more) {
      la.next(), lb.next();
      la.load(), lb.load();
    }
    const T* a_tile = As + cur * A_ELEMS + wm * 32 * LDA;
    const T* b_tile = Bs + cur * B_ELEMS + wn * 32;
#pragma unroll
    for (int kk = 0; kk < BK; kk += WK) {
      wmma::fragment<wmma::matrix_a, 16, 16, WK, P, wmma::row_major> fa[2];
      wmma::fragment<wmma::matrix_b, 16, 16, WK, P, wmma::row_major> fb[2];
#pragma unroll
      for (int i = 0; i < 2; i++) wmma::load_matrix_sync(fa[i], a_tile + i * 16 * LDA + kk, LDA);
#pragma unroll
      for (int j = 0; j < 2; j++) wmma::load_matrix_sync(fb[j], b_tile + kk * LDB + j * 16, LDB);
#pragma unroll
      for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 2; j++) wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
    }
    if (more) {
      buf = cur ^ 1;
      la.store(sta);
      lb.store(stb);
    }
    __syncthreads();  // the last one also ends every read of As/Bs before Cs reuses the memory
  }

  float* const Cs = reinterpret_cast<float*>(smem);
#pragma unroll
  for (int i = 0; i < 2; i++)
#pragma unroll
    for (int j = 0; j < 2; j++)
      wmma::store_matrix_sync(Cs + (wm * 32 + i * 16) * LDC + wn * 32 + j * 16, acc[i][j], LDC, wmma::mem_row_major);
  __syncthreads();
  constexpr int C4 = BN / 4;
  for (int e = threadIdx.x; e < BM * C4; e += THREADS) {
    const int row = e / C4, c = (e % C4) * 4;  // constant powers of two: shifts
    const int64_t m = m0 + row;
    const int co = n0 + c;
    if (m >= M || co >= cout) continue;
    store4(y, b, m, co, cout, *reinterpret_cast<const float4*>(Cs + row * LDC + c), relu != 0, vec_out != 0);
  }
}
}  // namespace tc

template <class K>
void launch_pair(K fast, K general, bool use_fast, dim3 grid, const float* x, const float* w, const float* b, float* y,
                 int n, int h, int wd, int cin, int cout, bool relu, bool vec_out, const char* nf, const char* ng) {
#ifdef TL_CUDA_EMULATION
  if (use_fast)
    ::cuda_emu::launch(nf, fast, grid, THREADS, 0, compute_stream())(x, w, b, y, n, h, wd, cin, cout, relu ? 1 : 0,
                                                                      vec_out ? 1 : 0);
  else
    ::cuda_emu::launch(ng, general, grid, THREADS, 0, compute_stream())(x, w, b, y, n, h, wd, cin, cout, relu ? 1 : 0,
                                                                         vec_out ? 1 : 0);
#else
  (void)nf, (void)ng;
  (use_fast ? fast : general)<<<grid, THREADS, 0, compute_stream()>>>(x, w, b, y, n, h, wd, cin, cout, relu ? 1 : 0,
                                                                       vec_out ? 1 : 0);
#endif
  CUDA_CHECK_LAUNCH();
}

bool aligned16(const void* p) { return ((uintptr_t)p & 15) == 0; }

}  // namespace

void conv3x3_variant(int variant, const float* x, const float* w, const float* b, float* y, int n, int h, int wd,
                     int cin, int cout, bool relu) {
  if (variant == 1) return conv3x3(x, w, b, y, n, h, wd, cin, cout, relu);
  const int64_t M = (int64_t)n * h * wd;
  if (M == 0 || cout == 0) return;
  const bool vec_out = cout % 4 == 0 && aligned16(y);
  const bool fast_io = cout % 4 == 0 && aligned16(x) && aligned16(w);
  switch (variant) {
    case 2: {
      dim3 grid((unsigned)((M + k2::BM - 1) / k2::BM), (unsigned)((cout + k2::BN - 1) / k2::BN));
      launch_pair(k2::conv3x3_ffma8x8_kernel<true>, k2::conv3x3_ffma8x8_kernel<false>, fast_io && cin % k2::BK == 0,
                  grid, x, w, b, y, n, h, wd, cin, cout, relu, vec_out, "conv3x3_ffma8x8_kernel<fast>",
                  "conv3x3_ffma8x8_kernel<general>");
      return;
    }
    case 3:
    case 4: {
      dim3 grid((unsigned)((M + tc::BM - 1) / tc::BM), (unsigned)((cout + tc::BN - 1) / tc::BN));
      if (variant == 3)
        launch_pair(tc::conv3x3_tc_kernel<float, true>, tc::conv3x3_tc_kernel<float, false>,
                    fast_io && cin % tc::Kind<float>::BK == 0, grid, x, w, b, y, n, h, wd, cin, cout, relu, vec_out,
                    "conv3x3_tc_kernel<tf32,fast>", "conv3x3_tc_kernel<tf32,general>");
      else
        launch_pair(tc::conv3x3_tc_kernel<__nv_bfloat16, true>, tc::conv3x3_tc_kernel<__nv_bfloat16, false>,
                    fast_io && cin % tc::Kind<__nv_bfloat16>::BK == 0, grid, x, w, b, y, n, h, wd, cin, cout, relu,
                    vec_out, "conv3x3_tc_kernel<bf16,fast>", "conv3x3_tc_kernel<bf16,general>");
      return;
    }
    default:
      ::tl::fail("conv3x3: no kernel %d (1-4)", variant);
  }
}

}  // namespace cuda
}  // namespace tl
