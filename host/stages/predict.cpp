#include "host/stages/predict.h"
#include "host/stages/finetune.h"
#include "host/model/onnx_export.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "host/core/common.h"
#include "host/core/cpu_features.h"
#include "host/ops/ops.h"
#include "host/io/dataset.h"
#include "host/core/progress.h"
#include "host/core/threads.h"
#include "host/io/zip.h"
#include "host/ops/cpu_ops.h"

namespace tl {

std::vector<PredictInput> expand_inputs(const std::vector<std::string>& paths) {
  std::vector<PredictInput> out;
  for (const std::string& p : paths) {
    if (dir_exists(p) || (file_exists(p) && ends_with(lower(p), ".zip"))) {
      auto src = std::make_shared<DataSource>(p);
      size_t before = out.size();
      for (auto& [rel, size] : src->list()) {
        if (!has_image_extension(rel)) continue;
        const std::string name = src->is_zip() ? p + ":" + rel : path_join(p, rel);
        std::string r = rel;
        out.push_back({name, [src, r]() { return src->read(r, kMaxImageFileBytes); }});
      }
      if (out.size() == before) fail("%s: no images inside", p.c_str());
    } else if (file_exists(p)) {
      out.push_back({p, [p]() { return read_file(p); }});
    } else {
      // A missing file is a line of output, not the end of the run.
      out.push_back({p, [p]() -> std::vector<uint8_t> { fail("not found"); }});
    }
  }
  return out;
}

long kaggle_id(const std::string& name) {
  std::string b = basename_of(name);
  size_t dot = b.find('.');
  if (dot == 0 || dot == std::string::npos) return -1;
  for (size_t i = 0; i < dot; i++)
    if (!isdigit((unsigned char)b[i])) return -1;
  return atol(b.substr(0, dot).c_str());
}

int label_from_path(const std::string& path, const std::vector<std::string>& classes) {
  auto lower = [](std::string s) {
    for (char& c : s) c = (char)tolower((unsigned char)c);
    return s;
  };
  const std::string base = lower(basename_of(path));
  for (int k = 0; k < 2; k++)
    if (starts_with(base, lower(classes[k]) + ".")) return k;
  std::vector<std::string> parts = split(path, '/');
  for (size_t i = parts.size() > 1 ? parts.size() - 1 : 0; i-- > 0;) {
    const std::string p = lower(parts[i]);
    for (int k = 0; k < 2; k++)
      if (p == lower(classes[k]) || p == lower(classes[k]) + "s") return k;
  }
  return -1;
}

std::string labelled_report(const std::vector<Prediction>& res, const std::vector<std::string>& cls, double clip,
                            int* labelled) {
  int64_t conf[2][2] = {{0, 0}, {0, 0}};
  double ll = 0, llc = 0;
  int n = 0;
  const double c = clip > 0 ? clip : 0.005;
  for (const Prediction& r : res) {
    const int y = r.ok ? label_from_path(r.name, cls) : -1;
    if (y < 0) continue;
    n++;
    conf[y][r.p > 0.5 ? 1 : 0]++;
    const double p = std::min(std::max(r.p, 1e-300), 1.0 - 1e-16), pc = std::min(std::max(r.p, c), 1.0 - c);
    ll += -(y ? std::log(p) : std::log(1.0 - p));
    llc += -(y ? std::log(pc) : std::log(1.0 - pc));
  }
  *labelled = n;
  if (n == 0) return "";
  std::string rep = strfmt("%d of the images carry a label in their path (a class folder or a Kaggle name):\n", n);
  rep += strfmt("\nconfusion matrix (rows: truth, columns: prediction)\n%12s %10s %10s\n", "", cls[0].c_str(), cls[1].c_str());
  for (int t = 0; t < 2; t++)
    rep += strfmt("%12s %10lld %10lld\n", cls[t].c_str(), (long long)conf[t][0], (long long)conf[t][1]);
  rep += strfmt("\naccuracy            %.4f\n", (double)(conf[0][0] + conf[1][1]) / n);
  rep += strfmt("log loss            %.5f\n", ll / n);
  rep += strfmt("log loss, clipped   %.5f (probabilities clipped to [%g, %g]: %s)\n", llc / n, c, 1 - c,
                llc < ll ? "lower, as confident mistakes cost less" : "no lower: clipping does not help these predictions");
  return rep;
}

Predictor::Predictor(const std::string& model_path, const std::string& weights_path, Device d, int batch, bool tta,
                     const std::string& precision)
    : batch_(batch), tta_(tta) {
  if (batch < 1 || batch > 4096) fail("--batch must be between 1 and 4096");
  model_ = load_model(model_path);
  auto meta = [&](const char* k) {
    auto it = model_.meta.find(k);
    return it == model_.meta.end() ? std::string() : it->second;
  };
  recipe_ = InputRecipe::read(model_.meta, model_path);
  if (!recipe_.cut.empty())
    fail("%s was trained on activations cut at %s; tl_predict runs classifiers on the whole base's features: "
         "train one from a cache made without --until",
         model_path.c_str(), recipe_.cut.c_str());
  if (!precision.empty() && parse_precision(precision) != recipe_.precision)
    fail("--precision %s: %s was trained on features computed in %s; predict with those (omit --precision) or "
         "train a model on %s features",
         precision.c_str(), model_path.c_str(), precision_name(recipe_.precision), precision.c_str());
  // bf16 features are computed on the GPU's tensor cores or on a CPU with AMX (direct conv on tiles)
  // or AVX512_BF16 (Winograd): any of them serves a bf16 model (they differ from each other about
  // as much as each from fp32).
  if (d != Device::CUDA && recipe_.precision == Precision::TF32)
    fail("%s was trained on features computed in tf32 on a GPU's tensor cores; predict on a GPU (--device cuda), or "
         "train a model on fp32 features to predict on the CPU",
         model_path.c_str());
  if (d != Device::CUDA && recipe_.precision == Precision::BF16 && !cpu_bf16_capable())
    fail("%s was trained on features computed in bf16, which this CPU cannot compute (no AMX, no AVX512_BF16); predict on a "
         "GPU (--device cuda), or train a model on fp32 features to predict on this CPU",
         model_path.c_str());
  std::string wpath = weights_path.empty() ? recipe_.weights_file : weights_path;
  if (wpath.empty() || !file_exists(wpath)) {
    if (weights_path.empty() && file_exists(kDefaultWeightsFile))
      wpath = kDefaultWeightsFile;
    else if (weights_path.empty())
    {
      if (recipe_.weights_file.empty())
        fail("%s records no VGG weights (it was trained on imported .npy features); pass --weights FILE with the "
             "converted weights those features came from",
             model_path.c_str());
      fail("%s was trained on features of %s, which is not here; pass --weights FILE with those converted weights",
           model_path.c_str(), recipe_.weights_file.c_str());
    }
  }
  weights_ = load_weights(wpath);
  recipe_.check_weights(weights_, wpath, model_path);
  apply_tuned_layers(model_, weights_, model_path);  // a fine-tuned classifier: its block's weights
  size_ = recipe_.image_size;
  const int per = tta ? 2 : 1;
  fx_ = std::make_unique<FeatureExtractor>(weights_, d, batch * per, size_, DType::F32, recipe_.precision);
  if (fx_->feat_h() != model_.spec.feat_h || fx_->feat_w() != model_.spec.feat_w || fx_->feat_c() != model_.spec.feat_c)
    fail("%s expects %dx%dx%d features, but %s at %dx%d gives %dx%dx%d", model_path.c_str(), model_.spec.feat_h,
         model_.spec.feat_w, model_.spec.feat_c, wpath.c_str(), size_, size_, fx_->feat_h(), fx_->feat_w(), fx_->feat_c());
  head_ = std::make_unique<Head>(model_.spec, d);
  head_from_model(model_, *head_, false);
  std::vector<std::string> cls = split(meta("classes"), ',');
  if (cls.size() == 2) classes_ = cls;
  std::string tuned;
  for (const ConvLayerSpec& c : model_.convs) tuned += (tuned.empty() ? " with fine-tuned " : ",") + c.name;
  desc_ = strfmt("%s (epoch %s%s) on %s features (%s) of %s; images %dx%d %s, preprocessing %s%s", model_path.c_str(),
                 meta("epoch").c_str(), tuned.c_str(), strfmt("%dx%dx%d", recipe_.feat_h, recipe_.feat_w, recipe_.feat_c).c_str(),
                 strfmt("%s, conv %s", precision_name(recipe_.precision), ops::conv_path(d, recipe_.precision, true).c_str()).c_str(),
                 wpath.c_str(), size_, size_,
                 resize_name(recipe_.resize), preprocess_name(recipe_.preprocess), tta ? ", test-time augmentation (flip)" : "");
}

Predictor::~Predictor() = default;

std::vector<uint8_t> Predictor::onnx() const {
  if (tta_) fail("--export-onnx: the exported model has no test-time augmentation; drop --tta");
  return export_onnx(weights_, model_, size_, desc_);
}

std::vector<Explained> Predictor::explain(const std::vector<PredictInput>& inputs, const std::vector<size_t>& which,
                                         const std::string& layer, bool progress) {
  if (!cam_ || cam_->layer() != layer) cam_ = std::make_unique<GradCam>(weights_, *head_, head_->device(), recipe_.precision, layer);
  std::vector<Explained> out(which.size());
  const int64_t in_elems = (int64_t)size_ * size_ * 3;
  Progress prog("tl_predict --explain", (int64_t)which.size(), "images", !progress);
  prog.update(0);
  for (size_t b0 = 0; b0 < which.size(); b0 += (size_t)batch_) {
    const size_t nb = std::min(which.size() - b0, (size_t)batch_);
    std::vector<std::vector<float>> pre(nb);
    parallel_for((int64_t)nb, [&](int64_t i) {
      Explained& e = out[b0 + (size_t)i];
      const PredictInput& it = inputs[which[b0 + (size_t)i]];
      try {
        std::vector<uint8_t> bytes = it.read();
        e.photo = recipe_.resized(decode_image(bytes.data(), bytes.size(), it.name));
        pre[(size_t)i].resize((size_t)in_elems);
        recipe_.preprocessed(e.photo, pre[(size_t)i].data());
        e.ok = true;
      } catch (...) {
        e.error = current_exception_message();
      }
    });
    std::vector<float> x;
    std::vector<size_t> slot;
    for (size_t i = 0; i < nb; i++)
      if (out[b0 + i].ok) {
        x.insert(x.end(), pre[i].begin(), pre[i].end());
        slot.push_back(b0 + i);
      }
    std::vector<CamResult> cams = cam_->explain(x.data(), (int)slot.size(), size_);
    for (size_t k = 0; k < slot.size(); k++) {
      Explained& e = out[slot[k]];
      e.cam = std::move(cams[k]);
      e.overlay = heatmap_overlay(e.photo, heatmap_upsampled(e.cam.cam, e.cam.h, e.cam.w, e.photo.w, e.photo.h));
    }
    prog.update((int64_t)(b0 + nb));
  }
  if (progress) prog.finish();
  return out;
}

std::vector<Prediction> Predictor::run(const std::vector<PredictInput>& inputs, bool progress) {
  std::vector<Prediction> out(inputs.size());
  const int per = tta_ ? 2 : 1;
  const int64_t in_elems = (int64_t)size_ * size_ * 3;
  Progress prog("tl_predict", (int64_t)inputs.size(), "images", !progress);
  std::vector<float> z((size_t)batch_ * per);
  Tensor x({(int64_t)batch_ * per, fx_->feat_elems()}, head_->device());
  for (size_t b0 = 0; b0 < inputs.size(); b0 += (size_t)batch_) {
    const size_t nb = std::min(inputs.size() - b0, (size_t)batch_);
    std::vector<char> ok(nb, 0);
    std::vector<std::string> err(nb);
    float* in = fx_->next_input();
    // Decode in parallel; good images are packed to the front of the batch in order.
    std::vector<std::vector<float>> pre(nb);
    parallel_for((int64_t)nb, [&](int64_t i) {
      const PredictInput& it = inputs[b0 + (size_t)i];
      try {
        std::vector<uint8_t> bytes = it.read();
        Image img = recipe_.resized(decode_image(bytes.data(), bytes.size(), it.name));
        pre[(size_t)i].resize((size_t)in_elems * per);
        recipe_.preprocessed(img, pre[(size_t)i].data());
        if (tta_) {  // the horizontal flip of the resized image
          Image fl = img;
          for (int y = 0; y < img.h; y++)
            for (int xx = 0; xx < img.w; xx++) memcpy(&fl.rgb[((size_t)y * img.w + xx) * 3], img.px(img.w - 1 - xx, y), 3);
          recipe_.preprocessed(fl, pre[(size_t)i].data() + in_elems);
        }
        ok[(size_t)i] = 1;
      } catch (...) {
        std::string m = current_exception_message();
        err[(size_t)i] = starts_with(m, it.name + ": ") ? m.substr(it.name.size() + 2) : m;
      }
    });
    int n = 0;
    std::vector<size_t> slot(nb);
    for (size_t i = 0; i < nb; i++) {
      out[b0 + i].name = inputs[b0 + i].name;
      if (!ok[i]) {
        out[b0 + i].error = err[i];
        continue;
      }
      slot[i] = (size_t)n;
      memcpy(in + (size_t)n * per * in_elems, pre[i].data(), sizeof(float) * (size_t)in_elems * per);
      n++;
    }
    if (n > 0) {
      Tensor f = fx_->run(n * per);
      Tensor flat = Tensor::view(f.ptr, {(int64_t)n * per, fx_->feat_elems()}, f.device);
      Tensor dst = x.rows((int64_t)n * per);
      dst.copy_from(flat);
      head_->logits(x, n * per, z.data());
      for (size_t i = 0; i < nb; i++) {
        if (!ok[i]) continue;
        double p = 0;
        for (int k = 0; k < per; k++) p += 1.0 / (1.0 + std::exp(-(double)z[slot[i] * per + k]));
        out[b0 + i].ok = true;
        out[b0 + i].p = p / per;
      }
    }
    prog.update((int64_t)(b0 + nb));
  }
  if (progress) prog.finish();
  return out;
}

}  // namespace tl
