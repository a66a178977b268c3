#include "host/stages/image_source.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <mutex>

#include "host/core/common.h"
#include "host/core/log.h"
#include "host/model/features.h"
#include "host/model/recipe.h"
#include "host/core/progress.h"
#include "host/core/threads.h"

namespace tl {

namespace {

class ImageSource : public FeatureSource {
 public:
  explicit ImageSource(const ImageSourceOptions& o) : o_(o) {
    if (!file_exists(o.data) && !dir_exists(o.data)) fail("--images %s: not found", o.data.c_str());
    apply_decode_limits(o);
    weights_ = load_weights(o.weights);
    recipe_ = InputRecipe::of(weights_, o.weights, o.image_size, parse_resize(o.resize), DType::F32,
                              parse_precision(o.precision), o.cut);
    check_precision(recipe_.precision, o.device);
    ScanOptions so;
    so.valid_fraction = o.valid_fraction;
    so.seed = o.seed;
    so.limit = o.limit;
    ds_ = scan_dataset(o.data, o.valid_data, so);
    fx_ = std::make_unique<FeatureExtractor>(weights_, o.device, o.base_batch, o.image_size, DType::F32,
                                             recipe_.precision, o.cut.empty() ? 0 : weights_.layers_until(o.cut));
    check_files();
    for (int s = 0; s < 2; s++)
      for (int64_t r : rows_[s]) labels_[s].push_back((float)ds_.files[(size_t)r].label);
    recipe_.write(&prov_, InputRecipe::Where::Model);
    prov_["source"] = "images";
    prov_["images"] = o.data;
    prov_["cache_settings_hash"] = strfmt("images-%016llx", (unsigned long long)ds_.listing_hash());
    prov_["augment"] = o.augment ? "keras ImageDataGenerator (rotation 40, shifts 0.2, shear 0.2, zoom 0.2, flip)" : "none";
    prov_["classes"] = ds_.classes[0] + "," + ds_.classes[1];
  }

  int64_t size(Split s) const override { return (int64_t)rows_[(int)s].size(); }
  const std::vector<float>& labels(Split s) const override { return labels_[(int)s]; }
  int feat_h() const override { return fx_->feat_h(); }
  int feat_w() const override { return fx_->feat_w(); }
  int feat_c() const override { return fx_->feat_c(); }
  std::map<std::string, std::string> provenance() const override { return prov_; }
  std::vector<std::string> classes() const override { return ds_.classes; }
  std::string describe() const override {
    return strfmt("images %s through the frozen %s base each batch (%lld train + %lld valid, %dx%d, %s%s)",
                  o_.data.c_str(), weights_.arch.c_str(), (long long)rows_[0].size(), (long long)rows_[1].size(),
                  o_.image_size, o_.image_size, resize_name(recipe_.resize), o_.augment ? ", augmented" : ", no augmentation");
  }

  std::string sample_name(Split s, int64_t i) const override {
    return ds_.files[(size_t)rows_[(int)s][(size_t)i]].rel;
  }
  std::vector<uint8_t> sample_bytes(Split s, int64_t i) const override {
    return ds_.read(ds_.files[(size_t)rows_[(int)s][(size_t)i]], kMaxImageFileBytes);
  }

  // The base runs on sub-batches of base_batch images (bounded memory for any training or
  // validation batch size); their features are copied into x's rows.
  void fetch(Split s, const std::vector<int64_t>& idx, Tensor& x, bool train, uint64_t epoch) override {
    const int S = o_.image_size;
    const int64_t in_elems = (int64_t)S * S * 3;
    const bool aug = train && o_.augment;
    for (size_t b0 = 0; b0 < idx.size(); b0 += (size_t)o_.base_batch) {
      const int n = (int)std::min(idx.size() - b0, (size_t)o_.base_batch);
      float* in = fx_->next_input();
      parallel_for(n, [&](int64_t i) {
        const int64_t fi = rows_[(int)s][(size_t)idx[b0 + (size_t)i]];
        const DataFile& f = ds_.files[(size_t)fi];
        std::vector<uint8_t> bytes = ds_.read(f, kMaxImageFileBytes);
        float* dst = in + i * in_elems;
        if (aug) {  // augmentation acts on the resized image, before preprocessing, as in Keras
          Image img = recipe_.resized(decode_image(bytes.data(), bytes.size(), ds_.display_path(f), o_.max_pixels));
          Rng rng = augment_rng(o_.seed, epoch, (uint64_t)fi);
          apply_augment(img, draw_augment(o_.aug, rng, S, S), dst);
          preprocess_rgb_float(dst, (int64_t)S * S, recipe_.preprocess, dst);
        } else {
          recipe_.apply(bytes.data(), bytes.size(), ds_.display_path(f), o_.max_pixels, dst);
        }
      });
      Tensor f = fx_->run(n);
      Tensor flat = Tensor::view(f.ptr, {n, fx_->feat_elems()}, f.device);
      Tensor dst = Tensor::view((float*)x.ptr + b0 * fx_->feat_elems(), {n, fx_->feat_elems()}, x.device);
      dst.copy_from(flat);
    }
  }

 private:
  ImageSourceOptions o_;
  VggWeights weights_;
  InputRecipe recipe_;
  Dataset ds_;
  std::unique_ptr<FeatureExtractor> fx_;
  std::vector<int64_t> rows_[2];
  std::vector<float> labels_[2];
  std::map<std::string, std::string> prov_;

  // Decodes every file once, so files that cannot be used are skipped before training starts.
  void check_files() {
    const int64_t n = (int64_t)ds_.files.size();
    std::vector<std::string> errors((size_t)n);
    std::atomic<int64_t> done{0};
    Progress prog(program_name() + ": checking images", n, "images", quiet());
    std::mutex mu;
    parallel_for(n, [&](int64_t i) {
      const DataFile& f = ds_.files[(size_t)i];
      try {
        std::vector<uint8_t> bytes = ds_.read(f, kMaxImageFileBytes);
        decode_image(bytes.data(), bytes.size(), f.rel, o_.max_pixels);
      } catch (...) {
        std::string m = current_exception_message();
        errors[(size_t)i] = starts_with(m, f.rel + ": ") ? m.substr(f.rel.size() + 2) : m;
      }
      const int64_t d = ++done;
      if (!quiet() && (d % 64 == 0 || d == n)) {
        std::lock_guard<std::mutex> lk(mu);
        prog.update(d);
      }
    });
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) {
      if (!errors[(size_t)i].empty()) {
        if (bad < 5) note("skipping %s: %s", ds_.display_path(ds_.files[(size_t)i]).c_str(), errors[(size_t)i].c_str());
        bad++;
        continue;
      }
      rows_[(int)ds_.files[(size_t)i].split].push_back(i);
    }
    prog.finish(strfmt("%lld unusable", (long long)bad));
    if (bad > 5) note("... %lld files skipped in all", (long long)bad);
    if ((double)bad > o_.max_bad * (double)n)
      fail("%lld of %lld files could not be used, over --max-bad %g", (long long)bad, (long long)n, o_.max_bad);
  }
};

}  // namespace

std::unique_ptr<FeatureSource> open_image_source(const ImageSourceOptions& o) { return std::make_unique<ImageSource>(o); }

void save_augmented_samples(const ImageSourceOptions& o, int n, const std::string& dir) {
  ScanOptions so;
  so.valid_fraction = o.valid_fraction;
  so.seed = o.seed;
  so.limit = o.limit;
  Dataset ds = scan_dataset(o.data, o.valid_data, so);
  const Resize rs = parse_resize(o.resize);
  const int S = o.image_size, variants = 4;
  make_dirs(dir);
  int written = 0;
  for (size_t i = 0; i < ds.files.size() && written < n; i++) {
    const DataFile& f = ds.files[i];
    if (f.split != Split::Train) continue;
    Image img;
    try {
      std::vector<uint8_t> bytes = ds.read(f, kMaxImageFileBytes);
      img = resize_image(decode_image(bytes.data(), bytes.size(), f.rel, o.max_pixels), S, S, rs);
    } catch (const Error&) {
      continue;
    }
    const int gap = 6;
    Image strip;
    strip.w = S * (variants + 1) + gap * variants;
    strip.h = S;
    strip.rgb.assign((size_t)strip.w * strip.h * 3, 255);
    std::vector<float> buf((size_t)S * S * 3);
    for (int v = 0; v <= variants; v++) {
      if (v == 0) {
        for (size_t k = 0; k < buf.size(); k++) buf[k] = img.rgb[k];
      } else {
        Rng rng = augment_rng(o.seed, (uint64_t)v, (uint64_t)i);
        apply_augment(img, draw_augment(o.aug, rng, S, S), buf.data());
      }
      for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++)
          for (int c = 0; c < 3; c++) {
            float val = buf[((size_t)y * S + x) * 3 + c];
            strip.rgb[((size_t)y * strip.w + v * (S + gap) + x) * 3 + c] =
                (uint8_t)std::lround(val < 0 ? 0 : val > 255 ? 255 : val);
          }
    }
    std::string name = basename_of(f.rel);
    name = name.substr(0, name.rfind('.'));
    write_png(path_join(dir, strfmt("%02d_%s.png", written, name.c_str())), strip);
    written++;
  }
  note("wrote %d augmented samples to %s (each: the resized image, then 4 random draws)", written, dir.c_str());
}

}  // namespace tl
