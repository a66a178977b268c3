#include "host/model/recipe.h"

#include <cstdio>

#include "host/core/common.h"
#include "host/core/log.h"

namespace tl {

InputRecipe InputRecipe::of(const VggWeights& w, const std::string& weights_file, int image_size, Resize resize,
                            DType dtype, Precision precision, const std::string& cut) {
  InputRecipe r;
  r.weights_crc = w.crc;
  r.weights_arch = w.arch;
  r.weights_file = weights_file;
  r.weights_synthetic = w.synthetic;
  r.weights_seed = w.seed;
  r.preprocess = w.preprocess;
  r.image_size = image_size;
  r.resize = resize;
  r.dtype = dtype;
  r.precision = precision;
  const int n = w.layers_until(cut);  // fails on an unknown name, listing the valid ones
  // The last pool is the whole base: recorded as "" so that such caches keep their identity.
  r.cut = n == (int)w.layers.size() ? "" : cut;
  r.feat_h = r.feat_w = w.out_size(image_size, n);
  r.feat_c = w.out_channels(n);
  return r;
}

Image InputRecipe::resized(const Image& decoded) const { return resize_image(decoded, image_size, image_size, resize); }

void InputRecipe::preprocessed(const Image& img, float* out) const { preprocess_image(img, preprocess, out); }

void InputRecipe::apply(const uint8_t* bytes, size_t n, const std::string& what, int64_t max_pixels, float* out) const {
  preprocessed(resized(decode_image(bytes, n, what, max_pixels)), out);
}

std::string InputRecipe::weights_crc_str() const { return weights_crc ? strfmt("%08x", weights_crc) : "unknown"; }

void InputRecipe::write(std::map<std::string, std::string>* kv, Where where) const {
  auto& m = *kv;
  m["weights_crc32"] = weights_crc_str();
  if (!weights_arch.empty()) m["weights_arch"] = weights_arch;
  if (weights_crc) m["weights_synthetic"] = weights_synthetic ? strfmt("yes (seed %llu)", (unsigned long long)weights_seed) : "no";
  if (!weights_file.empty()) m[where == Where::Cache ? "info.weights_file" : "weights_file"] = weights_file;
  m["preprocess"] = preprocess_name(preprocess);
  m["image_size"] = std::to_string(image_size);
  m["resize"] = resize_name(resize);
  if (where == Where::Cache || weights_crc) m["dtype"] = dtype == DType::F16 ? "fp16" : "fp32";
  m["feature_shape"] = strfmt("%dx%dx%d", feat_h, feat_w, feat_c);
  m["precision"] = precision_name(precision);
  if (!cut.empty()) m["cut"] = cut;  // absent: the whole base (older caches and models)
}

InputRecipe InputRecipe::read(const std::map<std::string, std::string>& kv, const std::string& what) {
  auto get = [&](const char* k) {
    auto it = kv.find(k);
    return it == kv.end() ? std::string() : it->second;
  };
  InputRecipe r;
  const std::string crc = get("weights_crc32");
  r.weights_crc = crc.empty() || crc == "unknown" ? 0 : (uint32_t)strtoul(crc.c_str(), nullptr, 16);
  r.weights_arch = get("weights_arch");
  r.weights_file = get("info.weights_file").empty() ? get("weights_file") : get("info.weights_file");
  const std::string syn = get("weights_synthetic");
  r.weights_synthetic = starts_with(syn, "yes");
  if (r.weights_synthetic) {
    const size_t at = syn.find("seed ");
    if (at != std::string::npos) r.weights_seed = strtoull(syn.c_str() + at + 5, nullptr, 10);
  }
  r.preprocess = parse_preprocess(get("preprocess").empty() ? "caffe" : get("preprocess"));
  r.image_size = atoi(get("image_size").c_str());
  if (r.image_size <= 0)
    fail("%s records no image size; it was written by an older version: rebuild it (tl_cache --force, or train again)",
         what.c_str());
  r.resize = parse_resize(get("resize").empty() ? "nearest" : get("resize"));
  r.dtype = get("dtype") == "fp16" ? DType::F16 : DType::F32;
  // Written by every version since --precision existed; older caches and models were fp32.
  r.precision = get("precision").empty() ? Precision::FP32 : parse_precision(get("precision"));
  r.cut = get("cut");
  std::vector<std::string> fs = split(get("feature_shape"), 'x');
  if (fs.size() != 3 || (r.feat_h = atoi(fs[0].c_str())) <= 0 || (r.feat_w = atoi(fs[1].c_str())) <= 0 ||
      (r.feat_c = atoi(fs[2].c_str())) <= 0)
    fail("%s records no feature shape; it was written by an older version: rebuild it", what.c_str());
  return r;
}

void InputRecipe::check_weights(const VggWeights& w, const std::string& wpath, const std::string& what) const {
  if (!weights_crc) {
    note("note: %s was trained on imported features; assuming they came from %s with %s preprocessing", what.c_str(),
         wpath.c_str(), preprocess_name(preprocess));
  } else if (w.crc != weights_crc) {
    fail("%s (crc32 %08x) are not the weights %s's features were made with (crc32 %s%s); pass --weights with those",
         wpath.c_str(), w.crc, what.c_str(), weights_crc_str().c_str(),
         weights_file.empty() ? "" : (", " + weights_file).c_str());
  }
  if (w.preprocess != preprocess)
    fail("%s was trained with '%s' preprocessing but %s expects '%s'", what.c_str(), preprocess_name(preprocess),
         wpath.c_str(), preprocess_name(w.preprocess));
}

}  // namespace tl
