// weights.h: the engine's raw weight format (weights/FORMAT.md) and VGG architectures as data.
//
// A file holds the architecture (conv layers with channel counts and where the pools are), the
// input convention the weights expect (preprocessing), and float32 arrays in the engine's layout:
// conv kernels HWIO [3][3][cin][cout], biases [cout]. The network is built from the file, so
// VGG11/13/16/19 and small test variants load the same way.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace tl {

// How an RGB uint8 image becomes the network input (all produce float32 NHWC).
enum class Preprocess : uint32_t {
  CaffeBGR = 0,  // Keras/Caffe: RGB -> BGR, subtract [103.939, 116.779, 123.68]; no scaling
  Torch = 1,     // torchvision: RGB / 255, minus [0.485, 0.456, 0.406], over [0.229, 0.224, 0.225]
  CaffeRGB = 2,  // Caffe means in RGB order (vgg16_weights.npz of Frossard): RGB - [123.68, 116.779, 103.939]
};
const char* preprocess_name(Preprocess p);               // "caffe", "torch", "caffe-rgb"
Preprocess parse_preprocess(const std::string& s);        // throws on an unknown name
std::string preprocess_formula(Preprocess p);            // human-readable

struct ConvLayerSpec {
  std::string name;  // e.g. "block1_conv1"
  int cin = 0, cout = 0;
  bool pool_after = false;
};

struct ConvLayer {
  ConvLayerSpec spec;
  std::vector<float> w;  // [3][3][cin][cout]
  std::vector<float> b;  // [cout]
};

struct VggWeights {
  std::string arch;  // "vgg16", or "custom" for test variants
  Preprocess preprocess = Preprocess::CaffeBGR;
  bool synthetic = false;
  uint64_t seed = 0;  // for synthetic weights
  std::vector<ConvLayer> layers;
  uint32_t crc = 0;   // checksum of the file it was loaded from (0 when built in memory)
  uint64_t fingerprint = 0;  // weights_fingerprint(); recorded in the file (0 in files from before it existed)
  std::string known;         // key of a known release ("keras-vgg16-imagenet"), "" when unknown

  int out_channels() const { return layers.empty() ? 0 : layers.back().spec.cout; }
  int num_pools() const;
  int64_t num_params() const;
  // Output spatial size for an input of size s (floor halving at each pool).
  int out_size(int s) const;
  // Cut points (tl_cache --until): the pooling layers by their Keras names ("block4_pool": the pool
  // after block4_conv3), in order. layers_until(name): how many conv layers run up to that pool ("":
  // all); fails naming the valid names. The size and channels after the first n conv layers:
  std::vector<std::string> pool_names() const;
  int layers_until(const std::string& pool) const;
  int out_size(int s, int n_layers) const;
  int out_channels(int n_layers) const;
  std::string describe() const;  // one line: "vgg16 (13 conv, 5 pool, 14,714,688 params, caffe)"
};

// A hash of the weights themselves: the layer table (channels, pools) and every array in the engine's
// layout (FNV-1a over 64-bit little-endian words; weights/FORMAT.md). The same tensors read from an
// .h5, .onnx, .npz or .pth give the same value; it does not depend on names or the input convention.
uint64_t weights_fingerprint(const VggWeights& w);

// Published releases this engine recognises, with the input convention each expects.
struct KnownWeights {
  const char* key;          // "keras-vgg16-imagenet"
  const char* description;  // one provenance line
  Preprocess preprocess;
  uint64_t fingerprint;     // 0: recognised by published values instead (anchor below)
};
// The known release these weights are, or nullptr: by fingerprint, or (torchvision's, whose file
// cannot be had here) by the values published in shared/weights/REFERENCE_VALUES.md.
const KnownWeights* identify_weights(const VggWeights& w);
const KnownWeights* known_weights_by_key(const std::string& key);
// Checks Keras/Caffe VGG16 weights against every value published in shared/weights/
// REFERENCE_VALUES.md (bias[0] and kernel[out 0, in 0, 0, 0] of all 13 layers, block1_conv1's
// bias[0:10] and its first kernel values in both orders given there). Returns "" when all match
// (within 1e-7 relative), else the first mismatch.
std::string check_keras_published_values(const VggWeights& w);

// Known architectures: vgg11, vgg13, vgg16, vgg19 (conv part only). Throws on an unknown name.
std::vector<ConvLayerSpec> vgg_arch(const std::string& name);
// Which known architecture a layer list is (channel counts and pools), or "custom".
std::string match_arch(const std::vector<ConvLayerSpec>& layers);

// File I/O. Loading checks the magic, version, header fields against the file's real size and
// the crc32; every failure is a one-line tl::Error naming the file and the fix.
std::vector<uint8_t> serialize_weights(const VggWeights& w);
void save_weights(const VggWeights& w, const std::string& path);
VggWeights load_weights(const std::string& path);
VggWeights parse_weights(const std::vector<uint8_t>& bytes, const std::string& what);

// Deterministic synthetic weights (He-uniform, scaled so activations keep a realistic range
// through every layer). Never ImageNet weights: anything printed from them must say so.
// Fails naming what, the layer and the position when a layer holds a NaN or an infinity.
void check_finite_layer(const ConvLayer& l, const std::string& what);
VggWeights synthetic_weights(const std::string& arch, uint64_t seed, Preprocess pre = Preprocess::CaffeBGR);
VggWeights synthetic_weights(const std::vector<ConvLayerSpec>& layers, const std::string& arch, uint64_t seed,
                             Preprocess pre);

constexpr char kWeightsMagic[8] = {'T', 'L', 'V', 'G', 'G', 'W', 'T', '\0'};
constexpr uint32_t kWeightsVersion = 1;

// Where the defaults look and what to tell a user who has no weights yet.
std::string missing_weights_hint();

}  // namespace tl
