// onnx_graphs.h: small ONNX models built by hand (host/io/protobuf.h's writer) for the tests and the
// fuzz seeds (tests/test_trust2b.cpp, tests/fuzz/make_seeds.cpp): a valid two-conv stack, and the
// graphs of issue 26 that loop or lie (an Identity cycle, a Transpose that swaps H and W, a
// repeated initializer name, a node the walk does not model inside the stack, many empty nodes).
#pragma once
#include <string>
#include <vector>

#include "host/io/protobuf.h"

namespace onnx_graphs {

struct NodeSpec {
  std::string op, name;
  std::vector<std::string> in, out;
  std::vector<std::pair<std::string, std::vector<int64_t>>> ints;  // INTS attributes
};

inline tl::pb::Writer node(const NodeSpec& n) {
  tl::pb::Writer w;
  for (auto& i : n.in) w.string(1, i);
  for (auto& o : n.out) w.string(2, o);
  w.string(3, n.name);
  w.string(4, n.op);
  for (auto& [name, vals] : n.ints) {
    tl::pb::Writer a;
    a.string(1, name);
    for (int64_t v : vals) a.int_field(8, v);
    a.int_field(20, 7);  // AttributeProto.type = INTS
    w.message(5, a);
  }
  return w;
}

inline tl::pb::Writer tensor(const std::string& name, const std::vector<int64_t>& dims, float first) {
  tl::pb::Writer t;
  size_t count = 1;
  for (int64_t d : dims) t.int_field(1, d), count *= (size_t)d;
  t.int_field(2, 1);  // float32
  for (size_t i = 0; i < count; i++) t.float_field(4, first + 0.01f * (float)i);
  t.string(8, name);
  return t;
}

inline NodeSpec conv(const std::string& name, const std::string& in, const std::string& out, const std::string& w,
                     const std::string& b) {
  return {"Conv", name, {in, w, b}, {out}, {{"kernel_shape", {3, 3}}, {"pads", {1, 1, 1, 1}}}};
}

// ModelProto { ir_version 8, graph { nodes, initializers, input "x" } }.
inline std::vector<uint8_t> model(const std::vector<NodeSpec>& nodes, const std::vector<tl::pb::Writer>& inits,
                                  size_t empty_nodes = 0) {
  tl::pb::Writer g;
  for (auto& n : nodes) g.message(1, node(n));
  for (size_t i = 0; i < empty_nodes; i++) g.bytes(1, nullptr, 0);
  for (auto& t : inits) g.message(5, t);
  tl::pb::Writer in;
  in.string(1, "x");
  g.message(11, in);
  tl::pb::Writer m;
  m.int_field(1, 8);
  m.message(7, g);
  return m.buf;
}

// x (NHWC) -> Transpose(perm) -> Conv 3->2 -> Relu -> Conv 2->4 -> Relu.
inline std::vector<uint8_t> two_convs(const std::vector<int64_t>& perm) {
  return model({{"Transpose", "to_nchw", {"x"}, {"t"}, {{"perm", perm}}},
                conv("conv1", "t", "c1", "w1", "b1"),
                {"Relu", "relu1", {"c1"}, {"r1"}, {}},
                conv("conv2", "r1", "c2", "w2", "b2"),
                {"Relu", "relu2", {"c2"}, {"y"}, {}}},
               {tensor("w1", {2, 3, 3, 3}, 0.5f), tensor("b1", {2}, 0.1f), tensor("w2", {4, 2, 3, 3}, -0.3f),
                tensor("b2", {4}, 0.2f)});
}

// x -> Identity -> a -> Identity -> x ...: a cycle before the first Conv (49 bytes in the finding).
inline std::vector<uint8_t> identity_cycle() {
  return model({{"Identity", "i1", {"x"}, {"a"}, {}}, {"Identity", "i2", {"a"}, {"x"}, {}}}, {});
}

// The kernel w1 given twice: first the one the graph was made with, then another.
inline std::vector<uint8_t> duplicate_initializer() {
  return model({conv("conv1", "x", "c1", "w1", "b1"), {"Relu", "relu1", {"c1"}, {"y"}, {}}},
               {tensor("w1", {2, 3, 3, 3}, 0.5f), tensor("b1", {2}, 0.1f), tensor("w1", {2, 3, 3, 3}, 9.0f)});
}

// Conv -> Relu -> Mul -> Conv -> Relu: a node the walk does not model inside the stack.
inline std::vector<uint8_t> unmodelled_inside() {
  return model({conv("conv1", "x", "c1", "w1", "b1"),
                {"Relu", "relu1", {"c1"}, {"r1"}, {}},
                {"Mul", "scale", {"r1", "s"}, {"m"}, {}},
                conv("conv2", "m", "c2", "w2", "b2"),
                {"Relu", "relu2", {"c2"}, {"y"}, {}}},
               {tensor("w1", {2, 3, 3, 3}, 0.5f), tensor("b1", {2}, 0.1f), tensor("s", {1}, 2.0f),
                tensor("w2", {4, 2, 3, 3}, -0.3f), tensor("b2", {4}, 0.2f)});
}

// A valid one-conv graph after `count` empty nodes (two bytes each).
inline std::vector<uint8_t> many_empty_nodes(size_t count) {
  return model({conv("conv1", "x", "c1", "w1", "b1"), {"Relu", "relu1", {"c1"}, {"y"}, {}}},
               {tensor("w1", {2, 3, 3, 3}, 0.5f), tensor("b1", {2}, 0.1f)}, count);
}

}  // namespace onnx_graphs
