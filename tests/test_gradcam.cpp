// Grad-CAM (tl_predict --explain): the maps against a PyTorch float64 Grad-CAM of the same model on
// the same pixels (tests/fixtures/gradcam_real.npz, tools/gen_fixtures.py --only gradcam: the genuine
// base, a small head, two real photos), the upsampling against Pillow's BILINEAR, the colour map's
// brightness, the block above the map, and the CUDA path against the CPU (emulated in CI).
#include <cmath>

#include "helpers.h"
#include "host/model/conv_block.h"
#include "host/model/gradcam.h"
#include "host/model/head.h"
#include "host/model/vgg.h"
#include "host/ops/ops.h"
#include "tools/convert/convert.h"

using namespace tl;
using tlt::Fixture;

namespace {

Head fixture_head(const Fixture& fx, Device d) {
  HeadSpec s;
  s.hidden1 = (int)fx.shape("W1")[1];
  s.hidden2 = (int)fx.shape("W2")[1];
  Head h(s, d);
  const char* keys[6] = {"W1", "b1", "W2", "b2", "W3", "b3"};
  std::vector<Tensor*> p = h.params();
  for (int i = 0; i < 6; i++) p[(size_t)i]->from_vector(fx.f(keys[i]));
  return h;
}

}  // namespace

TEST_CASE("[real-keras] Grad-CAM equals PyTorch's float64 Grad-CAM on real photos with the genuine weights (1e-5)") {
  const std::string real = tlt::real_keras_h5();
  REQUIRE(!real.empty());
  Fixture fx("gradcam_real.npz");
  VggWeights w = convert_weights(real, nullptr, nullptr);
  Head head = fixture_head(fx, Device::CPU);
  Tensor x = tlt::real_photos(w, 224, 2);
  const std::vector<float> logit = fx.f("logit");
  CHECK(logit[0] < 0);  // the two photos fall on either side: both classes' scores are explained
  CHECK(logit[1] > 0);
  for (const char* layer : {"block5_conv3", "block5_conv2"}) {
    CAPTURE(layer);
    GradCam gc(w, head, Device::CPU, Precision::FP32, layer);
    std::vector<CamResult> r = gc.explain(x.f32(), 2, 224);
    const std::vector<float> ref = fx.f(std::string("cam_") + layer);
    REQUIRE(r.size() == 2);
    for (int i = 0; i < 2; i++) {
      CHECK(r[(size_t)i].h == 14);
      CHECK(r[(size_t)i].w == 14);
      CHECK(std::fabs(r[(size_t)i].logit - logit[(size_t)i]) < 1e-4);
      const std::vector<float> want(ref.begin() + i * 196, ref.begin() + (i + 1) * 196);
      const double e = tlt::rel_err(r[(size_t)i].cam, want);
      MESSAGE(std::string(layer) << " photo " << i << ": Grad-CAM vs PyTorch float64, max error / max value " << e);
      CHECK(e < 1e-5);
    }
  }
  CHECK(tlt::error_of([&] { GradCam(w, head, Device::CPU, Precision::FP32, "block5_pool"); })
            .find("--explain-layer block5_pool: no such conv layer; choose one of block1_conv1, ") == 0);
}

TEST_CASE("heatmaps upsample exactly as Pillow's BILINEAR resize; the colour map brightens monotonically") {
  Fixture fx("gradcam_real.npz");
  struct Case {
    const char *small, *big;
    int w, h, bw, bh;
  };
  for (Case c : {Case{"up_small", "up_224", 14, 14, 224, 224}, Case{"up2_small", "up2_200x150", 7, 7, 200, 150}}) {
    CAPTURE(c.big);
    const std::vector<float> small = fx.f(c.small);  // max 255: the scaling to 0..255 leaves it unchanged
    const std::vector<uint8_t> up = heatmap_upsampled(small, c.h, c.w, c.bw, c.bh);
    const std::vector<float> want = fx.f(c.big);
    REQUIRE(up.size() == want.size());
    int diff = 0;
    for (size_t i = 0; i < up.size(); i++) diff += up[i] != (uint8_t)want[i];
    CHECK(diff == 0);
  }
  // Scaling: the maximum maps to 255, half of it to 128 (rounded), an all-zero map stays zero.
  CHECK(heatmap_upsampled({0.5f, 1.0f, 0.25f, 0.0f}, 2, 2, 2, 2) == std::vector<uint8_t>{128, 255, 64, 0});
  CHECK(heatmap_upsampled({0, 0, 0, 0}, 2, 2, 4, 4) == std::vector<uint8_t>(16, 0));
  uint8_t lo[3], hi[3];
  cubehelix(0, lo);
  cubehelix(1, hi);
  CHECK((lo[0] == 0 && lo[1] == 0 && lo[2] == 0));
  CHECK((hi[0] == 255 && hi[1] == 255 && hi[2] == 255));
  double last = -1;
  for (int i = 0; i <= 255; i++) {
    uint8_t c[3];
    cubehelix(i / 255.0, c);
    const double luma = 0.30 * c[0] + 0.59 * c[1] + 0.11 * c[2];  // the weights cubehelix is built on
    CHECK(luma >= last - 0.6);  // rounding to 8 bits may step back by a fraction of a level
    last = luma;
  }
  Image photo;
  photo.w = 2;
  photo.h = 1;
  photo.rgb = {100, 100, 100, 100, 100, 100};
  Image o = heatmap_overlay(photo, {0, 255});
  CHECK((o.rgb[0] == 80 && o.rgb[1] == 80 && o.rgb[2] == 80));  // 20% black
  CHECK((o.rgb[3] == 201 && o.rgb[4] == 201 && o.rgb[5] == 201));  // 65% white: 100 * 0.35 + 255 * 0.65 = 200.75
}

TEST_CASE("ConvBlock: the layers above a cut, forward as the base runs them and backward as the ops compose") {
  VggWeights w = synthetic_weights("vgg16", 5);
  const int n = 2, s = 32;
  Tensor x = tlt::tensor(tlt::random_vec((size_t)n * s * s * 3, 3, 50.0f), {n, s, s, 3});
  VggBase whole(w, Device::CPU), lower(w, Device::CPU, Precision::FP32, 10);  // block4_conv3 (then its pool)
  const std::vector<float> want = whole.forward(x).to_vector();
  Tensor a = lower.forward(x, false);
  ConvBlock block(w, 10, true, Device::CPU);
  CHECK(block.num_convs() == 3);
  CHECK(block.names() == std::vector<std::string>{"block5_conv1", "block5_conv2", "block5_conv3"});
  Tensor f = block.forward(a);
  CHECK(f.to_vector() == want);  // the same ops in the same order: the same bits
  // Backward: the block's gradients equal the ops composed by hand.
  Tensor g = tlt::tensor(tlt::random_vec((size_t)f.numel(), 4), {f.dim(0), f.dim(1), f.dim(2), f.dim(3)});
  Tensor dx({a.dim(0), a.dim(1), a.dim(2), a.dim(3)});
  block.backward(g, &dx, true);
  Tensor p0({n, 2, 2, 512}), y1({n, 2, 2, 512}), y2({n, 2, 2, 512}), y3({n, 2, 2, 512});
  std::vector<Tensor*> P = block.params();
  ops::maxpool2x2(a, p0);
  ops::conv3x3(p0, *P[0], *P[1], y1, true);
  ops::conv3x3(y1, *P[2], *P[3], y2, true);
  ops::conv3x3(y2, *P[4], *P[5], y3, true);
  Tensor g3({n, 2, 2, 512}), g2({n, 2, 2, 512}), g1({n, 2, 2, 512}), g0({n, 2, 2, 512});
  Tensor dw({3, 3, 512, 512}), db({512}), dxa({a.dim(0), a.dim(1), a.dim(2), a.dim(3)});
  ops::maxpool2x2_backward(y3, g, g3);
  ops::relu_backward(y3, g3, g3);
  ops::conv3x3_backward(y2, *P[4], g3, &g2, nullptr, nullptr);
  ops::relu_backward(y2, g2, g2);
  ops::conv3x3_backward(y1, *P[2], g2, &g1, nullptr, nullptr);
  ops::relu_backward(y1, g1, g1);
  ops::conv3x3_backward(p0, *P[0], g1, &g0, &dw, &db);
  ops::maxpool2x2_backward(a, g0, dxa);
  CHECK(dx.to_vector() == dxa.to_vector());
  CHECK(block.grads()[0]->to_vector() == dw.to_vector());
  CHECK(block.grads()[1]->to_vector() == db.to_vector());
}

CUDA_CASE("Grad-CAM on the GPU equals the CPU's") {
  VggWeights w = synthetic_weights("vgg16", 11);
  const int n = 2, s = 64;  // block5_conv3's maps are 4x4, the features 2x2x512
  std::vector<float> x = tlt::random_vec((size_t)n * s * s * 3, 12, 60.0f);
  HeadSpec spec;
  spec.feat_h = spec.feat_w = 2;
  spec.hidden1 = 8;
  spec.hidden2 = 4;
  std::vector<std::vector<float>> cams[2];
  for (int d = 0; d < 2; d++) {
    const Device dev = d ? Device::CUDA : Device::CPU;
    Head head(spec, dev);
    head.init(3);
    GradCam gc(w, head, dev, Precision::FP32, "block5_conv2");
    for (const CamResult& r : gc.explain(x.data(), n, s)) cams[d].push_back(r.cam);
  }
  for (int i = 0; i < n; i++) CHECK(tlt::rel_err(cams[1][(size_t)i], cams[0][(size_t)i]) < 1e-4);
}
