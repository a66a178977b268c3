// Fine-tuning (tl_train --fine-tune): two steps of a small block (3 conv+ReLU, pool) with the head,
// dropout on, against PyTorch autograd and torch.optim.RMSprop in float64 (tests/fixtures/
// finetune_steps.npz, tools/gen_fixtures.py --only finetune); the model file carrying the block;
// the fine-tune flags' refusals.
#include <cmath>

#include "helpers.h"
#include "host/model/conv_block.h"
#include "host/model/head.h"
#include "host/ops/ops.h"
#include "host/stages/finetune.h"

using namespace tl;
using tlt::Fixture;

namespace {

// A base whose last block is the fixture's: a first layer (cut after its pool), then block5.
VggWeights fixture_weights(const Fixture& fx, int c) {
  VggWeights w = synthetic_weights(std::vector<ConvLayerSpec>{{"block4_conv1", 3, c, true},
                                                              {"block5_conv1", c, c, false},
                                                              {"block5_conv2", c, c, false},
                                                              {"block5_conv3", c, c, true}},
                                   "custom", 1, Preprocess::CaffeBGR);
  for (int i = 0; i < 3; i++) {
    w.layers[(size_t)i + 1].w = fx.f("cw" + std::to_string(i));
    w.layers[(size_t)i + 1].b = fx.f("cb" + std::to_string(i));
  }
  return w;
}

}  // namespace

TEST_CASE("a fine-tuning step (block5 and the head, dropout on) equals PyTorch's in float64") {
  Fixture fx("finetune_steps.npz");
  const std::vector<int64_t> sh = {4, 4, 8, 6, 4};
  const int n = (int)sh[0], s = (int)sh[1], c = (int)sh[2];
  const float lr = (float)fx.scalar("lr"), rate = (float)fx.scalar("rate");
  const uint64_t seed = fx.u64("seed");
  VggWeights w = fixture_weights(fx, c);
  ConvBlock block(w, 1, false, Device::CPU);
  HeadSpec spec;
  spec.feat_h = spec.feat_w = s / 2;
  spec.feat_c = c;
  spec.hidden1 = (int)sh[3];
  spec.hidden2 = (int)sh[4];
  spec.dropout = rate;
  Head head(spec, Device::CPU);
  const char* hk[6] = {"W1", "b1", "W2", "b2", "W3", "b3"};
  for (int i = 0; i < 6; i++) head.params()[(size_t)i]->from_vector(fx.f(hk[i]));
  for (Tensor* v : head.opt_state()) v->zero();
  std::vector<Tensor> bv;
  for (Tensor* p : block.params()) {
    bv.emplace_back(std::vector<int64_t>{p->numel()});
    bv.back().zero();
  }
  Tensor x = tlt::tensor(fx.f("x"), {n, s, s, c}), y = tlt::tensor(fx.f("y"), {n});
  Tensor dfeat({n, spec.in_dim()});
  const RmsProp opt{lr, 0.9f, 1e-7f};
  const std::vector<std::string> bk = {"cw0", "cb0", "cw1", "cb1", "cw2", "cb2"};
  for (int step = 0; step < 2; step++) {
    CAPTURE(step);
    const std::string pre = "s" + std::to_string(step) + "_";
    Tensor f = block.forward(x);
    Tensor flat = Tensor::view(f.ptr, {n, spec.in_dim()});
    int correct = 0;
    const double loss = head.train_step(flat, y, n, seed, (uint64_t)step, opt, &correct, nullptr, 0, &dfeat) / n;
    CHECK(std::fabs(loss - fx.scalar(pre + "loss")) < 1e-5 * std::max(1.0, std::fabs(loss)));
    block.backward(Tensor::view(dfeat.ptr, {f.dim(0), f.dim(1), f.dim(2), f.dim(3)}), nullptr, true);
    // The gradients (before any update) of all twelve tensors.
    std::vector<Tensor*> hg = head.grads(), bg = block.grads();
    for (int i = 0; i < 6; i++) {
      CAPTURE(hk[i]);
      CHECK(tlt::rel_err(hg[(size_t)i]->to_vector(), fx.f(pre + "grad_" + hk[i])) < 1e-5);
      CAPTURE(bk[(size_t)i]);
      CHECK(tlt::rel_err(bg[(size_t)i]->to_vector(), fx.f(pre + "grad_" + bk[(size_t)i])) < 1e-5);
    }
    std::vector<Tensor*> bp = block.params();
    for (size_t i = 0; i < bp.size(); i++) ops::rmsprop(*bp[i], *bg[i], bv[i], opt.lr, opt.rho, opt.eps);
    // The updated weights. RMSprop's first steps move each weight by about lr * sign(g) * 3.2 whatever
    // |g|: a gradient within rounding of zero may take either sign, so those (0 < |g| below 1e-4 of
    // its tensor's largest) are left out of this comparison and counted; exact zeros (dead ReLUs,
    // dropped units) must stay put on both sides.
    int skipped = 0, compared = 0;
    auto compare = [&](const Tensor& t, const std::string& key) {
      const std::vector<float> got = t.to_vector(), want = fx.f(pre + key), g = fx.f(pre + "grad_" + key);
      double gmax = 0, wmax = 0;
      for (float v : g) gmax = std::max(gmax, (double)std::fabs(v));
      for (float v : want) wmax = std::max(wmax, (double)std::fabs(v));
      for (size_t i = 0; i < got.size(); i++) {
        if (g[i] != 0 && std::fabs(g[i]) < 1e-4 * gmax) {
          skipped++;
          continue;
        }
        compared++;
        CHECK(std::fabs(got[i] - want[i]) <= 1e-5 * wmax);
      }
    };
    for (int i = 0; i < 6; i++) compare(*head.params()[(size_t)i], hk[i]);
    for (int i = 0; i < 6; i++) compare(*bp[(size_t)i], bk[(size_t)i]);
    MESSAGE("step " << step << ": " << compared << " weights compared, " << skipped << " with 0 < |g| < 1e-4 max left out");
    CHECK(skipped * 20 < compared);
  }
}

TEST_CASE("a model file carries fine-tuned layers: saved, loaded, applied to the base, refused when they do not fit") {
  Fixture fx("finetune_steps.npz");
  VggWeights w = fixture_weights(fx, 8);
  ModelFile m;
  m.spec.feat_h = m.spec.feat_w = 2;
  m.spec.feat_c = 8;
  m.spec.hidden1 = 6;
  m.spec.hidden2 = 4;
  for (int64_t sz : {32 * 6, 6, 6 * 4, 4, 4, 1}) m.params.push_back(tlt::random_vec((size_t)sz, (uint64_t)sz));
  for (int i = 0; i < 3; i++) {
    m.convs.push_back({"block5_conv" + std::to_string(i + 1), 8, 8, i == 2});
    m.params.push_back(tlt::random_vec(9 * 64, 100 + (uint64_t)i));
    m.params.push_back(tlt::random_vec(8, 200 + (uint64_t)i));
  }
  m.meta["epoch"] = "3";
  const std::string path = tlt::temp_dir() + "/tuned.bin";
  save_model(path, m);
  ModelFile r = load_model(path);
  REQUIRE(r.convs.size() == 3);
  CHECK(r.convs[1].name == "block5_conv2");
  CHECK((r.convs[2].cin == 8 && r.convs[2].cout == 8));
  CHECK(r.params == m.params);
  apply_tuned_layers(r, w, path);
  CHECK(w.layers[2].w == m.params[8]);
  CHECK(w.layers[3].b == m.params[11]);
  CHECK(w.layers[0].w != m.params[6]);  // the layers below the block keep the converted weights
  // A head alone is still format 1, byte for byte what it was.
  ModelFile plain = m;
  plain.convs.clear();
  plain.params.resize(6);
  save_model(path, plain);
  CHECK(load_model(path).convs.empty());
  // Layers that are not the base's are refused, naming them.
  r.convs[0].name = "block6_conv1";
  CHECK(tlt::error_of([&] { apply_tuned_layers(r, w, "m.bin"); }) ==
        "m.bin: its fine-tuned layer block6_conv1 (8 -> 8 channels) is not a layer of these weights");
  CHECK(tlt::error_of([&] { finetune_cut(w, "block9"); }) == "--fine-tune block9: no such block; custom has block4, block5");
  CHECK(finetune_cut(synthetic_weights("vgg16", 1), "block5") == "block4_pool");
  CHECK(finetune_cut(synthetic_weights("vgg16", 1), "block4") == "block3_pool");
}

namespace {
// The fixture's two steps on device d: every parameter (head's six, then block5's six) after them.
std::vector<std::vector<float>> two_steps(const Fixture& fx, Device d) {
  const int n = 4, s = 4, c = 8;
  VggWeights w = fixture_weights(fx, c);
  ConvBlock block(w, 1, false, d);
  HeadSpec spec;
  spec.feat_h = spec.feat_w = s / 2;
  spec.feat_c = c;
  spec.hidden1 = 6;
  spec.hidden2 = 4;
  spec.dropout = (float)fx.scalar("rate");
  Head head(spec, d);
  const char* hk[6] = {"W1", "b1", "W2", "b2", "W3", "b3"};
  for (int i = 0; i < 6; i++) head.params()[(size_t)i]->from_vector(fx.f(hk[i]));
  for (Tensor* v : head.opt_state()) v->zero();
  std::vector<Tensor> bv;
  for (Tensor* p : block.params()) {
    bv.emplace_back(std::vector<int64_t>{p->numel()}, d);
    bv.back().zero();
  }
  Tensor x = tlt::tensor(fx.f("x"), {n, s, s, c}, d), y = tlt::tensor(fx.f("y"), {n}, d), dfeat({n, spec.in_dim()}, d);
  const RmsProp opt{(float)fx.scalar("lr"), 0.9f, 1e-7f};
  for (int step = 0; step < 2; step++) {
    Tensor f = block.forward(x);
    int correct = 0;
    head.train_step(Tensor::view(f.ptr, {n, spec.in_dim()}, d), y, n, fx.u64("seed"), (uint64_t)step, opt, &correct,
                    nullptr, 0, &dfeat);
    block.backward(Tensor::view(dfeat.ptr, {f.dim(0), f.dim(1), f.dim(2), f.dim(3)}, d), nullptr, true);
    std::vector<Tensor*> bp = block.params(), bg = block.grads();
    for (size_t i = 0; i < bp.size(); i++) ops::rmsprop(*bp[i], *bg[i], bv[i], opt.lr, opt.rho, opt.eps);
  }
  std::vector<std::vector<float>> out;
  for (Tensor* t : head.params()) out.push_back(t->to_vector());
  for (Tensor* t : block.params()) out.push_back(t->to_vector());
  return out;
}
}  // namespace

CUDA_CASE("fine-tuning steps on the GPU equal the CPU's") {
  Fixture fx("finetune_steps.npz");
  const auto cpu = two_steps(fx, Device::CPU), gpu = two_steps(fx, Device::CUDA);
  REQUIRE(cpu.size() == 12);
  for (size_t i = 0; i < cpu.size(); i++) {
    CAPTURE(i);
    CHECK(tlt::rel_err(gpu[i], cpu[i]) < 1e-5);
  }
}
