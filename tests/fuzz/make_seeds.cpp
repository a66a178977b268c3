// Seed corpora for the fuzz harnesses (tests/fuzz/fuzz_targets.cpp): small valid files of every
// format, written by the engine's own writers, plus the committed fixtures of the formats read from
// outside (h5, pth, npz, onnx, png, jpg), and the hand-built ONNX graphs of tests/fuzz/onnx_graphs.h.
//   build/fuzz/make_seeds OUT_DIR      -> OUT_DIR/<target>/...
#include <dirent.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "host/core/common.h"
#include "host/io/image.h"
#include "host/io/npy.h"
#include "host/io/shard.h"
#include "host/io/weights.h"
#include "host/model/head.h"
#include "host/stages/cache.h"
#include "tests/fuzz/onnx_graphs.h"

using namespace tl;

namespace {

std::string g_out;

void put(const std::string& target, const std::string& name, const std::vector<uint8_t>& bytes) {
  const std::string dir = path_join(g_out, target);
  make_dirs(dir);
  write_file_atomic(path_join(dir, name), bytes.data(), bytes.size());
}

// Writes with the engine's file writers into a scratch path, then files the bytes as a seed.
template <typename F>
void via_file(const std::string& target, const std::string& name, F write) {
  const std::string tmp = path_join(g_out, ".scratch");
  make_dirs(tmp);
  const std::string p = path_join(tmp, name);
  write(p);
  put(target, name, read_file(p));
}

void fixtures(const std::string& dir) {
  const std::pair<const char*, std::vector<const char*>> map[] = {
      {".h5", {"weights_h5"}},      {".pth", {"weights_torch", "zip"}}, {".npz", {"weights_npz", "zip"}},
      {".onnx", {"onnx"}},          {".png", {"image"}},                {".jpg", {"image"}}};
  DIR* d = opendir(dir.c_str());
  if (!d) fail("%s: cannot open the fixtures folder", dir.c_str());
  while (struct dirent* e = readdir(d)) {
    const std::string n = e->d_name;
    for (auto& [ext, targets] : map)
      if (ends_with(n, ext)) {
        std::vector<uint8_t> b = read_file(path_join(dir, n));
        if (b.size() > (1u << 20)) continue;  // small seeds fuzz faster
        for (const char* t : targets) put(t, n, b);
      }
  }
  closedir(d);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: make_seeds OUT_DIR [FIXTURES_DIR]\n");
    return 2;
  }
  g_out = argv[1];
  const std::string fix = argc > 2 ? argv[2] : "tests/fixtures";
  try {
    fixtures(fix);

    // ONNX graphs that loop or lie (issue 26): each must end in one clear error.
    put("onnx", "graph_two_convs.onnx", onnx_graphs::two_convs({0, 3, 1, 2}));
    put("onnx", "graph_transpose_hw.onnx", onnx_graphs::two_convs({0, 3, 2, 1}));
    put("onnx", "graph_identity_cycle.onnx", onnx_graphs::identity_cycle());
    put("onnx", "graph_duplicate_initializer.onnx", onnx_graphs::duplicate_initializer());
    put("onnx", "graph_unmodelled_inside.onnx", onnx_graphs::unmodelled_inside());
    put("onnx", "graph_many_empty_nodes.onnx", onnx_graphs::many_empty_nodes(100001));

    // Raw weights: a three-layer network (one pool) and the smallest VGG, as the converter writes them.
    std::vector<ConvLayerSpec> tiny = {{"block1_conv1", 3, 4, false}, {"block1_conv2", 4, 4, true}, {"block2_conv1", 4, 8, true}};
    put("raw_weights", "tiny.bin", serialize_weights(synthetic_weights(tiny, "custom", 7, Preprocess::Torch)));
    put("raw_weights", "tiny_caffe.bin", serialize_weights(synthetic_weights(tiny, "custom", 8, Preprocess::CaffeBGR)));

    // Shards: fp32 and fp16, with and without skipped files.
    for (int f16 = 0; f16 < 2; f16++) {
      ShardData d;
      d.info.dtype = f16 ? DType::F16 : DType::F32;
      d.info.count = 3;
      d.info.feat_h = 1, d.info.feat_w = 2, d.info.feat_c = 3;
      d.info.split = f16 ? Split::Valid : Split::Train;
      d.info.index = 1;
      d.info.range_count = f16 ? 3 : 5;
      d.info.first_pos = 5;
      d.info.settings_hash = 0x1234567890abcdefull;
      d.labels = {0, 1, 1};
      d.ids = {5, 7, 9};
      if (!f16) d.skipped = {6, 8}, d.reasons = {"not an image (unknown format)", "truncated JPEG"};
      d.features.assign((size_t)3 * 6 * (f16 ? 2 : 4), 0);
      for (size_t i = 0; i < d.features.size(); i++) d.features[i] = (uint8_t)(i * 37 + 11);
      via_file("shard", f16 ? "valid-00001.bin" : "train-00001.bin", [&](const std::string& p) { write_shard(p, d); });
    }

    // A manifest of three files.
    {
      Manifest m;
      m.settings.kv = {{"weights_crc", "0a1b2c3d"}, {"image_size", "224"}, {"resize", "nearest"}, {"dtype", "fp32"}};
      m.classes = {"cat", "dog"};
      m.sources = {"data/train"};
      for (uint32_t i = 0; i < 3; i++) {
        ManifestEntry e;
        e.id = i;
        e.split = i == 2 ? Split::Valid : Split::Train;
        e.label = (int)(i & 1);
        e.bytes = 1000 + i;
        e.rel = strfmt("%s.%u.jpg", i & 1 ? "dog" : "cat", i);
        e.status = i == 1 ? "skipped: truncated JPEG" : "ok";
        m.entries.push_back(e);
      }
      const std::string tmp = path_join(g_out, ".scratch/cache");
      make_dirs(tmp);
      write_manifest(tmp, m);
      put("manifest", "manifest.tsv", read_file(path_join(tmp, "manifest.tsv")));
    }

    // Head models: a small head with and without optimiser state.
    for (int opt = 0; opt < 2; opt++) {
      ModelFile m;
      m.spec.feat_h = 1, m.spec.feat_w = 2, m.spec.feat_c = 2, m.spec.hidden1 = 3, m.spec.hidden2 = 2;
      const size_t sizes[6] = {12, 3, 6, 2, 2, 1};
      for (size_t i = 0; i < 6; i++) {
        m.params.push_back(std::vector<float>(sizes[i], 0.25f * (float)(i + 1)));
        if (opt) m.opt_state.push_back(std::vector<float>(sizes[i], 1e-3f));
      }
      m.meta = {{"epoch", "2"}, {"history", "1:0.6:0.7:0.5:0.75:1.0;2:0.4:0.8:0.45:0.8:1.0"}, {"preprocess", "caffe"}};
      via_file("model", opt ? "model.bin" : "best.bin", [&](const std::string& p) { save_model(p, m); });
      // And the same head with a fine-tuned conv layer (format 2: the layer record in the meta).
      m.convs.push_back({"block5_conv1", 2, 2, true});
      m.params.push_back(std::vector<float>(36, 0.5f));
      m.params.push_back(std::vector<float>(2, 0.1f));
      if (opt) {
        m.opt_state.push_back(std::vector<float>(36, 1e-3f));
        m.opt_state.push_back(std::vector<float>(2, 1e-3f));
      }
      via_file("model", opt ? "model_tuned.bin" : "best_tuned.bin", [&](const std::string& p) { save_model(p, m); });
    }

    // npy arrays of the dtypes the readers convert.
    const float fv[6] = {1.5f, -2.0f, 0.0f, 3.25f, 1e-3f, -7.0f};
    const uint8_t uv[4] = {0, 1, 255, 7};
    const int32_t iv[3] = {-1, 0, 123456};
    via_file("npy", "f32.npy", [&](const std::string& p) { write_npy_f32(p, fv, {2, 3}); });
    via_file("npy", "u8.npy", [&](const std::string& p) { write_npy_u8(p, uv, {4}); });
    via_file("npy", "i32.npy", [&](const std::string& p) { write_npy_i32(p, iv, {3, 1}); });

    // Images in the formats decoded by stb_image (BMP, TGA, PNM, GIF) besides the fixtures' PNG/JPEG.
    Image img;
    img.w = 5, img.h = 3;
    img.rgb.resize(45);
    for (size_t i = 0; i < img.rgb.size(); i++) img.rgb[i] = (uint8_t)(i * 53);
    via_file("image", "small.png", [&](const std::string& p) { write_png(p, img); });
    via_file("image", "small.jpg", [&](const std::string& p) { write_jpeg(p, img, 90); });
    std::vector<uint8_t> ppm = {'P', '6', '\n', '5', ' ', '3', '\n', '2', '5', '5', '\n'};
    ppm.insert(ppm.end(), img.rgb.begin(), img.rgb.end());
    put("image", "small.ppm", ppm);
    // A 1x1 GIF89a (global colour table of 2, one LZW-coded pixel).
    put("image", "pixel.gif",
        {0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 1, 0, 1, 0, 0x80, 0, 0, 0xff, 0, 0, 0, 0, 0xff, 0x2c, 0, 0, 0, 0, 1, 0,
         1, 0, 0, 2, 2, 0x44, 0x01, 0, 0x3b});
    // A 2x1 24-bit BMP.
    put("image", "tiny.bmp",
        {'B', 'M', 62, 0, 0, 0, 0, 0, 0, 0, 54, 0, 0, 0, 40, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 1, 0, 24, 0, 0, 0,
         0, 0, 8, 0, 0, 0, 0x13, 0x0b, 0, 0, 0x13, 0x0b, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, 0, 0, 0, 0});
    // A 2x1 uncompressed true-colour TGA.
    put("image", "tiny.tga", {0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 1, 0, 24, 0, 10, 20, 30, 40, 50, 60});
    printf("seeds written to %s\n", g_out.c_str());
  } catch (const Error& e) {
    fprintf(stderr, "make_seeds: %s\n", e.what());
    return 1;
  }
  return 0;
}
