#include "host/stages/train.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "host/core/cli.h"
#include "host/core/common.h"
#include "host/ops/cpu_ops.h"
#include "host/core/device.h"
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
  CachedSource(const std::string& dir, Device d) : cache_(open_cache(dir, true)) {
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
        }
    const CacheSettings& st = cache_.manifest.settings;
    for (const char* k : {"weights_crc32", "weights_arch", "weights_synthetic", "preprocess", "image_size", "resize",
                          "feature_shape", "dtype"})
      prov_[k] = st.get(k);
    prov_["weights_file"] = st.get("info.weights_file");
    prov_["source"] = "cache";
    prov_["cache_dir"] = dir;
    prov_["cache_settings_hash"] = strfmt("%016llx", (unsigned long long)st.hash());
    prov_["classes"] = cache_.manifest.classes[0] + "," + cache_.manifest.classes[1];
    classes_ = cache_.manifest.classes;
    desc_ = strfmt("cache %s: %lld train + %lld valid samples, %dx%dx%d %s", dir.c_str(),
                   (long long)rows_[0].size(), (long long)rows_[1].size(), fh_, fw_, fc_, f16_ ? "fp16" : "fp32");
    upload();
  }

 private:
  Cache cache_;
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
    }
    prov_["source"] = "npy";
    prov_["npy_dir"] = dir;
    prov_["feature_shape"] = strfmt("%dx%dx%d", fh_, fw_, fc_);
    // The tutorial's cache came from Keras' VGG16 with its defaults.
    prov_["preprocess"] = "caffe";
    prov_["image_size"] = std::to_string(fh_ * 32);
    prov_["resize"] = "nearest";
    prov_["weights_crc32"] = "unknown";
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

std::vector<EpochStats> read_history(const std::string& path) {
  std::vector<EpochStats> out;
  if (!file_exists(path)) return out;
  std::vector<uint8_t> b = read_file(path);
  std::vector<std::string> lines = split(std::string(b.begin(), b.end()), '\n');
  for (size_t i = 1; i < lines.size(); i++) {
    std::vector<std::string> f = split(lines[i], ',');
    if (f.size() < 6) continue;
    EpochStats e;
    e.epoch = atoi(f[0].c_str());
    e.loss = strtod(f[1].c_str(), nullptr);
    e.acc = strtod(f[2].c_str(), nullptr);
    e.val_loss = strtod(f[3].c_str(), nullptr);
    e.val_acc = strtod(f[4].c_str(), nullptr);
    e.seconds = strtod(f[5].c_str(), nullptr);
    out.push_back(e);
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

std::unique_ptr<FeatureSource> open_cached_source(const std::string& dir, Device d) {
  return std::make_unique<CachedSource>(dir, d);
}

std::unique_ptr<FeatureSource> open_npy_source(const std::string& dir, Device d) {
  return std::make_unique<NpySource>(dir, d);
}

EvalReport evaluate(Head& head, FeatureSource& src, Split s, int batch, double clip) {
  EvalReport r;
  const int64_t n = src.size(s);
  r.n = n;
  if (n == 0) return r;
  const int64_t d = head.spec().in_dim();
  Tensor x({batch, d}, head.device());
  std::vector<float> z((size_t)batch);
  const std::vector<float>& y = src.labels(s);
  double loss = 0, ll = 0, llc = 0;
  int64_t correct = 0;
  for (int64_t b0 = 0; b0 < n; b0 += batch) {
    const int nb = (int)std::min<int64_t>(batch, n - b0);
    std::vector<int64_t> idx((size_t)nb);
    for (int i = 0; i < nb; i++) idx[(size_t)i] = b0 + i;
    src.fetch(s, idx, x, false, 0);
    head.logits(x, nb, z.data());
    for (int i = 0; i < nb; i++) {
      const double zi = z[(size_t)i], yi = y[(size_t)(b0 + i)];
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

TrainResult train_head(FeatureSource& src, const TrainOptions& o) {
  TrainResult res;
  const int64_t ntrain = src.size(Split::Train), nvalid = src.size(Split::Valid);
  if (ntrain == 0) fail("no training samples (%s); cache a dataset with images in it", src.describe().c_str());
  {
    int64_t pos = 0;
    for (float v : src.labels(Split::Train)) pos += v > 0.5f;
    const std::vector<std::string> cls = src.classes();
    if (pos == 0 || pos == ntrain)
      fail("the training samples are all of one class (%lld %s, 0 %s); a classifier needs both classes: check the "
           "dataset's folders or names",
           (long long)ntrain, cls[pos ? 1 : 0].c_str(), cls[pos ? 0 : 1].c_str());
  }
  if (o.batch < 1 || o.batch > 65536) fail("--batch must be between 1 and 65536, got %d", o.batch);
  if (o.epochs < 1 || o.epochs > 100000) fail("--epochs must be at least 1, got %d", o.epochs);
  if (!(o.lr > 0) || !(o.rho >= 0 && o.rho < 1) || !(o.eps > 0)) fail("--lr must be > 0 (and rho in [0,1), eps > 0)");
  HeadSpec spec;
  spec.feat_h = src.feat_h();
  spec.feat_w = src.feat_w();
  spec.feat_c = src.feat_c();
  if (!(o.dropout >= 0 && o.dropout < 1)) fail("--dropout must be in [0, 1), got %g", o.dropout);
  spec.dropout = (float)o.dropout;
  Head head(spec, o.device);
  make_dirs(o.out);
  const std::string model_path = path_join(o.out, "model.bin"), best_path = path_join(o.out, "best.bin"),
                    hist_path = path_join(o.out, "history.csv"), curves_path = path_join(o.out, "curves.png"),
                    report_path = path_join(o.out, "report.txt");
  std::map<std::string, std::string> prov = src.provenance();
  const bool synthetic = starts_with(prov["weights_synthetic"], "yes");
  int start_epoch = 1;
  uint64_t step = 0;
  double best = INFINITY;
  int best_epoch = 0;
  if (o.resume) {
    ModelFile m = load_model(model_path);
    if (m.opt_state.empty()) fail("%s has no optimiser state; cannot --resume from it", model_path.c_str());
    for (const char* k : {"cache_settings_hash", "feature_shape", "source"})
      if (m.meta[k] != prov[k])
        fail("--resume: %s was trained on other features (%s: %s, here %s); use another --out or drop --resume",
             model_path.c_str(), k, m.meta[k].c_str(), prov[k].c_str());
    head_from_model(m, head, true);
    start_epoch = atoi(m.meta["epoch"].c_str()) + 1;
    step = strtoull(m.meta["step"].c_str(), nullptr, 10);
    if (m.meta["seed"] != std::to_string(o.seed) || m.meta["batch"] != std::to_string(o.batch))
      fprintf(stderr, "tl_train: note: resuming with --seed %llu --batch %d (the checkpoint used seed %s, batch %s)\n",
              (unsigned long long)o.seed, o.batch, m.meta["seed"].c_str(), m.meta["batch"].c_str());
    res.history = read_history(hist_path);
    while (!res.history.empty() && res.history.back().epoch >= start_epoch) res.history.pop_back();
    for (auto& e : res.history) {
      const double crit = nvalid ? e.val_loss : e.loss;
      if (crit < best) best = crit, best_epoch = e.epoch;
    }
    if (start_epoch > o.epochs)
      fail("%s already holds %d epochs; pass --epochs larger than that to continue", model_path.c_str(), start_epoch - 1);
    if (!o.quiet) fprintf(stderr, "tl_train: resuming after epoch %d (step %llu)\n", start_epoch - 1, (unsigned long long)step);
  } else {
    head.init(o.seed);
  }
  auto save = [&](const std::string& path, int epoch, bool with_opt) {
    ModelFile m = model_from_head(head, with_opt);
    m.meta = prov;
    m.meta["epoch"] = std::to_string(epoch);
    m.meta["step"] = std::to_string(step);
    m.meta["seed"] = std::to_string(o.seed);
    m.meta["batch"] = std::to_string(o.batch);
    m.meta["lr"] = strfmt("%g", o.lr);
    m.meta["optimizer"] = strfmt("rmsprop(rho=%g, eps=%g)", o.rho, o.eps);
    save_model(path, m);
  };
  if (!o.resume) save(model_path, 0, true);  // the last good weights exist from the start

  if (!o.quiet) {
    head.summary(stderr);
    fprintf(stderr, "tl_train: %s\n", src.describe().c_str());
    fprintf(stderr, "tl_train: %d epochs, batch %d, RMSprop lr %g rho %g eps %g, seed %llu, device %s\n", o.epochs,
            o.batch, o.lr, o.rho, o.eps, (unsigned long long)o.seed, device_name(o.device));
    if (synthetic)
      fprintf(stderr, "tl_train: NOTE: the features come from SYNTHETIC weights: accuracy here says nothing about "
                      "transfer learning\n");
    if (nvalid == 0) fprintf(stderr, "tl_train: warning: no validation samples: the best epoch is chosen by training loss\n");
  }
  const RmsProp opt{(float)o.lr, (float)o.rho, (float)o.eps};
  const int64_t d = spec.in_dim();
  Tensor x({o.batch, d}, o.device), y({o.batch}, o.device);
  const std::vector<float>& ytrain = src.labels(Split::Train);
  const int64_t steps_per_epoch = (ntrain + o.batch - 1) / o.batch;
  int since_best = 0;
  for (int epoch = start_epoch; epoch <= o.epochs; epoch++) {
    const double t0 = now_s();
    std::vector<int64_t> order = epoch_order(ntrain, o.seed, epoch);
    if (!o.quiet) fprintf(stderr, "Epoch %d/%d\n", epoch, o.epochs);
    Progress prog("", steps_per_epoch, "steps", o.quiet);
    double loss_sum = 0;
    int64_t correct = 0, seen = 0;
    for (int64_t b = 0; b < steps_per_epoch; b++) {
      const int n = (int)std::min<int64_t>(o.batch, ntrain - b * o.batch);
      std::vector<int64_t> idx(order.begin() + b * o.batch, order.begin() + b * o.batch + n);
      std::vector<float> yb((size_t)o.batch, 0.0f);
      for (int i = 0; i < n; i++) yb[(size_t)i] = ytrain[(size_t)idx[(size_t)i]];
      src.fetch(Split::Train, idx, x, true, (uint64_t)epoch);
      y.from_vector(yb);
      int c = 0;
      const double ls = head.train_step(x, y, n, o.seed, step, opt, &c);
      step++;
      if (!std::isfinite(ls)) {
        if (!o.quiet && Progress::is_tty()) fprintf(stderr, "\n");
        fprintf(stderr,
                "tl_train: the loss became %s at epoch %d, step %lld: stopping. %s keeps the weights of epoch %d (the "
                "last good ones). Try a lower --lr (now %g).\n",
                std::isnan(ls) ? "NaN" : "infinite", epoch, (long long)b + 1, model_path.c_str(), epoch - 1, o.lr);
        res.nan_stop = true;
        break;
      }
      loss_sum += ls;
      correct += c;
      seen += n;
      prog.update(b + 1, strfmt("loss: %.4f - accuracy: %.4f", loss_sum / seen, (double)correct / seen));
      if (interrupted()) break;
    }
    if (res.nan_stop) break;
    if (interrupted()) {
      res.interrupted = true;
      if (!o.quiet && Progress::is_tty()) fprintf(stderr, "\n");
      fprintf(stderr, "tl_train: interrupted during epoch %d; %s holds epoch %d: rerun with --resume to continue\n",
              epoch, model_path.c_str(), epoch - 1);
      break;
    }
    EpochStats e;
    e.epoch = epoch;
    e.loss = loss_sum / seen;
    e.acc = (double)correct / seen;
    EvalReport v = evaluate(head, src, Split::Valid, std::max(o.batch, 256), o.clip);
    e.val_loss = nvalid ? v.loss : NAN;
    e.val_acc = nvalid ? v.acc : NAN;
    e.seconds = now_s() - t0;
    res.history.push_back(e);
    if (Progress::is_tty() && !o.quiet) fprintf(stderr, "\r\033[K");
    if (!o.quiet)
      fprintf(stderr, "%lld/%lld - %.0fs %.0fms/step - loss: %.4f - accuracy: %.4f - val_loss: %.4f - val_accuracy: %.4f\n",
              (long long)steps_per_epoch, (long long)steps_per_epoch, e.seconds, 1e3 * e.seconds / steps_per_epoch,
              e.loss, e.acc, e.val_loss, e.val_acc);
    save(model_path, epoch, true);
    const double crit = nvalid ? e.val_loss : e.loss;
    if (crit < best) {
      best = crit;
      best_epoch = epoch;
      since_best = 0;
      save(best_path, epoch, false);
    } else {
      since_best++;
    }
    write_history(hist_path, res.history);
    if (o.plots) draw_curves(curves_path, res.history, best_epoch, synthetic, nvalid > 0);
    if (o.patience > 0 && since_best >= o.patience) {
      if (!o.quiet) fprintf(stderr, "tl_train: no improvement for %d epochs: stopping early\n", o.patience);
      res.early_stop = true;
      break;
    }
    if (o.stop_after_epochs > 0 && epoch - start_epoch + 1 >= o.stop_after_epochs) {
      res.interrupted = true;
      break;
    }
  }
  res.best_epoch = best_epoch;
  res.best_val_loss = best;
  // The report: the best epoch's weights on the validation set.
  if (best_epoch > 0 && file_exists(best_path) && !res.interrupted) {
    ModelFile bm = load_model(best_path);
    head_from_model(bm, head, false);
    EvalReport r = evaluate(head, src, nvalid ? Split::Valid : Split::Train, std::max(o.batch, 256), o.clip);
    const std::vector<std::string> cls = src.classes();
    std::string rep;
    rep += strfmt("Report on the %s set (%lld samples), weights of the best epoch (%d, by %s loss): %s\n",
                  nvalid ? "validation" : "training", (long long)r.n, best_epoch, nvalid ? "validation" : "training",
                  best_path.c_str());
    if (synthetic) rep += "NOTE: features from SYNTHETIC VGG weights: these numbers say nothing about transfer learning.\n";
    rep += strfmt("\nconfusion matrix (rows: truth, columns: prediction)\n%12s %10s %10s\n", "", cls[0].c_str(), cls[1].c_str());
    for (int t = 0; t < 2; t++)
      rep += strfmt("%12s %10lld %10lld\n", cls[t].c_str(), (long long)r.confusion[t][0], (long long)r.confusion[t][1]);
    const double tp = (double)r.confusion[1][1], fp = (double)r.confusion[0][1], fn = (double)r.confusion[1][0];
    rep += strfmt("\naccuracy            %.4f\n", r.acc);
    rep += strfmt("precision (%s)     %.4f\nrecall (%s)        %.4f\n", cls[1].c_str(), tp + fp > 0 ? tp / (tp + fp) : 0.0,
                  cls[1].c_str(), tp + fn > 0 ? tp / (tp + fn) : 0.0);
    rep += strfmt("log loss            %.5f\n", r.logloss);
    rep += strfmt("log loss, clipped   %.5f (probabilities clipped to [%g, %g], as Kaggle's metric rewards)\n",
                  r.logloss_clipped, o.clip, 1 - o.clip);
    write_file_atomic(report_path, rep.data(), rep.size());
    if (!o.quiet) fprintf(stderr, "\n%s", rep.c_str());
  }
  if (!o.quiet && !res.interrupted && !res.nan_stop)
    fprintf(stderr, "tl_train: wrote %s (last epoch), %s (epoch %d), history.csv, curves.png, report.txt in %s\n",
            model_path.c_str(), best_path.c_str(), best_epoch, o.out.c_str());
  return res;
}

}  // namespace tl
