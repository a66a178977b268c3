// bench_train: one training epoch of the tutorial's head over N cached samples (random features,
// as the issue allows), at the given batch sizes, through the same train_head loop tl_train runs
// (gather from memory, forward, backward, RMSprop), without validation. Prints seconds per epoch.
//   build/bench_train [--samples 23076] [--batch 32,128] [--device cpu|cuda] [--threads N]
#include <cstdio>

#include "host/core/cli.h"
#include "host/core/log.h"
#include "host/ops/cpu_ops.h"
#include "host/ops/ops.h"
#include "host/core/threads.h"
#include "host/stages/train.h"

using namespace tl;

namespace {
class RandomSource : public FeatureSource {
 public:
  RandomSource(int64_t n, Device d) : n_(n), d_(d) {
    const int64_t dim = 7 * 7 * 512;
    feats_ = Tensor({n, dim});
    parallel_for(n, [&](int64_t i) {
      Rng r((uint64_t)i * 7919 + 1);
      float* f = feats_.f32() + i * dim;
      for (int64_t k = 0; k < dim; k++) {
        float v = r.uniform();
        f[k] = v < 0.6f ? 0.0f : (v - 0.6f) * 2.0f;  // sparse, non-negative, like pooled ReLU features
      }
    });
    for (int64_t i = 0; i < n; i++) labels_.push_back((float)(i % 2));
    if (d == Device::CUDA) dev_ = feats_.to(Device::CUDA);
  }
  int64_t size(Split s) const override { return s == Split::Train ? n_ : 0; }
  const std::vector<float>& labels(Split s) const override { return s == Split::Train ? labels_ : none_; }
  void fetch(Split, const std::vector<int64_t>& idx, Tensor& x, bool, uint64_t) override {
    ops::gather_rows(d_ == Device::CUDA ? dev_ : feats_, idx, x);
  }
  int feat_h() const override { return 7; }
  int feat_w() const override { return 7; }
  int feat_c() const override { return 512; }
  std::map<std::string, std::string> provenance() const override {
    return {{"source", "random"}, {"image_size", "224"}, {"feature_shape", "7x7x512"}};
  }
  std::string describe() const override { return "random features"; }

 private:
  int64_t n_;
  Device d_;
  Tensor feats_, dev_;
  std::vector<float> labels_, none_;
};
}  // namespace

int main(int argc, char** argv) {
  return guarded_main("bench_train", [&] {
    int64_t samples = 23076;
    std::string batches = "32,128", device = "cpu";
    int threads = 0;
    Cli cli("bench_train", "bench_train [options]", "Times one epoch of head training on random cached features.");
    cli.opt("--samples", &samples, "N", "training samples (the tutorial's 23,076)");
    cli.opt("--batch", &batches, "LIST", "batch sizes");
    cli.opt("--device", &device, "D", "cpu or cuda");
    cli.opt("--threads", &threads, "N", "CPU threads");
    std::string updates = "ahead";
    cli.opt("--update", &updates, "LIST",
            "separate (W1's gradient stored, then RMSprop), fused (RMSprop in W1's gradient pass), ahead (fused, and the "
            "next batch's first layer in that pass too: the default), or all");
    if (!cli.parse(argc, argv)) return 0;
    if (threads > 0) set_num_threads(threads);
    set_quiet(true);
    const Device d = resolve_device(device);
    RandomSource src(samples, d);
    for (const std::string& b : split(batches, ','))
    for (const std::string& u : split(updates == "all" ? std::string("separate,fused,ahead") : updates, ',')) {
      if (u != "fused" && u != "separate" && u != "ahead")
        fail("--update: expected separate, fused, ahead or all, got '%s'", u.c_str());
      TrainOptions o;
      o.fused_update = u != "separate";
      o.look_ahead = u == "ahead";
      o.out = "/tmp/tl_bench_train";
      o.epochs = 1;
      o.batch = atoi(b.c_str());
      o.plots = false;
      o.force = true;
      o.device = d;
      TrainResult r = train_head(src, o);
      printf("ours  %-4s batch %4d: %.2f s per epoch of %lld samples (%.0f samples/s, %d threads, %s update)\n",
             device_name(d), o.batch, r.history[0].seconds, (long long)samples, samples / r.history[0].seconds,
             num_threads(), u.c_str());
      fflush(stdout);
    }
    return 0;
  });
}
