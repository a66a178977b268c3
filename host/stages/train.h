// train.h: the training loop shared by every way of getting features (tl_train).
//
// A FeatureSource hands out batches of features and labels: from the cache's shards, from the
// tutorial's .npy files, or (uncached) by running images through the frozen base per batch. The
// loop, the outputs and the guards are the same whatever the source.
#pragma once
#include "host/core/defaults.h"
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "host/stages/cache.h"
#include "host/model/head.h"

namespace tl {

class FeatureSource {
 public:
  virtual ~FeatureSource() = default;
  virtual int64_t size(Split s) const = 0;
  virtual const std::vector<float>& labels(Split s) const = 0;  // 0 or 1 per sample
  // x [>= idx.size(), dim] on the training device <- the features of samples idx of split s.
  // train: this is a training batch (the uncached source augments it when asked); epoch and
  // step let it draw its random numbers reproducibly.
  virtual void fetch(Split s, const std::vector<int64_t>& idx, Tensor& x, bool train, uint64_t epoch) = 0;
  virtual int feat_h() const = 0;
  virtual int feat_w() const = 0;
  virtual int feat_c() const = 0;
  // How the features were made (recorded in the model file for tl_predict).
  virtual std::map<std::string, std::string> provenance() const = 0;
  virtual std::vector<std::string> classes() const { return {"cat", "dog"}; }
  virtual std::string describe() const = 0;
  // The photo behind sample i of a split, for pictures of the mistakes ("" / empty when unknown,
  // as for imported .npy features).
  virtual std::string sample_name(Split, int64_t) const { return ""; }
  virtual std::vector<uint8_t> sample_bytes(Split, int64_t) const { return {}; }
  // Fine-tuning (tl_train --fine-tune): the source runs trainable conv layers on what it reads.
  // trainable(epoch): whether they train in that epoch (after the warm-up). block_step: after the
  // head's step on the batch fetched last, the loss's gradient at the features [n, dim] -> the
  // layers' RMSprop step. to_model / from_model: the layers (and their optimiser state) in a model.
  virtual bool trainable(int epoch) const { return false; }
  virtual void block_step(const Tensor& dfeat, int n) {}
  virtual void to_model(ModelFile& m, bool with_optimizer) {}
  virtual void from_model(const ModelFile& m, bool with_optimizer) {}
  virtual std::string tuning() const { return ""; }  // a line for the announcement ("" when none)
};

// Features from a cache directory (shards, mapped) or the tutorial's .npy files. On the GPU the
// whole feature set is uploaded once and batches are gathered on the device.
// cut: the cut the cache must have ("" = the whole base); anything else is refused, naming both.
std::unique_ptr<FeatureSource> open_cached_source(const std::string& cache_dir, Device d, const std::string& cut = "");
std::unique_ptr<FeatureSource> open_npy_source(const std::string& npy_dir, Device d);

struct TrainOptions {
  std::string out = "model";
  int epochs = 10, batch = kTutorialBatch, patience = 0;
  double lr = 1e-3, rho = 0.9, eps = 1e-7, clip = 0.005, dropout = 0.2;
  uint64_t seed = 0;
  bool resume = false, plots = true;
  bool force = false;  // replace an earlier run in out (otherwise refused, unless resume)
  std::string monitor = "val_loss";  // which epoch best.bin keeps: val_loss (lowest) or val_accuracy (highest)
  Device device = Device::CPU;
  int stop_after_epochs = 0;  // tests: behave as if interrupted after this many epochs
  bool fused_update = true;   // Head::set_fused_update (benchmarks compare both; results are identical)
  // With fused_update on the CPU: batch b+1 fetched before step b, whose pass over W1 also computes
  // b+1's first-layer partial sums (Head::train_step's x_next). Identical results either way.
  bool look_ahead = true;
  // Fine-tuning: the rate of the source's trainable layers and of the head while they train
  // (RMSprop, as the book recompiles the whole model at 1e-5), and --from: a trained head to start from.
  double fine_tune_lr = 3e-5;  // chosen on the 4k validation set over 3 seeds (README, RESULTS section 13)
  std::string from;
};

struct EpochStats {
  int epoch = 0;
  double loss = 0, acc = 0, val_loss = 0, val_acc = 0, seconds = 0;
};

// Probability of class 1 for every sample of a split (no dropout).
std::vector<double> predict_split(Head& head, FeatureSource& src, Split s, int batch);

struct TrainResult {
  std::vector<EpochStats> history;
  int best_epoch = 0;
  double best_val_loss = 0;
  bool nan_stop = false, interrupted = false, early_stop = false;
};

TrainResult train_head(FeatureSource& src, const TrainOptions& o);

// Validation metrics of a model on a source's validation split: confusion matrix [truth][pred],
// accuracy, log loss unclipped and with probabilities clipped to [clip, 1 - clip].
struct EvalReport {
  int64_t confusion[2][2] = {{0, 0}, {0, 0}};
  double loss = 0, acc = 0, logloss = 0, logloss_clipped = 0;
  int64_t n = 0;
};
EvalReport evaluate(Head& head, FeatureSource& src, Split s, int batch, double clip);

// A deterministic permutation of [0, n) for an epoch.
std::vector<int64_t> epoch_order(int64_t n, uint64_t seed, int epoch);

}  // namespace tl
