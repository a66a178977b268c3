// defaults.h: the Keras tutorial's defaults, named once for every program and layer.
#pragma once
#include <cstdint>

#include "host/core/tensor.h"

namespace tl {

constexpr int kTutorialImageSize = 224;                      // VGG16's input, 224 x 224
constexpr double kTutorialValidFraction = 1924.0 / 25000.0;  // its 1,924 validation photos of 25,000
constexpr const char* kDefaultWeightsFile = "weights/vgg16_notop.bin";
constexpr int kTutorialBatch = 32;                           // the head's training batch
// Images per forward pass of the frozen base when not given: 8 on the CPU, 32 on the GPU.
inline int default_base_batch(Device d) { return d == Device::CUDA ? 32 : 8; }
// Largest image file read from a dataset or given to tl_predict (larger ones are refused as a skip).
constexpr uint64_t kMaxImageFileBytes = (uint64_t)1 << 30;

}  // namespace tl
