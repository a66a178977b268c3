// Every op against its PyTorch/numpy fixture (CPU), thread-count and ISA independence, finite
// differences through the head's ops, and each CUDA kernel against the CPU op (GPU only).
//
// Tolerances (fp32 against a float64 reference, error relative to the reference's largest value):
//   conv3x3 (direct and Winograd), dense and its gradients: 2e-6;  relu, maxpool, dropout, fp16: exact;
//   sigmoid/BCE: 2e-7 absolute on prob and dz, 1e-6 relative per element on the loss;
//   RMSprop against torch's fp32 optimiser: 1e-6 relative.
#include <cmath>
#include <cstring>

#include "helpers.h"
#include "host/ops/cpu_kernels.h"
#include "host/ops/cpu_ops.h"
#include "host/ops/ops.h"
#include "host/ops/cuda_ops.h"
#include "host/core/threads.h"

using namespace tl;
using tlt::Fixture;

namespace {

// Runs fn once per available CPU kernel build (AVX-512, AVX2, generic), restoring the default.
template <typename F>
void for_each_isa(F fn) {
  for (const char* isa : {"avx512", "avx2", "generic"}) {
    const cpu::Kernels* k = cpu::kernels_for(isa);
    if (!k) continue;
    cpu::set_kernels(k);
    CAPTURE(isa);
    fn(isa);
  }
  cpu::set_kernels(nullptr);
}

std::vector<float> run_conv(const std::vector<float>& x, const std::vector<float>& w, const std::vector<float>& b,
                            int n, int h, int wd, int cin, int cout, bool relu, Device d = Device::CPU) {
  Tensor tx = tlt::tensor(x, {n, h, wd, cin}, d), tw = tlt::tensor(w, {3, 3, cin, cout}, d),
         tb = tlt::tensor(b, {cout}, d);
  Tensor ty({n, h, wd, cout}, d);
  ops::conv3x3(tx, tw, tb, ty, relu);
  return ty.to_vector();
}

}  // namespace

// Runs fn with the direct conv and with Winograd F(2x2,3x3) forced, restoring the default.
template <typename F>
void for_each_conv_algo(F fn) {
  for (cpu::ConvAlgo a : {cpu::ConvAlgo::Direct, cpu::ConvAlgo::Winograd, cpu::ConvAlgo::Winograd4}) {
    cpu::set_conv_algo(a);
    CAPTURE(a == cpu::ConvAlgo::Direct ? "direct" : a == cpu::ConvAlgo::Winograd ? "winograd F(2x2)" : "winograd F(4x4)");
    fn();
  }
  cpu::set_conv_algo(cpu::ConvAlgo::Auto);
}

TEST_CASE("conv3x3 matches PyTorch (fixture) for every CPU kernel build, direct and Winograd") {
  Fixture fx("ops_conv3x3.npz");
  const int count = (int)fx.scalar("count");
  double worst[4] = {0, 0, 0, 0};
  for_each_conv_algo([&] {
  for_each_isa([&](const char*) {
    for (int i = 0; i < count; i++) {
      std::string p = "c" + std::to_string(i) + "_";
      auto s = fx.shape(p + "x");
      const int n = (int)s[0], h = (int)s[1], w = (int)s[2], cin = (int)s[3];
      const int cout = (int)fx.shape(p + "w")[3];
      CAPTURE(n);
      CAPTURE(h);
      CAPTURE(w);
      CAPTURE(cin);
      CAPTURE(cout);
      auto y = run_conv(fx.f(p + "x"), fx.f(p + "w"), fx.f(p + "b"), n, h, w, cin, cout, fx.scalar(p + "relu") != 0);
      // F(4x4)'s transforms have coefficients up to 8 and 1/24: a few times F(2x2)'s rounding.
      const double err = tlt::rel_err(y, fx.f(p + "y"));
      worst[(int)cpu::conv_algo_for(cin, cout)] = std::max(worst[(int)cpu::conv_algo_for(cin, cout)], err);
      CHECK(err < (cpu::conv_algo_for(cin, cout) == cpu::ConvAlgo::Winograd4 ? 1e-5 : 2e-6));
    }
  });
  });
  MESSAGE("conv3x3 vs PyTorch float64, max error / max value: direct " << worst[1] << ", Winograd F(2x2) " << worst[2]
                                                                       << ", F(4x4) " << worst[3]);
  // The automatic choice on VGG16's layers (bench/RESULTS.md has the timings behind it).
  CHECK(cpu::conv_algo_for(3, 64, 224, 224) == cpu::ConvAlgo::Winograd);  // VGG's first layer
  CHECK(cpu::conv_algo_for(17, 3, 10, 10) == cpu::ConvAlgo::Direct);
  CHECK(cpu::conv_algo_for(64, 64, 224, 224) == cpu::ConvAlgo::Winograd);
  CHECK(cpu::conv_algo_for(64, 128, 112, 112) == cpu::ConvAlgo::Winograd);
  CHECK(cpu::conv_algo_for(128, 128, 112, 112) == cpu::ConvAlgo::Winograd4);
  CHECK(cpu::conv_algo_for(256, 512, 28, 28) == cpu::ConvAlgo::Winograd4);
  CHECK(cpu::conv_algo_for(512, 512, 14, 14) == cpu::ConvAlgo::Winograd);
}

TEST_CASE("conv3x3 gives identical bits for 1, 2 and 3 threads and across AVX2/AVX-512 (both algorithms)") {
  for_each_conv_algo([&] {
  const int n = 2, h = 9, w = 11, cin = 40, cout = 70;
  auto x = tlt::random_vec((size_t)n * h * w * cin, 1), k = tlt::random_vec((size_t)9 * cin * cout, 2, 0.1f),
       b = tlt::random_vec(cout, 3);
  const int saved = num_threads();
  set_num_threads(1);
  auto ref = run_conv(x, k, b, n, h, w, cin, cout, true);
  for (int t : {2, 3}) {
    set_num_threads(t);
    CHECK(run_conv(x, k, b, n, h, w, cin, cout, true) == ref);
  }
  set_num_threads(saved);
  std::vector<std::vector<float>> per_isa;
  for_each_isa([&](const char* isa) {
    if (strcmp(isa, "generic") != 0) per_isa.push_back(run_conv(x, k, b, n, h, w, cin, cout, true));
  });
  for (auto& r : per_isa) CHECK(r == per_isa[0]);
  });
}

TEST_CASE("Winograd conv on VGG-sized layers: both schedules (fused, grouped), F(2x2) and F(4x4), agree with the direct conv") {
  struct C { int n, h, w, cin, cout; };
  for (C c : {C{1, 28, 28, 64, 64}, C{2, 7, 7, 512, 512}, C{1, 15, 13, 256, 512}, C{3, 5, 6, 33, 17}}) {
    CAPTURE(c.cin);
    CAPTURE(c.cout);
    auto x = tlt::random_vec((size_t)c.n * c.h * c.w * c.cin, 71, 2.0f);
    auto w = tlt::random_vec((size_t)9 * c.cin * c.cout, 72, 1.0f / std::sqrt(9.0f * c.cin));
    auto b = tlt::random_vec(c.cout, 73, 0.1f);
    cpu::set_conv_algo(cpu::ConvAlgo::Direct);
    auto d = run_conv(x, w, b, c.n, c.h, c.w, c.cin, c.cout, true);
    cpu::set_conv_algo(cpu::ConvAlgo::Winograd);
    auto g = run_conv(x, w, b, c.n, c.h, c.w, c.cin, c.cout, true);
    cpu::set_conv_algo(cpu::ConvAlgo::Winograd4);
    auto g4 = run_conv(x, w, b, c.n, c.h, c.w, c.cin, c.cout, true);
    cpu::set_conv_algo(cpu::ConvAlgo::Auto);
    CHECK(tlt::rel_err(g, d) < 5e-6);  // two fp32 results, each within ~2e-6 of the exact one
    CHECK(tlt::rel_err(g4, d) < 2e-5);
  }
}

TEST_CASE("maxpool2x2 matches PyTorch exactly, including odd sizes") {
  Fixture fx("ops_maxpool.npz");
  for (int i = 0; i < (int)fx.scalar("count"); i++) {
    std::string p = "c" + std::to_string(i) + "_";
    auto s = fx.shape(p + "x");
    Tensor x = tlt::tensor(fx.f(p + "x"), {s[0], s[1], s[2], s[3]});
    Tensor y({s[0], s[1] / 2, s[2] / 2, s[3]});
    ops::maxpool2x2(x, y);
    CHECK(y.to_vector() == fx.f(p + "y"));
  }
  Tensor x({1, 1, 4, 3}), y({1, 0, 2, 3});  // a 1-pixel-high input pools to nothing
  x.zero();
  ops::maxpool2x2(x, y);
  CHECK(y.numel() == 0);
}

TEST_CASE("relu and relu_backward match PyTorch exactly") {
  Fixture fx("ops_relu.npz");
  for (int i = 0; i < (int)fx.scalar("count"); i++) {
    std::string p = "c" + std::to_string(i) + "_";
    auto xv = fx.f(p + "x");
    const int64_t n = (int64_t)xv.size();
    Tensor x = tlt::tensor(xv, {n}), y({n}), dy = tlt::tensor(fx.f(p + "dy"), {n}), dx({n});
    ops::relu(x, y);
    CHECK(y.to_vector() == fx.f(p + "y"));
    ops::relu_backward(y, dy, dx);
    CHECK(dx.to_vector() == fx.f(p + "dx"));
    ops::relu(x, x);  // in place
    CHECK(x.to_vector() == fx.f(p + "y"));
  }
}

TEST_CASE("dense forward and backward match PyTorch autograd (fixture)") {
  Fixture fx("ops_dense.npz");
  for_each_isa([&](const char*) {
    for (int i = 0; i < (int)fx.scalar("count"); i++) {
      std::string p = "c" + std::to_string(i) + "_";
      auto ws = fx.shape(p + "w");
      const int64_t k = ws[0], n = ws[1], m = fx.shape(p + "x")[0];
      CAPTURE(m);
      CAPTURE(k);
      CAPTURE(n);
      Tensor x = tlt::tensor(fx.f(p + "x"), {m, k}), w = tlt::tensor(fx.f(p + "w"), {k, n}),
             b = tlt::tensor(fx.f(p + "b"), {n}), y({m, n});
      ops::dense(x, w, b, y, fx.scalar(p + "relu") != 0);
      CHECK(tlt::rel_err(y.to_vector(), fx.f(p + "y")) < 2e-6);
      Tensor dy = tlt::tensor(fx.f(p + "dy"), {m, n}), dx({m, k}), dw({k, n}), db({n});
      ops::dense_backward(x, w, dy, &dx, dw, db);
      CHECK(tlt::rel_err(dx.to_vector(), fx.f(p + "dx")) < 2e-6);
      CHECK(tlt::rel_err(dw.to_vector(), fx.f(p + "dw")) < 2e-6);
      CHECK(tlt::rel_err(db.to_vector(), fx.f(p + "db")) < 2e-6);
    }
  });
}

TEST_CASE("dense gradients are identical for any thread count") {
  const int m = 33, k = 301, n = 45;
  auto xv = tlt::random_vec((size_t)m * k, 11), wv = tlt::random_vec((size_t)k * n, 12, 0.1f),
       dyv = tlt::random_vec((size_t)m * n, 13);
  auto run = [&]() {
    Tensor x = tlt::tensor(xv, {m, k}), w = tlt::tensor(wv, {k, n}), dy = tlt::tensor(dyv, {m, n});
    Tensor dx({m, k}), dw({k, n}), db({n});
    ops::dense_backward(x, w, dy, &dx, dw, db);
    auto r = dw.to_vector();
    auto a = dx.to_vector(), c = db.to_vector();
    r.insert(r.end(), a.begin(), a.end());
    r.insert(r.end(), c.begin(), c.end());
    return r;
  };
  const int saved = num_threads();
  set_num_threads(1);
  auto ref = run();
  set_num_threads(2);
  CHECK(run() == ref);
  set_num_threads(5);
  CHECK(run() == ref);
  set_num_threads(saved);
}

TEST_CASE("dense with a long reduction: 512-row partial sums, exact to their definition, for any threads, rows, or look-ahead") {
  CHECK(cpu::dense_partial_blocks(1023) == 0);  // one GEMM below 1024
  CHECK(cpu::dense_partial_blocks(1024) == 2);
  CHECK(cpu::dense_partial_blocks(25088) == 49);
  const int m = 70, k = 1500, n = 45;  // blocks of 512, 512, 476; 70 rows: past dense()'s 64-row passes
  const auto xv = tlt::random_vec((size_t)m * k, 21), wv = tlt::random_vec((size_t)k * n, 22, 0.05f),
             bv = tlt::random_vec((size_t)n, 23);
  // The definition: per block, one chain from zero over its rows in order (fused multiply-adds in
  // the AVX builds, multiply then add in the portable one), then bias + P_0 + P_1 + P_2, ReLU.
  auto definition = [&](bool fused) {
    std::vector<float> y((size_t)m * n);
    for (int i = 0; i < m; i++)
      for (int j = 0; j < n; j++) {
        float s = bv[j];
        for (int b0 = 0; b0 < k; b0 += 512) {
          float p = 0.0f;
          for (int kk = b0; kk < std::min(k, b0 + 512); kk++) {
            const float a = xv[(size_t)i * k + kk], w = wv[(size_t)kk * n + j];
            if (fused) {
              p = std::fma(a, w, p);
            } else {
              const float prod = a * w;
              p = p + prod;
            }
          }
          s += p;
        }
        y[(size_t)i * n + j] = s > 0.0f ? s : 0.0f;
      }
    return y;
  };
  std::vector<double> ref((size_t)m * n);  // float64, for the size of the error
  for (int i = 0; i < m; i++)
    for (int j = 0; j < n; j++) {
      double s = bv[j];
      for (int kk = 0; kk < k; kk++) s += (double)xv[(size_t)i * k + kk] * wv[(size_t)kk * n + j];
      ref[(size_t)i * n + j] = s > 0 ? s : 0;
    }
  auto run = [&](int rows) {
    Tensor x = tlt::tensor(xv, {m, k}), w = tlt::tensor(wv, {k, n}), b = tlt::tensor(bv, {n}), y({m, n});
    std::vector<float> out;
    for (int r0 = 0; r0 < m; r0 += rows) {  // the batch in pieces of `rows`
      const int r = std::min(rows, m - r0);
      Tensor xr = Tensor::view((float*)x.ptr + (size_t)r0 * k, {r, k}), yr({r, n});
      ops::dense(xr, w, b, yr, true);
      auto v = yr.to_vector();
      out.insert(out.end(), v.begin(), v.end());
    }
    return out;
  };
  for_each_isa([&](const char* isa) {
    const std::vector<float> y = run(m);
    CHECK(y == definition(strcmp(isa, "generic") != 0));
    double num = 0, den = 0;
    for (size_t i = 0; i < y.size(); i++) num += (y[i] - ref[i]) * (y[i] - ref[i]), den += ref[i] * ref[i];
    CHECK(std::sqrt(num / den) < 1e-6);
    CHECK(run(1) == y);
    CHECK(run(13) == y);
    const int saved = num_threads();
    for (int t : {1, 3}) {
      set_num_threads(t);
      CHECK(run(m) == y);
    }
    set_num_threads(saved);
  });

  // The fused gradient-and-update pass with the next batch: w and v as without it, and the next
  // batch's forward from the partial sums it left equal to dense() through the updated w.
  const int m2 = 19;
  const auto x2v = tlt::random_vec((size_t)m2 * k, 24), dyv = tlt::random_vec((size_t)m * n, 25, 0.01f);
  for_each_isa([&](const char*) {
    std::vector<float> w1 = wv, v1((size_t)k * n, 0.01f), w2 = w1, v2 = v1, db1(n), db2(n);
    std::vector<float> P((size_t)cpu::dense_partial_blocks(k) * m2 * n, std::nanf(""));
    cpu::dense_backward_rmsprop(xv.data(), dyv.data(), w1.data(), v1.data(), db1.data(), m, k, n, 1e-3f, 0.9f, 1e-7f);
    cpu::dense_backward_rmsprop(xv.data(), dyv.data(), w2.data(), v2.data(), db2.data(), m, k, n, 1e-3f, 0.9f, 1e-7f,
                                x2v.data(), m2, P.data());
    CHECK(w1 == w2);
    CHECK(v1 == v2);
    CHECK(db1 == db2);
    CHECK(w1 != wv);
    std::vector<float> ya((size_t)m2 * n), yb((size_t)m2 * n);
    cpu::dense_from_partials(P.data(), m2, k, n, bv.data(), true, ya.data());
    cpu::dense(x2v.data(), w1.data(), bv.data(), yb.data(), m2, k, n, true);
    CHECK(ya == yb);
    // Not the old weights' forward: the partial sums saw the update.
    std::vector<float> yold((size_t)m2 * n);
    cpu::dense(x2v.data(), wv.data(), bv.data(), yold.data(), m2, k, n, true);
    CHECK(ya != yold);
  });
}

TEST_CASE("RMSprop: every kernel build gives the scalar formula's bits, tails included") {
  for (long n : {1L, 7L, 16L, 37L, 1000L}) {
    CAPTURE(n);
    std::vector<float> w0 = tlt::random_vec((size_t)n, 31), g = tlt::random_vec((size_t)n, 32, 10.0f),
                       v0 = tlt::random_vec((size_t)n, 33, 0.5f);
    for (float& v : v0) v = v * v;  // the state is a mean square
    if (n > 3) g[1] = 0.0f, g[2] = 1e-30f, v0[1] = 0.0f, g[3] = 3e18f;
    std::vector<float> wr = w0, vr = v0;
    for (long i = 0; i < n; i++) cpu::rmsprop_update(wr[i], vr[i], g[i], 1e-3f, 0.9f, 1.0f - 0.9f, 1e-7f);
    for_each_isa([&](const char*) {
      std::vector<float> w = w0, v = v0;
      cpu::kernels().rmsprop(w.data(), v.data(), g.data(), n, 1e-3f, 0.9f, 1.0f - 0.9f, 1e-7f);
      CHECK(w == wr);
      CHECK(v == vr);
    });
  }
}

TEST_CASE("dropout mask matches the numpy implementation of the counter hash exactly") {
  Fixture fx("ops_dropout.npz");
  for (int i = 0; i < (int)fx.scalar("count"); i++) {
    std::string p = "c" + std::to_string(i) + "_";
    auto xv = fx.f(p + "x");
    const int64_t n = (int64_t)xv.size();
    Tensor x = tlt::tensor(xv, {n}), y({n});
    ops::dropout(x, y, (float)fx.scalar(p + "rate"), fx.u64(p + "seed"), fx.u64(p + "step"));
    CHECK(y.to_vector() == fx.f(p + "y"));
  }
  // The kept fraction is about 1 - rate, and a different step draws a different mask.
  const int64_t n = 100000;
  Tensor ones = tlt::tensor(std::vector<float>(n, 1.0f), {n}), a({n}), b({n});
  ops::dropout(ones, a, 0.2f, 1, 0);
  ops::dropout(ones, b, 0.2f, 1, 1);
  auto av = a.to_vector(), bv = b.to_vector();
  int64_t kept = 0, same = 0;
  for (int64_t i = 0; i < n; i++) {
    kept += av[i] != 0.0f;
    same += (av[i] != 0.0f) == (bv[i] != 0.0f);
    if (av[i] != 0.0f) REQUIRE(av[i] == 1.25f);
  }
  CHECK(std::abs(kept - 80000) < 600);       // binomial sd is 126
  CHECK(std::abs(same - 68000) < 800);       // independent masks agree on 0.8^2 + 0.2^2
  CHECK_THROWS_WITH(ops::dropout(ones, a, 1.0f, 1, 0), "dropout: rate must be in [0, 1), got 1");
}

TEST_CASE("sigmoid + BCE from logits match PyTorch in float64, stably for |z| up to 1e4") {
  Fixture fx("ops_bce.npz");
  auto zv = fx.f("z");
  const int64_t n = (int64_t)zv.size();
  Tensor z = tlt::tensor(zv, {n}), y = tlt::tensor(fx.f("y"), {n}), prob({n}), loss({n}), dz({n});
  ops::sigmoid_bce(z, y, prob, loss, &dz);
  CHECK(tlt::max_abs_diff(prob.to_vector(), fx.f("prob")) <= 2e-7);
  CHECK(tlt::max_abs_diff(dz.to_vector(), fx.f("dz")) <= 2e-7);
  auto lv = loss.to_vector(), lr = fx.f("loss");
  for (int64_t i = 0; i < n; i++) {
    CAPTURE(zv[i]);
    CHECK(std::isfinite(lv[i]));
    CHECK(std::fabs(lv[i] - lr[i]) <= 1e-6 * std::max(1e-30f, std::fabs(lr[i])) + 1e-12);
  }
}

TEST_CASE("RMSprop matches torch.optim.RMSprop(alpha=0.9, eps=1e-7) step by step") {
  Fixture fx("ops_rmsprop.npz");
  for (int i = 0; i < (int)fx.scalar("count"); i++) {
    std::string p = "c" + std::to_string(i) + "_";
    auto w0 = fx.f(p + "w0");
    const int64_t n = (int64_t)w0.size();
    auto g = fx.f(p + "g");
    const int64_t steps = (int64_t)g.size() / n;
    Tensor w = tlt::tensor(w0, {n}), v({n}), gt({n});
    v.zero();
    for (int64_t s = 0; s < steps; s++) {
      gt.from_vector(std::vector<float>(g.begin() + s * n, g.begin() + (s + 1) * n));
      ops::rmsprop(w, gt, v, (float)fx.scalar(p + "lr"), 0.9f, 1e-7f);
    }
    CHECK(tlt::rel_err(w.to_vector(), fx.f(p + "w")) < 1e-6);
    CHECK(tlt::rel_err(v.to_vector(), fx.f(p + "v")) < 1e-6);
    if (i == 1) CHECK(w.to_vector()[0] != w0[0]);  // later steps do move it
  }
}

TEST_CASE("fp32 -> fp16 rounds to nearest even like numpy, and fp16 -> fp32 is exact") {
  Fixture fx("ops_f16.npz");
  auto x = fx.f("x");
  const auto& yarr = fx.arrays.at("y");
  std::vector<uint16_t> want(x.size());
  memcpy(want.data(), yarr.data(), x.size() * 2);
  Tensor tx = tlt::tensor(x, {(int64_t)x.size()}), ty({(int64_t)x.size()}, Device::CPU, DType::F16);
  ops::to_f16(tx, ty);
  std::vector<uint16_t> got((uint16_t*)ty.ptr, (uint16_t*)ty.ptr + x.size());
  for (size_t i = 0; i < x.size(); i++) {
    CAPTURE(x[i]);
    CHECK(got[i] == want[i]);
  }
  for (uint32_t h = 0; h < 65536; h++) {  // every half survives a round trip
    float f = cpu::float_from_half((uint16_t)h);
    if (std::isnan(f)) continue;
    REQUIRE(cpu::half_from_float(f) == h);
  }
}

TEST_CASE("head ops: gradients agree with finite differences") {
  // loss(W1,b1,W2,b2) = mean BCE(dense2(dropout(relu(dense1(x)))), y), fixed dropout mask.
  const int m = 6, k = 10, h = 7;
  auto xv = tlt::random_vec(m * k, 21), w1v = tlt::random_vec(k * h, 22, 0.5f), b1v = tlt::random_vec(h, 23, 0.1f),
       w2v = tlt::random_vec(h, 24, 0.5f), b2v = tlt::random_vec(1, 25, 0.1f);
  std::vector<float> yv = {1, 0, 1, 1, 0, 0};
  Tensor x = tlt::tensor(xv, {m, k}), y = tlt::tensor(yv, {m});
  auto forward = [&](Tensor& w1, Tensor& b1, Tensor& w2, Tensor& b2, Tensor* grads[4]) {
    Tensor a1({m, h}), d1({m, h}), z({m, 1}), prob({m}), loss({m}), dz({m, 1});
    ops::dense(x, w1, b1, a1, true);
    ops::dropout(a1, d1, 0.3f, 99, 5);
    ops::dense(d1, w2, b2, z, false);
    Tensor zf = z.reshaped({m}), dzf = dz.reshaped({m});
    ops::sigmoid_bce(zf, y, prob, loss, &dzf);
    double l = 0;
    for (float v : loss.to_vector()) l += v;
    if (grads) {
      Tensor dd1({m, h}), da1({m, h});
      ops::dense_backward(d1, w2, dz, &dd1, *grads[2], *grads[3]);
      ops::dropout(dd1, da1, 0.3f, 99, 5);
      ops::relu_backward(a1, da1, da1);
      ops::dense_backward(x, w1, da1, nullptr, *grads[0], *grads[1]);
    }
    return l / m;
  };
  Tensor w1 = tlt::tensor(w1v, {k, h}), b1 = tlt::tensor(b1v, {h}), w2 = tlt::tensor(w2v, {h, 1}),
         b2 = tlt::tensor(b2v, {1});
  Tensor gw1({k, h}), gb1({h}), gw2({h, 1}), gb2({1});
  Tensor* grads[4] = {&gw1, &gb1, &gw2, &gb2};
  forward(w1, b1, w2, b2, grads);
  Tensor* params[4] = {&w1, &b1, &w2, &b2};
  int checked = 0;
  for (int p = 0; p < 4; p++) {
    auto g = grads[p]->to_vector();
    for (int64_t i = 0; i < params[p]->numel(); i++) {
      float* v = params[p]->f32() + i;
      const float saved = *v, eps = 1e-2f;
      *v = saved + eps;
      double lp = forward(w1, b1, w2, b2, nullptr);
      *v = saved - eps;
      double lm = forward(w1, b1, w2, b2, nullptr);
      *v = saved;
      double fd = (lp - lm) / (2.0 * (double)eps);
      CAPTURE(p);
      CAPTURE(i);
      CHECK(std::fabs(fd - g[i]) <= 2e-3 * std::max(1.0, std::fabs(fd)) + 1e-4);
      checked++;
    }
  }
  CHECK(checked == k * h + h + h + 1);
}

// ------------------------------------------------------------------------------------------------
// CUDA kernels against the CPU ops, on fresh random inputs (skipped without a GPU).

CUDA_CASE("conv3x3 matches the CPU op") {
  struct C { int n, h, w, cin, cout; bool relu; };
  for (C c : {C{1, 1, 1, 1, 1, false}, C{2, 7, 7, 3, 17, true}, C{1, 5, 9, 17, 33, true}, C{3, 2, 7, 1, 3, false},
              C{2, 14, 14, 64, 128, true}, C{1, 7, 7, 512, 512, true}, C{1, 31, 17, 5, 70, false}}) {
    CAPTURE(c.n);
    CAPTURE(c.cin);
    CAPTURE(c.cout);
    auto x = tlt::random_vec((size_t)c.n * c.h * c.w * c.cin, 31),
         w = tlt::random_vec((size_t)9 * c.cin * c.cout, 32, 0.2f), b = tlt::random_vec(c.cout, 33);
    auto cpu = run_conv(x, w, b, c.n, c.h, c.w, c.cin, c.cout, c.relu);
    auto gpu = run_conv(x, w, b, c.n, c.h, c.w, c.cin, c.cout, c.relu, Device::CUDA);
    CHECK(tlt::rel_err(gpu, cpu) < 4e-6);  // GPU direct vs CPU Winograd: two fp32 roundings
  }
}

CUDA_CASE("maxpool, relu, relu_backward, dropout and fp16 match the CPU op exactly") {
  auto xv = tlt::random_vec(2 * 9 * 7 * 19, 41);
  Tensor xc = tlt::tensor(xv, {2, 9, 7, 19}), yc({2, 4, 3, 19});
  Tensor xg = xc.to(Device::CUDA), yg({2, 4, 3, 19}, Device::CUDA);
  ops::maxpool2x2(xc, yc);
  ops::maxpool2x2(xg, yg);
  CHECK(yg.to_vector() == yc.to_vector());
  const int64_t n = xc.numel();
  Tensor rc({n}), rg({n}, Device::CUDA), dc({n}), dg({n}, Device::CUDA);
  Tensor x1 = xc.reshaped({n}), x1g = xg.reshaped({n});
  ops::relu(x1, rc);
  ops::relu(x1g, rg);
  CHECK(rg.to_vector() == rc.to_vector());
  ops::relu_backward(rc, x1, dc);
  ops::relu_backward(rg, x1g, dg);
  CHECK(dg.to_vector() == dc.to_vector());
  ops::dropout(x1, dc, 0.2f, 1234, 77);
  ops::dropout(x1g, dg, 0.2f, 1234, 77);
  CHECK(dg.to_vector() == dc.to_vector());
  Tensor hc({n}, Device::CPU, DType::F16), hg({n}, Device::CUDA, DType::F16);
  ops::to_f16(x1, hc);
  ops::to_f16(x1g, hg);
  Tensor hback = hg.to(Device::CPU);
  CHECK(memcmp(hback.ptr, hc.ptr, hc.bytes()) == 0);
}

CUDA_CASE("dense forward/backward (cuBLAS) match the CPU op") {
  for (int m : {1, 32, 77})
    for (int k : {1, 300, 25088 / 8})
      for (int n : {1, 20, 400}) {
        auto xv = tlt::random_vec((size_t)m * k, 51), wv = tlt::random_vec((size_t)k * n, 52, 0.05f),
             bv = tlt::random_vec(n, 53), dyv = tlt::random_vec((size_t)m * n, 54);
        std::vector<float> res[2][4];
        for (int d = 0; d < 2; d++) {
          Device dev = d ? Device::CUDA : Device::CPU;
          Tensor x = tlt::tensor(xv, {m, k}, dev), w = tlt::tensor(wv, {k, n}, dev), b = tlt::tensor(bv, {n}, dev);
          Tensor y({m, n}, dev), dy = tlt::tensor(dyv, {m, n}, dev), dx({m, k}, dev), dw({k, n}, dev), db({n}, dev);
          ops::dense(x, w, b, y, true);
          ops::dense_backward(x, w, dy, &dx, dw, db);
          res[d][0] = y.to_vector();
          res[d][1] = dx.to_vector();
          res[d][2] = dw.to_vector();
          res[d][3] = db.to_vector();
        }
        CAPTURE(m);
        CAPTURE(k);
        CAPTURE(n);
        for (int t = 0; t < 3; t++) CHECK(tlt::rel_err(res[1][t], res[0][t]) < 5e-6);
        CHECK(res[1][3] == res[0][3]);  // column sums in the same order: identical
      }
}

CUDA_CASE("sigmoid_bce and rmsprop match the CPU op") {
  Fixture fx("ops_bce.npz");
  auto zv = fx.f("z"), yv = fx.f("y");
  const int64_t n = (int64_t)zv.size();
  std::vector<float> out[2][3];
  for (int d = 0; d < 2; d++) {
    Device dev = d ? Device::CUDA : Device::CPU;
    Tensor z = tlt::tensor(zv, {n}, dev), y = tlt::tensor(yv, {n}, dev), p({n}, dev), l({n}, dev), dz({n}, dev);
    ops::sigmoid_bce(z, y, p, l, &dz);
    out[d][0] = p.to_vector();
    out[d][1] = l.to_vector();
    out[d][2] = dz.to_vector();
  }
  CHECK(tlt::max_abs_diff(out[1][0], out[0][0]) <= 2e-7);
  CHECK(tlt::rel_err(out[1][1], out[0][1]) <= 1e-6);
  CHECK(tlt::max_abs_diff(out[1][2], out[0][2]) <= 2e-7);

  const int64_t m = 100003;
  auto w0 = tlt::random_vec(m, 61), g = tlt::random_vec(m, 62, 0.01f);
  Tensor wc = tlt::tensor(w0, {m}), vc({m}), gc = tlt::tensor(g, {m});
  Tensor wg = wc.to(Device::CUDA), vg({m}, Device::CUDA), gg = gc.to(Device::CUDA);
  vc.zero();
  vg.zero();
  for (int s = 0; s < 3; s++) {
    ops::rmsprop(wc, gc, vc, 1e-3f, 0.9f, 1e-7f);
    ops::rmsprop(wg, gg, vg, 1e-3f, 0.9f, 1e-7f);
  }
  CHECK(wg.to_vector() == wc.to_vector());  // explicitly rounded on both: bit-identical
  CHECK(vg.to_vector() == vc.to_vector());
}

CUDA_CASE("the float4 conv path with cin % 8 != 0, and the scalar fallback for a misaligned input") {
  for (int cin : {4, 12, 20}) {  // float4 loads (cin % 4 == 0) whose 8-wide K steps straddle taps
    CAPTURE(cin);
    auto x = tlt::random_vec((size_t)2 * 6 * 5 * cin, 71), w = tlt::random_vec((size_t)9 * cin * 10, 72, 0.2f),
         b = tlt::random_vec(10, 73);
    CHECK(tlt::rel_err(run_conv(x, w, b, 2, 6, 5, cin, 10, true, Device::CUDA), run_conv(x, w, b, 2, 6, 5, cin, 10, true)) <
          4e-6);
  }
  // The same input one float past a 16-byte boundary: the kernel must take its scalar path.
  const int n = 1, h = 5, wd = 4, cin = 8, cout = 6;
  auto x = tlt::random_vec((size_t)n * h * wd * cin, 74), w = tlt::random_vec((size_t)9 * cin * cout, 75, 0.2f),
       b = tlt::random_vec(cout, 76);
  std::vector<float> shifted(x.size() + 1, 0.0f);
  std::copy(x.begin(), x.end(), shifted.begin() + 1);
  Tensor xs = tlt::tensor(shifted, {(int64_t)shifted.size()}, Device::CUDA), tw = tlt::tensor(w, {3, 3, cin, cout}, Device::CUDA),
         tb = tlt::tensor(b, {cout}, Device::CUDA), y({n, h, wd, cout}, Device::CUDA);
  cuda::conv3x3(xs.f32() + 1, tw.f32(), tb.f32(), y.f32(), n, h, wd, cin, cout, false);
  CHECK(tlt::rel_err(y.to_vector(), run_conv(x, w, b, n, h, wd, cin, cout, false)) < 4e-6);
}

CUDA_CASE("grid-stride loops past their grid cap, and gather_rows from fp32 and fp16 rows") {
  cuda::set_element_grid_cap(3);  // 3 blocks of 256 threads for 5,000 elements: 7 rounds each
  auto xv = tlt::random_vec(5000, 81);
  Tensor xc = tlt::tensor(xv, {5000}), xg = xc.to(Device::CUDA), yc({5000}), yg({5000}, Device::CUDA);
  ops::relu(xc, yc);
  ops::relu(xg, yg);
  CHECK(yg.to_vector() == yc.to_vector());
  ops::dropout(xc, yc, 0.3f, 9, 4);
  ops::dropout(xg, yg, 0.3f, 9, 4);
  CHECK(yg.to_vector() == yc.to_vector());
  Tensor hc({5000}, Device::CPU, DType::F16), hg({5000}, Device::CUDA, DType::F16);
  ops::to_f16(xc, hc);
  ops::to_f16(xg, hg);
  CHECK(memcmp(hg.to(Device::CPU).ptr, hc.ptr, hc.bytes()) == 0);
  // gather_rows: fp32 and fp16 sources, repeated and reversed indices, reused host index arrays.
  Tensor src = tlt::tensor(xv, {250, 20}), src16({250, 20}, Device::CPU, DType::F16);
  ops::to_f16(src.reshaped({5000}), src16);
  Tensor srcg = src.to(Device::CUDA), src16g = src16.to(Device::CUDA);
  std::vector<int64_t> idx = {249, 0, 7, 7, 100, 3};
  for (int round = 0; round < 2; round++) {
    Tensor dc({6, 20}), dg({6, 20}, Device::CUDA), ec({6, 20}), eg({6, 20}, Device::CUDA);
    ops::gather_rows(src, idx, dc);
    ops::gather_rows(srcg, idx, dg);
    ops::gather_rows(src16, idx, ec);
    ops::gather_rows(src16g, idx, eg);
    std::reverse(idx.begin(), idx.end());  // the host array changes before the device work runs
    CHECK(dg.to_vector() == dc.to_vector());
    CHECK(eg.to_vector() == ec.to_vector());
  }
  cuda::set_element_grid_cap(0);
}

CUDA_CASE("fp16 edge values: subnormals, 65504/65520, infinities and NaN encode as on the CPU and as IEEE says") {
  const float sub = std::ldexp(1.0f, -24);  // the smallest half subnormal
  const std::vector<std::pair<float, uint16_t>> cases = {
      {0.0f, 0x0000},         {-0.0f, 0x8000},           {1.0f, 0x3c00},         {65504.0f, 0x7bff},
      {65519.99f, 0x7bff},    {65520.0f, 0x7c00},        {-65520.0f, 0xfc00},    {1e9f, 0x7c00},
      {sub, 0x0001},          {sub * 0.5f, 0x0000},      {sub * 1.5f, 0x0002},   {sub * 0.51f, 0x0001},
      {std::ldexp(1.0f, -14), 0x0400}, {std::ldexp(1023.0f, -24), 0x03ff},
      {INFINITY, 0x7c00},     {-INFINITY, 0xfc00},       {NAN, 0x7fff},          {-NAN, 0x7fff}};
  std::vector<float> xv;
  for (auto& c : cases) xv.push_back(c.first);
  const int64_t n = (int64_t)xv.size();
  Tensor xc = tlt::tensor(xv, {n}), hc({n}, Device::CPU, DType::F16), hg({n}, Device::CUDA, DType::F16);
  ops::to_f16(xc, hc);
  ops::to_f16(xc.to(Device::CUDA), hg);
  Tensor back = hg.to(Device::CPU);
  for (int64_t i = 0; i < n; i++) {
    CAPTURE(xv[i]);
    CHECK(((const uint16_t*)hc.ptr)[i] == cases[i].second);
    CHECK(((const uint16_t*)back.ptr)[i] == cases[i].second);
  }
}
