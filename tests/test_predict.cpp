// tl_predict and the uncached path (stages/predict, stages/image_source): prediction = forward pass +
// head, the uncached path trains exactly like the cached one, bad files in prediction, both on the
// CUDA path too.
//
// Tolerance: predictions and the cached/uncached comparison exactly (CPU); GPU vs CPU 1e-5.
#include <unistd.h>

#include <cmath>
#include <cstring>

#include "helpers.h"
#include "host/stages/cache.h"
#include "host/stages/image_source.h"
#include "host/stages/predict.h"
#include "host/stages/train.h"
#include "host/model/vgg.h"

using namespace tl;

namespace {

std::string fresh(const std::string& name) {
  std::string d = path_join(tlt::temp_dir(), name);
  REQUIRE(system(("rm -rf '" + d + "'").c_str()) == 0);
  make_dirs(d);
  return d;
}


// Distinct small photos-like test images written as PNG/JPEG files.
void make_images(const std::string& dir, int per_class) {
  Image src = load_image(path_join(tlt::fixture_dir(), "img_smooth_200x150.png"));
  for (int k = 0; k < 2 * per_class; k++) {
    Image c;
    c.w = 40 + (k * 7) % 30;
    c.h = 36 + (k * 5) % 25;
    c.rgb.resize((size_t)c.w * c.h * 3);
    for (int y = 0; y < c.h; y++)
      for (int x = 0; x < c.w; x++)
        for (int ch = 0; ch < 3; ch++)
          c.rgb[((size_t)y * c.w + x) * 3 + ch] =
              (uint8_t)(src.px((x * 3 + k * 11) % src.w, (y * 2 + k * 7) % src.h)[ch] ^ ((k * 29) & 0x3F));
    const bool dog = k % 2;
    const std::string name = strfmt("%s.%d.%s", dog ? "dog" : "cat", k, k % 3 ? "jpg" : "png");
    if (k % 3)
      write_jpeg(path_join(dir, name), c, 90);
    else
      write_png(path_join(dir, name), c);
  }
}

std::string synth_weights() {
  static std::string p = [] {
    std::string path = path_join(tlt::temp_dir(), "pw.bin");
    save_weights(synthetic_weights("vgg16", 21), path);
    return path;
  }();
  return p;
}

// A 1x1x512-input head with random biases (so predictions differ between photos), saved as a model
// of the synthetic weights at 32x32 in dir; returns its path.
std::string save_small_model(const std::string& dir, Head& head, uint64_t seed, uint64_t bias_seed) {
  VggWeights w = load_weights(synth_weights());
  head.init(seed);
  for (Tensor* b : {head.params()[1], head.params()[3], head.params()[5]})
    b->from_vector(tlt::random_vec(b->numel(), bias_seed, 0.3f));
  ModelFile m = model_from_head(head, false);
  m.meta = {{"image_size", "32"}, {"resize", "nearest"}, {"preprocess", "caffe"}, {"feature_shape", "1x1x512"},
            {"weights_crc32", strfmt("%08x", w.crc)}, {"weights_file", synth_weights()}, {"classes", "cat,dog"}};
  const std::string mp = path_join(dir, "m.bin");
  save_model(mp, m);
  return mp;
}

HeadSpec small_spec() {
  HeadSpec spec;
  spec.feat_h = spec.feat_w = 1;
  return spec;
}

}  // namespace

TEST_CASE("prediction equals the forward pass plus the head; bad files get a reason and the rest still run") {
  const std::string dir = fresh("pimg");
  make_images(dir, 3);
  VggWeights w = load_weights(synth_weights());
  Head head(small_spec(), Device::CPU);
  const std::string mp = save_small_model(dir, head, 5, 9);
  // inputs: 3 images, an empty file, a truncated JPEG, a text file
  std::vector<std::string> paths;
  for (const char* n : {"cat.0.png", "dog.1.jpg", "cat.2.jpg"}) paths.push_back(path_join(dir, n));
  std::vector<uint8_t> j = read_file(paths[1]);
  FILE* f = fopen(path_join(dir, "empty.jpg").c_str(), "wb");
  fclose(f);
  f = fopen(path_join(dir, "cut.jpg").c_str(), "wb");
  fwrite(j.data(), 1, j.size() / 2, f);
  fclose(f);
  f = fopen(path_join(dir, "note.jpg").c_str(), "wb");
  fputs("not an image", f);
  fclose(f);
  paths.insert(paths.begin() + 1, path_join(dir, "empty.jpg"));
  paths.push_back(path_join(dir, "cut.jpg"));
  paths.push_back(path_join(dir, "note.jpg"));
  for (bool tta : {false, true}) {
    Predictor pred(mp, "", Device::CPU, 2, tta);
    std::vector<Prediction> res = pred.run(expand_inputs(paths));
    REQUIRE(res.size() == 6);
    CHECK(!res[1].ok);
    CHECK(res[1].error == "empty file");
    CHECK(!res[4].ok);
    CHECK(res[4].error.find("truncated JPEG") == 0);
    CHECK(!res[5].ok);
    CHECK(res[5].error.find("not a supported image") == 0);
    VggBase base(w, Device::CPU);
    for (int i : {0, 2, 3}) {
      REQUIRE(res[i].ok);
      Image img = resize_image(load_image(paths[i]), 32, 32, Resize::Nearest);
      double p = 0;
      for (int k = 0; k < (tta ? 2 : 1); k++) {
        Image im = img;
        if (k)
          for (int y = 0; y < 32; y++)
            for (int x = 0; x < 32; x++) memcpy(&im.rgb[((size_t)y * 32 + x) * 3], img.px(31 - x, y), 3);
        Tensor x({1, 32, 32, 3});
        preprocess_image(im, Preprocess::CaffeBGR, x.f32());
        Tensor feat = base.forward(x);
        Tensor flat = Tensor::view(feat.ptr, {1, 512});
        float z;
        head.logits(flat, 1, &z);
        p += 1.0 / (1.0 + std::exp(-(double)z));
      }
      CAPTURE(i);
      CHECK(res[i].p == p / (tta ? 2 : 1));
    }
  }
  // The weights must be the ones the model's features were made with.
  const std::string other = path_join(dir, "other.bin");
  save_weights(synthetic_weights("vgg16", 22), other);
  CHECK(tlt::error_of([&] { Predictor(mp, other, Device::CPU, 2, false); }).find("are not the weights") !=
        std::string::npos);
  CHECK(kaggle_id("test1/123.jpg") == 123);
  CHECK(kaggle_id("cat.1.jpg") == -1);
}

TEST_CASE("without augmentation and dropout, the uncached path trains to the cached path's weights") {
  const std::string data = fresh("udata");
  make_images(data, 12);
  CacheOptions co;
  co.data = data;
  co.out = fresh("ucache");
  co.weights = synth_weights();
  co.image_size = 32;
  co.device = "cpu";
  co.shard_size = 7;
  co.valid_fraction = 0.25;
  co.seed = 4;  // tl_train --images uses its --seed for the split too
  build_cache(co);
  TrainOptions to;
  to.epochs = 3;
  to.batch = 5;
  to.dropout = 0;
  to.plots = false;
  to.seed = 4;
  to.out = fresh("uA");
  auto cached = open_cached_source(co.out, Device::CPU);
  TrainResult ra = train_head(*cached, to);
  ImageSourceOptions io;
  io.data = data;
  io.weights = synth_weights();
  io.image_size = 32;
  io.valid_fraction = 0.25;
  io.seed = to.seed;
  io.base_batch = 3;  // training batches of 5 span several forward passes
  auto uncached = open_image_source(io);
  CHECK(uncached->size(Split::Train) == cached->size(Split::Train));
  CHECK(uncached->labels(Split::Valid) == cached->labels(Split::Valid));
  to.out = fresh("uB");
  TrainResult rb = train_head(*uncached, to);
  for (int e = 0; e < 3; e++) CHECK(rb.history[e].loss == ra.history[e].loss);
  CHECK(load_model(path_join(path_join(tlt::temp_dir(), "uA"), "model.bin")).params ==
        load_model(path_join(to.out, "model.bin")).params);
  // With augmentation the training batches differ, the validation batches do not.
  io.augment = true;
  auto aug = open_image_source(io);
  Tensor x1({2, 512}), x2({2, 512});
  aug->fetch(Split::Train, {0, 1}, x1, true, 1);
  uncached->fetch(Split::Train, {0, 1}, x2, true, 1);
  CHECK(x1.to_vector() != x2.to_vector());
  aug->fetch(Split::Valid, {0, 1}, x1, false, 1);
  uncached->fetch(Split::Valid, {0, 1}, x2, false, 1);
  CHECK(x1.to_vector() == x2.to_vector());
  // --save-augmented writes strips a person can look at.
  const std::string ad = fresh("aug");
  save_augmented_samples(io, 3, ad);
  CHECK(file_exists(path_join(ad, "00_cat.0.png")));
  Image strip = load_image(path_join(ad, "00_cat.0.png"));
  CHECK(strip.w == 32 * 5 + 6 * 4);
}

CUDA_CASE("prediction and the uncached training path on the GPU follow the CPU") {
  const std::string dir = fresh("gpimg");
  make_images(dir, 3);
  Head head(small_spec(), Device::CPU);
  const std::string mp = save_small_model(dir, head, 6, 10);
  std::vector<PredictInput> inputs = expand_inputs({dir});
  std::vector<Prediction> pc = Predictor(mp, "", Device::CPU, 4, true).run(inputs);
  std::vector<Prediction> pg = Predictor(mp, "", Device::CUDA, 4, true).run(inputs);
  REQUIRE(pc.size() == pg.size());
  for (size_t i = 0; i < pc.size(); i++) {
    CAPTURE(i);
    CHECK(pg[i].ok == pc[i].ok);
    CHECK(std::fabs(pg[i].p - pc[i].p) <= 1e-5);
  }
  // Uncached training: the base in the loop on the GPU, the head on the GPU.
  ImageSourceOptions io;
  io.data = dir;
  io.weights = synth_weights();
  io.image_size = 32;
  io.valid_fraction = 0.34;
  io.seed = 3;
  io.base_batch = 2;
  TrainOptions to;
  to.epochs = 2;
  to.batch = 2;
  to.plots = false;
  to.seed = 3;
  to.out = fresh("guA");
  TrainResult rc = train_head(*open_image_source(io), to);
  io.device = Device::CUDA;
  to.device = Device::CUDA;
  to.out = fresh("guB");
  TrainResult rg = train_head(*open_image_source(io), to);
  for (int e = 0; e < 2; e++) CHECK(rg.history[e].loss == doctest::Approx(rc.history[e].loss).epsilon(1e-3));
}

TEST_CASE("a model trained on imported .npy features says plainly what it lacks, and the report's clipping wording") {
  HeadSpec spec;
  spec.feat_h = spec.feat_w = 1;
  Head head(spec, Device::CPU);
  head.init(1);
  ModelFile m = model_from_head(head, false);
  m.meta = {{"image_size", "32"}, {"resize", "nearest"}, {"preprocess", "caffe"}, {"feature_shape", "1x1x512"},
            {"weights_crc32", "unknown"}, {"source", "npy"}};
  const std::string dir = fresh("npymodel");
  const std::string mp = path_join(dir, "m.bin");
  save_model(mp, m);
  char cwd[4096];
  REQUIRE(getcwd(cwd, sizeof cwd));
  REQUIRE(chdir(dir.c_str()) == 0);  // no weights/vgg16_notop.bin to fall back on here
  const std::string e = tlt::error_of([&] { Predictor(mp, "", Device::CPU, 2, false); });
  REQUIRE(chdir(cwd) == 0);
  CHECK(e == mp + " records no VGG weights (it was trained on imported .npy features); pass --weights FILE with the "
                  "converted weights those features came from");
  // The report's clipped log loss says whether clipping helped.
  std::vector<Prediction> res = {{"v/cat/a.jpg", true, 0.9999, ""}, {"v/dog/b.jpg", true, 0.8, ""}};
  int n = 0;
  std::string rep = labelled_report(res, {"cat", "dog"}, 0.005, &n);
  CHECK(n == 2);
  CHECK(rep.find("lower, as confident mistakes cost less") != std::string::npos);
  res = {{"v/cat/a.jpg", true, 0.2, ""}, {"v/dog/b.jpg", true, 0.9999, ""}};
  rep = labelled_report(res, {"cat", "dog"}, 0.005, &n);
  CHECK(rep.find("no lower: clipping does not help") != std::string::npos);
  CHECK(label_from_path("test1/12.jpg", {"cat", "dog"}) == -1);
  CHECK(label_from_path("PetImages/Dog/12.jpg", {"cat", "dog"}) == 1);
  CHECK(label_from_path("train/cat.3.jpg", {"cat", "dog"}) == 0);
  CHECK(label_from_path("x/cats/1.jpg", {"cat", "dog"}) == 0);
}
