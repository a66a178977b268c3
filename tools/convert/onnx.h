// onnx.h: reads the conv stack of a VGG network from an ONNX model, with our own reader of the
// protobuf wire format (host/io/protobuf.h): only the messages needed (model, graph, node, attribute,
// tensor), every length checked. The stack is found by walking the graph from its input
// (optional Transpose/Identity, then Conv -> Relu -> optional MaxPool, repeated), not by names;
// what follows the last conv block (a classifier head) is ignored. Refused with a one-line reason:
// external data files, non-float32 tensors, grouped/strided/dilated/unpadded convs, kernels other
// than 3x3, a Conv followed by anything but Relu, a branching stack, a cycle, Transposes before the
// first Conv other than NHWC -> NCHW, a Conv behind a node the walk does not model, a repeated
// initializer name, more than 100000 nodes (or a million names, dims and attribute values).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace tl {

struct OnnxConv {
  std::string node_name;   // the Conv node's name (for messages only)
  int cin = 0, cout = 0;
  bool pool_after = false;
  std::vector<float> w_oihw;  // [out][in][3][3]
  std::vector<float> b;       // [out]
};

// The conv layers of the stack in order. Throws tl::Error naming the file on anything unreadable.
std::vector<OnnxConv> read_onnx_conv_stack(const std::string& path);
// The same from bytes in memory (`what` names them in errors).
std::vector<OnnxConv> read_onnx_conv_stack(const std::vector<uint8_t>& bytes, const std::string& what);

// True when the first bytes look like an ONNX ModelProto (ir_version, then known fields up to the graph).
bool looks_like_onnx(const uint8_t* p, size_t n);

}  // namespace tl
