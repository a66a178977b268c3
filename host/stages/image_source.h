// image_source.h: the uncached FeatureSource (the tutorial's "sin cache" path): every batch is
// decoded, optionally augmented, preprocessed and run through the frozen base; the training loop
// is the cached path's. Files that cannot be used are found (by decoding each once) before
// training starts and skipped, as tl_cache skips them.
#pragma once
#include "host/stages/input_options.h"
#include <memory>
#include <string>

#include "host/model/augment.h"
#include "host/stages/train.h"

namespace tl {

// The dataset and input settings come from DatasetInput (data = the images), shared with tl_cache.
struct ImageSourceOptions : DatasetInput {
  bool augment = false;
  AugmentConfig aug;
  int base_batch = 8;  // images per forward pass of the base (8 on the CPU, 32 on the GPU)
  Device device = Device::CPU;
  std::string cut;  // features after this pool ("" = the whole base): --fine-tune's layers below its block
};

std::unique_ptr<FeatureSource> open_image_source(const ImageSourceOptions& o);

// Writes n strips (the resized training image, then 4 augmented draws) as PNGs into dir.
void save_augmented_samples(const ImageSourceOptions& o, int n, const std::string& dir);

}  // namespace tl
