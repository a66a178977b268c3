#include "tools/convert/onnx.h"

#include <map>
#include <set>

#include "host/core/common.h"
#include "host/io/protobuf.h"

namespace tl {

namespace {

// Field numbers from onnx.proto (ModelProto, GraphProto, NodeProto, AttributeProto, TensorProto).
constexpr uint32_t kModelGraph = 7;
constexpr uint32_t kGraphNode = 1, kGraphInitializer = 5, kGraphInput = 11;
constexpr uint32_t kNodeInput = 1, kNodeOutput = 2, kNodeName = 3, kNodeOpType = 4, kNodeAttribute = 5;
constexpr uint32_t kAttrName = 1, kAttrI = 3, kAttrS = 4, kAttrInts = 8;
constexpr uint32_t kTensorDims = 1, kTensorDataType = 2, kTensorFloatData = 4, kTensorName = 8, kTensorRawData = 9,
                   kTensorExternalData = 13, kTensorDataLocation = 14;
constexpr uint32_t kValueInfoName = 1;
constexpr int32_t kFloat = 1;
const char* const kDataTypeNames[] = {"undefined", "float32", "uint8", "int8", "uint16", "int16", "int32", "int64",
                                      "string", "bool", "float16", "float64", "uint32", "uint64", "complex64",
                                      "complex128", "bfloat16"};

struct Attr {
  bool has_i = false;
  int64_t i = 0;
  std::vector<int64_t> ints;
  std::string s;
};

struct Node {
  std::string name, op;
  std::vector<std::string> in, out;
  std::map<std::string, Attr> attrs;
};

struct Tensor {
  std::vector<int64_t> dims;
  int32_t dtype = 0;
  const uint8_t* raw = nullptr;
  size_t raw_size = 0;
  std::vector<float> float_data;
  bool external = false;
};

struct Graph {
  std::vector<Node> nodes;
  std::map<std::string, Tensor> inits;
  std::vector<std::string> inputs;
};

// Bounds on what a file may make the reader hold: a VGG conv stack has about 40 nodes and 100
// names, dims and attribute values, so a graph of more than kMaxNodes nodes, or more than kMaxItems
// of those in all, is refused as it is read (12 million empty nodes in 24 MB once took 2.65 GB).
// With them, memory stays within the file's size plus a few tens of MB.
constexpr size_t kMaxNodes = 100000, kMaxItems = 1000000;

struct Budget {
  const std::string& file;
  size_t items = 0;
  void take(size_t n) {
    items += n;
    if (items > kMaxItems)
      fail("%s: the ONNX graph holds more than %zu names, dims and attribute values; not a VGG conv stack",
           file.c_str(), kMaxItems);
  }
  // A packed list of varints holds at most one value per byte.
  void take_list(const pb::Field& f) { take(f.type == pb::Bytes ? f.size : 1); }
};

Attr parse_attr(const uint8_t* p, size_t n, const std::string& file, std::string* name, Budget& budget) {
  Attr a;
  pb::Reader r(p, n, file);
  pb::Field f;
  while (r.next(&f)) {
    if (f.number == kAttrName && f.type == pb::Bytes) *name = f.str();
    else if (f.number == kAttrI && f.type == pb::Varint) a.has_i = true, a.i = (int64_t)f.value;
    else if (f.number == kAttrS && f.type == pb::Bytes) a.s = f.str();
    else if (f.number == kAttrInts) budget.take_list(f), pb::Reader::append_int64s(f, &a.ints, file);
  }
  return a;
}

Node parse_node(const uint8_t* p, size_t n, const std::string& file, Budget& budget) {
  Node node;
  pb::Reader r(p, n, file);
  pb::Field f;
  while (r.next(&f)) {
    if (f.type != pb::Bytes) continue;
    if (f.number == kNodeInput) budget.take(1), node.in.push_back(f.str());
    else if (f.number == kNodeOutput) budget.take(1), node.out.push_back(f.str());
    else if (f.number == kNodeName) node.name = f.str();
    else if (f.number == kNodeOpType) node.op = f.str();
    else if (f.number == kNodeAttribute) {
      budget.take(1);
      std::string name;
      Attr a = parse_attr(f.data, f.size, file, &name, budget);
      node.attrs[name] = std::move(a);
    }
  }
  return node;
}

Tensor parse_tensor(const uint8_t* p, size_t n, const std::string& file, std::string* name, Budget& budget) {
  Tensor t;
  pb::Reader r(p, n, file);
  pb::Field f;
  while (r.next(&f)) {
    if (f.number == kTensorDims) budget.take_list(f), pb::Reader::append_int64s(f, &t.dims, file);
    else if (f.number == kTensorDataType && f.type == pb::Varint) t.dtype = (int32_t)f.value;
    else if (f.number == kTensorFloatData) pb::Reader::append_floats(f, &t.float_data, file);
    else if (f.number == kTensorName && f.type == pb::Bytes) *name = f.str();
    else if (f.number == kTensorRawData && f.type == pb::Bytes) t.raw = f.data, t.raw_size = f.size;
    else if (f.number == kTensorExternalData) t.external = true;
    else if (f.number == kTensorDataLocation && f.type == pb::Varint) t.external |= f.value == 1;
  }
  return t;
}

Graph parse_graph(const std::vector<uint8_t>& bytes, const std::string& file) {
  Graph g;
  const uint8_t* gp = nullptr;
  size_t gn = 0;
  {
    pb::Reader r(bytes.data(), bytes.size(), file);
    pb::Field f;
    while (r.next(&f))
      if (f.number == kModelGraph && f.type == pb::Bytes) gp = f.data, gn = f.size;
  }
  if (!gp) fail("%s: an ONNX model without a graph", file.c_str());
  Budget budget{file};
  pb::Reader r(gp, gn, file);
  pb::Field f;
  while (r.next(&f)) {
    if (f.type != pb::Bytes) continue;
    if (f.number == kGraphNode) {
      if (g.nodes.size() >= kMaxNodes)
        fail("%s: the ONNX graph has more than %zu nodes; not a VGG conv stack", file.c_str(), kMaxNodes);
      budget.take(1);
      g.nodes.push_back(parse_node(f.data, f.size, file, budget));
    } else if (f.number == kGraphInitializer) {
      budget.take(1);
      std::string name;
      Tensor t = parse_tensor(f.data, f.size, file, &name, budget);
      // ONNX Runtime and onnx.checker disagree on a repeated name (the first wins, or the model is
      // invalid): refused rather than read one way.
      if (!g.inits.emplace(name, std::move(t)).second)
        fail("%s: the ONNX graph defines initializer '%s' twice; not a valid ONNX model", file.c_str(), name.c_str());
    } else if (f.number == kGraphInput) {
      pb::Reader vr(f.data, f.size, file);
      pb::Field vf;
      while (vr.next(&vf))
        if (vf.number == kValueInfoName && vf.type == pb::Bytes) budget.take(1), g.inputs.push_back(vf.str());
    }
  }
  return g;
}

// The float32 values of an initializer, with its shape checked against `want`.
std::vector<float> tensor_values(const Graph& g, const std::string& name, const std::vector<int64_t>& want,
                                 const std::string& file, const char* role, const std::string& conv) {
  auto it = g.inits.find(name);
  if (it == g.inits.end())
    fail("%s: the %s of Conv '%s' (%s) is not an initializer; only constant weights can be converted", file.c_str(),
         role, conv.c_str(), name.c_str());
  const Tensor& t = it->second;
  if (t.external)
    fail("%s: tensor %s is stored in an external data file; re-save the model with its weights inside "
         "(onnx.save_model(m, path, save_as_external_data=False))",
         file.c_str(), name.c_str());
  if (t.dtype != kFloat)
    fail("%s: tensor %s has data type %s; only float32 weights are supported", file.c_str(), name.c_str(),
         t.dtype >= 0 && t.dtype <= 16 ? kDataTypeNames[t.dtype] : "unknown");
  if (t.dims != want) {
    std::string got, exp;
    for (int64_t d : t.dims) got += (got.empty() ? "" : "x") + std::to_string(d);
    for (int64_t d : want) exp += (exp.empty() ? "" : "x") + std::to_string(d);
    fail("%s: the %s of Conv '%s' is %s; expected %s", file.c_str(), role, conv.c_str(), got.c_str(), exp.c_str());
  }
  size_t count = 1;
  for (int64_t d : want) count *= (size_t)d;  // want is small and positive: no overflow
  std::vector<float> v;
  if (t.raw) {
    if (t.raw_size != count * 4)
      fail("%s: tensor %s holds %zu bytes of raw data; its shape needs %zu", file.c_str(), name.c_str(), t.raw_size,
           count * 4);
    v.resize(count);
    if (count) memcpy(v.data(), t.raw, count * 4);
  } else {
    if (t.float_data.size() != count)
      fail("%s: tensor %s holds %zu floats; its shape needs %zu", file.c_str(), name.c_str(), t.float_data.size(),
           count);
    v = t.float_data;
  }
  return v;
}

std::vector<int64_t> ints_or(const Node& n, const char* key, std::vector<int64_t> dflt) {
  auto it = n.attrs.find(key);
  return it == n.attrs.end() || it->second.ints.empty() ? dflt : it->second.ints;
}
int64_t int_or(const Node& n, const char* key, int64_t dflt) {
  auto it = n.attrs.find(key);
  return it == n.attrs.end() || !it->second.has_i ? dflt : it->second.i;
}

void check_conv_attrs(const Node& n, const std::string& file) {
  const char* f = file.c_str();
  const char* nm = n.name.c_str();
  if (int_or(n, "group", 1) != 1) fail("%s: Conv '%s' is grouped; only plain 3x3 convolutions are supported", f, nm);
  if (ints_or(n, "strides", {1, 1}) != std::vector<int64_t>{1, 1})
    fail("%s: Conv '%s' is strided; VGG's convolutions have stride 1", f, nm);
  if (ints_or(n, "dilations", {1, 1}) != std::vector<int64_t>{1, 1})
    fail("%s: Conv '%s' is dilated; only plain 3x3 convolutions are supported", f, nm);
  if (ints_or(n, "kernel_shape", {3, 3}) != std::vector<int64_t>{3, 3})
    fail("%s: Conv '%s' is not 3x3; only 3x3 convolutions are supported", f, nm);
  auto ap = n.attrs.find("auto_pad");
  const std::string auto_pad = ap == n.attrs.end() ? "NOTSET" : ap->second.s;
  if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") return;  // stride 1, 3x3: one pixel each side
  if (auto_pad != "NOTSET" && !auto_pad.empty())
    fail("%s: Conv '%s' has auto_pad %s; VGG pads one pixel on each side", f, nm, auto_pad.c_str());
  if (ints_or(n, "pads", {0, 0, 0, 0}) != std::vector<int64_t>{1, 1, 1, 1})
    fail("%s: Conv '%s' is not padded by one pixel on each side, as VGG's are", f, nm);
}

bool is_pool_2x2(const Node& n) {
  return n.op == "MaxPool" && ints_or(n, "kernel_shape", {}) == std::vector<int64_t>{2, 2} &&
         ints_or(n, "strides", {1, 1}) == std::vector<int64_t>{2, 2} &&
         ints_or(n, "pads", {0, 0, 0, 0}) == std::vector<int64_t>{0, 0, 0, 0} && int_or(n, "ceil_mode", 0) == 0 &&
         ints_or(n, "dilations", {1, 1}) == std::vector<int64_t>{1, 1} && n.out.size() == 1;
}

}  // namespace

bool looks_like_onnx(const uint8_t* p, size_t n) {
  // ModelProto starts with ir_version (field 1, varint); then only its own fields until the graph.
  if (n < 4 || p[0] != 0x08 || p[1] == 0 || p[1] > 32) return false;
  size_t i = 2;
  for (int fields = 0; i < n && fields < 16; fields++) {
    const uint8_t key = p[i++];
    const uint32_t number = key >> 3, type = key & 7;
    if (number == kModelGraph && type == pb::Bytes) return true;
    if (type == pb::Varint && (number == 5)) {
      while (i < n && (p[i] & 0x80)) i++;
      i++;
    } else if (type == pb::Bytes && (number == 2 || number == 3 || number == 4 || number == 6 || number == 8)) {
      uint64_t len = 0;
      for (int shift = 0; i < n && shift < 35; shift += 7) {
        len |= (uint64_t)(p[i] & 0x7f) << shift;
        if (!(p[i++] & 0x80)) break;
      }
      if (len > n - i) return false;
      i += len;
    } else {
      return false;
    }
  }
  return false;
}

std::vector<OnnxConv> read_onnx_conv_stack(const std::string& path) {
  return read_onnx_conv_stack(read_file(path), path);
}

std::vector<OnnxConv> read_onnx_conv_stack(const std::vector<uint8_t>& bytes, const std::string& path) {
  const Graph g = parse_graph(bytes, path);
  const char* f = path.c_str();
  std::map<std::string, std::vector<size_t>> consumers;
  for (size_t i = 0; i < g.nodes.size(); i++)
    for (const std::string& in : g.nodes[i].in) consumers[in].push_back(i);
  auto only_consumer = [&](const std::string& t) -> const Node* {
    auto it = consumers.find(t);
    if (it == consumers.end() || it->second.size() != 1) return nullptr;
    return &g.nodes[it->second[0]];
  };

  // The graph's data input: the first input that is not an initializer.
  std::string cur;
  for (const std::string& in : g.inputs)
    if (!g.inits.count(in)) {
      cur = in;
      break;
    }
  if (cur.empty()) fail("%s: the ONNX graph has no data input", f);
  // Layout ops that may stand before the first Conv (Keras exports transpose NHWC -> NCHW): Identity,
  // and Transposes that together make NHWC -> NCHW or nothing (any other order, e.g. H and W
  // swapped, would give other weights); each node once (an Identity cycle loops back).
  std::set<const Node*> before;
  std::vector<int64_t> perm = {0, 1, 2, 3};
  const Node* n = only_consumer(cur);
  while (n && (n->op == "Transpose" || n->op == "Identity") && n->out.size() == 1) {
    if (!before.insert(n).second)
      fail("%s: the graph loops back to %s '%s' before its first Conv; not a valid ONNX model", f, n->op.c_str(),
           n->name.c_str());
    if (n->op == "Transpose") {
      const std::vector<int64_t> p = ints_or(*n, "perm", {3, 2, 1, 0});  // ONNX's default reverses the axes
      if (p.size() != 4) fail("%s: Transpose '%s' before the first Conv is not 4-d", f, n->name.c_str());
      std::vector<int64_t> next(4);
      for (int i = 0; i < 4; i++) {
        if (p[i] < 0 || p[i] > 3) fail("%s: Transpose '%s' has an invalid perm", f, n->name.c_str());
        next[i] = perm[(size_t)p[i]];
      }
      perm = next;
    }
    cur = n->out[0];
    n = only_consumer(cur);
  }
  if (perm != std::vector<int64_t>{0, 1, 2, 3} && perm != std::vector<int64_t>{0, 3, 1, 2}) {
    std::string ps;
    for (int64_t v : perm) ps += (ps.empty() ? "" : ",") + std::to_string(v);
    fail("%s: the Transposes before the first Conv reorder the input's axes as [%s]; only NHWC -> NCHW "
         "([0,3,1,2]) or no change can be converted",
         f, ps.c_str());
  }
  if (!n || n->op != "Conv")
    fail("%s: the graph's input %s does not lead to a Conv (found %s); only a VGG conv stack can be converted", f,
         g.inputs.empty() ? "?" : g.inputs[0].c_str(), n ? n->op.c_str() : "a branch or nothing");

  std::vector<OnnxConv> layers;
  std::set<const Node*> seen;  // a malformed graph may loop back: each node is walked once
  while (n && n->op == "Conv") {
    if (!seen.insert(n).second) fail("%s: the graph loops back to Conv '%s'; not a valid ONNX model", f, n->name.c_str());
    if (layers.size() >= 64) fail("%s: more than 64 conv layers in a row; not a VGG conv stack", f);
    if (n->in.size() < 2 || n->in[0] != cur || n->out.size() != 1)
      fail("%s: Conv '%s' is fed by something the walk does not expect", f, n->name.c_str());
    check_conv_attrs(*n, path);
    auto wi = g.inits.find(n->in[1]);
    if (wi == g.inits.end() || wi->second.dims.size() != 4)
      fail("%s: the kernel of Conv '%s' is not a 4-d initializer", f, n->name.c_str());
    const int64_t cout = wi->second.dims[0], cin = wi->second.dims[1];
    const int prev = layers.empty() ? 3 : layers.back().cout;
    if (cin != prev || cout <= 0 || cout > 65536)
      fail("%s: Conv '%s' takes %lld channels but the previous layer gives %d", f, n->name.c_str(), (long long)cin,
           prev);
    OnnxConv c;
    c.node_name = n->name;
    c.cin = (int)cin;
    c.cout = (int)cout;
    c.w_oihw = tensor_values(g, n->in[1], {cout, cin, 3, 3}, path, "kernel", n->name);
    if (n->in.size() < 3 || n->in[2].empty())
      fail("%s: Conv '%s' has no bias; VGG's convolutions have one", f, n->name.c_str());
    c.b = tensor_values(g, n->in[2], {cout}, path, "bias", n->name);
    const Node* relu = only_consumer(n->out[0]);
    if (!relu || relu->op != "Relu" || relu->out.size() != 1)
      fail("%s: Conv '%s' is followed by %s, not by a Relu alone; only a VGG conv stack can be converted", f,
           n->name.c_str(), relu ? relu->op.c_str() : "several nodes or none");
    cur = relu->out[0];
    n = only_consumer(cur);
    if (n && is_pool_2x2(*n)) {
      c.pool_after = true;
      cur = n->out[0];
      n = only_consumer(cur);
    } else if (n && n->op == "MaxPool") {
      fail("%s: MaxPool '%s' is not 2x2 with stride 2 and no padding, as VGG's are", f, n->name.c_str());
    }
    layers.push_back(std::move(c));
    while (n && n->op == "Identity" && n->out.size() == 1 && seen.insert(n).second) {  // no-ops between blocks
      cur = n->out[0];
      n = only_consumer(cur);
    }
    if (!n) {  // several consumers: a branch at a Conv input is outside the stack; at anything else, the end
      auto it = consumers.find(cur);
      if (it != consumers.end())
        for (size_t i : it->second)
          if (g.nodes[i].op == "Conv") fail("%s: the graph branches after Conv '%s'; VGG is a single chain", f,
                                            layers.back().node_name.c_str());
    }
  }
  // A Conv the walk did not reach stands behind a node it does not model (the stack would be cut
  // short, silently): refused.
  for (const Node& node : g.nodes)
    if (node.op == "Conv" && !seen.count(&node))
      fail("%s: Conv '%s' is not reached by the conv stack's walk (after Conv '%s' comes %s, which the converter "
           "does not model); only a VGG conv stack can be converted",
           f, node.name.c_str(), layers.back().node_name.c_str(), n ? n->op.c_str() : "a branch");
  return layers;
}

}  // namespace tl
