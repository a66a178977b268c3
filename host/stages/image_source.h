// image_source.h: the uncached FeatureSource (the tutorial's "sin cache" path): every batch is
// decoded, optionally augmented, preprocessed and run through the frozen base; the training loop
// is the cached path's. Files that cannot be used are found (by decoding each once) before
// training starts and skipped, as tl_cache skips them.
#pragma once
#include <memory>
#include <string>

#include "host/model/augment.h"
#include "host/stages/train.h"

namespace tl {

struct ImageSourceOptions {
  std::string images, valid_data, weights = "weights/vgg16_notop.bin";
  int image_size = 224;
  std::string resize = "nearest";
  double valid_fraction = 1924.0 / 25000.0, max_bad = 0.05;
  uint64_t seed = 0;
  int64_t limit = 0, max_pixels = kMaxPixelsDefault;
  bool augment = false;
  AugmentConfig aug;
  int base_batch = 8;  // images per forward pass of the base (8 on the CPU, 32 on the GPU)
  Device device = Device::CPU;
};

std::unique_ptr<FeatureSource> open_image_source(const ImageSourceOptions& o);

// Writes n strips (the resized training image, then 4 augmented draws) as PNGs into dir.
void save_augmented_samples(const ImageSourceOptions& o, int n, const std::string& dir);

}  // namespace tl
