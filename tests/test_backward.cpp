// The backward passes of the convolution and the max-pool (fine-tuning, Grad-CAM): against PyTorch
// autograd in float64 (tests/fixtures/ops_conv_backward.npz, ops_maxpool_backward.npz, written by
// tools/gen_fixtures.py --only backward), against finite differences through conv+ReLU+pool, the same
// bits for any thread count, the bf16 path's structure (AMX tiles through the emulator), and the CUDA
// kernels against the CPU op (through the CUDA emulator in CI).
//
// Tolerances (error relative to the reference's largest value): dw, db 2e-6; dx 2e-6 on the direct
// and F(2x2) paths, 1e-5 on F(4x4) (its transforms magnify rounding, as in the forward test); the
// max-pool's gradient: exact.
#include <cmath>
#include <cstring>

#include "helpers.h"
#include "host/core/threads.h"
#include "host/ops/cpu_amx.h"
#include "host/ops/cpu_ops.h"
#include "host/ops/ops.h"

using namespace tl;
using tlt::Fixture;

namespace {

struct ConvGrads {
  std::vector<float> y, dx, dw, db;
};

// Forward conv (+ReLU), then the backward pass of g arriving at its output.
ConvGrads conv_grads(const std::vector<float>& x, const std::vector<float>& w, const std::vector<float>& b,
                     const std::vector<float>& g, int n, int h, int wd, int cin, int cout, bool relu,
                     Device d = Device::CPU, Precision p = Precision::FP32) {
  Tensor tx = tlt::tensor(x, {n, h, wd, cin}, d), tw = tlt::tensor(w, {3, 3, cin, cout}, d),
         tb = tlt::tensor(b, {cout}, d), tg = tlt::tensor(g, {n, h, wd, cout}, d);
  Tensor ty({n, h, wd, cout}, d), dpre({n, h, wd, cout}, d), dx({n, h, wd, cin}, d), dw({3, 3, cin, cout}, d),
      db({cout}, d);
  ops::conv3x3(tx, tw, tb, ty, relu);
  if (relu)
    ops::relu_backward(ty, tg, dpre);
  else
    dpre = tg.to(d);
  if (p == Precision::BF16)  // the CPU op itself: ops' check would refuse bf16 on CPUs without it, emulator or not
    cpu::conv3x3_backward(tx.f32(), tw.f32(), dpre.f32(), dx.f32(), dw.f32(), db.f32(), n, h, wd, cin, cout, true);
  else
    ops::conv3x3_backward(tx, tw, dpre, &dx, &dw, &db, p);
  return {ty.to_vector(), dx.to_vector(), dw.to_vector(), db.to_vector()};
}

}  // namespace

TEST_CASE("conv3x3_backward (fused ReLU) matches PyTorch autograd in float64, on every conv algorithm") {
  Fixture fx("ops_conv_backward.npz");
  const int count = (int)fx.scalar("count");
  double worst[3] = {0, 0, 0};
  for (cpu::ConvAlgo a : {cpu::ConvAlgo::Direct, cpu::ConvAlgo::Winograd, cpu::ConvAlgo::Winograd4, cpu::ConvAlgo::Auto}) {
    cpu::set_conv_algo(a);
    CAPTURE((int)a);
    for (int i = 0; i < count; i++) {
      const std::string p = "c" + std::to_string(i) + "_";
      auto s = fx.shape(p + "x");
      const int n = (int)s[0], h = (int)s[1], w = (int)s[2], cin = (int)s[3], cout = (int)fx.shape(p + "w")[3];
      CAPTURE(n);
      CAPTURE(h);
      CAPTURE(w);
      CAPTURE(cin);
      CAPTURE(cout);
      auto r = conv_grads(fx.f(p + "x"), fx.f(p + "w"), fx.f(p + "b"), fx.f(p + "g"), n, h, w, cin, cout,
                          fx.scalar(p + "relu") != 0);
      // dx runs on the forward conv of dy (cout -> cin channels): its algorithm is that conv's.
      const bool f4 = cpu::conv_algo_for(cout, cin, h, w) == cpu::ConvAlgo::Winograd4;
      const double ex = tlt::rel_err(r.dx, fx.f(p + "dx")), ew = tlt::rel_err(r.dw, fx.f(p + "dw")),
                   eb = tlt::rel_err(r.db, fx.f(p + "db"));
      worst[0] = std::max(worst[0], ex);
      worst[1] = std::max(worst[1], ew);
      worst[2] = std::max(worst[2], eb);
      CHECK(ex < (f4 ? 1e-5 : 2e-6));
      CHECK(ew < 2e-6);
      CHECK(eb < 2e-6);
    }
  }
  cpu::set_conv_algo(cpu::ConvAlgo::Auto);
  MESSAGE("conv3x3_backward vs PyTorch float64, max error / max value: dx " << worst[0] << ", dw " << worst[1]
                                                                            << ", db " << worst[2]);
}

TEST_CASE("maxpool2x2_backward matches PyTorch exactly: ties go to the first maximum, odd edges get none, NaN wins") {
  Fixture fx("ops_maxpool_backward.npz");
  const int count = (int)fx.scalar("count");
  for (int i = 0; i < count; i++) {
    const std::string p = "c" + std::to_string(i) + "_";
    auto s = fx.shape(p + "x");
    const int n = (int)s[0], h = (int)s[1], w = (int)s[2], c = (int)s[3];
    CAPTURE(i);
    Tensor x = tlt::tensor(fx.f(p + "x"), {n, h, w, c}), g = tlt::tensor(fx.f(p + "g"), {n, h / 2, w / 2, c});
    Tensor dx({n, h, w, c});
    ops::maxpool2x2_backward(x, g, dx);
    CHECK(dx.to_vector() == fx.f(p + "dx"));
  }
  // A wrong shape is refused, naming the tensor.
  Tensor x({1, 4, 4, 2}), g({1, 2, 3, 2}), dx({1, 4, 4, 2});
  CHECK(tlt::error_of([&] { ops::maxpool2x2_backward(x, g, dx); }).find("dy (want [n,h/2,w/2,c])") != std::string::npos);
}

TEST_CASE("conv+ReLU+max-pool backward agrees with finite differences of the fp32 forward") {
  // loss = sum(g * maxpool(relu(conv(x, w) + b))); central differences in double over fp32 forwards.
  const int n = 2, h = 5, wd = 4, cin = 3, cout = 4;
  auto xv = tlt::random_vec((size_t)n * h * wd * cin, 71), wv = tlt::random_vec((size_t)9 * cin * cout, 72, 0.4f),
       bv = tlt::random_vec(cout, 73, 0.2f), gv = tlt::random_vec((size_t)n * (h / 2) * (wd / 2) * cout, 74);
  Tensor x = tlt::tensor(xv, {n, h, wd, cin}), w = tlt::tensor(wv, {3, 3, cin, cout}), b = tlt::tensor(bv, {cout}),
         g = tlt::tensor(gv, {n, h / 2, wd / 2, cout});
  auto loss = [&]() {
    Tensor y({n, h, wd, cout}), pooled({n, h / 2, wd / 2, cout});
    ops::conv3x3(x, w, b, y, true);
    ops::maxpool2x2(y, pooled);
    double l = 0;
    auto pv = pooled.to_vector();
    for (size_t i = 0; i < pv.size(); i++) l += (double)pv[i] * gv[i];
    return l;
  };
  Tensor y({n, h, wd, cout}), pooled({n, h / 2, wd / 2, cout}), dy({n, h, wd, cout}), dx({n, h, wd, cin}),
      dw({3, 3, cin, cout}), db({cout});
  ops::conv3x3(x, w, b, y, true);
  ops::maxpool2x2(y, pooled);
  ops::maxpool2x2_backward(y, g, dy);
  ops::relu_backward(y, dy, dy);
  ops::conv3x3_backward(x, w, dy, &dx, &dw, &db);
  Tensor* params[3] = {&x, &w, &b};
  const std::vector<float> grads[3] = {dx.to_vector(), dw.to_vector(), db.to_vector()};
  int checked = 0;
  for (int p = 0; p < 3; p++)
    for (int64_t i = 0; i < params[p]->numel(); i++) {
      float* v = params[p]->f32() + i;
      const float saved = *v, eps = 1e-2f;
      *v = saved + eps;
      const double lp = loss();
      *v = saved - eps;
      const double lm = loss();
      *v = saved;
      const double fd = (lp - lm) / (2.0 * eps);
      CAPTURE(p);
      CAPTURE(i);
      CHECK(std::fabs(fd - grads[p][i]) <= 3e-3 * std::max(1.0, std::fabs(fd)) + 2e-4);
      checked++;
    }
  CHECK(checked == n * h * wd * cin + 9 * cin * cout + cout);
}

TEST_CASE("conv3x3_backward gives the same bits for 1, 2 and 3 threads, and dx is the flipped kernel's forward conv") {
  const int n = 2, h = 9, wd = 7, cin = 37, cout = 45;
  auto xv = tlt::random_vec((size_t)n * h * wd * cin, 81), wv = tlt::random_vec((size_t)9 * cin * cout, 82, 0.1f),
       bv = tlt::random_vec(cout, 83), gv = tlt::random_vec((size_t)n * h * wd * cout, 84);
  ConvGrads ref;
  for (int t : {1, 2, 3}) {
    set_num_threads(t);
    CAPTURE(t);
    ConvGrads r = conv_grads(xv, wv, bv, gv, n, h, wd, cin, cout, false);
    if (t == 1) {
      ref = r;
      continue;
    }
    CHECK(r.dx == ref.dx);
    CHECK(r.dw == ref.dw);
    CHECK(r.db == ref.db);
  }
  set_num_threads(0);
  // The kernel turned half a turn with its channel axes swapped, checked element by element.
  std::vector<float> wf(wv.size());
  cpu::flip_conv_weights(wv.data(), wf.data(), cin, cout);
  for (int t = 0; t < 9; t++)
    for (int ci = 0; ci < cin; ci += 5)
      for (int co = 0; co < cout; co += 7)
        CHECK(wf[((size_t)t * cout + co) * cin + ci] == wv[((size_t)(8 - t) * cin + ci) * cout + co]);
  std::vector<float> dx((size_t)n * h * wd * cin), zero(cin, 0.0f);
  cpu::conv3x3(gv.data(), wf.data(), zero.data(), dx.data(), n, h, wd, cout, cin, false);
  CHECK(dx == ref.dx);
}

TEST_CASE("conv3x3_weight_grad_winograd: PyTorch's dw on every fixture case, the direct GEMMs' dw across tile blocks") {
  // Called directly, whatever conv3x3_backward would dispatch to (it takes this path only where the
  // forward conv is Winograd and both channel counts are at least 16): small channel counts and odd
  // sizes (partial tiles at the right and bottom edges) included.
  Fixture fx("ops_conv_backward.npz");
  const int count = (int)fx.scalar("count");
  for (int i = 0; i < count; i++) {
    const std::string p = "c" + std::to_string(i) + "_";
    auto s = fx.shape(p + "x");
    const int n = (int)s[0], h = (int)s[1], w = (int)s[2], cin = (int)s[3], cout = (int)fx.shape(p + "w")[3];
    CAPTURE(i);
    Tensor tx = tlt::tensor(fx.f(p + "x"), {n, h, w, cin}), tw = tlt::tensor(fx.f(p + "w"), {3, 3, cin, cout}),
           tb = tlt::tensor(fx.f(p + "b"), {cout}), tg = tlt::tensor(fx.f(p + "g"), {n, h, w, cout});
    Tensor ty({n, h, w, cout}), dpre({n, h, w, cout});
    ops::conv3x3(tx, tw, tb, ty, fx.scalar(p + "relu") != 0);
    if (fx.scalar(p + "relu") != 0)
      ops::relu_backward(ty, tg, dpre);
    else
      dpre = tg.to(Device::CPU);
    std::vector<float> dw((size_t)9 * cin * cout, -7.0f);  // overwritten, not accumulated into
    cpu::conv3x3_weight_grad_winograd(tx.f32(), dpre.f32(), dw.data(), n, h, w, cin, cout);
    CHECK(tlt::rel_err(dw, fx.f(p + "dw")) < 2e-6);
  }
  // 512 channels at 14x14, batch 4: 196 tiles, more than one block of 128, so blocks accumulate; odd
  // channel counts at 13x11 and batch 3. The reference: the direct path's 9 per-tap GEMMs (fp32, summed
  // in another order: the file's dw tolerance); and the same bits for 1, 2 and 3 threads.
  struct Case { int n, h, wd, cin, cout; };
  for (Case c : {Case{4, 14, 14, 512, 512}, Case{3, 13, 11, 37, 45}}) {
    CAPTURE(c.cin);
    const size_t px = (size_t)c.n * c.h * c.wd;
    auto xv = tlt::random_vec(px * c.cin, 91), gv = tlt::random_vec(px * c.cout, 92);
    std::vector<float> direct((size_t)9 * c.cin * c.cout), wg(direct.size()), wf(c.cin * c.cout * 9, 0.0f);
    cpu::set_conv_algo(cpu::ConvAlgo::Direct);
    cpu::conv3x3_backward(xv.data(), wf.data(), gv.data(), nullptr, direct.data(), nullptr, c.n, c.h, c.wd,
                          c.cin, c.cout, false);
    cpu::set_conv_algo(cpu::ConvAlgo::Auto);
    std::vector<float> ref;
    for (int t : {1, 2, 3}) {
      set_num_threads(t);
      cpu::conv3x3_weight_grad_winograd(xv.data(), gv.data(), wg.data(), c.n, c.h, c.wd, c.cin, c.cout);
      if (t == 1) ref = wg;
      CHECK(wg == ref);
    }
    set_num_threads(0);
    CHECK(tlt::rel_err(wg, direct) < 2e-6);  // two fp32 sums in different orders (measured: 1.2e-6)
  }
}

TEST_CASE("conv3x3_backward at bf16: dx on the bf16 conv (AMX tiles, emulated), dw and db in fp32") {
  Fixture fx("ops_conv_backward.npz");
  for (bool amx : {false, true}) {
    if (!amx && cpu::bf16_path() == cpu::Bf16Path::None) {
      MESSAGE("SKIPPED: the CPU's own bf16 path (this CPU has neither AMX nor AVX512_BF16); the emulated AMX runs");
      continue;
    }
    if (amx) cpu::set_amx_kernels(&cpu::amx_emu_kernels());
    CAPTURE(amx);
    for (int i : {2, 6}) {
      const std::string p = "c" + std::to_string(i) + "_";
      auto s = fx.shape(p + "x");
      const int n = (int)s[0], h = (int)s[1], w = (int)s[2], cin = (int)s[3], cout = (int)fx.shape(p + "w")[3];
      CAPTURE(cin);
      auto f = conv_grads(fx.f(p + "x"), fx.f(p + "w"), fx.f(p + "b"), fx.f(p + "g"), n, h, w, cin, cout, true);
      auto r = conv_grads(fx.f(p + "x"), fx.f(p + "w"), fx.f(p + "b"), fx.f(p + "g"), n, h, w, cin, cout, true,
                          Device::CPU, Precision::BF16);
      CHECK(r.dw == f.dw);
      CHECK(r.db == f.db);
      const double e = tlt::rel_err(r.dx, fx.f(p + "dx"));
      CHECK(e < 2e-2);  // bf16 operands (8 bits of mantissa), fp32 sums
      CHECK(e > 1e-5);  // it did run in bf16
      MESSAGE("bf16 dx " << std::string(amx ? "(AMX, emulated)" : cpu::bf16_path_name(cpu::bf16_path())) << " on " << cin << "->" << cout
                         << ": " << e << " from float64");
    }
    if (amx) cpu::set_amx_kernels(nullptr);
  }
}

CUDA_CASE("conv3x3_backward and maxpool2x2_backward match the CPU op") {
  struct C {
    int n, h, w, cin, cout;
  };
  // The last two have enough pixels for several slices of the weight gradient's reduction.
  for (C c : {C{1, 1, 1, 1, 1}, C{2, 5, 7, 3, 17}, C{1, 6, 5, 70, 66}, C{2, 40, 40, 8, 6}, C{1, 48, 45, 5, 3}}) {
    CAPTURE(c.n);
    CAPTURE(c.h);
    CAPTURE(c.cin);
    CAPTURE(c.cout);
    const size_t np = (size_t)c.n * c.h * c.w;
    auto x = tlt::random_vec(np * c.cin, 91), w = tlt::random_vec((size_t)9 * c.cin * c.cout, 92, 0.2f),
         b = tlt::random_vec(c.cout, 93), g = tlt::random_vec(np * c.cout, 94);
    ConvGrads cpu = conv_grads(x, w, b, g, c.n, c.h, c.w, c.cin, c.cout, true);
    ConvGrads gpu = conv_grads(x, w, b, g, c.n, c.h, c.w, c.cin, c.cout, true, Device::CUDA);
    CHECK(tlt::rel_err(gpu.dx, cpu.dx) < 4e-6);
    CHECK(tlt::rel_err(gpu.dw, cpu.dw) < 4e-6);
    CHECK(tlt::rel_err(gpu.db, cpu.db) < 4e-6);
  }
  Fixture fx("ops_maxpool_backward.npz");
  for (int i = 0; i < (int)fx.scalar("count"); i++) {
    const std::string p = "c" + std::to_string(i) + "_";
    auto s = fx.shape(p + "x");
    const int n = (int)s[0], h = (int)s[1], w = (int)s[2], c = (int)s[3];
    CAPTURE(i);
    Tensor x = tlt::tensor(fx.f(p + "x"), {n, h, w, c}, Device::CUDA),
           g = tlt::tensor(fx.f(p + "g"), {n, h / 2, w / 2, c}, Device::CUDA);
    Tensor dx({n, h, w, c}, Device::CUDA);
    ops::maxpool2x2_backward(x, g, dx);
    CHECK(dx.to_vector() == fx.f(p + "dx"));
  }
}
