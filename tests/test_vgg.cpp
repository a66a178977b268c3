// The VGG16 conv base against torchvision's vgg16().features (float64) with the same synthetic
// weights, on four real photos preprocessed as Keras does; the architecture built from data.
//
// Tolerance: max |ours - torch| / max |torch| <= 1e-4 over the 4 x 7 x 7 x 512 outputs.
#include "helpers.h"
#include "host/io/image.h"
#include "host/ops/ops.h"
#include "host/model/vgg.h"
#include "host/core/device.h"

using namespace tl;

namespace {

// The 4 fixture photos (224x224), resized to size x size when smaller, preprocessed as Keras does.
Tensor fixture_input(Device d, int size = 224) {
  tlt::Fixture photos("photos224.npz");
  Tensor x({4, size, size, 3});
  for (int i = 0; i < 4; i++) {
    const NpyArray& a = photos.arrays.at("p" + std::to_string(i) + "_224");
    Image img;
    img.w = img.h = 224;
    img.rgb.assign(a.data(), a.data() + a.h.numel());
    if (size != 224) img = resize_image(img, size, size, Resize::Nearest);
    preprocess_image(img, Preprocess::CaffeBGR, x.f32() + (size_t)i * size * size * 3);
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

CUDA_CASE("VGG16 forward on the GPU equals the CPU (and torchvision, on a real GPU)") {
  tlt::Fixture fx("vgg16_forward.npz");
  VggWeights w = synthetic_weights("vgg16", fx.u64("seed"));
  if (cuda::emulated()) {
    // 224x224 takes minutes in the emulator: all 13 layers on the 4 photos resized to 32x32.
    VggBase cpu(w, Device::CPU), gpu(w, Device::CUDA);
    std::vector<float> yc = cpu.forward(fixture_input(Device::CPU, 32)).to_vector();
    std::vector<float> yg = gpu.forward(fixture_input(Device::CUDA, 32)).to_vector();
    const double err = tlt::rel_err(yg, yc);
    MESSAGE("VGG16 at 32x32 in the CUDA emulator vs the CPU: " << err);
    CHECK(err <= 1e-4);
    return;
  }
  auto gpu = forward(w, Device::CUDA);
  MESSAGE("VGG16 at 224x224 on " << cuda::device_description());
  CHECK(tlt::rel_err(gpu, fx.f("y")) <= 1e-4);
  CHECK(tlt::rel_err(gpu, forward(w, Device::CPU)) <= 1e-4);
}
