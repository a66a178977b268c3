// onnx_export.h: a trained classifier (VGG base + head) as one ONNX model; see onnx_export.cpp.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "host/io/weights.h"
#include "host/model/head.h"

namespace tl {

// Input "pixels": uint8 [batch, image_size, image_size, 3] RGB, resized as the model's recipe says;
// outputs "p_dog" and "logit" (before the sigmoid): float [batch, 1]. doc goes into the graph's doc_string (provenance).
std::vector<uint8_t> export_onnx(const VggWeights& w, const ModelFile& m, int image_size, const std::string& doc);

}  // namespace tl
