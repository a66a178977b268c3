// --precision: the conv kernels 2 (fp32, 8x8 per thread), 3 (TF32 tensor cores) and 4 (BF16 tensor
// cores) against a float64 reference on every VGG16 layer shape at small spatial sizes, with a
// proven error bound per output; the whole base on real photos; and the precision's bookkeeping
// (recorded in caches and models, mismatches refused).
//
// The bound: an operand rounded to a p-bit significand (to nearest) has relative error <= u = 2^-p
// (tf32: p = 11, bf16: p = 8), so each product x w is off by at most (2u + u^2)|x w|; a K-term fp32
// sum adds at most (K + 2) 2^-24 sum |x w| more. With S = |b| + sum_k |x_k w_k| (float64), every
// output must satisfy |y - y64| <= ((2u + u^2) + (K + 2) 2^-24) S. ReLU does not increase it.
// Sharper, and what catches a kernel that rounds wrongly (e.g. lets the tensor cores truncate): the
// same float64 convolution of the operands rounded as specified (tf32: to nearest, ties away; bf16:
// to nearest even) must match within the accumulation alone, (K + 2) 2^-23 S (2^-23: tensor cores
// may truncate while summing).
#include <cmath>
#include <cstring>

#include "helpers.h"
#include "host/core/device.h"
#include "host/io/image.h"
#include "host/io/weights.h"
#include "host/model/features.h"
#include "host/model/recipe.h"
#include "host/model/vgg.h"
#include "host/core/cpu_features.h"
#include "host/ops/cpu_amx.h"
#include "host/ops/cpu_ops.h"
#include "host/ops/cuda_ops.h"
#include "host/ops/ops.h"
#include "host/stages/cache.h"
#include "tools/convert/convert.h"

using namespace tl;

namespace {

// x rounded to the operand format of kernel v (3: tf32, to nearest, ties away from zero; 4: bf16, to
// nearest even); unchanged for the fp32 kernels.
std::vector<float> rounded(const std::vector<float>& x, int v) {
  std::vector<float> out(x);
  if (v < 3) return out;
  for (float& f : out) {
    uint32_t b;
    memcpy(&b, &f, 4);
    if (v == 3)
      b = (b + 0x1000u) & 0xffffe000u;
    else
      b = (b + 0x7fffu + ((b >> 16) & 1u)) & 0xffff0000u;
    memcpy(&f, &b, 4);
  }
  return out;
}

const char* kernel_name(int v) {
  return v == 1 ? "1 fp32 FFMA" : v == 2 ? "2 fp32 FFMA 8x8" : v == 3 ? "3 tf32 tensor cores" : "4 bf16 tensor cores";
}
double unit_roundoff(int v) { return v == 3 ? std::ldexp(1.0, -11) : v == 4 ? std::ldexp(1.0, -8) : 0.0; }
const char* where() { return cuda::emulated() ? "CUDA emulator" : "GPU"; }

struct Outcome {
  double worst_ratio = 0;          // max over outputs of |y - y64| / bound
  double worst_ratio_rounded = 0;  // max of |y - y64(rounded operands)| / the accumulation's bound
  double rel_l2 = 0;               // ||y - y64|| / ||y64||
  std::vector<float> y;
};

// Runs kernel v on (x, w, b) placed `offset` floats into its device buffer; compares with ref.
Outcome run_kernel(int v, const std::vector<float>& x, const std::vector<float>& w, const std::vector<float>& b,
                   const tlt::ConvRef& ref, int n, int h, int wd, int cin, int cout, bool relu, int offset = 0) {
  const tlt::ConvRef rr = v >= 3 ? tlt::conv3x3_reference(rounded(x, v), rounded(w, v), b, n, h, wd, cin, cout, relu) : ref;
  std::vector<float> xs(x.size() + offset, 0.0f);
  std::copy(x.begin(), x.end(), xs.begin() + offset);
  Tensor tx = tlt::tensor(xs, {(int64_t)xs.size()}, Device::CUDA), tw = tlt::tensor(w, {3, 3, cin, cout}, Device::CUDA),
         tb = tlt::tensor(b, {cout}, Device::CUDA), ty({n, h, wd, cout}, Device::CUDA);
  cuda::conv3x3_variant(v, tx.f32() + offset, tw.f32(), tb.f32(), ty.f32(), n, h, wd, cin, cout, relu);
  const std::vector<float> y = ty.to_vector();
  const int K = 9 * cin;
  const double u = unit_roundoff(v), gamma = 2 * u + u * u + (K + 2) * std::ldexp(1.0, -24);
  Outcome o;
  double num = 0, den = 0;
  for (size_t i = 0; i < y.size(); i++) {
    const double d = std::fabs((double)y[i] - ref.y[i]), bound = gamma * ref.s[i] + 1e-30;
    o.worst_ratio = std::max(o.worst_ratio, d / bound);
    const double dr = std::fabs((double)y[i] - rr.y[i]), acc_bound = (K + 2) * std::ldexp(1.0, -23) * rr.s[i] + 1e-30;
    o.worst_ratio_rounded = std::max(o.worst_ratio_rounded, dr / acc_bound);
    num += d * d;
    den += ref.y[i] * ref.y[i];
  }
  o.rel_l2 = std::sqrt(num / std::max(den, 1e-300));
  o.y = y;
  return o;
}

}  // namespace

CUDA_CASE("conv3x3 kernels 2, 3 (tf32) and 4 (bf16) stay within their proven error bounds on every VGG16 layer shape") {
  struct C {
    const char* name;
    int n, h, w, cin, cout;
    bool relu;
  };
  // The 13 layers' 8 distinct (cin, cout) at small sizes (partial tiles in pixels), then shapes that
  // take the general loaders (cin not a multiple of the K step, cout not of 4) and the scalar stores.
  const C cases[] = {{"block1_conv1", 1, 12, 13, 3, 64, true},     {"block1_conv2", 2, 10, 10, 64, 64, true},
                     {"block2_conv1", 1, 9, 9, 64, 128, true},     {"block2_conv2", 2, 8, 8, 128, 128, true},
                     {"block3_conv1", 2, 6, 6, 128, 256, true},    {"block3_conv2/3", 1, 6, 6, 256, 256, true},
                     {"block4_conv1", 2, 5, 5, 256, 512, true},    {"block4_conv2/3, block5", 3, 4, 4, 512, 512, true},
                     {"odd: cin 5, cout 70", 1, 7, 11, 5, 70, false}, {"odd: cin 20, cout 6", 2, 5, 3, 20, 6, false},
                     {"odd: 1x1 image", 3, 1, 1, 16, 8, true}};
  for (const C& c : cases) {
    const auto x = tlt::random_vec((size_t)c.n * c.h * c.w * c.cin, 501 + c.cin),
               w = tlt::random_vec((size_t)9 * c.cin * c.cout, 502 + c.cout, 0.1f), b = tlt::random_vec(c.cout, 503);
    const tlt::ConvRef ref = tlt::conv3x3_reference(x, w, b, c.n, c.h, c.w, c.cin, c.cout, c.relu);
    const std::vector<float> y1 = run_kernel(1, x, w, b, ref, c.n, c.h, c.w, c.cin, c.cout, c.relu).y;
    for (int v : {2, 3, 4}) {
      const Outcome o = run_kernel(v, x, w, b, ref, c.n, c.h, c.w, c.cin, c.cout, c.relu);
      MESSAGE("precision case (" << std::string(where()) << "): kernel " << std::string(kernel_name(v)) << ", "
                                 << std::string(c.name) << " " << c.n << "x"
                                 << c.h << "x" << c.w << "x" << c.cin << "->" << c.cout << ": worst error "
                                 << o.worst_ratio << " of its bound (" << o.worst_ratio_rounded
                                 << " of the accumulation's, from rounded operands), relative L2 error " << o.rel_l2);
      CHECK(o.worst_ratio <= 1.0);
      CHECK(o.worst_ratio_rounded <= 1.0);
      // The reduced precisions are really used (their errors are far above fp32's), and stay small.
      if (v == 2) CHECK(o.rel_l2 < 1e-5);
      // Kernel 2 runs every output's chain of FMAs in kernel 1's order (taps, then channels): the same bits.
      if (v == 2) CHECK(o.y == y1);
      if (v == 3) CHECK((o.rel_l2 > 2e-5 && o.rel_l2 < 1e-3));
      if (v == 4) CHECK((o.rel_l2 > 2e-4 && o.rel_l2 < 8e-3));
    }
  }
  // An input one float past a 16-byte boundary: the general (scalar) loaders.
  const int n = 1, h = 5, wd = 4, cin = 32, cout = 8;
  const auto x = tlt::random_vec((size_t)n * h * wd * cin, 511), w = tlt::random_vec((size_t)9 * cin * cout, 512, 0.1f),
             b = tlt::random_vec(cout, 513);
  const tlt::ConvRef ref = tlt::conv3x3_reference(x, w, b, n, h, wd, cin, cout, false);
  for (int v : {2, 3, 4}) {
    CAPTURE(v);
    const Outcome o = run_kernel(v, x, w, b, ref, n, h, wd, cin, cout, false, 1);
    CHECK(o.worst_ratio <= 1.0);
    CHECK(o.worst_ratio_rounded <= 1.0);
  }
  CHECK(tlt::error_of([&] { cuda::conv3x3_variant(5, nullptr, nullptr, nullptr, nullptr, 1, 1, 1, 1, 1, false); }) ==
        "conv3x3: no kernel 5 (1-4)");
}

CUDA_CASE("the whole VGG16 base on real photos: fp32 kernels 1 and 2, tf32 and bf16 features against the CPU's fp32") {
  // Genuine ImageNet weights where present (CI: make weights), else the synthetic ones.
  const std::string real = tlt::real_keras_h5();
  VggWeights w = real.empty() ? synthetic_weights("vgg16", 7) : convert_weights(real, nullptr, nullptr);
  // 224x224 takes minutes in the emulator: two photos at 64x64 (all 13 layers, 2x2x512 features).
  const int size = cuda::emulated() ? 64 : 224, n = 2;
  Tensor x = tlt::real_photos(w, size, n);
  VggBase cpu(w, Device::CPU);
  const std::vector<float> ref = cpu.forward(x).to_vector();
  Tensor xg = x.to(Device::CUDA);
  struct Run {
    Precision p;
    int fp32_kernel;
  };
  for (Run run : {Run{Precision::FP32, 1}, Run{Precision::FP32, 2}, Run{Precision::TF32, 0}, Run{Precision::BF16, 0}}) {
    const Precision p = run.p;
    ops::set_cuda_fp32_conv(run.fp32_kernel);
    VggBase gpu(w, Device::CUDA, p);
    const std::vector<float> y = gpu.forward(xg).to_vector();
    ops::set_cuda_fp32_conv(0);
    double num = 0, den = 0;
    for (size_t i = 0; i < y.size(); i++) num += (y[i] - ref[i]) * (double)(y[i] - ref[i]), den += (double)ref[i] * ref[i];
    const double max_rel = tlt::rel_err(y, ref), l2 = std::sqrt(num / den);
    MESSAGE("precision case (" << std::string(where()) << "): VGG16 base, "
                               << std::string(real.empty() ? "synthetic" : "genuine ImageNet") << " weights, " << n
                               << " real photos at " << size << "x" << size << ", " << std::string(precision_name(p))
                               << " (kernel " << (p == Precision::FP32 ? run.fp32_kernel : ops::cuda_conv_variant(p))
                               << ") vs the CPU's fp32: max error / max value " << max_rel << ", relative L2 " << l2);
    CHECK(max_rel <= (p == Precision::FP32 ? 1e-4 : p == Precision::TF32 ? 2e-3 : 1e-2));
    CHECK(l2 <= (p == Precision::FP32 ? 1e-5 : p == Precision::TF32 ? 2e-3 : 1e-2));
  }
}

// ---------------------------------------------------------------------------------------------
// --precision bf16 on the CPU (AVX512_BF16): Winograd with the planes' GEMMs in bf16.

namespace {

// To bf16 and back, rounding to nearest even as VCVTNEPS2BF16 does (input denormals as zero).
float bf16_round(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  if ((u & 0x7F800000u) == 0)
    u &= 0x80000000u;
  else if ((u & 0x7FFFFFFFu) < 0x7F800000u)
    u = (u + 0x7FFFu + ((u >> 16) & 1u)) & 0xFFFF0000u;
  float r;
  memcpy(&r, &u, 4);
  return r;
}

// Winograd F(m x m, 3x3) in float64 (Lavin & Gray's matrices) with the transformed filters and inputs
// rounded to bf16, as the CPU's bf16 path specifies: the reference it must match to fp32 accuracy.
std::vector<double> winograd_bf16_reference(const std::vector<float>& x, const std::vector<float>& w,
                                            const std::vector<float>& b, int n, int h, int wd, int cin, int cout,
                                            bool relu, int m) {
  static const double BT2[4][4] = {{1, 0, -1, 0}, {0, 1, 1, 0}, {0, -1, 1, 0}, {0, 1, 0, -1}};
  static const double G2[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
  static const double AT2[2][4] = {{1, 1, 1, 0}, {0, 1, -1, -1}};
  static const double BT4[6][6] = {{4, 0, -5, 0, 1, 0}, {0, -4, -4, 1, 1, 0}, {0, 4, -4, -1, 1, 0},
                                   {0, -2, -1, 2, 1, 0}, {0, 2, -1, -2, 1, 0}, {0, 4, 0, -5, 0, 1}};
  static const double G4[6][3] = {{1.0 / 4, 0, 0},           {-1.0 / 6, -1.0 / 6, -1.0 / 6}, {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                                  {1.0 / 24, 1.0 / 12, 1.0 / 6}, {1.0 / 24, -1.0 / 12, 1.0 / 6}, {0, 0, 1}};
  static const double AT4[4][6] = {{1, 1, 1, 1, 1, 0}, {0, 1, -1, 2, -2, 0}, {0, 1, 1, 4, 4, 0}, {0, 1, -1, 8, -8, 1}};
  const int a = m + 2;
  auto BT = [&](int i, int j) { return m == 2 ? BT2[i][j] : BT4[i][j]; };
  auto G = [&](int i, int j) { return m == 2 ? G2[i][j] : G4[i][j]; };
  auto AT = [&](int i, int j) { return m == 2 ? AT2[i][j] : AT4[i][j]; };
  // U[ci][co][a*a] = bf16(G g G^T)
  std::vector<double> U((size_t)cin * cout * a * a);
  for (int ci = 0; ci < cin; ci++)
    for (int co = 0; co < cout; co++) {
      double g[3][3], t[6][3];
      for (int ky = 0; ky < 3; ky++)
        for (int kx = 0; kx < 3; kx++) g[ky][kx] = w[((size_t)(ky * 3 + kx) * cin + ci) * cout + co];
      for (int i = 0; i < a; i++)
        for (int j = 0; j < 3; j++) t[i][j] = G(i, 0) * g[0][j] + G(i, 1) * g[1][j] + G(i, 2) * g[2][j];
      for (int i = 0; i < a; i++)
        for (int j = 0; j < a; j++)
          U[((size_t)ci * cout + co) * a * a + i * a + j] =
              bf16_round((float)(t[i][0] * G(j, 0) + t[i][1] * G(j, 1) + t[i][2] * G(j, 2)));
    }
  std::vector<double> y((size_t)n * h * wd * cout);
  const int th = (h + m - 1) / m, tw = (wd + m - 1) / m;
  std::vector<double> V((size_t)cin * a * a), M((size_t)cout * a * a);
  for (int img = 0; img < n; img++)
    for (int ty = 0; ty < th; ty++)
      for (int tx = 0; tx < tw; tx++) {
        for (int ci = 0; ci < cin; ci++) {
          double d[6][6], r[6][6];
          for (int i = 0; i < a; i++)
            for (int j = 0; j < a; j++) {
              const int yy = ty * m - 1 + i, xx = tx * m - 1 + j;
              d[i][j] = (yy < 0 || yy >= h || xx < 0 || xx >= wd) ? 0.0 : x[(((size_t)img * h + yy) * wd + xx) * cin + ci];
            }
          for (int i = 0; i < a; i++)
            for (int j = 0; j < a; j++) {
              double s = 0;
              for (int k = 0; k < a; k++) s += BT(i, k) * d[k][j];
              r[i][j] = s;
            }
          for (int i = 0; i < a; i++)
            for (int j = 0; j < a; j++) {
              double s = 0;
              for (int k = 0; k < a; k++) s += r[i][k] * BT(j, k);
              V[(size_t)ci * a * a + i * a + j] = bf16_round((float)s);
            }
        }
        std::fill(M.begin(), M.end(), 0.0);
        for (int ci = 0; ci < cin; ci++)
          for (int co = 0; co < cout; co++)
            for (int e = 0; e < a * a; e++) M[(size_t)co * a * a + e] += V[(size_t)ci * a * a + e] * U[((size_t)ci * cout + co) * a * a + e];
        for (int co = 0; co < cout; co++) {
          const double* Mc = &M[(size_t)co * a * a];
          for (int i = 0; i < m; i++)
            for (int j = 0; j < m; j++) {
              const int yy = ty * m + i, xx = tx * m + j;
              if (yy >= h || xx >= wd) continue;
              double s = b[co];
              for (int p = 0; p < a; p++)
                for (int q = 0; q < a; q++) s += AT(i, p) * Mc[p * a + q] * AT(j, q);
              y[(((size_t)img * h + yy) * wd + xx) * cout + co] = relu && s < 0 ? 0.0 : s;
            }
        }
      }
  return y;
}

double rel_l2(const std::vector<float>& y, const std::vector<double>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < y.size(); i++) num += (y[i] - ref[i]) * (y[i] - ref[i]), den += ref[i] * ref[i];
  return std::sqrt(num / den);
}

}  // namespace

TEST_CASE("CPU --precision bf16: Winograd F(2x2) and F(4x4) with bf16 planes equal the bf16-operand reference") {
  if (!cpu_has_avx512_bf16()) {
    MESSAGE("SKIPPED: this CPU has no AVX512_BF16 (the Winograd bf16 path cannot run; tested in e2e)");
    return;
  }
  struct Shape {
    int n, h, w, cin, cout;
  };
  // VGG16's channel pairs at small sizes (512 x 512: the grouped schedule), odd sizes (partial
  // tiles), an odd channel count (a zero-padded channel pair) and a partial column block.
  for (Shape s : {Shape{2, 12, 12, 64, 64}, Shape{1, 9, 11, 31, 40}, Shape{2, 8, 8, 128, 256}, Shape{1, 6, 6, 512, 512}}) {
    const size_t nx = (size_t)s.n * s.h * s.w * s.cin;
    const auto x = tlt::random_vec(nx, 41 + s.cin), w = tlt::random_vec((size_t)9 * s.cin * s.cout, 42, 0.05f),
               b = tlt::random_vec((size_t)s.cout, 43, 0.1f);
    const tlt::ConvRef exact = tlt::conv3x3_reference(x, w, b, s.n, s.h, s.w, s.cin, s.cout, true);
    for (int m : {2, 4}) {
      CAPTURE(s.cin);
      CAPTURE(s.cout);
      CAPTURE(m);
      std::vector<float> y((size_t)s.n * s.h * s.w * s.cout);
      cpu::conv3x3_winograd(x.data(), w.data(), b.data(), y.data(), s.n, s.h, s.w, s.cin, s.cout, true, m, true);
      const std::vector<double> ref = winograd_bf16_reference(x, w, b, s.n, s.h, s.w, s.cin, s.cout, true, m);
      const double to_ref = rel_l2(y, ref), to_exact = rel_l2(y, exact.y);
      MESSAGE("bf16 CPU case: F(" << m << "x" << m << ") " << s.cin << "->" << s.cout << " at " << s.h << "x" << s.w
                                  << ": relative L2 " << to_ref << " to the bf16-operand reference, " << to_exact
                                  << " to the exact conv");
      // Measured: F(2x2) 1e-7 to 2.8e-5 (512 channels) from the reference, 4.0e-3 from the exact conv;
      // F(4x4), whose output transform multiplies by up to 8 twice, 7e-5 to 2.4e-4 and 2.1e-2 to 2.7e-2.
      // Truncating instead of rounding, or a wrong channel pairing, moves either by 1e-3 or more.
      CHECK(to_ref < (m == 2 ? 1e-4 : 1e-3));
      CHECK(to_exact < (m == 2 ? 6e-3 : 4e-2));
    }
  }
}

TEST_CASE("CPU --precision bf16: the whole VGG16 base on real photos, layer by layer, against fp32") {
  if (cpu::bf16_path() == cpu::Bf16Path::None) {
    MESSAGE("SKIPPED: this CPU has neither AMX nor AVX512_BF16");
    return;
  }
  const std::string real = tlt::real_keras_h5();
  VggWeights w = real.empty() ? synthetic_weights("vgg16", 7) : convert_weights(real, nullptr, nullptr);
  const int size = 224, n = 2;
  Tensor x = tlt::real_photos(w, size, n);
  // The two chains side by side; each layer's bf16 activations against the fp32 ones (the error
  // carried from the layers before included). The first layer is fp32 in both, as in VggBase.
  Tensor a32 = Tensor::view(x.ptr, {n, size, size, 3}, Device::CPU), a16 = Tensor::view(x.ptr, {n, size, size, 3}, Device::CPU);
  int h = size;
  std::string table;
  double last = 0;
  for (size_t i = 0; i < w.layers.size(); i++) {
    const ConvLayer& l = w.layers[i];
    Tensor wt({3, 3, l.spec.cin, l.spec.cout}), bt({l.spec.cout});
    wt.from_vector(l.w);
    bt.from_vector(l.b);
    Tensor y32({n, h, h, l.spec.cout}), y16({n, h, h, l.spec.cout});
    ops::conv3x3(a32, wt, bt, y32, true, Precision::FP32);
    ops::conv3x3(a16, wt, bt, y16, true, i == 0 ? Precision::FP32 : Precision::BF16);
    if (l.spec.pool_after) {
      Tensor p32({n, h / 2, h / 2, l.spec.cout}), p16({n, h / 2, h / 2, l.spec.cout});
      ops::maxpool2x2(y32, p32);
      ops::maxpool2x2(y16, p16);
      y32 = std::move(p32);
      y16 = std::move(p16);
      h /= 2;
    }
    const std::vector<float> v32 = y32.to_vector(), v16 = y16.to_vector();
    last = rel_l2(v16, std::vector<double>(v32.begin(), v32.end()));
    table += strfmt(" %s %.2e", l.spec.name.c_str(), last);
    a32 = std::move(y32);
    a16 = std::move(y16);
  }
  MESSAGE("bf16 CPU case: VGG16 base, " << std::string(real.empty() ? "synthetic" : "genuine ImageNet") << " weights, "
                                        << n << " real photos at 224x224, relative L2 to fp32 after each layer:"
                                        << table);
  CHECK(last < 1e-2);  // measured 7.2e-3 (the GPU's bf16 tensor cores: 6.2e-3)
  CHECK(last > 1e-4);  // it did run in bf16
  // VggBase at --precision bf16 computes exactly this chain.
  VggBase base(w, Device::CPU, Precision::BF16);
  CHECK(base.forward(x).to_vector() == a16.to_vector());
}

TEST_CASE("--precision: parsed, refused where it cannot run, recorded in recipes (absent = fp32)") {
  CHECK(parse_precision("bf16") == Precision::BF16);
  CHECK(parse_precision("tf32") == Precision::TF32);
  CHECK(tlt::error_of([] { parse_precision("fp16"); }) == "--precision: expected fp32, tf32 or bf16, got 'fp16'");
  // bf16 runs on CPUs with AMX or AVX512_BF16; TL_CPU_BF16=0 plays a CPU without the latter (the
  // AMX probe, read once per process, is off in this case only where the CPU has no AMX).
  CHECK(tlt::error_of([] { check_precision(Precision::BF16, Device::CPU); }).empty() ==
        (cpu_amx_usable() || cpu_has_avx512_bf16()));
  if (!cpu_amx_usable()) {
    setenv("TL_CPU_BF16", "0", 1);
    CHECK(tlt::error_of([] { check_precision(Precision::BF16, Device::CPU); }) ==
          "--precision bf16 on the CPU needs AMX or AVX512_BF16, which this CPU lacks: use --precision fp32 (also "
          "faster here) or --device cuda");
    unsetenv("TL_CPU_BF16");
  }
  CHECK(tlt::error_of([] { check_precision(Precision::TF32, Device::CPU); }) ==
        "--precision tf32 runs on the GPU's tensor cores only; the CPU computes in fp32 or bf16: use --precision fp32 "
        "or --device cuda");
  CHECK(tlt::error_of([] { check_precision(Precision::FP32, Device::CPU); }).empty());
  VggWeights w = synthetic_weights("vgg16", 1);
  CHECK(tlt::error_of([&] { VggBase b(w, Device::CPU, Precision::TF32); }).find("--precision tf32 runs on the GPU") == 0);

  InputRecipe r = InputRecipe::of(w, "w.bin", 64, Resize::Nearest, DType::F32, Precision::BF16);
  std::map<std::string, std::string> kv;
  r.write(&kv, InputRecipe::Where::Model);
  CHECK(kv.at("precision") == "bf16");
  CHECK(InputRecipe::read(kv, "m").precision == Precision::BF16);
  kv.erase("precision");  // written before --precision existed
  CHECK(InputRecipe::read(kv, "m").precision == Precision::FP32);
  kv["precision"] = "int8";
  CHECK(tlt::error_of([&] { InputRecipe::read(kv, "m"); }) == "--precision: expected fp32, tf32 or bf16, got 'int8'");

  // A cache's identity: fp32 hashes as before the key existed (old caches stay valid), bf16 differs.
  CacheSettings a, b;
  a.kv = {{"image_size", "224"}};
  b.kv = {{"image_size", "224"}, {"precision", "fp32"}};
  CHECK(a.hash() == b.hash());
  CHECK(a.diff(b).empty());
  b.kv["precision"] = "bf16";
  CHECK(a.hash() != b.hash());
  CHECK(a.diff(b) == "precision: fp32 -> bf16");
}
