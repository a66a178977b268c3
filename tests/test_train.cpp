// tl_train: the head's gradients by finite differences, training steps against PyTorch, a learnable
// synthetic cache, resume, determinism, the .npy import and the guards.
//
// Tolerances: finite differences (float64 central differences of the fp32 loss, step 1e-3):
// |fd - analytic| <= 2e-3 * max(1, |fd|) + 2e-4. PyTorch steps: every weight within
// 2e-6 + 1e-4 |w| after 6 RMSprop steps (RMSprop's g / sqrt(v) amplifies last-bit differences of
// tiny gradients), per-step losses within 1e-5 relative.
#include <cmath>
#include <fcntl.h>
#include <unistd.h>

#include <cstring>

#include "helpers.h"
#include "host/core/log.h"
#include "host/io/plot.h"
#include "host/core/cli.h"
#include "host/model/head.h"
#include "host/ops/ops.h"
#include "host/io/npy.h"
#include "host/core/threads.h"
#include "host/stages/train.h"

using namespace tl;

namespace {

struct FakeSplit {
  std::vector<float> feats;  // n * d
  std::vector<uint8_t> labels;
};

// A cache folder with the given features, written through the real shard and manifest writers.
void write_fake_cache(const std::string& dir, const FakeSplit sp[2], int fh, int fw, int fc, int shard_size = 16) {
  const int64_t d = (int64_t)fh * fw * fc;
  Manifest m;
  m.classes = {"cat", "dog"};
  m.sources = {"fake"};
  auto& kv = m.settings.kv;
  kv["format"] = "1";
  kv["feature_shape"] = strfmt("%dx%dx%d", fh, fw, fc);
  kv["dtype"] = "fp32";
  kv["shard_size"] = std::to_string(shard_size);
  kv["weights_crc32"] = "00000000";
  kv["weights_synthetic"] = "yes (test)";
  kv["preprocess"] = "caffe";
  kv["image_size"] = "64";
  kv["resize"] = "nearest";
  kv["classes"] = "cat,dog";
  uint32_t id = 0;
  std::vector<uint32_t> ids[2];
  for (int s = 0; s < 2; s++)
    for (size_t i = 0; i < sp[s].labels.size(); i++) {
      ManifestEntry e;
      e.id = id;
      e.split = (Split)s;
      e.label = sp[s].labels[i];
      e.rel = strfmt("%s/%u.jpg", e.label ? "dog" : "cat", id);
      e.status = "ok";
      m.entries.push_back(e);
      ids[s].push_back(id++);
    }
  make_dirs(dir);
  write_manifest(dir, m);
  for (int s = 0; s < 2; s++) {
    const size_t n = sp[s].labels.size();
    for (size_t k = 0; k * shard_size < n; k++) {
      ShardData sd;
      const size_t a = k * shard_size, b = std::min(n, a + shard_size);
      sd.info.count = sd.info.range_count = (uint32_t)(b - a);
      sd.info.feat_h = fh, sd.info.feat_w = fw, sd.info.feat_c = fc;
      sd.info.split = (Split)s;
      sd.info.index = (uint32_t)k;
      sd.info.first_pos = a;
      sd.info.settings_hash = m.settings.hash();
      for (size_t i = a; i < b; i++) {
        sd.ids.push_back(ids[s][i]);
        sd.labels.push_back(sp[s].labels[i]);
      }
      const uint8_t* f = (const uint8_t*)(sp[s].feats.data() + a * d);
      sd.features.assign(f, f + (b - a) * d * 4);
      write_shard(path_join(dir, shard_file_name((Split)s, (uint32_t)k)), sd);
    }
  }
}

// Two classes that differ in the mean of a few feature channels (non-negative, like ReLU output).
void learnable(FakeSplit sp[2], int64_t d, int ntrain, int nvalid, uint64_t seed) {
  Rng r(seed);
  for (int s = 0; s < 2; s++) {
    const int n = s ? nvalid : ntrain;
    for (int i = 0; i < n; i++) {
      const uint8_t y = (uint8_t)(i % 2);
      sp[s].labels.push_back(y);
      for (int64_t k = 0; k < d; k++) {
        float v = r.uniform() * 1.5f;
        if (k < 4 && y) v += 2.0f;
        sp[s].feats.push_back(v);
      }
    }
  }
}

TrainOptions quick(const std::string& out, int epochs) {
  TrainOptions o;
  o.out = out;
  o.epochs = epochs;
  o.batch = 16;
  o.plots = false;
  o.seed = 3;
  return o;
}

std::string fresh(const std::string& name) {
  std::string d = path_join(tlt::temp_dir(), name);
  REQUIRE(system(("rm -rf '" + d + "'").c_str()) == 0);
  make_dirs(d);
  return d;
}

}  // namespace

TEST_CASE("head gradients (dropout off and on) agree with finite differences") {
  HeadSpec spec;
  spec.feat_h = 1, spec.feat_w = 2, spec.feat_c = 3, spec.hidden1 = 7, spec.hidden2 = 4;
  const int n = 5, d = spec.in_dim();
  for (bool drop : {false, true}) {
    CAPTURE(drop);
    Head h(spec, Device::CPU);
    h.init(11);
    // non-zero biases so every path is exercised
    for (Tensor* b : {h.params()[1], h.params()[3], h.params()[5]}) b->from_vector(tlt::random_vec(b->numel(), 3, 0.2f));
    Tensor x = tlt::tensor(tlt::random_vec((size_t)n * d, 4, 2.0f), {n, d}), y = tlt::tensor({1, 0, 0, 1, 1}, {n});
    h.compute_gradients(x, y, n, 77, 9, drop);
    std::vector<std::vector<float>> g;
    for (Tensor* t : h.grads()) g.push_back(t->to_vector());
    int checked = 0;
    for (size_t p = 0; p < 6; p++) {
      Tensor* w = h.params()[p];
      for (int64_t i = 0; i < w->numel(); i++) {
        float* v = w->f32() + i;
        const float keep = *v, eps = 1e-3f;
        *v = keep + eps;
        const double lp = h.compute_gradients(x, y, n, 77, 9, drop);
        *v = keep - eps;
        const double lm = h.compute_gradients(x, y, n, 77, 9, drop);
        *v = keep;
        const double fd = (lp - lm) / (2.0 * eps);
        CAPTURE(p);
        CAPTURE(i);
        CHECK(std::fabs(fd - g[p][(size_t)i]) <= 2e-3 * std::max(1.0, std::fabs(fd)) + 2e-4);
        checked++;
      }
    }
    CHECK(checked == (int)spec.num_params());
  }
}

TEST_CASE("the logit's gradient with respect to the features equals the float64 chain rule") {
  // d logit / d x = W1 diag(h1 > 0) W2 diag(h2 > 0) W3, written out in float64 from the weights.
  HeadSpec spec;
  spec.feat_h = 2, spec.feat_w = 2, spec.feat_c = 8, spec.hidden1 = 16, spec.hidden2 = 6;
  const int n = 4, d = spec.in_dim(), h1 = spec.hidden1, h2 = spec.hidden2;
  Head h(spec, Device::CPU);
  h.init(5);
  for (Tensor* b : {h.params()[1], h.params()[3], h.params()[5]}) b->from_vector(tlt::random_vec(b->numel(), 8, 0.2f));
  const std::vector<float> xv = tlt::random_vec((size_t)n * d, 9, 2.0f);
  Tensor x = tlt::tensor(xv, {n, d}), dx({n, d});
  h.logit_input_gradient(x, n, dx);
  std::vector<std::vector<float>> P;
  for (Tensor* t : h.params()) P.push_back(t->to_vector());
  const std::vector<float> got = dx.to_vector();
  double worst = 0;
  for (int s = 0; s < n; s++) {
    std::vector<double> a1(h1), a2(h2), g2(h2), g1(h1);
    for (int j = 0; j < h1; j++) {
      a1[j] = P[1][j];
      for (int i = 0; i < d; i++) a1[j] += (double)xv[(size_t)s * d + i] * P[0][(size_t)i * h1 + j];
    }
    for (int k = 0; k < h2; k++) {
      a2[k] = P[3][k];
      for (int j = 0; j < h1; j++) a2[k] += std::max(a1[j], 0.0) * P[2][(size_t)j * h2 + k];
    }
    for (int k = 0; k < h2; k++) g2[k] = a2[k] > 0 ? P[4][k] : 0.0;
    for (int j = 0; j < h1; j++) {
      g1[j] = 0;
      if (a1[j] > 0)
        for (int k = 0; k < h2; k++) g1[j] += P[2][(size_t)j * h2 + k] * g2[k];
    }
    for (int i = 0; i < d; i++) {
      double ref = 0;
      for (int j = 0; j < h1; j++) ref += P[0][(size_t)i * h1 + j] * g1[j];
      worst = std::max(worst, std::fabs(got[(size_t)s * d + i] - ref) / (std::fabs(ref) + 1e-3));
    }
  }
  CHECK(worst < 1e-5);
  // Inference: the weights and the model's logits are unchanged by it.
  std::vector<float> before(n), after(n);
  h.logits(x, n, before.data());
  h.logit_input_gradient(x, n, dx);
  h.logits(x, n, after.data());
  CHECK(before == after);
}

TEST_CASE("six training steps (dropout off) equal PyTorch's RMSprop(alpha=0.9, eps=1e-7)") {
  tlt::Fixture fx("head_steps.npz");
  auto shp = fx.f("shape");
  HeadSpec spec;
  spec.feat_h = (int)shp[0], spec.feat_w = (int)shp[1], spec.feat_c = (int)shp[2];
  spec.hidden1 = (int)shp[3], spec.hidden2 = (int)shp[4];
  spec.dropout = 0.0f;
  Head h(spec, Device::CPU);
  const char* names[6] = {"w1", "b1", "w2", "b2", "w3", "b3"};
  for (int i = 0; i < 6; i++) h.params()[i]->from_vector(fx.f(names[i]));
  auto xs = fx.f("x"), ys = fx.f("y"), losses = fx.f("losses");
  const int steps = (int)losses.size(), batch = (int)(ys.size() / steps), d = spec.in_dim();
  for (int s = 0; s < steps; s++) {
    Tensor x = tlt::tensor(std::vector<float>(xs.begin() + (size_t)s * batch * d, xs.begin() + (size_t)(s + 1) * batch * d),
                           {batch, d});
    Tensor y = tlt::tensor(std::vector<float>(ys.begin() + s * batch, ys.begin() + (s + 1) * batch), {batch});
    int correct;
    const double loss = h.train_step(x, y, batch, 0, (uint64_t)s, RmsProp{}, &correct) / batch;
    CHECK(loss == doctest::Approx(losses[s]).epsilon(1e-5));
  }
  for (int i = 0; i < 6; i++) {
    auto got = h.params()[i]->to_vector(), want = fx.f(std::string("out_") + names[i]);
    double worst = 0;
    for (size_t k = 0; k < got.size(); k++)
      worst = std::max(worst, std::fabs(got[k] - want[k]) / (2e-6 + 1e-4 * std::fabs(want[k])));
    CAPTURE(names[i]);
    CHECK(worst <= 1.0);
  }
}

TEST_CASE("W1's RMSprop update fused into its gradient pass is bit-identical to the separate passes") {
  // Batches of 32 (the tutorial's), 300 (past the GEMM's 256-deep k blocks) and 5 (a last, partial
  // batch); 70 hidden units (not a multiple of the kernel's 32 columns); dropout on.
  HeadSpec spec;
  spec.feat_h = 3, spec.feat_w = 5, spec.feat_c = 29;  // 435 inputs: 31 row tiles of 14, the last partial
  spec.hidden1 = 70, spec.hidden2 = 9;
  Head fused(spec, Device::CPU), plain(spec, Device::CPU);
  fused.init(5);
  plain.init(5);
  plain.set_fused_update(false);
  const int d = spec.in_dim();
  int step = 0;
  for (int batch : {32, 300, 5, 32}) {
    Tensor x = tlt::tensor(tlt::random_vec((size_t)batch * d, 900 + step), {batch, d});
    std::vector<float> yl(batch);
    for (int i = 0; i < batch; i++) yl[i] = (float)((i * 7 + step) % 3 == 0);
    Tensor y = tlt::tensor(yl, {batch});
    int c1, c2;
    const double l1 = fused.train_step(x, y, batch, 3, (uint64_t)step, RmsProp{}, &c1);
    const double l2 = plain.train_step(x, y, batch, 3, (uint64_t)step, RmsProp{}, &c2);
    CHECK(l1 == l2);
    CHECK(c1 == c2);
    step++;
  }
  for (int i = 0; i < 6; i++) {
    CAPTURE(i);
    CHECK(fused.params()[i]->to_vector() == plain.params()[i]->to_vector());
    CHECK(fused.opt_state()[i]->to_vector() == plain.opt_state()[i]->to_vector());
  }
  // And the weights moved (the comparison is not of two untouched heads).
  Head fresh(spec, Device::CPU);
  fresh.init(5);
  CHECK(fresh.params()[0]->to_vector() != fused.params()[0]->to_vector());
}

TEST_CASE("the next batch's first layer done in W1's update pass (look-ahead) changes no bit") {
  // 4x4x77 = 1232 inputs: 3 partial-sum blocks (512, 512, 208), so the look-ahead runs; batches of
  // 32, 300, 5 and 32, each the next one's look-ahead; dropout on.
  HeadSpec spec;
  spec.feat_h = 4, spec.feat_w = 4, spec.feat_c = 77;
  spec.hidden1 = 70, spec.hidden2 = 9;
  const int d = spec.in_dim();
  REQUIRE(ops::dense_partial_blocks(d) == 3);
  Head ahead(spec, Device::CPU), fused(spec, Device::CPU), plain(spec, Device::CPU);
  for (Head* h : {&ahead, &fused, &plain}) h->init(5);
  plain.set_fused_update(false);
  const std::vector<int> batches = {32, 300, 5, 32};
  std::vector<Tensor> xs, ys;
  for (size_t s = 0; s < batches.size(); s++) {
    const int b = batches[s];
    xs.push_back(tlt::tensor(tlt::random_vec((size_t)b * d, 700 + s), {b, d}));
    std::vector<float> yl(b);
    for (int i = 0; i < b; i++) yl[i] = (float)((i * 5 + (int)s) % 3 == 0);
    ys.push_back(tlt::tensor(yl, {b}));
  }
  for (size_t s = 0; s < batches.size(); s++) {
    CAPTURE(s);
    const int b = batches[s];
    const bool last = s + 1 == batches.size();
    int c1, c2, c3;
    const double l1 = ahead.train_step(xs[s], ys[s], b, 3, s, RmsProp{}, &c1, last ? nullptr : &xs[s + 1],
                                       last ? 0 : batches[s + 1]);
    const double l2 = fused.train_step(xs[s], ys[s], b, 3, s, RmsProp{}, &c2);
    const double l3 = plain.train_step(xs[s], ys[s], b, 3, s, RmsProp{}, &c3);
    CHECK(l1 == l2);
    CHECK(l1 == l3);
    CHECK(c1 == c2);
    CHECK(c1 == c3);
  }
  CHECK(ahead.steps_from_partials() == 3);  // the look-ahead was used, not skipped
  CHECK(fused.steps_from_partials() == 0);
  for (int i = 0; i < 6; i++) {
    CAPTURE(i);
    CHECK(ahead.params()[i]->to_vector() == fused.params()[i]->to_vector());
    CHECK(ahead.params()[i]->to_vector() == plain.params()[i]->to_vector());
    CHECK(ahead.opt_state()[i]->to_vector() == plain.opt_state()[i]->to_vector());
  }
  // Partial sums are used only by the step they were made for: another step number, another
  // tensor, or weights handed out in between, and the step reads W1 as usual (same results).
  Tensor copy = tlt::tensor(xs[1].to_vector(), {batches[1], d});
  int c1, c2;
  ahead.train_step(xs[0], ys[0], 32, 3, 10, RmsProp{}, &c1, &xs[1], 300);
  fused.train_step(xs[0], ys[0], 32, 3, 10, RmsProp{}, &c2);
  CHECK(ahead.train_step(copy, ys[1], 300, 3, 11, RmsProp{}, &c1) ==
        fused.train_step(copy, ys[1], 300, 3, 11, RmsProp{}, &c2));
  ahead.train_step(xs[2], ys[2], 5, 3, 12, RmsProp{}, &c1, &xs[3], 32);
  fused.train_step(xs[2], ys[2], 5, 3, 12, RmsProp{}, &c2);
  CHECK(ahead.train_step(xs[3], ys[3], 32, 3, 14, RmsProp{}, &c1) ==
        fused.train_step(xs[3], ys[3], 32, 3, 14, RmsProp{}, &c2));
  ahead.train_step(xs[0], ys[0], 32, 3, 15, RmsProp{}, &c1, &xs[1], 300);
  fused.train_step(xs[0], ys[0], 32, 3, 15, RmsProp{}, &c2);
  ahead.params()[0]->zero();
  fused.params()[0]->zero();
  CHECK(ahead.train_step(xs[1], ys[1], 300, 3, 16, RmsProp{}, &c1) ==
        fused.train_step(xs[1], ys[1], 300, 3, 16, RmsProp{}, &c2));
  CHECK(ahead.steps_from_partials() == 3);
  CHECK(ahead.params()[0]->to_vector() == fused.params()[0]->to_vector());

  // Through tl_train's loop: a cache of 4x4x77 features, look-ahead on and off, the same model file.
  FakeSplit sp[2];
  learnable(sp, d, 100, 30, 4);
  const std::string cache = fresh("lacache");
  write_fake_cache(cache, sp, 4, 4, 77);
  auto src = open_cached_source(cache, Device::CPU);
  const std::string a = fresh("laA"), b = fresh("laB");
  TrainOptions oa = quick(a, 2), ob = quick(b, 2);
  ob.look_ahead = false;
  const TrainResult ra = train_head(*src, oa), rb = train_head(*src, ob);
  CHECK(read_file(path_join(a, "model.bin")) == read_file(path_join(b, "model.bin")));
  REQUIRE(ra.history.size() == 2);
  REQUIRE(rb.history.size() == 2);
  for (int e = 0; e < 2; e++) {
    CHECK(ra.history[e].loss == rb.history[e].loss);
    CHECK(ra.history[e].val_loss == rb.history[e].val_loss);
  }
}

TEST_CASE("the summary counts Keras' 10,043,641 parameters for 7x7x512 features") {
  HeadSpec spec;
  CHECK(spec.num_params() == 10043641);
  Head h(spec, Device::CPU);
  h.init(0);
  // glorot_uniform: every kernel value within sqrt(6 / (fan_in + fan_out)), biases zero
  auto w1 = h.params()[0]->to_vector();
  const float lim = std::sqrt(6.0f / (25088 + 400));
  float mx = 0;
  for (float v : w1) mx = std::max(mx, std::fabs(v));
  CHECK(mx <= lim);
  CHECK(mx > 0.99f * lim);
  for (float v : h.params()[1]->to_vector()) CHECK(v == 0.0f);
  const std::string p = path_join(tlt::temp_dir(), "summary.txt");
  FILE* f = fopen(p.c_str(), "w");
  h.summary(f);
  fclose(f);
  std::vector<uint8_t> b = read_file(p);
  std::string s(b.begin(), b.end());
  CHECK(s.find("Total params: 10,043,641") != std::string::npos);
  CHECK(s.find("(None, 25088)") != std::string::npos);
}

TEST_CASE("a learnable synthetic cache is learnt to 100% accuracy; outputs are written and readable") {
  FakeSplit sp[2];
  learnable(sp, 2 * 2 * 8, 240, 80, 1);
  const std::string cache = fresh("lcache"), out = fresh("lmodel");
  write_fake_cache(cache, sp, 2, 2, 8);
  auto src = open_cached_source(cache, Device::CPU);
  CHECK(src->size(Split::Train) == 240);
  TrainOptions o = quick(out, 12);
  o.plots = true;
  TrainResult r = train_head(*src, o);
  REQUIRE(r.history.size() == 12);
  CHECK(r.history.back().acc == 1.0);
  CHECK(r.history.back().val_acc == 1.0);
  CHECK(r.history.back().val_loss < r.history.front().val_loss);
  for (const char* f : {"model.bin", "best.bin", "history.csv", "curves.png", "report.txt"})
    CHECK(file_exists(path_join(out, f)));
  ModelFile best = load_model(path_join(out, "best.bin"));
  CHECK(best.meta["epoch"] == std::to_string(r.best_epoch));
  CHECK(best.opt_state.empty());
  CHECK(best.meta["preprocess"] == "caffe");
  std::vector<uint8_t> rep = read_file(path_join(out, "report.txt"));
  std::string rs(rep.begin(), rep.end());
  CHECK(rs.find("cat         40          0") != std::string::npos);
  CHECK(rs.find("dog          0         40") != std::string::npos);
  // A damaged model file is refused.
  std::vector<uint8_t> mb = read_file(path_join(out, "model.bin"));
  mb[mb.size() / 2] ^= 1;
  const std::string bad = path_join(out, "bad.bin");
  FILE* f = fopen(bad.c_str(), "wb");
  fwrite(mb.data(), 1, mb.size(), f);
  fclose(f);
  CHECK(tlt::error_of([&] { load_model(bad); }).find("checksum mismatch") != std::string::npos);
}

// The small learnable cache of the resume tests (2x2x8 features, 100 train and 30 valid samples).
std::unique_ptr<FeatureSource> resume_source(const std::string& name) {
  FakeSplit sp[2];
  learnable(sp, 32, 100, 30, 2);
  const std::string cache = fresh(name);
  write_fake_cache(cache, sp, 2, 2, 8);
  return open_cached_source(cache, Device::CPU);
}

TEST_CASE("resume equals an uninterrupted run, bit for bit, and thread count does not matter") {
  auto src = resume_source("rcache");
  const std::string a = fresh("rA"), b = fresh("rB"), c = fresh("rC");
  TrainResult ra = train_head(*src, quick(a, 4));
  TrainOptions ob = quick(b, 4);
  ob.stop_after_epochs = 2;
  TrainResult rb1 = train_head(*src, ob);
  CHECK(rb1.interrupted);
  CHECK(rb1.history.size() == 2);
  ob.stop_after_epochs = 0;
  ob.resume = true;
  TrainResult rb2 = train_head(*src, ob);
  REQUIRE(rb2.history.size() == 4);
  CHECK(read_file(path_join(a, "model.bin")) == read_file(path_join(b, "model.bin")));
  CHECK(read_file(path_join(a, "best.bin")) == read_file(path_join(b, "best.bin")));
  for (int e = 0; e < 4; e++) {
    CHECK(rb2.history[e].loss == ra.history[e].loss);
    CHECK(rb2.history[e].val_loss == ra.history[e].val_loss);
  }
  const int saved = num_threads();
  set_num_threads(saved == 1 ? 2 : 1);
  train_head(*src, quick(c, 4));
  set_num_threads(saved);
  CHECK(read_file(path_join(a, "model.bin")) == read_file(path_join(c, "model.bin")));
  // Nothing left to do.
  ob.epochs = 4;
  CHECK(tlt::error_of([&] { train_head(*src, ob); }).find("already holds 4 epochs") != std::string::npos);
}

TEST_CASE("resume after kill -9 between the epoch's writes: history, model.bin and best.bin end consistent") {
  auto src = resume_source("kcache");
  const std::string a = fresh("kA"), b = fresh("kB");
  TrainResult ra = train_head(*src, quick(a, 3));
  REQUIRE(ra.history.size() == 3);
  REQUIRE(ra.history[1].val_loss < ra.history[0].val_loss);  // epoch 2 is a new best: best.bin is rewritten
  // Run B: epoch 1, then epoch 2 killed right after model.bin was written (its best.bin and
  // history.csv still those of epoch 1), as kill -9 between the writes leaves them.
  TrainOptions ob = quick(b, 1);
  train_head(*src, ob);
  const std::vector<uint8_t> best1 = read_file(path_join(b, "best.bin")), hist1 = read_file(path_join(b, "history.csv"));
  ob.epochs = 2;
  ob.resume = true;
  train_head(*src, ob);
  write_file_atomic(path_join(b, "best.bin"), best1.data(), best1.size());
  write_file_atomic(path_join(b, "history.csv"), hist1.data(), hist1.size());
  // Resumed to 3 epochs: the same files as the uninterrupted run (history without the timings).
  ob.epochs = 3;
  TrainResult rb = train_head(*src, ob);
  REQUIRE(rb.history.size() == 3);
  CHECK(rb.best_epoch == ra.best_epoch);
  CHECK(read_file(path_join(a, "model.bin")) == read_file(path_join(b, "model.bin")));
  CHECK(read_file(path_join(a, "best.bin")) == read_file(path_join(b, "best.bin")));
  auto no_seconds = [](const std::string& dir) {
    std::vector<uint8_t> h = read_file(path_join(dir, "history.csv"));
    std::string out;
    for (const std::string& line : split(std::string(h.begin(), h.end()), '\n'))
      out += line.substr(0, line.rfind(',')) + "\n";
    return out;
  };
  CHECK(no_seconds(a) == no_seconds(b));
  // Killed after epoch 2's best.bin but before history.csv: the line comes back from model.bin.
  const std::string c = fresh("kC");
  TrainOptions oc = quick(c, 2);
  train_head(*src, oc);
  write_file_atomic(path_join(c, "history.csv"), hist1.data(), hist1.size());
  oc.epochs = 3;
  oc.resume = true;
  train_head(*src, oc);
  CHECK(no_seconds(a) == no_seconds(c));
  CHECK(read_file(path_join(a, "best.bin")) == read_file(path_join(c, "best.bin")));
}

TEST_CASE("--force leaves nothing of the earlier run; a damaged best.bin is refused before --resume trains a step") {
  // Issue 26, findings 3 and 4. Before: a forced run that stopped in its first epoch left the old
  // report.txt, history and best.bin; a flipped byte in best.bin was found only after the last epoch.
  auto src = resume_source("fcache");
  const std::string a = fresh("fA");
  TrainResult r0 = train_head(*src, quick(a, 4));
  REQUIRE(file_exists(path_join(a, "report.txt")));
  TrainOptions of = quick(a, 4);
  of.force = true;
  of.seed = 11;
  of.stop_after_epochs = 1;  // the new run stops after its first epoch
  train_head(*src, of);
  CHECK(!file_exists(path_join(a, "report.txt")));  // the old run's report is gone, not taken for the new one's
  const std::vector<uint8_t> h = read_file(path_join(a, "history.csv"));
  CHECK(std::count(h.begin(), h.end(), '\n') == 2);  // the header and epoch 1
  CHECK(load_model(path_join(a, "best.bin")).meta.at("seed") == "11");
  // A damaged best.bin whose epoch is not model.bin's: refused at once, naming the file and the ways on.
  const std::string b = fresh("fB");
  TrainOptions o4 = quick(b, 4);
  o4.monitor = "val_accuracy";  // 100% early: the best epoch is not the last
  TrainResult rb = train_head(*src, o4);
  REQUIRE(rb.best_epoch < 4);
  std::vector<uint8_t> best = read_file(path_join(b, "best.bin"));
  best[best.size() / 2] ^= 0x40;
  write_file_atomic(path_join(b, "best.bin"), best.data(), best.size());
  const std::vector<uint8_t> model_before = read_file(path_join(b, "model.bin"));
  TrainOptions ob = o4;
  ob.epochs = 6;
  ob.resume = true;
  const std::string err = tlt::error_of([&] { train_head(*src, ob); });
  CHECK(err.find("--resume: " + path_join(b, "best.bin") + " (epoch " + std::to_string(rb.best_epoch) +
                 ", the best so far) is damaged: ") == 0);
  CHECK(err.find("delete it to continue without it") != std::string::npos);
  CHECK(read_file(path_join(b, "model.bin")) == model_before);  // no step was taken
  (void)r0;
}

TEST_CASE("non-finite numbers: cached samples skipped loudly, weights and models refused naming the position") {
  // Issue 26, finding 1. Before: a NaN in cached training features trained the head to NaN weights with
  // a finite loss (ReLU hid it) and exit 0; a NaN in validation features was absorbed into the accuracy;
  // tl_convert and tl_train took NaN/Inf weights.
  FakeSplit sp[2];
  learnable(sp, 32, 64, 16, 9);
  sp[0].feats[5 * 32 + 3] = std::nanf("");
  sp[0].feats[9 * 32] = INFINITY;
  sp[1].feats[2 * 32 + 31] = -INFINITY;
  const std::string cache = fresh("nfcache");
  write_fake_cache(cache, sp, 2, 2, 8);
  auto src = open_cached_source(cache, Device::CPU);
  CHECK(src->size(Split::Train) == 62);
  CHECK(src->size(Split::Valid) == 15);
  const std::string out = fresh("nfA");
  TrainResult r = train_head(*src, quick(out, 2));
  CHECK(!r.nan_stop);
  for (const EpochStats& e : r.history) CHECK((std::isfinite(e.loss) && std::isfinite(e.val_loss)));
  ModelFile m = load_model(path_join(out, "model.bin"));
  for (const auto& p : m.params) CHECK(first_non_finite(p.data(), (int64_t)p.size()) < 0);
  // A model holding a NaN (written by something else) is refused, naming the tensor and the index.
  m.params[2][7] = std::nanf("");
  const std::string mp = path_join(tlt::temp_dir(), "nan_model.bin");
  save_model(mp, m);
  CHECK(tlt::error_of([&] { load_model(mp); }).find(mp + ": tensor 3 holds nan at index 7") == 0);
  // Weights with an infinity: refused when read, naming the layer.
  VggWeights w = synthetic_weights("vgg16", 3);
  w.layers[4].b[2] = INFINITY;
  const std::string wp = path_join(tlt::temp_dir(), "inf_weights.bin");
  save_weights(w, wp);
  CHECK(tlt::error_of([&] { load_weights(wp); }).find(wp + ": block3_conv1's bias holds inf at index 2") == 0);
}

TEST_CASE("non-finite numbers: an infinite optimiser state behind a finite loss stops training, keeping the last good epoch") {
  // Issue 26, finding 1 (its last part). One training sample has two features that are finite but
  // huge (1e30): the first layer's bias gradient squared overflows, so its RMSprop mean square becomes
  // infinite while the loss stays finite. Before, training ran on to exit 0 and left a model.bin that
  // every later load refuses ("the run diverged"); the same path can leave NaN weights (ReLU turns
  // NaN into 0, so the loss need not show it).
  FakeSplit sp[2];
  learnable(sp, 32, 64, 16, 9);
  for (int k = 0; k < 2; k++) sp[0].feats[(size_t)(40 * 32 + k)] = 1e30f;
  const std::string cache = fresh("nfhuge"), out = fresh("nfB");
  write_fake_cache(cache, sp, 2, 2, 8);
  auto src = open_cached_source(cache, Device::CPU);
  CHECK(src->size(Split::Train) == 64);  // finite: not skipped
  TrainOptions o = quick(out, 3);
  // What the run says on stderr (alerts), captured through a file.
  const std::string errf = path_join(tlt::temp_dir(), "nf_stderr.txt");
  fflush(stderr);
  const int saved = dup(2), fd = open(errf.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  REQUIRE((saved >= 0 && fd >= 0));
  dup2(fd, 2);
  close(fd);
  set_silent(false);
  TrainResult r = train_head(*src, o);
  set_silent(true);
  fflush(stderr);
  dup2(saved, 2);
  close(saved);
  const std::vector<uint8_t> raw = read_file(errf);
  const std::string said(raw.begin(), raw.end());
  REQUIRE(r.nan_stop);
  for (const EpochStats& e : r.history) CHECK(std::isfinite(e.loss));
  const int stopped = (int)r.history.size() + 1;  // the epoch it stopped in
  CHECK(said.find(strfmt("a weight or its RMSprop state became non-finite at epoch %d, ", stopped)) != std::string::npos);
  CHECK(said.find("(its RMSprop mean square) holds inf at index ") != std::string::npos);
  CHECK(said.find(", though the loss was finite: stopping. ") != std::string::npos);
  CHECK(said.find(strfmt("keeps the weights of epoch %d (the last good ones)", stopped - 1)) != std::string::npos);
  if (stopped > 1) {  // what was saved loads: nothing non-finite in it
    ModelFile m = load_model(path_join(out, "model.bin"));
    CHECK(m.meta.at("epoch") == std::to_string(stopped - 1));
  }
}

TEST_CASE("two tl_train runs into one --out: the second refuses, naming the first's pid") {
  // Issue 26, finding 2: without a lock the two left a model.bin of one and a best.bin of the other.
  auto src = resume_source("lcache");
  const std::string a = fresh("lA");
  {
    DirLock first(a, "tl_train");  // a run in progress (the lock is per open file: this process counts)
    CHECK(tlt::error_of([&] { train_head(*src, quick(a, 1)); }) ==
          strfmt("another tl_train is writing %s (pid %ld); wait for it to finish, stop it, or choose another --out",
                 a.c_str(), (long)getpid()));
    CHECK(!file_exists(path_join(a, "model.bin")));
  }
  train_head(*src, quick(a, 1));  // once it has ended, the folder is free
  CHECK(file_exists(path_join(a, "model.bin")));
}

TEST_CASE("the tutorial's .npy files train exactly like the same features in a cache") {
  FakeSplit sp[2];
  learnable(sp, 32, 64, 20, 4);
  const std::string cache = fresh("ncache"), npy = fresh("npy"), a = fresh("nA"), b = fresh("nB");
  write_fake_cache(cache, sp, 2, 2, 8);
  const char* names[2][2] = {{"train_activations.npy", "train_labels.npy"},
                             {"validation_activations.npy", "validation_labels.npy"}};
  for (int s = 0; s < 2; s++) {
    const int64_t n = (int64_t)sp[s].labels.size();
    write_npy_f32(path_join(npy, names[s][0]), sp[s].feats.data(), {n, 2, 2, 8});
    std::vector<float> lab(sp[s].labels.begin(), sp[s].labels.end());
    write_npy_f32(path_join(npy, names[s][1]), lab.data(), {n});
  }
  auto cs = open_cached_source(cache, Device::CPU);
  auto ns = open_npy_source(npy, Device::CPU);
  TrainResult ra = train_head(*cs, quick(a, 3)), rb = train_head(*ns, quick(b, 3));
  for (int e = 0; e < 3; e++) CHECK(ra.history[e].loss == rb.history[e].loss);
  CHECK(load_model(path_join(a, "model.bin")).params == load_model(path_join(b, "model.bin")).params);
  // Mismatched shapes are refused with the reason.
  std::vector<float> odd(20 * 16, 0.5f);
  write_npy_f32(path_join(npy, names[1][0]), odd.data(), {20, 2, 2, 4});
  CHECK(tlt::error_of([&] { open_npy_source(npy, Device::CPU); }).find("differs from the training features' 2x2x8") !=
        std::string::npos);
  unlink(path_join(npy, names[0][1]).c_str());
  CHECK(tlt::error_of([&] { open_npy_source(npy, Device::CPU); }).find("train_labels.npy: missing") != std::string::npos);
}

TEST_CASE("guards: NaN loss keeps the last good weights; empty, single-class and mismatched caches are refused") {
  FakeSplit sp[2];
  learnable(sp, 32, 64, 16, 5);
  const std::string cache = fresh("gcache"), out = fresh("gout");
  write_fake_cache(cache, sp, 2, 2, 8);
  auto src = open_cached_source(cache, Device::CPU);
  TrainOptions o = quick(out, 3);
  o.lr = 1e30;  // diverges at once
  TrainResult r = train_head(*src, o);
  CHECK(r.nan_stop);
  ModelFile m = load_model(path_join(out, "model.bin"));
  bool finite = true;
  for (auto& p : m.params)
    for (float v : p) finite &= std::isfinite(v);
  CHECK(finite);
  CHECK(m.meta["epoch"] == "0");

  FakeSplit one[2];
  for (int i = 0; i < 10; i++) {
    one[0].labels.push_back(0);
    for (int k = 0; k < 32; k++) one[0].feats.push_back(0.1f * k);
  }
  const std::string c1 = fresh("gcache1");
  write_fake_cache(c1, one, 2, 2, 8);
  auto s1 = open_cached_source(c1, Device::CPU);
  CHECK(tlt::error_of([&] { train_head(*s1, quick(fresh("g1"), 1)); }).find("all of one class (10 cat, 0 dog)") !=
        std::string::npos);
  FakeSplit none[2];
  const std::string c0 = fresh("gcache0");
  write_fake_cache(c0, none, 2, 2, 8);
  auto s0 = open_cached_source(c0, Device::CPU);
  CHECK(tlt::error_of([&] { train_head(*s0, quick(fresh("g0"), 1)); }).find("no training samples") != std::string::npos);
  // Resuming a model of another feature shape.
  FakeSplit other[2];
  learnable(other, 2 * 2 * 4, 32, 8, 6);
  const std::string c2 = fresh("gcache2");
  write_fake_cache(c2, other, 2, 2, 4);
  auto s2 = open_cached_source(c2, Device::CPU);
  const std::string o2 = fresh("g2");
  train_head(*src, quick(o2, 1));
  TrainOptions ro = quick(o2, 2);
  ro.resume = true;
  CHECK(tlt::error_of([&] { train_head(*s2, ro); }).find("was trained on other features") != std::string::npos);
  // An incomplete cache (a shard missing) is refused with what to run.
  unlink(path_join(cache, "train-00001.bin").c_str());
  CHECK(tlt::error_of([&] { open_cached_source(cache, Device::CPU); }).find("rerun the same tl_cache command") !=
        std::string::npos);
}

CUDA_CASE("training on the GPU follows the CPU (same data, same seed)") {
  FakeSplit sp[2];
  learnable(sp, 32, 96, 32, 7);
  const std::string cache = fresh("cucache");
  write_fake_cache(cache, sp, 2, 2, 8);
  auto cs = open_cached_source(cache, Device::CPU);
  auto gs = open_cached_source(cache, Device::CUDA);
  TrainOptions oc = quick(fresh("cuA"), 5), og = quick(fresh("cuB"), 5);
  og.device = Device::CUDA;
  TrainResult rc = train_head(*cs, oc), rg = train_head(*gs, og);
  for (int e = 0; e < 5; e++) CHECK(rg.history[e].loss == doctest::Approx(rc.history[e].loss).epsilon(1e-3));
  CHECK(rg.history.back().val_acc == rc.history.back().val_acc);
}

TEST_CASE("curves: accuracy axes stay within [0, 1], loss axes at or above 0, a large first loss goes off the scale") {
  Panel acc{"a", "accuracy", {}, 0};
  acc.floor = 0, acc.ceiling = 1;
  acc.series.push_back(Series{"training", {0.88, 0.95, 0.99, 1.0, 1.0}, {0, 0, 0}});
  double lo, hi, step;
  panel_range(acc, &lo, &hi, &step);
  CHECK(hi == 1.0);  // padding would have taken it to 1.025
  CHECK(lo >= 0.0);
  CHECK(lo <= 0.88);
  Panel loss{"l", "loss", {}, 0};
  loss.floor = 0;
  loss.series.push_back(Series{"training", {0.02, 0.01, 0.005}, {0, 0, 0}});
  panel_range(loss, &lo, &hi, &step);
  CHECK(lo == 0.0);  // never below zero
  loss.clip_outlier = true;
  loss.series[0].y = {2.19, 0.28, 0.15, 0.08};
  loss.series.push_back(Series{"validation", {0.17, 0.11, 0.13, 0.29}, {0, 0, 0}});
  panel_range(loss, &lo, &hi, &step);
  CHECK(hi < 0.5);   // the 2.19 is drawn at the top edge, labelled, instead of squashing the rest
  CHECK(hi >= 0.29);
  loss.clip_outlier = false;
  panel_range(loss, &lo, &hi, &step);
  CHECK(hi >= 2.19);
}
