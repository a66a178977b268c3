#include "host/model/gradcam.h"

#include <algorithm>
#include <cmath>

#include "host/core/common.h"
#include "host/model/conv_block.h"
#include "host/model/head.h"
#include "host/model/vgg.h"
#include "host/ops/ops.h"

namespace tl {

std::string conv_layer_names(const VggWeights& w) {
  std::string s;
  for (const ConvLayer& l : w.layers) s += (s.empty() ? "" : ", ") + l.spec.name;
  return s;
}

GradCam::GradCam(const VggWeights& w, Head& head, Device d, Precision p, const std::string& layer)
    : head_(head), device_(d), layer_(layer) {
  int idx = -1;
  for (size_t i = 0; i < w.layers.size(); i++)
    if (w.layers[i].spec.name == layer) idx = (int)i;
  if (idx < 0) fail("--explain-layer %s: no such conv layer; choose one of %s", layer.c_str(), conv_layer_names(w).c_str());
  lower_ = std::make_unique<VggBase>(w, d, p, idx + 1);
  upper_ = std::make_unique<ConvBlock>(w, idx + 1, w.layers[(size_t)idx].spec.pool_after, d, p);
}

GradCam::~GradCam() = default;

std::vector<CamResult> GradCam::explain(const float* x, int n, int image_size) {
  std::vector<CamResult> out((size_t)n);
  if (n <= 0) return out;
  Tensor xin({n, image_size, image_size, 3}, device_);
  xin.copy_from(Tensor::view((void*)x, {n, image_size, image_size, 3}));
  Tensor A = lower_->forward(xin, false);  // the explained maps, after their ReLU
  Tensor f = upper_->forward(A);
  const int64_t fe = f.numel() / n;
  if (fe != head_.spec().in_dim())
    fail("Grad-CAM: the base gives %lld features per image, the head takes %d", (long long)fe, head_.spec().in_dim());
  Tensor flat = Tensor::view(f.ptr, {n, fe}, device_);
  std::vector<float> z((size_t)n);
  head_.logits(flat, n, z.data());
  Tensor df({n, fe}, device_), dA({A.dim(0), A.dim(1), A.dim(2), A.dim(3)}, device_);
  head_.logit_input_gradient(flat, n, df);
  upper_->backward(Tensor::view(df.ptr, {f.dim(0), f.dim(1), f.dim(2), f.dim(3)}, device_), &dA, false);
  const std::vector<float> a = A.to_vector(), g = dA.to_vector();
  const int h = (int)A.dim(1), w = (int)A.dim(2), c = (int)A.dim(3);
  const int64_t hw = (int64_t)h * w;
  for (int i = 0; i < n; i++) {
    CamResult& r = out[(size_t)i];
    r.h = h;
    r.w = w;
    r.logit = z[(size_t)i];
    const double sign = z[(size_t)i] >= 0 ? 1.0 : -1.0;  // the predicted class's score: z for dog, -z for cat
    const float* ai = a.data() + (size_t)i * hw * c;
    const float* gi = g.data() + (size_t)i * hw * c;
    std::vector<double> alpha((size_t)c, 0.0);
    for (int64_t p = 0; p < hw; p++)
      for (int k = 0; k < c; k++) alpha[(size_t)k] += gi[p * c + k];
    for (double& v : alpha) v *= sign / (double)hw;
    r.cam.resize((size_t)hw);
    for (int64_t p = 0; p < hw; p++) {
      double s = 0;
      for (int k = 0; k < c; k++) s += alpha[(size_t)k] * ai[p * c + k];
      r.cam[(size_t)p] = (float)std::max(0.0, s);
    }
  }
  return out;
}

std::vector<uint8_t> heatmap_upsampled(const std::vector<float>& cam, int h, int w, int out_w, int out_h) {
  if ((int64_t)cam.size() != (int64_t)h * w) fail("heatmap: %zu values for a %dx%d map", cam.size(), h, w);
  float mx = 0;
  for (float v : cam) mx = std::max(mx, v);
  Image small;
  small.w = w;
  small.h = h;
  small.rgb.resize((size_t)h * w * 3);
  for (size_t i = 0; i < cam.size(); i++) {
    const uint8_t v = mx > 0 ? (uint8_t)std::lround(std::min(255.0, 255.0 * cam[i] / mx)) : 0;
    small.rgb[i * 3] = small.rgb[i * 3 + 1] = small.rgb[i * 3 + 2] = v;
  }
  // A grey image: Pillow resizes each channel alike, so one channel is its "L" resize.
  const Image big = resize_image(small, out_w, out_h, Resize::Bilinear);
  std::vector<uint8_t> out((size_t)out_w * out_h);
  for (size_t i = 0; i < out.size(); i++) out[i] = big.rgb[i * 3];
  return out;
}

Image heatmap_overlay(const Image& photo, const std::vector<uint8_t>& heat) {
  if ((int64_t)heat.size() != (int64_t)photo.w * photo.h)
    fail("heatmap overlay: %zu values for a %dx%d photo", heat.size(), photo.w, photo.h);
  uint8_t lut[256][3];
  for (int i = 0; i < 256; i++) cubehelix(i / 255.0, lut[i]);
  Image out = photo;
  for (size_t i = 0; i < heat.size(); i++) {
    const double a = 0.2 + 0.45 * heat[i] / 255.0;  // a faint tint everywhere, so the cold areas read as cold
    for (int k = 0; k < 3; k++)
      out.rgb[i * 3 + k] = (uint8_t)std::lround(photo.rgb[i * 3 + k] * (1 - a) + lut[heat[i]][k] * a);
  }
  return out;
}

}  // namespace tl
