#include "host/stages/train.h"

#include <tuple>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <unistd.h>
#include <cerrno>

#include "host/core/cli.h"
#include "host/core/common.h"
#include "host/ops/cpu_ops.h"
#include "host/core/device.h"
#include "host/core/log.h"
#include "host/io/image.h"
#include "host/io/dataset.h"
#include "host/model/recipe.h"
#include "host/io/npy.h"
#include "host/ops/ops.h"
#include "host/io/plot.h"
#include "host/core/progress.h"
#include "host/core/threads.h"

namespace tl {

std::vector<int64_t> epoch_order(int64_t n, uint64_t seed, int epoch) {
  std::vector<int64_t> p((size_t)n);
  for (int64_t i = 0; i < n; i++) p[(size_t)i] = i;
  Rng r(seed * 0x9E3779B97F4A7C15ull + (uint64_t)epoch * 0xD1B54A32D192ED03ull + 0x5851F42D4C957F2Dull);
  for (int64_t i = n - 1; i > 0; i--) std::swap(p[(size_t)i], p[(size_t)r.below((uint64_t)i + 1)]);
  return p;
}

namespace {

// ------------------------------------------------------------------------------------------------
// Cached features: rows of mapped shards or of a mapped .npy, gathered per batch (CPU) or
// uploaded once and gathered on the device (GPU).

class RowSource : public FeatureSource {
 public:
  int64_t size(Split s) const override { return (int64_t)rows_[(int)s].size(); }
  const std::vector<float>& labels(Split s) const override { return labels_[(int)s]; }
  int feat_h() const override { return fh_; }
  int feat_w() const override { return fw_; }
  int feat_c() const override { return fc_; }
  std::map<std::string, std::string> provenance() const override { return prov_; }
  std::vector<std::string> classes() const override { return classes_; }
  std::string describe() const override { return desc_; }

  void fetch(Split s, const std::vector<int64_t>& idx, Tensor& x, bool, uint64_t) override {
    const int64_t d = (int64_t)fh_ * fw_ * fc_;
    if (device_ == Device::CUDA) {
      ops::gather_rows(dev_[(int)s], idx, x);
      return;
    }
    float* out = x.f32();
    const auto& rows = rows_[(int)s];
    parallel_for((int64_t)idx.size(), [&](int64_t i) {
      const uint8_t* r = rows[(size_t)idx[(size_t)i]];
      if (f16_)
        cpu::f16_to_f32((const uint16_t*)r, out + i * d, d);
      else
        memcpy(out + i * d, r, (size_t)d * sizeof(float));
    });
  }

 protected:
  // Samples whose features hold a NaN or an infinity are skipped, loudly (ReLU would hide them and
  // train the weights to NaN with a finite loss): the positions kept in split s, and the count
  // skipped is said once per split, naming the first (name_of(i)).
  std::vector<size_t> finite_rows(int s, const std::string& what, const std::function<std::string(size_t)>& name_of) {
    const int64_t d = (int64_t)fh_ * fw_ * fc_;
    std::vector<char> ok(rows_[s].size(), 1);
    parallel_for((int64_t)rows_[s].size(), [&](int64_t i) {
      const uint8_t* r = rows_[s][(size_t)i];
      for (int64_t k = 0; k < d; k++) {
        const bool bad = f16_ ? (((const uint16_t*)r)[k] & 0x7c00) == 0x7c00 : !std::isfinite(((const float*)r)[k]);
        if (bad) {
          ok[(size_t)i] = 0;
          break;
        }
      }
    });
    std::vector<size_t> keep;
    int64_t skipped = 0, first = -1;
    for (size_t i = 0; i < ok.size(); i++) {
      if (ok[i])
        keep.push_back(i);
      else if (skipped++ == 0)
        first = (int64_t)i;
    }
    if (skipped)
      alert("%s: %lld %s sample%s with non-finite features (NaN or infinity) skipped, the first %s", what.c_str(),
            (long long)skipped, s ? "validation" : "training", skipped == 1 ? "" : "s", name_of((size_t)first).c_str());
    return keep;
  }
  template <class T>
  static void keep_only(std::vector<T>& v, const std::vector<size_t>& keep) {
    std::vector<T> out;
    out.reserve(keep.size());
    for (size_t i : keep) out.push_back(v[i]);
    v.swap(out);
  }

  Device device_ = Device::CPU;
  int fh_ = 0, fw_ = 0, fc_ = 0;
  bool f16_ = false;
  std::vector<const uint8_t*> rows_[2];
  std::vector<float> labels_[2];
  Tensor dev_[2];
  std::map<std::string, std::string> prov_;
  std::vector<std::string> classes_ = {"cat", "dog"};
  std::string desc_;

  void upload() {
    if (device_ != Device::CUDA) return;
    const int64_t d = (int64_t)fh_ * fw_ * fc_;
    const size_t row_bytes = (size_t)d * (f16_ ? 2 : 4);
    for (int s = 0; s < 2; s++) {
      const int64_t n = (int64_t)rows_[s].size();
      dev_[s] = Tensor({std::max<int64_t>(n, 1), d}, Device::CUDA, f16_ ? DType::F16 : DType::F32);
      // Consecutive rows are usually contiguous (one shard): copy runs of them at once.
      int64_t i = 0;
      while (i < n) {
        int64_t j = i + 1;
        while (j < n && rows_[s][(size_t)j] == rows_[s][(size_t)j - 1] + row_bytes) j++;
        cuda::memcpy_h2d((uint8_t*)dev_[s].ptr + (size_t)i * row_bytes, rows_[s][(size_t)i], (size_t)(j - i) * row_bytes);
        i = j;
      }
    }
  }
};

class CachedSource : public RowSource {
 public:
  CachedSource(const std::string& dir, Device d, const std::string& cut) : cache_(open_cache(dir, true)) {
    if (cache_.cut != cut && cut.empty())
      fail("%s holds activations cut at %s (%dx%dx%d), but the head trains on the whole base's (block5_pool): make "
           "the cache without --until, or fine-tune the blocks above the cut (--fine-tune)",
           dir.c_str(), cache_.cut.c_str(), cache_.feat_h, cache_.feat_w, cache_.feat_c);
    if (cache_.cut != cut)
      fail("%s holds activations %s, but --fine-tune needs them cut at %s: make the cache with tl_cache --until %s",
           dir.c_str(), cache_.cut.empty() ? "of the whole base" : ("cut at " + cache_.cut).c_str(), cut.c_str(),
           cut.c_str());
    device_ = d;
    fh_ = cache_.feat_h;
    fw_ = cache_.feat_w;
    fc_ = cache_.feat_c;
    f16_ = cache_.dtype == DType::F16;
    const size_t row_bytes = (size_t)cache_.feature_elems() * (f16_ ? 2 : 4);
    for (int s = 0; s < 2; s++)
      for (const MappedShard& sh : cache_.shards[s])
        for (uint32_t i = 0; i < sh.info().count; i++) {
          rows_[s].push_back((const uint8_t*)sh.features() + (size_t)i * row_bytes);
          labels_[s].push_back((float)sh.labels()[i]);
          ids_[s].push_back(sh.ids()[i]);
        }
    for (int s = 0; s < 2; s++) {
      const std::vector<size_t> keep = finite_rows(s, dir, [&](size_t i) {
        return cache_.manifest.entries[ids_[s][i]].rel + " (id " + std::to_string(ids_[s][i]) + ")";
      });
      keep_only(rows_[s], keep);
      keep_only(labels_[s], keep);
      keep_only(ids_[s], keep);
    }
    const CacheSettings& st = cache_.manifest.settings;
    InputRecipe::read(st.kv, path_join(dir, "manifest.tsv")).write(&prov_, InputRecipe::Where::Model);
    prov_["source"] = "cache";
    prov_["cache_dir"] = dir;
    prov_["cache_settings_hash"] = strfmt("%016llx", (unsigned long long)st.hash());
    prov_["classes"] = cache_.manifest.classes[0] + "," + cache_.manifest.classes[1];
    classes_ = cache_.manifest.classes;
    desc_ = strfmt("cache %s: %lld train + %lld valid samples, %dx%dx%d %s (computed in %s)", dir.c_str(),
                   (long long)rows_[0].size(), (long long)rows_[1].size(), fh_, fw_, fc_, f16_ ? "fp16" : "fp32",
                   prov_["precision"].c_str());
    upload();
  }

  std::string sample_name(Split s, int64_t i) const override {
    const ManifestEntry& e = cache_.manifest.entries[ids_[(int)s][(size_t)i]];
    return e.rel;
  }
  std::vector<uint8_t> sample_bytes(Split s, int64_t i) const override {
    const ManifestEntry& e = cache_.manifest.entries[ids_[(int)s][(size_t)i]];
    if (e.source < 0 || (size_t)e.source >= cache_.manifest.sources.size()) return {};
    try {
      return DataSource(cache_.manifest.sources[(size_t)e.source]).read(e.rel, kMaxImageFileBytes);
    } catch (const Error&) {
      return {};  // the photos moved since caching: no picture, nothing else lost
    }
  }

 private:
  Cache cache_;
  std::vector<uint32_t> ids_[2];
};

class NpySource : public RowSource {
 public:
  NpySource(const std::string& dir, Device d) {
    device_ = d;
    const char* names[2][2] = {{"train_activations.npy", "train_labels.npy"},
                               {"validation_activations.npy", "validation_labels.npy"}};
    for (int s = 0; s < 2; s++) {
      const std::string fp = path_join(dir, names[s][0]), lp = path_join(dir, names[s][1]);
      for (const std::string& p : {fp, lp})
        if (!file_exists(p))
          fail("%s: missing; --npy wants the tutorial's four files (train_activations.npy, train_labels.npy, "
               "validation_activations.npy, validation_labels.npy)",
               p.c_str());
      feats_[s] = std::make_unique<MappedNpy>(fp);
      const NpyHeader& h = feats_[s]->header();
      if (h.descr != "<f4" && h.descr != "<f2")
        fail("%s: features must be float32 (or float16), got dtype %s", fp.c_str(), h.descr.c_str());
      if (h.fortran_order) fail("%s: Fortran-ordered arrays are not supported; save with np.ascontiguousarray", fp.c_str());
      if (h.shape.size() != 4 && h.shape.size() != 2)
        fail("%s: shape %s; expected N x h x w x c (Keras' N x 7 x 7 x 512) or N x features", fp.c_str(),
             h.shape_str().c_str());
      const int fh = h.shape.size() == 4 ? (int)h.shape[1] : 1, fw = h.shape.size() == 4 ? (int)h.shape[2] : 1;
      const int fc = h.shape.size() == 4 ? (int)h.shape[3] : (int)h.shape[1];
      if (s == 0) {
        fh_ = fh, fw_ = fw, fc_ = fc;
        f16_ = h.descr == "<f2";
      } else if (fh != fh_ || fw != fw_ || fc != fc_ || f16_ != (h.descr == "<f2")) {
        fail("%s: shape %s differs from the training features' %dx%dx%d", fp.c_str(), h.shape_str().c_str(), fh_, fw_,
             fc_);
      }
      NpyArray lab = read_npy(lp);
      std::vector<float> l = lab.to_f32(lp);
      if ((int64_t)l.size() != h.shape[0])
        fail("%s: %zu labels for %lld feature rows in %s", lp.c_str(), l.size(), (long long)h.shape[0], fp.c_str());
      for (float v : l)
        if (v != 0.0f && v != 1.0f) fail("%s: labels must be 0 or 1, found %g", lp.c_str(), v);
      labels_[s] = l;
      const size_t row_bytes = (size_t)fh * fw * fc * (f16_ ? 2 : 4);
      for (int64_t i = 0; i < h.shape[0]; i++) rows_[s].push_back(feats_[s]->data() + (size_t)i * row_bytes);
      const std::vector<size_t> keep = finite_rows(s, fp, [](size_t i) { return "row " + std::to_string(i); });
      keep_only(rows_[s], keep);
      keep_only(labels_[s], keep);
    }
    prov_["source"] = "npy";
    prov_["npy_dir"] = dir;
    // The tutorial's cache came from Keras' VGG16 with its defaults; the weights are not recorded.
    InputRecipe r;
    r.image_size = fh_ * 32;
    r.feat_h = fh_, r.feat_w = fw_, r.feat_c = fc_;
    r.write(&prov_, InputRecipe::Where::Model);
    desc_ = strfmt("numpy files in %s: %lld train + %lld valid samples, %dx%dx%d", dir.c_str(),
                   (long long)rows_[0].size(), (long long)rows_[1].size(), fh_, fw_, fc_);
    upload();
  }

 private:
  std::unique_ptr<MappedNpy> feats_[2];
};

// ------------------------------------------------------------------------------------------------

void write_history(const std::string& path, const std::vector<EpochStats>& h) {
  std::string s = "epoch,loss,accuracy,val_loss,val_accuracy,seconds\n";
  for (auto& e : h)
    s += strfmt("%d,%.17g,%.17g,%.17g,%.17g,%.3f\n", e.epoch, e.loss, e.acc, e.val_loss, e.val_acc, e.seconds);
  write_file_atomic(path, s.data(), s.size());
}

// The history inside model.bin (its "history" key): model.bin is written atomically, so the weights,
// the optimiser state, the epoch, the history and the best epoch always agree there, whatever the
// moment a run was killed; history.csv and best.bin are derived from it (and repaired on --resume).
std::string history_record(const std::vector<EpochStats>& h) {
  // Without the seconds: the file stays a pure function of the training (resumed or not, bit for bit).
  std::string s;
  for (auto& e : h)
    s += strfmt("%s%d:%.17g:%.17g:%.17g:%.17g", s.empty() ? "" : ";", e.epoch, e.loss, e.acc, e.val_loss, e.val_acc);
  return s;
}

// epoch, loss, accuracy, val_loss, val_accuracy[, seconds] from the fields of one history line.
EpochStats epoch_from_fields(const std::vector<std::string>& f) {
  EpochStats e;
  e.epoch = atoi(f[0].c_str());
  e.loss = strtod(f[1].c_str(), nullptr);
  e.acc = strtod(f[2].c_str(), nullptr);
  e.val_loss = strtod(f[3].c_str(), nullptr);
  e.val_acc = strtod(f[4].c_str(), nullptr);
  if (f.size() > 5) e.seconds = strtod(f[5].c_str(), nullptr);
  return e;
}

std::vector<EpochStats> parse_history_record(const std::string& s, const std::string& what) {
  std::vector<EpochStats> out;
  if (s.empty()) return out;
  for (const std::string& item : split(s, ';')) {
    std::vector<std::string> f = split(item, ':');
    if (f.size() != 5) fail("%s: damaged training history record; retrain without --resume", what.c_str());
    const EpochStats e = epoch_from_fields(f);
    if (e.epoch != (int)out.size() + 1) fail("%s: damaged training history record; retrain without --resume", what.c_str());
    out.push_back(e);
  }
  return out;
}

std::vector<EpochStats> read_history(const std::string& path) {
  std::vector<EpochStats> out;
  if (!file_exists(path)) return out;
  std::vector<uint8_t> b = read_file(path);
  std::vector<std::string> lines = split(std::string(b.begin(), b.end()), '\n');
  for (size_t i = 1; i < lines.size(); i++) {
    std::vector<std::string> f = split(lines[i], ',');
    if (f.size() < 6) continue;
    out.push_back(epoch_from_fields(f));
  }
  return out;
}

void draw_curves(const std::string& path, const std::vector<EpochStats>& h, int best_epoch, bool synthetic,
                 bool has_valid) {
  Panel acc{"Training and validation accuracy", "accuracy", {}, best_epoch};
  Panel loss{"Training and validation loss", "loss (binary cross-entropy)", {}, best_epoch};
  Series ta{"training", {}, {31, 119, 180}}, va{"validation", {}, {255, 127, 14}};
  Series tl{"training", {}, {31, 119, 180}}, vl{"validation", {}, {255, 127, 14}};
  for (auto& e : h) {
    ta.y.push_back(e.acc);
    va.y.push_back(e.val_acc);
    tl.y.push_back(e.loss);
    vl.y.push_back(e.val_loss);
  }
  acc.floor = 0, acc.ceiling = 1;
  loss.floor = 0;
  loss.clip_outlier = true;
  acc.series = {ta};
  loss.series = {tl};
  if (has_valid) {
    acc.series.push_back(va);
    loss.series.push_back(vl);
  }
  plot_panels(path,
              synthetic ? "Head on VGG16 features -- SYNTHETIC weights: not a transfer-learning result"
                        : "Head on VGG16 features",
              {acc, loss});
}

}  // namespace

std::unique_ptr<FeatureSource> open_cached_source(const std::string& dir, Device d, const std::string& cut) {
  return std::make_unique<CachedSource>(dir, d, cut);
}

std::unique_ptr<FeatureSource> open_npy_source(const std::string& dir, Device d) {
  return std::make_unique<NpySource>(dir, d);
}

// The head's logit for every sample of a split (no dropout), in batches.
std::vector<float> split_logits(Head& head, FeatureSource& src, Split s, int batch) {
  const int64_t n = src.size(s);
  std::vector<float> z((size_t)n);
  Tensor x({batch, head.spec().in_dim()}, head.device());
  for (int64_t b0 = 0; b0 < n; b0 += batch) {
    const int nb = (int)std::min<int64_t>(batch, n - b0);
    std::vector<int64_t> idx((size_t)nb);
    for (int i = 0; i < nb; i++) idx[(size_t)i] = b0 + i;
    src.fetch(s, idx, x, false, 0);
    head.logits(x, nb, z.data() + b0);
  }
  return z;
}

EvalReport evaluate(Head& head, FeatureSource& src, Split s, int batch, double clip) {
  EvalReport r;
  const int64_t n = src.size(s);
  r.n = n;
  if (n == 0) return r;
  const std::vector<float>& y = src.labels(s);
  const std::vector<float> z = split_logits(head, src, s, batch);
  double loss = 0, ll = 0, llc = 0;
  int64_t correct = 0;
  {
    for (int64_t i = 0; i < n; i++) {
      const double zi = z[(size_t)i], yi = y[(size_t)i];
      // the same stable formula as the loss op, in double for the report
      loss += std::max(zi, 0.0) - zi * yi + std::log1p(std::exp(-std::fabs(zi)));
      const int pred = zi > 0 ? 1 : 0;
      correct += pred == (int)yi;
      r.confusion[(int)yi][pred]++;
      const double p = 1.0 / (1.0 + std::exp(-zi));
      const double pc = std::min(std::max(p, clip), 1.0 - clip);
      ll += -(yi * std::log(std::max(p, 1e-300)) + (1 - yi) * std::log(std::max(1 - p, 1e-300)));
      llc += -(yi * std::log(pc) + (1 - yi) * std::log(1 - pc));
    }
  }
  r.loss = loss / n;
  r.acc = (double)correct / n;
  r.logloss = ll / n;
  r.logloss_clipped = llc / n;
  return r;
}

namespace {

void validate_training(FeatureSource& src, const TrainOptions& o) {
  const int64_t ntrain = src.size(Split::Train);
  if (ntrain == 0) fail("no training samples (%s); cache a dataset with images in it", src.describe().c_str());
  int64_t pos = 0;
  for (float v : src.labels(Split::Train)) pos += v > 0.5f;
  const std::vector<std::string> cls = src.classes();
  if (pos == 0 || pos == ntrain)
    fail("the training samples are all of one class (%lld %s, 0 %s); a classifier needs both classes: check the "
         "dataset's folders or names",
         (long long)ntrain, cls[pos ? 1 : 0].c_str(), cls[pos ? 0 : 1].c_str());
  if (o.batch < 1 || o.batch > 65536) fail("--batch must be between 1 and 65536, got %d", o.batch);
  if (o.epochs < 1 || o.epochs > 100000) fail("--epochs must be at least 1, got %d", o.epochs);
  if (!(o.lr > 0) || !(o.rho >= 0 && o.rho < 1) || !(o.eps > 0)) fail("--lr must be > 0 (and rho in [0,1), eps > 0)");
  if (!(o.dropout >= 0 && o.dropout < 1)) fail("--dropout must be in [0, 1), got %g", o.dropout);
  if (o.monitor != "val_loss" && o.monitor != "val_accuracy")
    fail("--monitor: expected val_loss or val_accuracy (Keras' names), got '%s'", o.monitor.c_str());
  // An earlier run in --out is never replaced silently.
  const std::string model = path_join(o.out, "model.bin"), hist = path_join(o.out, "history.csv");
  if (!o.resume && !o.force && (file_exists(model) || file_exists(hist))) {
    std::string what = file_exists(model) ? "model.bin" : "";
    if (file_exists(hist)) {
      size_t epochs = 0;
      try {
        epochs = read_history(hist).size();
      } catch (const Error&) {
      }
      what += strfmt("%shistory.csv with %zu epochs", what.empty() ? "" : ", ", epochs);
    }
    if (file_exists(path_join(o.out, "best.bin"))) what += ", best.bin";
    fail("%s already holds a training run (%s); pass --resume to continue it, --force to replace it, or choose "
         "another --out",
         o.out.c_str(), what.c_str());
  }
}

HeadSpec head_spec(FeatureSource& src, const TrainOptions& o) {
  HeadSpec spec;
  spec.feat_h = src.feat_h();
  spec.feat_w = src.feat_w();
  spec.feat_c = src.feat_c();
  spec.dropout = (float)o.dropout;
  return spec;
}

// One training run: the head, its files, and the state that survives from epoch to epoch.
class Trainer {
 public:
  Trainer(FeatureSource& src, const TrainOptions& o)
      : src_(src), o_(o), head_(head_spec(src, o), o.device), prov_(src.provenance()),
        ntrain_(src.size(Split::Train)), nvalid_(src.size(Split::Valid)),
        steps_per_epoch_((ntrain_ + o.batch - 1) / o.batch), x_({o.batch, head_.spec().in_dim()}, o.device),
        y_({o.batch}, o.device) {
    head_.set_fused_update(o.fused_update);
    // Look-ahead fetches batch b+1 before step b: not when the source's layers train (b+1's features
    // depend on step b's update).
    tunes_ = src.trainable(o.epochs);
    if (o.look_ahead && o.fused_update && o.device == Device::CPU && ops::dense_partial_blocks(head_.spec().in_dim()) > 0 &&
        !tunes_)
      x_next_ = Tensor({o.batch, head_.spec().in_dim()}, o.device);
    if (tunes_) dfeat_ = Tensor({o.batch, head_.spec().in_dim()}, o.device);
    make_dirs(o.out);
    model_path_ = path_join(o.out, "model.bin");
    best_path_ = path_join(o.out, "best.bin");
    hist_path_ = path_join(o.out, "history.csv");
    synthetic_ = InputRecipe::read(prov_, "the features' provenance").weights_synthetic;
  }

  int start_epoch() const { return start_epoch_; }
  TrainResult& result() { return res_; }

  // Continues from model.bin (weights, optimiser state, epoch, history) or starts fresh.
  void resume_or_init() {
    if (!o_.resume) {
      head_.init(o_.seed);
      if (!o_.from.empty()) {  // --from: a head trained before (and its tuned layers, if any)
        ModelFile m = load_model(o_.from);
        const InputRecipe was = InputRecipe::read(m.meta, o_.from), now = InputRecipe::read(prov_, "these features");
        if (was.weights_crc != now.weights_crc || was.image_size != now.image_size || was.resize != now.resize ||
            was.precision != now.precision)
          fail("--from %s: it was trained on other features (weights %s, %dx%d %s, %s), here weights %s, %dx%d %s, %s",
               o_.from.c_str(), was.weights_crc_str().c_str(), was.image_size, was.image_size, resize_name(was.resize),
               precision_name(was.precision), now.weights_crc_str().c_str(), now.image_size, now.image_size,
               resize_name(now.resize), precision_name(now.precision));
        head_from_model(m, head_, false);
        src_.from_model(m, false);
        note("starting from %s (epoch %s)", o_.from.c_str(), m.meta["epoch"].c_str());
      }
      save(model_path_, 0, true);  // the last good weights exist from the start
      return;
    }
    ModelFile m = load_model(model_path_);
    if (m.opt_state.empty()) fail("%s has no optimiser state; cannot --resume from it", model_path_.c_str());
    const InputRecipe was = InputRecipe::read(m.meta, model_path_), now = InputRecipe::read(prov_, "these features");
    const std::string was_shape = strfmt("%dx%dx%d", was.feat_h, was.feat_w, was.feat_c),
                      now_shape = strfmt("%dx%dx%d", now.feat_h, now.feat_w, now.feat_c);
    for (auto [k, a, b] : {std::make_tuple("cache_settings_hash", m.meta["cache_settings_hash"], prov_["cache_settings_hash"]),
                           std::make_tuple("feature shape", was_shape, now_shape),
                           std::make_tuple("precision", std::string(precision_name(was.precision)),
                                           std::string(precision_name(now.precision))),
                           std::make_tuple("source", m.meta["source"], prov_["source"])})
      if (a != b)
        fail("--resume: %s was trained on other features (%s: %s, here %s); use another --out or drop --resume",
             model_path_.c_str(), k, a.c_str(), b.c_str());
    head_from_model(m, head_, true);
    src_.from_model(m, true);
    start_epoch_ = atoi(m.meta["epoch"].c_str()) + 1;
    step_ = strtoull(m.meta["step"].c_str(), nullptr, 10);
    if (m.meta["seed"] != std::to_string(o_.seed) || m.meta["batch"] != std::to_string(o_.batch))
      note("note: resuming with --seed %llu --batch %d (the checkpoint used seed %s, batch %s)",
           (unsigned long long)o_.seed, o_.batch, m.meta["seed"].c_str(), m.meta["batch"].c_str());
    // The history: model.bin's own record (files of older builds: history.csv).
    const std::vector<EpochStats> csv = read_history(hist_path_);
    res_.history = m.meta.count("history") ? parse_history_record(m.meta["history"], model_path_) : csv;
    for (EpochStats& e : res_.history)  // the epochs' durations, from history.csv where it agrees
      for (const EpochStats& c : csv)
        if (c.epoch == e.epoch && c.loss == e.loss && (c.val_loss == e.val_loss || (std::isnan(c.val_loss) && std::isnan(e.val_loss))))
          e.seconds = c.seconds;
    while (!res_.history.empty() && res_.history.back().epoch >= start_epoch_) res_.history.pop_back();
    for (auto& e : res_.history) {
      const double crit = criterion(e);
      if (crit < best_) best_ = crit, best_epoch_ = e.epoch, since_best_ = 0;
      else since_best_++;
    }
    if (start_epoch_ > o_.epochs)
      fail("%s already holds %d epochs; pass --epochs larger than that to continue", model_path_.c_str(),
           start_epoch_ - 1);
    repair_derived_files();
    note("resuming after epoch %d (step %llu)", start_epoch_ - 1, (unsigned long long)step_);
  }

  void announce() {
    if (quiet()) return;
    head_.summary(stderr);
    note("%s", src_.describe().c_str());
    note("%d epochs, batch %d, RMSprop lr %g rho %g eps %g, seed %llu, device %s", o_.epochs, o_.batch, o_.lr, o_.rho,
         o_.eps, (unsigned long long)o_.seed, device_name(o_.device));
    if (!src_.tuning().empty()) note("%s", src_.tuning().c_str());
    if (synthetic_)
      note("NOTE: the features come from SYNTHETIC weights: accuracy here says nothing about transfer learning");
    if (nvalid_ == 0) warn("no validation samples: the best epoch is chosen by training loss");
  }

  // One epoch: the training pass, validation, the checkpoints and the history. False to stop.
  bool run_epoch(int epoch) {
    const double t0 = now_s();
    EpochStats e;
    e.epoch = epoch;
    if (!train_pass(epoch, &e)) return false;
    EvalReport v = evaluate(head_, src_, Split::Valid, std::max(o_.batch, 256), o_.clip);
    e.val_loss = nvalid_ ? v.loss : NAN;
    e.val_acc = nvalid_ ? v.acc : NAN;
    e.seconds = now_s() - t0;
    res_.history.push_back(e);
    if (Progress::is_tty() && !quiet()) fprintf(stderr, "\r\033[K");
    say("%lld/%lld - %.0fs %.0fms/step - loss: %.4f - accuracy: %.4f - val_loss: %.4f - val_accuracy: %.4f\n",
        (long long)steps_per_epoch_, (long long)steps_per_epoch_, e.seconds, 1e3 * e.seconds / steps_per_epoch_, e.loss,
        e.acc, e.val_loss, e.val_acc);
    // model.bin first (it records the history and the best epoch), then what derives from it: a
    // kill between the writes leaves model.bin complete, and --resume repairs the rest.
    const double crit = criterion(e);
    const bool improved = crit < best_;
    if (improved) {
      best_ = crit;
      best_epoch_ = epoch;
      since_best_ = 0;
    } else {
      since_best_++;
    }
    save(model_path_, epoch, true);
    if (improved) save(best_path_, epoch, false);
    write_history(hist_path_, res_.history);
    if (o_.plots) draw_curves(path_join(o_.out, "curves.png"), res_.history, best_epoch_, synthetic_, nvalid_ > 0);
    if (o_.patience > 0 && since_best_ >= o_.patience) {
      note("no improvement for %d epochs: stopping early", o_.patience);
      res_.early_stop = true;
      return false;
    }
    if (o_.stop_after_epochs > 0 && epoch - start_epoch_ + 1 >= o_.stop_after_epochs) {
      res_.interrupted = true;
      return false;
    }
    return true;
  }

  // The report: the best epoch's weights on the validation set (report.txt and stderr).
  void write_report() {
    res_.best_epoch = best_epoch_;
    res_.best_val_loss = best_;
    if (best_epoch_ > 0 && file_exists(best_path_) && !res_.interrupted) {
      ModelFile bm = load_model(best_path_);
      head_from_model(bm, head_, false);
      src_.from_model(bm, false);  // a fine-tuned block: the best epoch's, too
      const Split s = nvalid_ ? Split::Valid : Split::Train;
      std::string rep = report_text(evaluate(head_, src_, s, std::max(o_.batch, 256), o_.clip));
      if (o_.plots) rep += draw_mistakes(s);
      write_file_atomic(path_join(o_.out, "report.txt"), rep.data(), rep.size());
      say("\n%s", rep.c_str());
    }
    if (!res_.interrupted && !res_.nan_stop)
      note("wrote %s (last epoch), %s (epoch %d), history.csv, curves.png, mistakes.png, report.txt in %s", model_path_.c_str(),
           best_path_.c_str(), best_epoch_, o_.out.c_str());
  }

 private:
  FeatureSource& src_;
  const TrainOptions& o_;
  Head head_;
  std::map<std::string, std::string> prov_;
  const int64_t ntrain_, nvalid_, steps_per_epoch_;
  Tensor x_, y_;
  Tensor x_next_;  // the next batch, fetched before the step (TrainOptions::look_ahead); empty when off
  bool tunes_ = false;  // the source's layers train in some epoch (fine-tuning)
  Tensor dfeat_;        // then: the loss's gradient at the features, for the source's block_step
  std::string model_path_, best_path_, hist_path_;
  bool synthetic_ = false;
  TrainResult res_;
  int start_epoch_ = 1, best_epoch_ = 0, since_best_ = 0;
  uint64_t step_ = 0;
  double best_ = INFINITY;

  // Lower is better: validation loss, or minus validation accuracy (--monitor); the training loss
  // when there is no validation set.
  double criterion(const EpochStats& e) const {
    if (!nvalid_) return e.loss;
    return o_.monitor == "val_accuracy" ? -e.val_acc : e.val_loss;
  }
  const char* monitor_name() const {
    return !nvalid_ ? "training loss" : o_.monitor == "val_accuracy" ? "validation accuracy" : "validation loss";
  }

  // On --resume: history.csv rewritten from model.bin's record; best.bin, when it does not hold the
  // recorded best epoch and that epoch is the one model.bin holds (the run was killed between the
  // two writes), rewritten from model.bin's weights.
  void repair_derived_files() {
    write_history(hist_path_, res_.history);
    if (best_epoch_ == 0) return;
    int have = -1;
    if (file_exists(best_path_)) {
      // A damaged best.bin is found now, before the first step, not by the report after the last epoch.
      try {
        have = atoi(load_model(best_path_).meta["epoch"].c_str());
      } catch (const Error& e) {
        if (best_epoch_ != start_epoch_ - 1)
          fail("--resume: %s (epoch %d, the best so far) is damaged: %s. Restore it, delete it to continue without "
               "it (best.bin is written again when an epoch beats epoch %d), or start over with --force",
               best_path_.c_str(), best_epoch_, e.what(), best_epoch_);
        note("%s", e.what());
      }
    }
    if (have == best_epoch_) return;
    if (best_epoch_ == start_epoch_ - 1) {
      note("%s did not hold epoch %d, the best so far (the run stopped before writing it): rewritten from %s",
           best_path_.c_str(), best_epoch_, model_path_.c_str());
      save(best_path_, best_epoch_, false);
    } else {
      warn("%s holds %s, not epoch %d (the best so far): its weights are lost; best.bin will be written again when an "
           "epoch beats it",
           best_path_.c_str(), have < 0 ? "nothing usable" : strfmt("epoch %d", have).c_str(), best_epoch_);
    }
  }

  void save(const std::string& path, int epoch, bool with_opt) {
    ModelFile m = model_from_head(head_, with_opt);
    src_.to_model(m, with_opt);
    const std::map<std::string, std::string> tuned_meta = m.meta;
    m.meta = prov_;
    for (auto& [k, v] : tuned_meta) m.meta[k] = v;
    m.meta["epoch"] = std::to_string(epoch);
    m.meta["step"] = std::to_string(step_);
    m.meta["seed"] = std::to_string(o_.seed);
    m.meta["batch"] = std::to_string(o_.batch);
    m.meta["lr"] = strfmt("%g", o_.lr);
    m.meta["optimizer"] = strfmt("rmsprop(rho=%g, eps=%g)", o_.rho, o_.eps);
    m.meta["monitor"] = o_.monitor;
    if (with_opt) {
      m.meta["history"] = history_record(res_.history);
      m.meta["best_epoch"] = std::to_string(best_epoch_);
    }
    save_model(path, m);
  }

  // A weight or gradient that is not finite: stop as for a non-finite loss (model.bin keeps the last
  // finished epoch). Returns false (stop).
  bool stop_non_finite(int epoch, const std::string& when, const std::string& what) {
    if (!quiet() && Progress::is_tty()) fprintf(stderr, "\n");
    alert("a weight or its RMSprop state became non-finite at epoch %d, %s (%s), though the loss was finite: stopping. %s keeps "
          "the weights of epoch %d (the last good ones). Try a lower --lr (now %g), or look for features of extreme "
          "size in the data.",
          epoch, when.c_str(), what.c_str(), model_path_.c_str(), epoch - 1, o_.lr);
    res_.nan_stop = true;
    return false;
  }

  // The epoch's training batches (dropout on); the mean loss and accuracy into e. False to stop.
  bool train_pass(int epoch, EpochStats* e) {
    const RmsProp opt{(float)o_.lr, (float)o_.rho, (float)o_.eps};
    // While the source's layers train, the head steps at their rate (the book's recompile at 1e-5).
    const RmsProp tuned{(float)o_.fine_tune_lr, (float)o_.rho, (float)o_.eps};
    const std::vector<float>& ytrain = src_.labels(Split::Train);
    std::vector<int64_t> order = epoch_order(ntrain_, o_.seed, epoch);
    say("Epoch %d/%d\n", epoch, o_.epochs);
    Progress prog("", steps_per_epoch_, "steps", quiet());
    double loss_sum = 0;
    int64_t correct = 0, seen = 0;
    auto batch = [&](int64_t b) {
      const int64_t n = std::min<int64_t>(o_.batch, ntrain_ - b * o_.batch);
      return std::vector<int64_t>(order.begin() + b * o_.batch, order.begin() + b * o_.batch + n);
    };
    // With look-ahead, batch b+1 is fetched before step b, which also computes its first layer.
    Tensor* x = &x_;
    Tensor* x_next = &x_next_;
    std::vector<int64_t> idx;
    bool fetched = false;  // *x holds batch b already (fetched ahead)
    for (int64_t b = 0; b < steps_per_epoch_; b++) {
      if (!fetched) {
        idx = batch(b);
        src_.fetch(Split::Train, idx, *x, true, (uint64_t)epoch);
      }
      const int n = (int)idx.size();
      std::vector<float> yb((size_t)o_.batch, 0.0f);
      for (int i = 0; i < n; i++) yb[(size_t)i] = ytrain[(size_t)idx[(size_t)i]];
      y_.from_vector(yb);
      const bool ahead = x_next->ndim > 0 && b + 1 < steps_per_epoch_;
      std::vector<int64_t> idx_next;
      if (ahead) {
        idx_next = batch(b + 1);
        src_.fetch(Split::Train, idx_next, *x_next, true, (uint64_t)epoch);
      }
      int c = 0;
      const bool block = src_.trainable(epoch);
      const double ls = head_.train_step(*x, y_, n, o_.seed, step_, block ? tuned : opt, &c, ahead ? x_next : nullptr,
                                         (int)idx_next.size(), block ? &dfeat_ : nullptr);
      if (block && std::isfinite(ls)) src_.block_step(dfeat_, n);
      step_++;
      fetched = ahead;
      if (ahead) {
        std::swap(x, x_next);
        idx = std::move(idx_next);
      }
      if (!std::isfinite(ls)) {
        if (!quiet() && Progress::is_tty()) fprintf(stderr, "\n");
        alert("the loss became %s at epoch %d, step %lld: stopping. %s keeps the weights of epoch %d (the last good "
              "ones). Try a lower --lr (now %g).",
              std::isnan(ls) ? "NaN" : "infinite", epoch, (long long)b + 1, model_path_.c_str(), epoch - 1, o_.lr);
        res_.nan_stop = true;
        return false;
      }
      // A finite loss does not prove finite weights: ReLU turns NaN into 0, so a NaN gradient can
      // leave NaN weights behind a loss that stays finite. The small tensors (and the gradient into
      // a trained block) after every step; the first layer's kernel and the block once an epoch.
      std::string bad = head_.non_finite_weight(false);
      if (bad.empty() && block) {
        const std::vector<float> d = Tensor::view(dfeat_.ptr, {(int64_t)n * dfeat_.dim(1)}, dfeat_.device).to_vector();
        const int64_t at = first_non_finite(d.data(), (int64_t)d.size());
        if (at >= 0) bad = strfmt("the gradient at the features holds %s at index %lld", std::isnan(d[(size_t)at]) ? "nan" : "inf", (long long)at);
      }
      if (!bad.empty()) return stop_non_finite(epoch, strfmt("step %lld", (long long)b + 1), bad);
      loss_sum += ls;
      correct += c;
      seen += n;
      prog.update(b + 1, strfmt("loss: %.4f - accuracy: %.4f", loss_sum / seen, (double)correct / seen));
      if (interrupted()) {
        res_.interrupted = true;
        if (!quiet() && Progress::is_tty()) fprintf(stderr, "\n");
        alert("interrupted during epoch %d; %s holds epoch %d: rerun with --resume to continue", epoch,
              model_path_.c_str(), epoch - 1);
        return false;
      }
    }
    std::string bad = head_.non_finite_weight(true);
    if (bad.empty()) {
      ModelFile m;
      src_.to_model(m, true);  // a trained block's layers and their mean squares (none without a block)
      for (int k = 0; k < 2 && bad.empty(); k++) {
        const std::vector<std::vector<float>>& t = k ? m.opt_state : m.params;
        for (size_t i = 0; i < t.size() && i / 2 < m.convs.size() && bad.empty(); i++) {
          const int64_t at = first_non_finite(t[i].data(), (int64_t)t[i].size());
          if (at >= 0)
            bad = strfmt("%s's %s%s holds %s at index %lld", m.convs[i / 2].name.c_str(), i % 2 ? "bias" : "kernel",
                         k ? " (its RMSprop mean square)" : "", std::isnan(t[i][(size_t)at]) ? "nan" : "inf", (long long)at);
        }
      }
    }
    if (!bad.empty()) return stop_non_finite(epoch, "its end", bad);
    e->loss = loss_sum / seen;
    e->acc = (double)correct / seen;
    return true;
  }

  // mistakes.png: the samples of split s the best weights got most confidently wrong (up to 16), as
  // photos labelled with truth, p(class 1) and file name; the same list as text for report.txt.
  std::string draw_mistakes(Split s) {
    const std::vector<std::string> cls = src_.classes();
    const std::vector<double> p = predict_split(head_, src_, s, std::max(o_.batch, 256));
    const std::vector<float>& y = src_.labels(s);
    std::vector<int64_t> wrong;
    for (int64_t i = 0; i < (int64_t)p.size(); i++)
      if ((p[(size_t)i] > 0.5) != (y[(size_t)i] > 0.5f)) wrong.push_back(i);
    std::sort(wrong.begin(), wrong.end(), [&](int64_t a, int64_t b) {
      return std::fabs(p[(size_t)a] - 0.5) > std::fabs(p[(size_t)b] - 0.5) || (std::fabs(p[(size_t)a] - 0.5) ==
                                                                                 std::fabs(p[(size_t)b] - 0.5) && a < b);
    });
    if (wrong.size() > 16) wrong.resize(16);
    std::string text = strfmt("\nmost confidently wrong (%zu shown, mistakes.png):\n", wrong.size());
    std::vector<SheetItem> items;
    for (int64_t i : wrong) {
      SheetItem it;
      const std::string name = src_.sample_name(s, i);
      const std::vector<uint8_t> bytes = src_.sample_bytes(s, i);
      if (!bytes.empty()) {
        try {
          it.img = decode_image(bytes.data(), bytes.size(), name);
        } catch (const Error&) {
        }
      }
      const int truth = y[(size_t)i] > 0.5f;
      it.line1 = strfmt("%s  p(%s) %.3f", cls[truth].c_str(), cls[1].c_str(), p[(size_t)i]);
      it.line2 = name.empty() ? strfmt("sample %lld", (long long)i) : name;
      it.wrong = true;
      text += strfmt("  %-40s truth %-5s p(%s) %.4f\n", it.line2.c_str(), cls[truth].c_str(), cls[1].c_str(), p[(size_t)i]);
      items.push_back(std::move(it));
    }
    draw_sheet(path_join(o_.out, "mistakes.png"),
               strfmt("%s set: the %zu most confidently wrong (truth, then p(%s); best epoch %d)%s", s == Split::Valid ? "validation" : "training",
                      wrong.size(), cls[1].c_str(), best_epoch_, synthetic_ ? " -- SYNTHETIC weights" : ""),
               items);
    return text;
  }

  std::string report_text(const EvalReport& r) const {
    const std::vector<std::string> cls = src_.classes();
    std::string rep;
    rep += strfmt("Report on the %s set (%lld samples), weights of the best epoch (%d, by %s, --monitor): %s\n",
                  nvalid_ ? "validation" : "training", (long long)r.n, best_epoch_, monitor_name(), best_path_.c_str());
    for (const EpochStats& e : res_.history)
      if (e.epoch == best_epoch_)
        rep += strfmt("that epoch: loss %.4f, accuracy %.4f, val_loss %.4f, val_accuracy %.4f\n", e.loss, e.acc,
                      e.val_loss, e.val_acc);
    if (synthetic_) rep += "NOTE: features from SYNTHETIC VGG weights: these numbers say nothing about transfer learning.\n";
    rep += strfmt("\nconfusion matrix (rows: truth, columns: prediction)\n%12s %10s %10s\n", "", cls[0].c_str(), cls[1].c_str());
    for (int t = 0; t < 2; t++)
      rep += strfmt("%12s %10lld %10lld\n", cls[t].c_str(), (long long)r.confusion[t][0], (long long)r.confusion[t][1]);
    const double tp = (double)r.confusion[1][1], fp = (double)r.confusion[0][1], fn = (double)r.confusion[1][0];
    rep += strfmt("\naccuracy            %.4f\n", r.acc);
    rep += strfmt("precision (%s)     %.4f\nrecall (%s)        %.4f\n", cls[1].c_str(), tp + fp > 0 ? tp / (tp + fp) : 0.0,
                  cls[1].c_str(), tp + fn > 0 ? tp / (tp + fn) : 0.0);
    rep += strfmt("log loss            %.5f\n", r.logloss);
    rep += strfmt("log loss, clipped   %.5f (probabilities clipped to [%g, %g]: %s)\n", r.logloss_clipped, o_.clip,
                  1 - o_.clip,
                  r.logloss_clipped < r.logloss ? "lower, as confident mistakes cost less"
                                                : "no lower: clipping does not help these predictions");
    return rep;
  }
};

}  // namespace

// validate -> resume or init -> announce -> epochs -> report.
std::vector<double> predict_split(Head& head, FeatureSource& src, Split s, int batch) {
  const std::vector<float> z = split_logits(head, src, s, batch);
  std::vector<double> p(z.size());
  for (size_t i = 0; i < z.size(); i++) p[i] = 1.0 / (1.0 + std::exp(-(double)z[i]));
  return p;
}

namespace {
// --force: nothing of the earlier run in --out may stay to be taken for the new one (a run stopped in
// its first epoch would otherwise leave the old best.bin, history and report for tl_predict to use).
void clear_earlier_run(const TrainOptions& o) {
  if (!o.force || o.resume) return;
  for (const char* f : {"model.bin", "best.bin", "history.csv", "curves.png", "mistakes.png", "report.txt"}) {
    const std::string p = path_join(o.out, f);
    if (file_exists(p) && unlink(p.c_str()) != 0)
      fail("--force: cannot remove %s (%s); remove it by hand or choose another --out", p.c_str(), strerror(errno));
  }
}
}  // namespace

TrainResult train_head(FeatureSource& src, const TrainOptions& o) {
  validate_training(src, o);
  make_dirs(o.out);
  DirLock lock(o.out, "tl_train");  // two runs into one --out would mix their files
  clear_earlier_run(o);
  Trainer t(src, o);
  t.resume_or_init();
  t.announce();
  for (int epoch = t.start_epoch(); epoch <= o.epochs; epoch++)
    if (!t.run_epoch(epoch)) break;
  t.write_report();
  return t.result();
}

}  // namespace tl
