// The VGG16 conv base against torchvision's vgg16().features (float64) with the same synthetic
// weights, on four real photos preprocessed as Keras does; the architecture built from data.
//
// Tolerance: max |ours - torch| / max |torch| <= 1e-4 over the 4 x 7 x 7 x 512 outputs.
#include "helpers.h"
#include "host/io/image.h"
#include "host/ops/ops.h"
#include "host/model/vgg.h"

using namespace tl;

namespace {

Tensor fixture_input(Device d) {
  tlt::Fixture photos("photos224.npz");
  Tensor x({4, 224, 224, 3});
  for (int i = 0; i < 4; i++) {
    const NpyArray& a = photos.arrays.at("p" + std::to_string(i) + "_224");
    Image img;
    img.w = img.h = 224;
    img.rgb.assign(a.data(), a.data() + a.h.numel());
    preprocess_image(img, Preprocess::CaffeBGR, x.f32() + (size_t)i * 224 * 224 * 3);
  }
  return d == Device::CPU ? std::move(x) : x.to(d);
}

std::vector<float> forward(const VggWeights& w, Device d) {
  VggBase base(w, d);
  Tensor x = fixture_input(d);
  Tensor y = base.forward(x);
  CHECK(y.dim(1) == 7);
  CHECK(y.dim(3) == 512);
  return y.to_vector();
}

}  // namespace

TEST_CASE("VGG16 forward on 4 real photos equals torchvision's vgg16().features within 1e-4 (CPU)") {
  tlt::Fixture fx("vgg16_forward.npz");
  VggWeights w = synthetic_weights("vgg16", fx.u64("seed"));
  serialize_weights(w);
  CHECK(crc32_of(serialize_weights(w).data(), serialize_weights(w).size() - 4) == (uint32_t)fx.u64("crc"));
  auto y = forward(w, Device::CPU);
  auto ref = fx.f("y");
  const double err = tlt::rel_err(y, ref);
  MESSAGE("VGG16 CPU vs torchvision (float64): max error / max value = " << err);
  CHECK(err <= 1e-4);
  // The features are not trivial: a good share is non-zero and they differ between images.
  size_t nonzero = 0;
  for (float v : y) nonzero += v != 0.0f;
  CHECK(nonzero > y.size() / 3);
  CHECK(std::vector<float>(y.begin(), y.begin() + 25088) != std::vector<float>(y.begin() + 25088, y.begin() + 50176));
}

CUDA_CASE("VGG16 forward on the GPU equals the CPU and torchvision") {
  tlt::Fixture fx("vgg16_forward.npz");
  VggWeights w = synthetic_weights("vgg16", fx.u64("seed"));
  auto gpu = forward(w, Device::CUDA);
  CHECK(tlt::rel_err(gpu, fx.f("y")) <= 1e-4);
  CHECK(tlt::rel_err(gpu, forward(w, Device::CPU)) <= 1e-4);
}

TEST_CASE("the network is built from the weights file: a custom 3-layer variant runs as its layer table says") {
  std::vector<ConvLayerSpec> specs = {{"a", 3, 5, false}, {"b", 5, 7, true}, {"c", 7, 4, true}};
  VggWeights w = synthetic_weights(specs, "custom", 5, Preprocess::Torch);
  VggBase base(w, Device::CPU);
  auto xv = tlt::random_vec(2 * 9 * 11 * 3, 9);
  Tensor x = tlt::tensor(xv, {2, 9, 11, 3});
  Tensor y = base.forward(x);
  CHECK(y.shape_str() == "[2,2,2,4]");
  // The same computation spelled out with the ops.
  Tensor t1({2, 9, 11, 5}), t2({2, 9, 11, 7}), p2({2, 4, 5, 7}), t3({2, 4, 5, 4}), p3({2, 2, 2, 4});
  auto wt = [&](int i) { return tlt::tensor(w.layers[i].w, {3, 3, w.layers[i].spec.cin, w.layers[i].spec.cout}); };
  auto bt = [&](int i) { return tlt::tensor(w.layers[i].b, {w.layers[i].spec.cout}); };
  ops::conv3x3(x, wt(0), bt(0), t1, true);
  ops::conv3x3(t1, wt(1), bt(1), t2, true);
  ops::maxpool2x2(t2, p2);
  ops::conv3x3(p2, wt(2), bt(2), t3, true);
  ops::maxpool2x2(t3, p3);
  CHECK(y.to_vector() == p3.to_vector());
}
