// Augmentation (model/augment): Keras ImageDataGenerator's affine transform against a scipy.ndimage
// restatement of Keras' code, and the draws' ranges.
//
// Tolerance: augmented images within 2e-3 of scipy.ndimage's float64 result (values 0..255, float32
// output); flips and the identity exactly.
#include <algorithm>
#include <cmath>

#include "helpers.h"
#include "host/io/image.h"
#include "host/model/augment.h"

using namespace tl;

namespace {

Image fixture_image() {
  tlt::Fixture fx("augment.npz");
  const NpyArray& a = fx.arrays.at("img");
  Image img;
  img.h = (int)a.h.shape[0];
  img.w = (int)a.h.shape[1];
  img.rgb.assign(a.data(), a.data() + a.h.numel());
  return img;
}

}  // namespace

TEST_CASE("augmentation: Keras' affine transform (rotation, shift, shear, zoom, flip) against scipy") {
  tlt::Fixture fx("augment.npz");
  Image img = fixture_image();
  const int count = (int)fx.scalar("count");
  for (int i = 0; i < count; i++) {
    std::vector<float> pv = fx.f("c" + std::to_string(i) + "_params");
    AugmentParams p;
    p.theta = pv[0], p.tx = pv[1], p.ty = pv[2], p.shear = pv[3], p.zx = pv[4], p.zy = pv[5], p.flip = pv[6] != 0;
    std::vector<float> out((size_t)img.w * img.h * 3);
    apply_augment(img, p, out.data());
    CAPTURE(i);
    CHECK(tlt::max_abs_diff(out, fx.f("c" + std::to_string(i) + "_out")) <= 2e-3);
  }
  // The flip alone is an exact mirror; no transform is the identity.
  AugmentParams flip;
  flip.flip = true;
  std::vector<float> out((size_t)img.w * img.h * 3);
  apply_augment(img, flip, out.data());
  bool mirror = true;
  for (int y = 0; y < img.h; y++)
    for (int x = 0; x < img.w; x++)
      for (int c = 0; c < 3; c++) mirror &= out[((size_t)y * img.w + x) * 3 + c] == img.px(img.w - 1 - x, y)[c];
  CHECK(mirror);
  apply_augment(img, AugmentParams(), out.data());
  CHECK(std::equal(out.begin(), out.end(), img.rgb.begin()));
}

TEST_CASE("augmentation draws follow the tutorial's ranges and are reproducible") {
  AugmentConfig c;
  int flips = 0;
  double max_theta = 0, max_tx = 0, min_z = 9, max_z = 0, max_shear = 0;
  for (int i = 0; i < 2000; i++) {
    Rng r = augment_rng(7, 1, (uint64_t)i);
    AugmentParams p = draw_augment(c, r, 224, 224);
    max_theta = std::max(max_theta, std::fabs(p.theta));
    max_tx = std::max(max_tx, std::max(std::fabs(p.tx), std::fabs(p.ty)));
    max_shear = std::max(max_shear, std::fabs(p.shear));
    min_z = std::min({min_z, p.zx, p.zy});
    max_z = std::max({max_z, p.zx, p.zy});
    flips += p.flip;
  }
  CHECK(max_theta <= 40.0);
  CHECK(max_theta > 39.0);
  CHECK(max_tx <= 0.2 * 224);
  CHECK(max_tx > 0.19 * 224);
  CHECK(max_shear <= 0.2);
  CHECK(min_z >= 0.8);
  CHECK(max_z <= 1.2);
  CHECK(std::abs(flips - 1000) < 120);
  Rng a = augment_rng(7, 3, 42), b = augment_rng(7, 3, 42), d = augment_rng(7, 4, 42);
  CHECK(draw_augment(c, a, 224, 224).theta == draw_augment(c, b, 224, 224).theta);
  CHECK(draw_augment(c, a, 224, 224).theta != draw_augment(c, d, 224, 224).theta);
}

