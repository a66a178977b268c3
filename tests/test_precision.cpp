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
#include "host/ops/cuda_ops.h"
#include "host/ops/ops.h"
#include "host/stages/cache.h"
#include "tools/convert/convert.h"

using namespace tl;

namespace {

struct Ref {
  std::vector<double> y, s;  // float64 output (after ReLU) and S per output
};

Ref reference(const std::vector<float>& x, const std::vector<float>& w, const std::vector<float>& b, int n, int h,
              int wd, int cin, int cout, bool relu) {
  Ref r;
  const size_t outs = (size_t)n * h * wd * cout;
  r.y.assign(outs, 0.0);
  r.s.assign(outs, 0.0);
  std::vector<double> acc(cout), sa(cout);
  for (int i = 0; i < n; i++)
    for (int yy = 0; yy < h; yy++)
      for (int xx = 0; xx < wd; xx++) {
        for (int co = 0; co < cout; co++) acc[co] = b[co], sa[co] = std::fabs((double)b[co]);
        for (int dy = -1; dy <= 1; dy++)
          for (int dx = -1; dx <= 1; dx++) {
            const int sy = yy + dy, sx = xx + dx;
            if (sy < 0 || sy >= h || sx < 0 || sx >= wd) continue;
            const float* px = &x[(((size_t)i * h + sy) * wd + sx) * cin];
            const float* pw = &w[(size_t)((dy + 1) * 3 + dx + 1) * cin * cout];
            for (int ci = 0; ci < cin; ci++) {
              const double a = px[ci];
              for (int co = 0; co < cout; co++) {
                const double p = a * pw[(size_t)ci * cout + co];
                acc[co] += p;
                sa[co] += std::fabs(p);
              }
            }
          }
        const size_t o = (((size_t)i * h + yy) * wd + xx) * cout;
        for (int co = 0; co < cout; co++) {
          r.y[o + co] = relu && acc[co] < 0 ? 0.0 : acc[co];
          r.s[o + co] = sa[co];
        }
      }
  return r;
}

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
                   const Ref& ref, int n, int h, int wd, int cin, int cout, bool relu, int offset = 0) {
  const Ref rr = v >= 3 ? reference(rounded(x, v), rounded(w, v), b, n, h, wd, cin, cout, relu) : ref;
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
    const Ref ref = reference(x, w, b, c.n, c.h, c.w, c.cin, c.cout, c.relu);
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
  const Ref ref = reference(x, w, b, n, h, wd, cin, cout, false);
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
  tlt::Fixture photos("photos224.npz");
  Tensor x({n, size, size, 3});
  for (int i = 0; i < n; i++) {
    const NpyArray& a = photos.arrays.at("p" + std::to_string(i) + "_224");
    Image img;
    img.w = img.h = 224;
    img.rgb.assign(a.data(), a.data() + a.h.numel());
    preprocess_image(resize_image(img, size, size, Resize::Nearest), w.preprocess, x.f32() + (size_t)i * size * size * 3);
  }
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

TEST_CASE("--precision: parsed, refused where it cannot run, recorded in recipes (absent = fp32)") {
  CHECK(parse_precision("bf16") == Precision::BF16);
  CHECK(parse_precision("tf32") == Precision::TF32);
  CHECK(tlt::error_of([] { parse_precision("fp16"); }) == "--precision: expected fp32, tf32 or bf16, got 'fp16'");
  CHECK(tlt::error_of([] { check_precision(Precision::BF16, Device::CPU); }) ==
        "--precision bf16 runs on the GPU's tensor cores only; the CPU computes in fp32: use --precision fp32 or "
        "--device cuda");
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
