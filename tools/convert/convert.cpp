#include "tools/convert/convert.h"

#include <algorithm>
#include <cstring>
#include <map>

#include "host/core/common.h"
#include "host/io/npy.h"
#include "host/io/zip.h"
#include "tools/convert/hdf5.h"
#include "tools/convert/onnx.h"
#include "tools/convert/torch_file.h"

namespace tl {

const char* weights_format_name(WeightsFormat f) {
  switch (f) {
    case WeightsFormat::KerasH5: return "Keras HDF5 (.h5)";
    case WeightsFormat::Torch: return "PyTorch checkpoint (.pth)";
    case WeightsFormat::Npz: return "numpy archive (.npz)";
    case WeightsFormat::Onnx: return "ONNX model (.onnx)";
    case WeightsFormat::Raw: return "tl raw weights";
    case WeightsFormat::Unknown: return "unknown";
  }
  return "?";
}

WeightsFormat detect_weights_format(const std::string& path) {
  if (!file_exists(path)) {
    if (dir_exists(path)) fail("%s: is a directory; give a weights file", path.c_str());
    fail("%s: not found", path.c_str());
  }
  std::vector<uint8_t> head(4096);
  FILE* f = fopen(path.c_str(), "rb");
  if (!f) fail("%s: cannot open", path.c_str());
  head.resize(fread(head.data(), 1, head.size(), f));
  fclose(f);
  if (head.empty()) fail("%s: empty file", path.c_str());
  if (head.size() >= 8 && memcmp(head.data(), kWeightsMagic, 8) == 0) return WeightsFormat::Raw;
  if (H5File::is_hdf5(head.data(), head.size())) return WeightsFormat::KerasH5;
  if (looks_like_torch_legacy(head.data(), head.size())) return WeightsFormat::Torch;
  if (ZipReader::looks_like_zip(head.data(), head.size())) {
    ZipReader z(path);
    for (const ZipEntry& e : z.entries()) {
      if (ends_with(e.name, "data.pkl")) return WeightsFormat::Torch;
    }
    for (const ZipEntry& e : z.entries())
      if (ends_with(e.name, ".npy")) return WeightsFormat::Npz;
    fail("%s: a zip archive that is neither a PyTorch checkpoint nor an .npz", path.c_str());
  }
  if (head.size() > 262 && memcmp(head.data() + 257, "ustar", 5) == 0) return WeightsFormat::Torch;
  if (looks_like_onnx(head.data(), head.size())) return WeightsFormat::Onnx;
  return WeightsFormat::Unknown;
}

namespace {

// Natural order for names with numbers: conv2_10 after conv2_9, features.10 after features.9.
bool natural_less(const std::string& a, const std::string& b) {
  size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    if (isdigit((unsigned char)a[i]) && isdigit((unsigned char)b[j])) {
      size_t i2 = i, j2 = j;
      while (i2 < a.size() && isdigit((unsigned char)a[i2])) i2++;
      while (j2 < b.size() && isdigit((unsigned char)b[j2])) j2++;
      long long x = atoll(a.substr(i, i2 - i).c_str()), y = atoll(b.substr(j, j2 - j).c_str());
      if (x != y) return x < y;
      i = i2;
      j = j2;
    } else {
      if (a[i] != b[j]) return a[i] < b[j];
      i++;
      j++;
    }
  }
  return a.size() - i < b.size() - j;
}

void check_layer(const std::string& file, const ConvLayer& l) {
  if (l.w.size() != (size_t)9 * l.spec.cin * l.spec.cout || l.b.size() != (size_t)l.spec.cout)
    fail("%s: layer %s: kernel and bias sizes disagree", file.c_str(), l.spec.name.c_str());
}

// Pools: from a known architecture with the same channel sequence; otherwise the caller's guess.
void assign_pools(std::vector<ConvLayer>& layers, const std::vector<bool>& guess, std::string* arch) {
  std::vector<ConvLayerSpec> specs;
  for (auto& l : layers) specs.push_back(l.spec);
  for (const char* name : {"vgg11", "vgg13", "vgg16", "vgg19"}) {
    auto ref = vgg_arch(name);
    if (ref.size() != specs.size()) continue;
    bool same = true;
    for (size_t i = 0; i < ref.size() && same; i++) same = ref[i].cin == specs[i].cin && ref[i].cout == specs[i].cout;
    if (!same) continue;
    for (size_t i = 0; i < ref.size(); i++) layers[i].spec.pool_after = ref[i].pool_after;
    *arch = name;
    return;
  }
  for (size_t i = 0; i < layers.size(); i++) layers[i].spec.pool_after = guess[i];
  *arch = "custom";
}

// Names blockB_convI from the pool layout.
void name_layers(std::vector<ConvLayer>& layers) {
  int block = 1, idx = 0;
  for (auto& l : layers) {
    l.spec.name = strfmt("block%d_conv%d", block, ++idx);
    if (l.spec.pool_after) {
      block++;
      idx = 0;
    }
  }
}

// PyTorch's and ONNX's [out][in][3][3] -> the engine's HWIO [3][3][in][out].
std::vector<float> oihw_to_hwio(const std::vector<float>& src, int cin, int cout) {
  std::vector<float> dst((size_t)9 * cin * cout);
  for (int co = 0; co < cout; co++)
    for (int ci = 0; ci < cin; ci++)
      for (int t9 = 0; t9 < 9; t9++) dst[((size_t)t9 * cin + ci) * cout + co] = src[((size_t)co * cin + ci) * 9 + t9];
  return dst;
}

// ---------------------------------------------------------------- Keras HDF5

VggWeights from_keras_h5(const std::string& path) {
  H5File f(path);
  uint64_t root = f.root(), mw;
  if (f.find(root, "model_weights", &mw)) root = mw;  // a whole model saved with model.save()
  std::vector<std::string> names;
  const bool have_names = f.string_attr(root, "layer_names", &names);
  if (!have_names) {
    for (auto& l : f.children(root)) names.push_back(l.name);
    std::sort(names.begin(), names.end(), natural_less);
  }
  VggWeights w;
  std::vector<bool> pool_guess;
  for (const std::string& name : names) {
    if (name.find("pool") != std::string::npos) {
      if (!w.layers.empty()) pool_guess.back() = true;
      continue;
    }
    uint64_t g;
    if (!f.find(root, name, &g)) {
      if (have_names) continue;
      fail("%s: layer group %s is missing", path.c_str(), name.c_str());
    }
    // Datasets of this layer: by weight_names when present, else every dataset under the group.
    std::vector<std::string> wn;
    std::vector<uint64_t> objs;
    if (f.string_attr(g, "weight_names", &wn)) {
      for (const std::string& n : wn) {
        uint64_t d;
        if (!f.find(g, n, &d)) fail("%s: %s lists weight %s, which is missing", path.c_str(), name.c_str(), n.c_str());
        objs.push_back(d);
      }
    } else if (f.is_group(g)) {
      std::vector<uint64_t> todo = {g};
      for (size_t i = 0; i < todo.size() && i < 64; i++)
        for (auto& c : f.children(todo[i])) (f.is_dataset(c.addr) ? objs : todo).push_back(c.addr);
    }
    if (objs.empty()) continue;  // input, flatten, dropout, ...
    ConvLayer l;
    l.spec.name = name;
    bool kernel = false, bias = false;
    for (uint64_t d : objs) {
      H5File::Dataset ds = f.read_dataset(d, name);
      if (ds.shape.size() == 4) {
        if (ds.shape[0] != 3 || ds.shape[1] != 3) {
          if (ds.shape[2] == 3 && ds.shape[3] == 3)
            fail("%s: layer %s has Theano-ordered kernels %lldx%lldx3x3 (a th_dim_ordering file); download the "
                 "tf_dim_ordering one",
                 path.c_str(), name.c_str(), (long long)ds.shape[0], (long long)ds.shape[1]);
          fail("%s: layer %s has a %lldx%lld kernel; only 3x3 convolutions are supported", path.c_str(), name.c_str(),
               (long long)ds.shape[0], (long long)ds.shape[1]);
        }
        l.spec.cin = (int)ds.shape[2];
        l.spec.cout = (int)ds.shape[3];
        l.w = std::move(ds.data);  // [3,3,in,out] is already HWIO
        kernel = true;
      } else if (ds.shape.size() == 1) {
        l.b = std::move(ds.data);
        bias = true;
      }
    }
    if (!kernel) {
      if (w.layers.empty()) fail("%s: layer %s is not a 3x3 convolution; is this a VGG weights file?", path.c_str(), name.c_str());
      break;  // the dense top (fc1, fc2, predictions): ignored
    }
    if (!bias) fail("%s: layer %s has no bias", path.c_str(), name.c_str());
    check_layer(path, l);
    w.layers.push_back(std::move(l));
    pool_guess.push_back(false);
  }
  if (w.layers.empty()) fail("%s: no convolution layers found; is this a Keras VGG weights file?", path.c_str());
  if (!have_names) {  // pools from block prefixes: after the last conv of each blockN
    for (size_t i = 0; i < w.layers.size(); i++) {
      std::string a = w.layers[i].spec.name.substr(0, w.layers[i].spec.name.find('_'));
      std::string b = i + 1 < w.layers.size() ? w.layers[i + 1].spec.name.substr(0, w.layers[i + 1].spec.name.find('_')) : "";
      pool_guess[i] = a != b;
    }
  }
  std::vector<ConvLayerSpec> specs;
  for (size_t i = 0; i < w.layers.size(); i++) {
    w.layers[i].spec.pool_after = pool_guess[i];
    specs.push_back(w.layers[i].spec);
  }
  w.arch = match_arch(specs);
  w.preprocess = Preprocess::CaffeBGR;
  return w;
}

// ---------------------------------------------------------------- PyTorch

VggWeights from_torch(const std::string& path) {
  std::map<std::string, TorchTensor> sd = read_torch_checkpoint(path);
  std::map<int, const TorchTensor*> weights, biases;
  for (auto& [k0, t] : sd) {
    std::string k = k0;
    if (starts_with(k, "module.")) k = k.substr(7);  // saved from DataParallel
    if (!starts_with(k, "features.")) continue;
    std::vector<std::string> parts = split(k, '.');
    if (parts.size() != 3) continue;
    int idx = atoi(parts[1].c_str());
    if (parts[2] == "running_mean" || parts[2] == "running_var")
      fail("%s: this is a batch-normalised VGG (vgg16_bn); only plain VGG is supported", path.c_str());
    if (parts[2] == "weight" && t.shape.size() == 4) weights[idx] = &t;
    if (parts[2] == "bias" && t.shape.size() == 1) biases[idx] = &t;
  }
  if (weights.empty()) fail("%s: no features.N.weight tensors: not a torchvision VGG state_dict", path.c_str());
  VggWeights w;
  std::vector<int> idxs;
  for (auto& [idx, t] : weights) {
    const TorchTensor& tw = *t;
    if (tw.shape[2] != 3 || tw.shape[3] != 3)
      fail("%s: features.%d.weight is %lldx%lld; only 3x3 convolutions are supported", path.c_str(), idx,
           (long long)tw.shape[2], (long long)tw.shape[3]);
    auto bi = biases.find(idx);
    if (bi == biases.end()) fail("%s: features.%d has no bias", path.c_str(), idx);
    ConvLayer l;
    l.spec.cout = (int)tw.shape[0];
    l.spec.cin = (int)tw.shape[1];
    l.w = oihw_to_hwio(tw.data, l.spec.cin, l.spec.cout);
    l.b = bi->second->data;
    check_layer(path, l);
    w.layers.push_back(std::move(l));
    idxs.push_back(idx);
  }
  // torchvision's features: conv, relu (+ pool): a gap of 3 indices means a pool in between.
  std::vector<bool> guess(idxs.size(), false);
  for (size_t i = 0; i + 1 < idxs.size(); i++) guess[i] = idxs[i + 1] - idxs[i] >= 3;
  guess.back() = true;
  assign_pools(w.layers, guess, &w.arch);
  name_layers(w.layers);
  w.preprocess = Preprocess::Torch;
  return w;
}

// ---------------------------------------------------------------- numpy .npz

VggWeights from_npz(const std::string& path) {
  std::map<std::string, NpyArray> arrays = read_npz(path);
  std::vector<std::string> kernels;
  for (auto& [k, a] : arrays)
    if (starts_with(k, "conv") && ends_with(k, "_W")) kernels.push_back(k);
  if (kernels.empty()) fail("%s: no convB_I_W arrays: not a VGG .npz (expected keys like conv1_1_W, conv1_1_b)", path.c_str());
  std::sort(kernels.begin(), kernels.end(), natural_less);
  VggWeights w;
  std::vector<bool> guess;
  std::vector<int> blocks;
  for (const std::string& k : kernels) {
    const std::string base = k.substr(0, k.size() - 2);
    auto bi = arrays.find(base + "_b");
    if (bi == arrays.end()) fail("%s: %s has no bias %s_b", path.c_str(), k.c_str(), base.c_str());
    const NpyArray& a = arrays.at(k);
    if (a.h.shape.size() != 4 || a.h.shape[0] != 3 || a.h.shape[1] != 3)
      fail("%s: %s has shape %s; expected [3,3,in,out]", path.c_str(), k.c_str(), a.h.shape_str().c_str());
    ConvLayer l;
    l.spec.cin = (int)a.h.shape[2];
    l.spec.cout = (int)a.h.shape[3];
    l.w = a.to_f32(path + ":" + k);
    l.b = bi->second.to_f32(path + ":" + base + "_b");
    check_layer(path, l);
    w.layers.push_back(std::move(l));
    blocks.push_back(atoi(base.c_str() + 4));
  }
  guess.assign(blocks.size(), false);
  for (size_t i = 0; i < blocks.size(); i++) guess[i] = i + 1 == blocks.size() || blocks[i + 1] != blocks[i];
  assign_pools(w.layers, guess, &w.arch);
  name_layers(w.layers);
  w.preprocess = Preprocess::CaffeRGB;
  return w;
}

// ---------------------------------------------------------------- ONNX

VggWeights from_onnx(const std::string& path) {
  std::vector<OnnxConv> convs = read_onnx_conv_stack(path);
  VggWeights w;
  std::vector<bool> guess;
  for (OnnxConv& c : convs) {
    ConvLayer l;
    l.spec.cin = c.cin;
    l.spec.cout = c.cout;
    l.w = oihw_to_hwio(c.w_oihw, c.cin, c.cout);
    l.b = std::move(c.b);
    check_layer(path, l);
    guess.push_back(c.pool_after);
    w.layers.push_back(std::move(l));
  }
  // The walk saw the pools: a known architecture must agree with them, else it is custom.
  std::vector<ConvLayer> probe = w.layers;
  assign_pools(probe, guess, &w.arch);
  for (size_t i = 0; i < probe.size(); i++)
    if (probe[i].spec.pool_after != guess[i]) w.arch = "custom";
  for (size_t i = 0; i < w.layers.size(); i++) w.layers[i].spec.pool_after = guess[i];
  name_layers(w.layers);
  return w;
}

}  // namespace

VggWeights convert_weights(const std::string& in, const Preprocess* override_pre, WeightsFormat* detected) {
  WeightsFormat fmt = detect_weights_format(in);
  if (detected) *detected = fmt;
  VggWeights w;
  switch (fmt) {
    case WeightsFormat::KerasH5: w = from_keras_h5(in); break;
    case WeightsFormat::Torch: w = from_torch(in); break;
    case WeightsFormat::Npz: w = from_npz(in); break;
    case WeightsFormat::Onnx: w = from_onnx(in); break;
    case WeightsFormat::Raw: w = load_weights(in); break;
    case WeightsFormat::Unknown:
      fail("%s: unrecognised weights format; expected a Keras .h5, a PyTorch .pth, a numpy .npz or an ONNX model",
           in.c_str());
  }
  int prev = 3;
  for (auto& l : w.layers) {
    if (l.spec.cin != prev)
      fail("%s: layer %s takes %d channels but the previous layer gives %d", in.c_str(), l.spec.name.c_str(), l.spec.cin, prev);
    prev = l.spec.cout;
  }
  if (fmt != WeightsFormat::Raw) {
    w.synthetic = false;
    w.seed = 0;
    // A known release brings its own convention (and its key is recorded); otherwise the format's.
    w.fingerprint = weights_fingerprint(w);
    const KnownWeights* k = identify_weights(w);
    w.known = k ? k->key : "";
    if (k) w.preprocess = k->preprocess;
    if (!k && !override_pre && fmt == WeightsFormat::Onnx)
      fail("%s: an ONNX file records no input convention, and these weights (fingerprint %016llx) are not a release "
           "this engine knows; say which they expect: --preprocess caffe (Keras/Caffe: BGR minus the ImageNet mean), "
           "torch (torchvision: RGB/255, mean/std) or caffe-rgb",
           in.c_str(), (unsigned long long)w.fingerprint);
  }
  if (override_pre) w.preprocess = *override_pre;
  for (const ConvLayer& l : w.layers) check_finite_layer(l, in);  // NaN or Inf in any format's tensors
  return w;
}

}  // namespace tl
