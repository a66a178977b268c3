// convert.h: published VGG weights -> the engine's raw format (host/io/weights.h).
//
// Formats are detected by content, not by extension:
//   Keras .h5 (HDF5; groups block1_conv1 ... with kernels [3,3,in,out]; input BGR - mean)
//   torchvision .pth, legacy or zip serialisation (features.N.weight [out,in,3,3]; input RGB/255, mean/std)
//   numpy .npz, plain or compressed (conv1_1_W [3,3,in,out], conv1_1_b; Frossard's vgg16_weights.npz:
//   input RGB - mean)
//   ONNX (.onnx; the conv stack found by walking the graph, OIHW kernels; no input convention)
// Weights recognised as a known release (weights_fingerprint, identify_weights) get that release's
// input convention and its key recorded; an unknown ONNX file needs --preprocess.
// Everything is reordered to HWIO kernels; the classifier/top layers are ignored.
#pragma once
#include <string>

#include "host/io/weights.h"

namespace tl {

enum class WeightsFormat { KerasH5, Torch, Npz, Onnx, Raw, Unknown };
const char* weights_format_name(WeightsFormat f);
WeightsFormat detect_weights_format(const std::string& path);

// Converts in; preprocess_override (when non-null) replaces the convention the format implies.
VggWeights convert_weights(const std::string& in, const Preprocess* preprocess_override, WeightsFormat* detected);

}  // namespace tl
