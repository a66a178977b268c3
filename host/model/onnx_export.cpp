// The whole classifier as one ONNX model (tl_predict --export-onnx): raw RGB pixels in (uint8,
// N x S x S x 3, already resized to the model's image size S), p(dog) out (N x 1). The input
// convention is part of the graph, with the same float32 operations in the same order as the
// engine's (caffe: channels reversed to BGR, then the means subtracted; torch: / 255, - mean, / std),
// then the VGG conv stack (NCHW, OIHW kernels), the features back to Keras' NHWC order, flattened,
// and the head's three Gemm layers with ReLU and a sigmoid; a second output holds the logit. Written with the protobuf writer of the
// ONNX reader (host/io/protobuf.h); opset 13, IR version 8.
#include "host/model/onnx_export.h"

#include <cstring>

#include "host/core/common.h"
#include "host/io/protobuf.h"

namespace tl {

namespace {

using pb::Writer;

enum : int { kFloat = 1, kUint8 = 2, kInt64 = 7 };

Writer tensor(const std::string& name, const std::vector<int64_t>& dims, int type, const void* data, size_t bytes) {
  Writer t;
  for (int64_t d : dims) t.int_field(1, d);
  t.int_field(2, type);
  t.string(8, name);
  t.bytes(9, data, bytes);
  return t;
}

struct Graph {
  Writer g;
  int counter = 0;
  void init(const std::string& name, const std::vector<int64_t>& dims, const std::vector<float>& v) {
    g.message(5, tensor(name, dims, kFloat, v.data(), v.size() * 4));
  }
  void init_i64(const std::string& name, const std::vector<int64_t>& v) {
    g.message(5, tensor(name, {(int64_t)v.size()}, kInt64, v.data(), v.size() * 8));
  }
  // A node; attributes added by the caller through the returned writer before it is stored.
  struct Attr {
    Writer w;
    Attr& i(const char* name, int64_t v) {
      Writer a;
      a.string(1, name);
      a.int_field(20, 2);
      a.int_field(3, v);
      w.message(5, a);
      return *this;
    }
    Attr& ints(const char* name, std::initializer_list<int64_t> v) {
      Writer a;
      a.string(1, name);
      a.int_field(20, 7);
      for (int64_t x : v) a.int_field(8, x);
      w.message(5, a);
      return *this;
    }
  };
  std::string node(const char* op, const std::vector<std::string>& in, const Attr& attrs = Attr(),
                   const std::string& name = "") {
    const std::string out = name.empty() ? strfmt("%s_%d", op, ++counter) : name;
    Writer n;
    for (const std::string& x : in) n.string(1, x);
    n.string(2, out);
    n.string(3, out);
    n.string(4, op);
    n.buf.insert(n.buf.end(), attrs.w.buf.begin(), attrs.w.buf.end());
    g.message(1, n);
    return out;
  }
};

Writer value_info(const std::string& name, int elem, const std::vector<int64_t>& dims) {
  Writer shape;
  for (int64_t d : dims) {
    Writer dim;
    if (d < 0)
      dim.string(2, "batch");
    else
      dim.int_field(1, d);
    shape.message(1, dim);
  }
  Writer tt;
  tt.int_field(1, elem);
  tt.message(2, shape);
  Writer type;
  type.message(1, tt);
  Writer v;
  v.string(1, name);
  v.message(2, type);
  return v;
}

}  // namespace

std::vector<uint8_t> export_onnx(const VggWeights& w, const ModelFile& m, int image_size, const std::string& doc) {
  const int S = image_size;
  if (w.layers.empty() || S < 1) fail("export: nothing to export");
  Graph G;
  G.g.string(2, "tl_classifier");
  G.g.string(10, doc);
  // Pixels -> the input convention (float32, NHWC).
  std::string x = G.node("Cast", {"pixels"}, Graph::Attr().i("to", kFloat));
  switch (w.preprocess) {
    case Preprocess::CaffeBGR:
      G.init_i64("bgr_order", {2, 1, 0});
      x = G.node("Gather", {x, "bgr_order"}, Graph::Attr().i("axis", 3));
      G.init("caffe_mean", {3}, {103.939f, 116.779f, 123.68f});
      x = G.node("Sub", {x, "caffe_mean"});
      break;
    case Preprocess::CaffeRGB:
      G.init("caffe_mean", {3}, {123.68f, 116.779f, 103.939f});
      x = G.node("Sub", {x, "caffe_mean"});
      break;
    case Preprocess::Torch:
      G.init("scale255", {}, {255.0f});
      G.init("torch_mean", {3}, {0.485f, 0.456f, 0.406f});
      G.init("torch_std", {3}, {0.229f, 0.224f, 0.225f});
      x = G.node("Div", {x, "scale255"});
      x = G.node("Sub", {x, "torch_mean"});
      x = G.node("Div", {x, "torch_std"});
      break;
  }
  // The conv stack in NCHW.
  x = G.node("Transpose", {x}, Graph::Attr().ints("perm", {0, 3, 1, 2}));
  for (size_t l = 0; l < w.layers.size(); l++) {
    const ConvLayer& L = w.layers[l];
    const int ci = L.spec.cin, co = L.spec.cout;
    std::vector<float> oihw((size_t)co * ci * 9);
    for (int ky = 0; ky < 3; ky++)
      for (int kx = 0; kx < 3; kx++)
        for (int i = 0; i < ci; i++)
          for (int o = 0; o < co; o++)
            oihw[(((size_t)o * ci + i) * 3 + ky) * 3 + kx] = L.w[(((size_t)ky * 3 + kx) * ci + i) * co + o];
    const std::string wn = L.spec.name + "_W", bn = L.spec.name + "_b";
    G.init(wn, {co, ci, 3, 3}, oihw);
    G.init(bn, {co}, L.b);
    x = G.node("Conv", {x, wn, bn}, Graph::Attr().ints("kernel_shape", {3, 3}).ints("pads", {1, 1, 1, 1}).ints("strides", {1, 1}));
    x = G.node("Relu", {x});
    if (L.spec.pool_after)
      x = G.node("MaxPool", {x}, Graph::Attr().ints("kernel_shape", {2, 2}).ints("strides", {2, 2}));
  }
  // Keras' Flatten works on NHWC: back to it, then the head.
  x = G.node("Transpose", {x}, Graph::Attr().ints("perm", {0, 2, 3, 1}));
  x = G.node("Flatten", {x}, Graph::Attr().i("axis", 1));
  const HeadSpec& h = m.spec;
  const int64_t dims[3][2] = {{h.in_dim(), h.hidden1}, {h.hidden1, h.hidden2}, {h.hidden2, 1}};
  for (int k = 0; k < 3; k++) {
    const std::string wn = strfmt("dense%d_W", k), bn = strfmt("dense%d_b", k);
    G.init(wn, {dims[k][0], dims[k][1]}, m.params[(size_t)k * 2]);
    G.init(bn, {dims[k][1]}, m.params[(size_t)k * 2 + 1]);
    x = G.node("Gemm", {x, wn, bn}, Graph::Attr(), k < 2 ? "" : "logit");
    x = k < 2 ? G.node("Relu", {x}) : G.node("Sigmoid", {x}, Graph::Attr(), "p_dog");
  }
  G.g.message(11, value_info("pixels", kUint8, {-1, S, S, 3}));
  G.g.message(12, value_info("p_dog", kFloat, {-1, 1}));
  G.g.message(12, value_info("logit", kFloat, {-1, 1}));  // before the sigmoid: exact where p saturates
  Writer opset;
  opset.string(1, "");
  opset.int_field(2, 13);
  Writer model;
  model.int_field(1, 8);  // IR version
  model.string(2, "tl (transfer-learning engine)");
  model.string(3, "1");
  model.message(8, opset);
  model.message(7, G.g);
  return model.buf;
}

}  // namespace tl
