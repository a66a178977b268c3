// tl_cache's parts: dataset layouts (folders and zips), the stable split, shards, the whole
// caching pass against the direct forward pass, resume, bad files, stale caches.
#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <map>

#include "helpers.h"
#include "host/stages/cache.h"
#include "host/core/device.h"
#include "host/core/cpu_features.h"
#include "host/ops/cpu_amx.h"
#include "host/ops/cpu_ops.h"
#include "host/ops/ops.h"
#include "host/io/image.h"
#include "host/model/recipe.h"
#include "host/model/vgg.h"
#include "host/io/zip.h"
#include "host/stages/predict.h"
#include "host/stages/train.h"

using namespace tl;

namespace {

void put(const std::string& path, const std::vector<uint8_t>& b) {
  make_dirs(dirname_of(path));
  FILE* f = fopen(path.c_str(), "wb");
  REQUIRE(f);
  if (!b.empty()) fwrite(b.data(), 1, b.size(), f);
  fclose(f);
}
void put_text(const std::string& path, const std::string& text) { put(path, std::vector<uint8_t>(text.begin(), text.end())); }

// A minimal zip writer for test archives: stored or deflated entries, CRC-32, central directory.
void write_zip(const std::string& path, const std::vector<std::pair<std::string, std::vector<uint8_t>>>& files,
               bool use_deflate) {
  std::vector<uint8_t> out, cd;
  auto u16 = [](std::vector<uint8_t>& v, uint32_t x) { v.push_back(x & 255), v.push_back((x >> 8) & 255); };
  auto u32 = [&](std::vector<uint8_t>& v, uint32_t x) { u16(v, x & 0xFFFF), u16(v, x >> 16); };
  for (auto& [name, data] : files) {
    std::vector<uint8_t> comp = data;
    if (use_deflate) {
      comp.resize(compressBound((uLong)data.size()) + 64);
      z_stream zs = {};
      deflateInit2(&zs, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY);
      zs.next_in = (Bytef*)data.data();
      zs.avail_in = (uInt)data.size();
      zs.next_out = comp.data();
      zs.avail_out = (uInt)comp.size();
      REQUIRE(deflate(&zs, Z_FINISH) == Z_STREAM_END);
      comp.resize(zs.total_out);
      deflateEnd(&zs);
    }
    const uint32_t crc = crc32_of(data.data(), data.size()), off = (uint32_t)out.size();
    const uint16_t method = use_deflate ? 8 : 0;
    u32(out, 0x04034b50), u16(out, 20), u16(out, 0), u16(out, method), u16(out, 0), u16(out, 0);
    u32(out, crc), u32(out, (uint32_t)comp.size()), u32(out, (uint32_t)data.size()), u16(out, (uint32_t)name.size()), u16(out, 0);
    out.insert(out.end(), name.begin(), name.end());
    out.insert(out.end(), comp.begin(), comp.end());
    u32(cd, 0x02014b50), u16(cd, 20), u16(cd, 20), u16(cd, 0), u16(cd, method), u16(cd, 0), u16(cd, 0);
    u32(cd, crc), u32(cd, (uint32_t)comp.size()), u32(cd, (uint32_t)data.size()), u16(cd, (uint32_t)name.size());
    u16(cd, 0), u16(cd, 0), u16(cd, 0), u16(cd, 0), u32(cd, 0), u32(cd, off);
    cd.insert(cd.end(), name.begin(), name.end());
  }
  const uint32_t cd_off = (uint32_t)out.size();
  out.insert(out.end(), cd.begin(), cd.end());
  u32(out, 0x06054b50), u16(out, 0), u16(out, 0), u16(out, (uint32_t)files.size()), u16(out, (uint32_t)files.size());
  u32(out, (uint32_t)cd.size()), u32(out, cd_off), u16(out, 0);
  put(path, out);
}

// Distinct small test images: crops of the committed fixture PNG, as JPEG or PNG bytes.
std::vector<uint8_t> test_image(int k, bool png = false) {
  static Image src = load_image(path_join(tlt::fixture_dir(), "img_smooth_200x150.png"));
  Image crop;
  crop.w = 40 + (k * 7) % 50;
  crop.h = 36 + (k * 11) % 40;
  crop.rgb.resize((size_t)crop.w * crop.h * 3);
  for (int y = 0; y < crop.h; y++)
    for (int x = 0; x < crop.w; x++)
      for (int c = 0; c < 3; c++)
        crop.rgb[((size_t)y * crop.w + x) * 3 + c] =
            (uint8_t)(src.px((x + k * 13) % src.w, (y + k * 5) % src.h)[c] ^ (k * 37 & (c == 1 ? 0x3F : 0x1F)));
  const std::string tmp = path_join(tlt::temp_dir(), png ? "enc.png" : "enc.jpg");
  if (png)
    write_png(tmp, crop);
  else
    write_jpeg(tmp, crop, 92);
  return read_file(tmp);
}

std::string fresh_dir(const std::string& name) {
  std::string d = path_join(tlt::temp_dir(), name);
  std::string cmd = "rm -rf '" + d + "'";
  REQUIRE(system(cmd.c_str()) == 0);
  make_dirs(d);
  return d;
}

// Small synthetic VGG weights (the full VGG16 layer table) for quick caching at --image-size 32.
std::string synthetic_weights_file() {
  static std::string path = [] {
    std::string p = path_join(tlt::temp_dir(), "vgg16_synth.bin");
    save_weights(synthetic_weights("vgg16", 11), p);
    return p;
  }();
  return path;
}

CacheOptions small_options(const std::string& data, const std::string& out) {
  CacheOptions o;
  o.data = data;
  o.out = out;
  o.weights = synthetic_weights_file();
  o.image_size = 32;
  o.shard_size = 5;
  o.device = "cpu";
  o.batch = 3;
  return o;
}

std::map<std::string, std::vector<uint8_t>> cache_files(const std::string& dir) {
  std::map<std::string, std::vector<uint8_t>> out;
  DIR* d = opendir(dir.c_str());
  REQUIRE(d);
  while (struct dirent* e = readdir(d)) {
    std::string n = e->d_name;
    if (ends_with(n, ".bin") || n == "manifest.tsv") out[n] = read_file(path_join(dir, n));
  }
  closedir(d);
  return out;
}

}  // namespace

TEST_CASE("dataset layouts: Kaggle flat, class folders (PetImages-style), zips stored and deflated") {
  const std::string flat = fresh_dir("flat");
  for (int i = 0; i < 6; i++) {
    put(path_join(flat, strfmt("cat.%d.jpg", i)), test_image(i));
    put(path_join(flat, strfmt("dog.%d.jpg", i)), test_image(100 + i));
  }
  put(path_join(flat, "Thumbs.db"), {1, 2, 3});
  Dataset a = scan_dataset(flat, "", ScanOptions());
  CHECK(a.layout == "kaggle-flat");
  CHECK(a.files.size() == 12);
  CHECK(a.classes == std::vector<std::string>{"cat", "dog"});
  CHECK(a.ignored == 1);
  for (auto& f : a.files) CHECK(f.label == (starts_with(f.rel, "cat.") ? 0 : 1));

  const std::string pets = fresh_dir("pets");
  for (int i = 0; i < 4; i++) {
    put(path_join(pets, strfmt("PetImages/Cat/%d.jpg", i)), test_image(i));
    put(path_join(pets, strfmt("PetImages/Dog/%d.jpg", i)), test_image(50 + i));
  }
  Dataset b = scan_dataset(pets, "", ScanOptions());
  CHECK(b.layout == "class-folders");
  CHECK(b.classes == std::vector<std::string>{"cat", "dog"});  // Cat/ Dog/ -> cat, dog
  CHECK(b.count(Split::Train) + b.count(Split::Valid) == 8);
  for (auto& f : b.files) CHECK(f.label == (f.rel.find("/Cat/") != std::string::npos ? 0 : 1));

  // The Kaggle train.zip (train/cat.N.jpg) and the PetImages zip, read in place.
  std::vector<std::pair<std::string, std::vector<uint8_t>>> kz, pz;
  for (int i = 0; i < 5; i++) {
    kz.push_back({strfmt("train/cat.%d.jpg", i), test_image(i)});
    kz.push_back({strfmt("train/dog.%d.jpg", i), test_image(200 + i)});
    pz.push_back({strfmt("PetImages/Cat/%d.jpg", i), test_image(i)});
    pz.push_back({strfmt("PetImages/Dog/%d.jpg", i), test_image(300 + i)});
  }
  pz.push_back({"PetImages/Dog/Thumbs.db", {0, 0}});
  const std::string kzip = path_join(tlt::temp_dir(), "train.zip"), pzip = path_join(tlt::temp_dir(), "pets.zip");
  write_zip(kzip, kz, true);
  write_zip(pzip, pz, false);
  Dataset c = scan_dataset(kzip, "", ScanOptions());
  CHECK(c.layout == "kaggle-flat");
  CHECK(c.files.size() == 10);
  CHECK(c.read(c.files[0], 1 << 20) == kz[0].second);  // train/cat.0.jpg, inflated and CRC-checked
  Dataset d = scan_dataset(pzip, "", ScanOptions());
  CHECK(d.layout == "class-folders");
  CHECK(d.files.size() == 10);
  CHECK(d.ignored == 1);

  // train/ and valid/ folders fix the split; --valid-data gives an explicit one.
  const std::string tv = fresh_dir("tv");
  for (int i = 0; i < 3; i++) {
    put(path_join(tv, strfmt("train/cat/c%d.jpg", i)), test_image(i));
    put(path_join(tv, strfmt("train/dog/d%d.jpg", i)), test_image(10 + i));
    put(path_join(tv, strfmt("valid/cat/c%d.jpg", i)), test_image(20 + i));
    put(path_join(tv, strfmt("valid/dog/d%d.jpg", i)), test_image(30 + i));
  }
  Dataset e = scan_dataset(tv, "", ScanOptions());
  CHECK(e.count(Split::Train) == 6);
  CHECK(e.count(Split::Valid) == 6);
  for (auto& f : e.files) CHECK((f.split == Split::Valid) == starts_with(f.rel, "valid/"));
  Dataset g = scan_dataset(path_join(tv, "train"), path_join(tv, "valid"), ScanOptions());
  CHECK(g.count(Split::Train) == 6);
  CHECK(g.count(Split::Valid) == 6);

  // What is not a usable dataset says what was expected.
  const std::string one = fresh_dir("one");
  put(path_join(one, "cat/a.jpg"), test_image(1));
  CHECK(tlt::error_of([&] { scan_dataset(one, "", ScanOptions()); }).find("expected 2 classes (cat and dog), found 1: cat") !=
        std::string::npos);
  const std::string empty = fresh_dir("empty");
  CHECK(tlt::error_of([&] { scan_dataset(empty, "", ScanOptions()); }).find("no images found") != std::string::npos);
  CHECK(tlt::error_of([&] { scan_dataset(path_join(empty, "nope"), "", ScanOptions()); }).find("not found") !=
        std::string::npos);
}

TEST_CASE("the split is by file identity: stable when files are added and whatever the listing order") {
  ScanOptions so;
  so.valid_fraction = 0.25;
  std::vector<std::pair<std::string, std::vector<uint8_t>>> files;
  for (int i = 0; i < 400; i++) files.push_back({strfmt("train/%s.%d.jpg", i % 2 ? "dog" : "cat", i), {0xFF, 0xD8}});
  const std::string z1 = path_join(tlt::temp_dir(), "s1.zip"), z2 = path_join(tlt::temp_dir(), "s2.zip");
  write_zip(z1, files, false);
  Dataset a = scan_dataset(z1, "", so);
  std::map<std::string, Split> before;
  for (auto& f : a.files) before[f.rel] = f.split;
  const int64_t nv = a.count(Split::Valid);
  CHECK(nv > 70);  // 25% of 400 = 100, binomial sd 8.7
  CHECK(nv < 130);
  // Reversed order in the archive, and 200 more files.
  std::vector<std::pair<std::string, std::vector<uint8_t>>> more(files.rbegin(), files.rend());
  for (int i = 400; i < 600; i++) more.push_back({strfmt("train/%s.%d.jpg", i % 2 ? "dog" : "cat", i), {0xFF, 0xD8}});
  write_zip(z2, more, false);
  Dataset b = scan_dataset(z2, "", so);
  int same = 0;
  for (auto& f : b.files)
    if (before.count(f.rel)) same += before[f.rel] == f.split;
  CHECK(same == 400);
  CHECK(b.listing_hash() != a.listing_hash());
  // A different seed gives a different split; --limit takes a mixed, deterministic sample.
  so.seed = 99;
  Dataset c = scan_dataset(z1, "", so);
  int moved = 0;
  for (auto& f : c.files) moved += before[f.rel] != f.split;
  CHECK(moved > 50);
  so.limit = 50;
  Dataset l1 = scan_dataset(z1, "", so), l2 = scan_dataset(z2, "", so);
  CHECK(l1.files.size() == 50);
  CHECK(l1.count(Split::Train, 0) > 5);
  CHECK(l1.count(Split::Train, 1) > 5);
  CHECK(scan_dataset(z1, "", so).listing_hash() == l1.listing_hash());
  // The same files unpacked into a folder (no train/ prefix) split the same way.
  so.seed = 0;
  so.limit = 0;
  const std::string dir = fresh_dir("unpacked");
  for (auto& [name, bytes] : files) put(path_join(dir, basename_of(name)), bytes);
  Dataset u = scan_dataset(dir, "", so);
  REQUIRE(u.files.size() == 400);
  int agree = 0;
  for (auto& f : u.files) agree += before["train/" + f.rel] == f.split;
  CHECK(agree == 400);
}

TEST_CASE("shard round trip (fp32 and fp16), and damaged shards are refused with the fix") {
  for (DType dt : {DType::F32, DType::F16}) {
    ShardData d;
    d.info.dtype = dt;
    d.info.count = 3;
    d.info.feat_h = d.info.feat_w = 2;
    d.info.feat_c = 5;
    d.info.split = Split::Valid;
    d.info.index = 4;
    d.info.range_count = 5;
    d.info.first_pos = 20;
    d.info.settings_hash = 0x1234;
    d.labels = {1, 0, 1};
    d.ids = {7, 9, 12};
    d.skipped = {8, 10};
    d.reasons = {"empty file", "truncated JPEG (no end-of-image marker after the last scan)"};
    std::vector<float> vals(60);
    for (int i = 0; i < 60; i++) vals[i] = 0.37f * (float)i - 3.0f;
    if (dt == DType::F32) {
      d.features.resize(240);
      memcpy(d.features.data(), vals.data(), 240);
    } else {
      d.features.resize(120);
      for (int i = 0; i < 60; i++) {
        uint16_t h = cpu::half_from_float(vals[i]);
        memcpy(&d.features[i * 2], &h, 2);
      }
    }
    const std::string p = path_join(tlt::temp_dir(), "s.bin");
    write_shard(p, d);
    MappedShard m(p);
    CHECK(m.info().count == 3);
    CHECK(m.info().split == Split::Valid);
    CHECK(m.info().first_pos == 20);
    CHECK(m.info().settings_hash == 0x1234u);
    CHECK(m.labels()[0] == 1);
    CHECK(m.ids()[2] == 12u);
    CHECK(m.skipped() == d.skipped);
    CHECK(m.reasons() == d.reasons);
    std::vector<float> f(20);
    m.feature_f32(1, f.data());
    for (int k = 0; k < 20; k++)
      CHECK(f[k] == (dt == DType::F32 ? vals[20 + k] : cpu::float_from_half(cpu::half_from_float(vals[20 + k]))));
    std::vector<uint8_t> b = read_file(p);
    put(p, std::vector<uint8_t>(b.begin(), b.end() - 9));
    CHECK(tlt::error_of([&] { MappedShard x(p); }).find("truncated or damaged); delete it and rerun tl_cache") !=
          std::string::npos);
    b[200] ^= 1;
    put(p, b);
    CHECK(tlt::error_of([&] { MappedShard x(p); }).find("checksum mismatch") != std::string::npos);
  }
  // A header with a zero-sized feature shape (found by the shard fuzzer) is refused, not read as empty samples.
  ShardData z;
  z.info.count = 1;
  z.info.feat_h = z.info.feat_w = 7;
  z.info.feat_c = 0;
  z.info.range_count = 1;
  z.labels = {1};
  z.ids = {0};
  const std::string p = path_join(tlt::temp_dir(), "z.bin");
  write_shard(p, z);
  CHECK(tlt::error_of([&] { MappedShard x(p); }).find("corrupt shard header (empty feature shape 7x7x0)") !=
        std::string::npos);
}

TEST_CASE("caching: shards hold exactly the direct forward pass, labels and ids; bad files are skipped and listed") {
  const std::string data = fresh_dir("cdata");
  for (int i = 0; i < 9; i++) {
    put(path_join(data, strfmt("cat/c%d.jpg", i)), test_image(i, i % 3 == 0));
    put(path_join(data, strfmt("dog/d%d.jpg", i)), test_image(40 + i));
  }
  std::vector<uint8_t> good = test_image(77);
  put(path_join(data, "cat/empty.jpg"), {});
  put(path_join(data, "dog/truncated.jpg"), std::vector<uint8_t>(good.begin(), good.begin() + good.size() / 2));
  put(path_join(data, "dog/text.jpg"), {'h', 'i'});
  const std::string out = fresh_dir("cout");
  CacheOptions o = small_options(data, out);
  o.valid_fraction = 0.3;
  o.max_bad = 0.2;
  CacheSummary s = build_cache(o);
  CHECK(s.files == 21);
  CHECK(s.skipped == 3);
  CHECK(s.cached == 18);
  Cache c = open_cache(out);
  CHECK(c.count(Split::Train) + c.count(Split::Valid) == 18);
  CHECK(c.feat_h == 1);
  CHECK(c.feat_c == 512);
  // Every skipped file is listed with its reason.
  std::map<std::string, std::string> status;
  for (auto& e : c.manifest.entries) status[e.rel] = e.status;
  CHECK(status["cat/empty.jpg"] == "skipped: empty file");
  CHECK(status["dog/truncated.jpg"].find("skipped: truncated JPEG") == 0);
  CHECK(status["dog/text.jpg"].find("skipped: not a supported image") == 0);
  CHECK(status["cat/c1.jpg"] == "ok");
  // Each sample equals a forward pass of the same file decoded on its own.
  VggWeights w = load_weights(o.weights);
  VggBase base(w, Device::CPU);
  int checked = 0;
  for (int sp = 0; sp < 2; sp++)
    for (auto& sh : c.shards[sp])
      for (uint32_t i = 0; i < sh.info().count; i++) {
        const ManifestEntry& e = c.manifest.entries[sh.ids()[i]];
        CHECK(sh.labels()[i] == (uint8_t)e.label);
        CHECK(e.label == (starts_with(e.rel, "cat/") ? 0 : 1));
        Image img = resize_image(load_image(path_join(data, e.rel)), 32, 32, Resize::Nearest);
        Tensor x({1, 32, 32, 3});
        preprocess_image(img, w.preprocess, x.f32());
        std::vector<float> want = base.forward(x).to_vector(), got(512);
        sh.feature_f32(i, got.data());
        CHECK(got == want);
        checked++;
      }
  CHECK(checked == 18);
  // Over --max-bad: the run fails and says so.
  o.max_bad = 0.1;
  o.out = fresh_dir("cout2");
  CHECK(tlt::error_of([&] { build_cache(o); }).find("could not be used, over --max-bad 0.1") != std::string::npos);
}

TEST_CASE("resume: an interrupted cache, run again, is byte-identical to an uninterrupted one") {
  const std::string data = fresh_dir("rdata");
  for (int i = 0; i < 14; i++) {
    put(path_join(data, strfmt("cat.%d.jpg", i)), test_image(i));
    put(path_join(data, strfmt("dog.%d.jpg", i)), test_image(60 + i));
  }
  const std::string full = fresh_dir("rfull"), part = fresh_dir("rpart");
  CacheOptions o = small_options(data, full);
  o.valid_fraction = 0.2;
  build_cache(o);
  o.out = part;
  o.stop_after_shards = 2;
  CacheSummary s1 = build_cache(o);
  CHECK(s1.interrupted);
  CHECK(s1.written_shards >= 2);
  // A half-written temporary, as a crash would leave it.
  put(path_join(part, "train-00004.bin.tmp"), {1, 2, 3});
  o.stop_after_shards = 0;
  CacheSummary s2 = build_cache(o);
  CHECK(!s2.interrupted);
  CHECK(s2.reused_shards >= 2);
  CHECK(cache_files(part) == cache_files(full));
  CHECK(!file_exists(path_join(part, "train-00004.bin.tmp")));
  // A third run reuses everything.
  CacheSummary s3 = build_cache(o);
  CHECK(s3.written_shards == 0);
  // A damaged shard is rebuilt.
  std::vector<uint8_t> b = read_file(path_join(part, "train-00001.bin"));
  b[300] ^= 0xFF;
  put(path_join(part, "train-00001.bin"), b);
  CacheSummary s4 = build_cache(o);
  CHECK(s4.written_shards == 1);
  CHECK(cache_files(part) == cache_files(full));
}

TEST_CASE("a cache made with other settings is refused (never reused silently), or rebuilt with --force") {
  const std::string data = fresh_dir("sdata");
  for (int i = 0; i < 4; i++) {
    put(path_join(data, strfmt("cat.%d.jpg", i)), test_image(i));
    put(path_join(data, strfmt("dog.%d.jpg", i)), test_image(30 + i));
  }
  const std::string out = fresh_dir("sout");
  CacheOptions o = small_options(data, out);
  build_cache(o);
  o.image_size = 64;
  std::string e = tlt::error_of([&] { build_cache(o); });
  CHECK(e.find("holds a cache made with other settings (feature_shape: 1x1x512 -> 2x2x512; image_size: 32 -> 64)") !=
        std::string::npos);
  CHECK(e.find("--force") != std::string::npos);
  // Files added to the dataset also change the cache's identity.
  o.image_size = 32;
  put(path_join(data, "cat.99.jpg"), test_image(99));
  e = tlt::error_of([&] { build_cache(o); });
  CHECK(e.find("the dataset's files changed") != std::string::npos);
  o.force = true;
  CacheSummary s = build_cache(o);
  CHECK(s.cached == 9);
  CHECK(s.reused_shards == 0);
  // fp16 features: half the bytes, the fp32 values rounded.
  CacheOptions h = small_options(data, fresh_dir("sout16"));
  h.dtype = "fp16";
  build_cache(h);
  Cache c32 = open_cache(out), c16 = open_cache(h.out);
  REQUIRE(c16.count(Split::Train) == c32.count(Split::Train));
  std::vector<float> a(512), b(512);
  c32.shards[0][0].feature_f32(0, a.data());
  c16.shards[0][0].feature_f32(0, b.data());
  for (int k = 0; k < 512; k++) CHECK(b[k] == cpu::float_from_half(cpu::half_from_float(a[k])));
  // The manifest's settings cannot be edited by hand without detection.
  std::vector<uint8_t> mb = read_file(path_join(out, "manifest.tsv"));
  std::string mt(mb.begin(), mb.end());
  mt.replace(mt.find("image_size\t32"), 13, "image_size\t33");
  put(path_join(out, "manifest.tsv"), std::vector<uint8_t>(mt.begin(), mt.end()));
  CHECK(tlt::error_of([&] { open_cache(out); }).find("edited by hand") != std::string::npos);
}

TEST_CASE("damaged caches: too few class lines, reused shards whose file ids do not match their range") {
  const std::string data = fresh_dir("hdata");
  for (int i = 0; i < 7; i++) {
    put(path_join(data, strfmt("cat/c%d.jpg", i)), test_image(i));
    put(path_join(data, strfmt("dog/d%d.jpg", i)), test_image(50 + i));
  }
  put(path_join(data, "cat/broken.jpg"), {'n', 'o'});
  put(path_join(data, "dog/empty.jpg"), {});
  const std::string out = fresh_dir("hout"), ref = fresh_dir("href");
  CacheOptions o = small_options(data, ref);
  o.max_bad = 0.5;
  build_cache(o);
  o.out = out;
  build_cache(o);
  REQUIRE(cache_files(out) == cache_files(ref));
  // A manifest with one '# class' line (the settings hash does not cover them) used to crash
  // tl_inspect and tl_train.
  {
    const std::string mp = path_join(out, "manifest.tsv");
    const std::vector<uint8_t> keep = read_file(mp);
    std::string t(keep.begin(), keep.end());
    const size_t at = t.find("# class\t1\t");
    REQUIRE(at != std::string::npos);
    t.erase(at, t.find('\n', at) - at + 1);
    put(mp, std::vector<uint8_t>(t.begin(), t.end()));
    CHECK(tlt::error_of([&] { open_cache(out); }).find("lists 1 classes ('# class' lines), a cache has exactly 2") !=
          std::string::npos);
    put(mp, keep);
  }
  // A reused shard whose skipped-file id is out of range used to make tl_cache write out of bounds;
  // an in-range wrong id marked the wrong file skipped. Both shards are now rebuilt.
  std::string victim;
  ShardData d;
  for (const auto& [name, bytes] : cache_files(out)) {
    if (name == "manifest.tsv") continue;
    MappedShard sh(path_join(out, name));
    if (sh.skipped().empty()) continue;
    victim = name;
    d.info = sh.info();
    d.labels.assign(sh.labels(), sh.labels() + sh.info().count);
    d.ids.assign(sh.ids(), sh.ids() + sh.info().count);
    d.skipped = sh.skipped();
    d.reasons = sh.reasons();
    const uint8_t* f = (const uint8_t*)sh.features();
    d.features.assign(f, f + (size_t)sh.info().count * sh.info().feature_elems() * 4);
    break;
  }
  REQUIRE(!victim.empty());
  for (uint32_t bad_id : {999999u, d.skipped[0] == 0 ? 1u : 0u}) {
    CAPTURE(bad_id);
    ShardData x = d;
    x.skipped[0] = bad_id;
    write_shard(path_join(out, victim), x);
    CacheSummary s = build_cache(o);
    CHECK(s.written_shards == 1);
    CHECK(s.skipped == 2);
    CHECK(cache_files(out) == cache_files(ref));
  }
}

TEST_CASE("one tl_cache per folder: a second run is refused, naming the folder and the other's pid") {
  const std::string data = fresh_dir("ldata");
  for (int i = 0; i < 3; i++) {
    put(path_join(data, strfmt("cat.%d.jpg", i)), test_image(i));
    put(path_join(data, strfmt("dog.%d.jpg", i)), test_image(20 + i));
  }
  const std::string out = fresh_dir("lout");
  CacheOptions o = small_options(data, out);
  // Another process's lock, as tl_cache takes it (flock on DIR/.tl_cache.lock holding the pid).
  int fd = open(path_join(out, ".tl_cache.lock").c_str(), O_RDWR | O_CREAT, 0644);
  REQUIRE(fd >= 0);
  REQUIRE(flock(fd, LOCK_EX | LOCK_NB) == 0);
  REQUIRE(write(fd, "4242\n", 5) == 5);
  CHECK(tlt::error_of([&] { build_cache(o); }) ==
        "another tl_cache is writing " + out + " (pid 4242); wait for it to finish, stop it, or choose another --out");
  CHECK(!file_exists(path_join(out, "manifest.tsv")));  // nothing was touched
  close(fd);
  CacheSummary s = build_cache(o);
  CHECK(s.cached == 6);
  CHECK(build_cache(o).written_shards == 0);  // the lock is released after each run
}

TEST_CASE("partitioned caching: parts by file identity, --part auto from Slurm or Kubernetes, merge = one run") {
  // A file's part depends on its class and name only, and spreads files evenly.
  CHECK(part_of_file(0, "cat", "train/cat.7.jpg", 5) == part_of_file(0, "cat", "elsewhere/cat.7.jpg", 5));
  int count[4] = {0, 0, 0, 0};
  for (int i = 0; i < 3000; i++) count[part_of_file(0, i % 2 ? "dog" : "cat", strfmt("x.%d.jpg", i), 3)]++;
  CHECK(count[0] == 0);
  for (int k = 1; k <= 3; k++) CHECK(std::abs(count[k] - 1000) < 100);
  // --part: given, Slurm job arrays (ids from SLURM_ARRAY_TASK_MIN), Kubernetes indexed Jobs.
  std::map<std::string, std::string> env;
  auto get = [&](const char* name) -> const char* { return env.count(name) ? env[name].c_str() : nullptr; };
  int k = 0, n = 0;
  std::string how;
  parse_part("2/8", get, &k, &n, &how);
  CHECK((k == 2 && n == 8));
  // Slurm: the task id is the part, N is given: a task resubmitted alone (an array of one) keeps its part.
  env = {{"SLURM_ARRAY_TASK_ID", "2"}, {"SLURM_ARRAY_TASK_MIN", "2"}, {"SLURM_ARRAY_TASK_COUNT", "1"}};
  parse_part("auto/3", get, &k, &n, &how);
  CHECK((k == 2 && n == 3));
  CHECK(how == "from Slurm: SLURM_ARRAY_TASK_ID=2, N=3");
  CHECK(tlt::error_of([&] { parse_part("auto", get, &k, &n, &how); }) ==
        "--part auto: the number of parts is not in the scheduler's environment (a Slurm task resubmitted alone sees "
        "an array of one); give it: --part auto/N");
  env = {{"SLURM_ARRAY_TASK_ID", "0"}};
  CHECK(tlt::error_of([&] { parse_part("auto/3", get, &k, &n, &how); }) ==
        "--part auto/3: SLURM_ARRAY_TASK_ID=0, but the parts are the array's task ids 1..3 (sbatch --array=1-3)");
  env = {{"SLURM_ARRAY_TASK_ID", "4"}};
  CHECK(tlt::error_of([&] { parse_part("auto/3", get, &k, &n, &how); }).find("SLURM_ARRAY_TASK_ID=4, but") != std::string::npos);
  env = {{"JOB_COMPLETION_INDEX", "0"}};
  parse_part("auto/6", get, &k, &n, &how);
  CHECK((k == 1 && n == 6));
  CHECK(how == "from Kubernetes: JOB_COMPLETION_INDEX=0, N=6");
  env = {};
  CHECK(tlt::error_of([&] { parse_part("auto/6", get, &k, &n, &how); })
            .find("neither SLURM_ARRAY_TASK_ID nor JOB_COMPLETION_INDEX") != std::string::npos);
  CHECK(tlt::error_of([&] { parse_part("auto/0", get, &k, &n, &how); }) == "--part auto/0: N must be at least 1");
  CHECK(tlt::error_of([&] { parse_part("4/3", get, &k, &n, &how); }) ==
        "--part 4/3: part 4 of 3 does not exist (K runs from 1 to N)");
  CHECK(tlt::error_of([&] { parse_part("2", get, &k, &n, &how); }).find("expected K/N") != std::string::npos);

  // Three parts merged equal the single run, byte for byte (bad files included).
  const std::string data = fresh_dir("pdata");
  for (int i = 0; i < 12; i++) {
    put(path_join(data, strfmt("cat.%d.jpg", i)), test_image(i));
    put(path_join(data, strfmt("dog.%d.jpg", i)), test_image(70 + i));
  }
  put(path_join(data, "cat.99.jpg"), {'b', 'a', 'd'});
  CacheOptions o = small_options(data, fresh_dir("psingle"));
  o.valid_fraction = 0.25;
  o.max_bad = 0.5;
  build_cache(o);
  std::vector<std::string> parts;
  int64_t total = 0;
  for (int p = 1; p <= 3; p++) {
    CacheOptions op = o;
    op.out = fresh_dir(strfmt("ppart%d", p));
    op.part_k = p, op.part_n = 3;
    total += build_cache(op).files;
    parts.push_back(op.out);
  }
  CHECK(total == 25);
  const std::string merged = fresh_dir("pmerged");
  merge_caches(merged, {parts[2], parts[0], parts[1]}, false);
  CHECK(cache_files(merged) == cache_files(o.out));
  // Refusals: a missing part, a part given twice, a part made with other settings, an unfinished part.
  CHECK(tlt::error_of([&] { merge_caches(fresh_dir("pm2"), {parts[0], parts[2]}, false); }) ==
        "--merge: part 2/3 missing (every part 1..3 must be given once)");
  // A part whose job never ran: its folder (with the rerun.txt a submit script leaves) or no folder at all.
  const std::string never = fresh_dir("ppart2_never");
  put_text(path_join(never, "rerun.txt"), "sbatch --array=2 part.sh\n");
  CHECK(tlt::error_of([&] { merge_caches(fresh_dir("pm2b"), {parts[0], never, parts[2]}, false); }) ==
        "--merge: part 2/3 missing: " + never + " holds no cache (resubmit it: sbatch --array=2 part.sh); its job did "
        "not run or stopped before it began (merge again once it has run)");
  const std::string nowhere = path_join(fresh_dir("pnowhere"), "part-2");
  CHECK(tlt::error_of([&] { merge_caches(fresh_dir("pm2c"), {parts[0], nowhere, parts[2]}, false); }) ==
        "--merge: part 2/3 missing: no folder " + nowhere + " (rerun its tl_cache --part 2/3 --out " + nowhere +
        " command); its job did not run or stopped before it began (merge again once it has run)");
  CHECK(tlt::error_of([&] { merge_caches(fresh_dir("pm2d"), {never, nowhere}, false); }) ==
        "--merge: none of the folders holds a cache: " + never + " holds no cache (resubmit it: sbatch --array=2 "
        "part.sh)");
  CHECK(tlt::error_of([&] { merge_caches(fresh_dir("pm3"), {parts[0], parts[1], parts[1]}, false); })
            .find("--merge: part 2/3 given twice") == 0);
  CHECK(tlt::error_of([&] { merge_caches(fresh_dir("pm4"), {o.out}, false); }).find("is not a part") != std::string::npos);
  CacheOptions other = o;
  other.out = fresh_dir("ppart3b");
  other.part_k = 3, other.part_n = 3, other.dtype = "fp16";
  build_cache(other);
  CHECK(tlt::error_of([&] { merge_caches(fresh_dir("pm5"), {parts[0], parts[1], other.out}, false); })
            .find("was made with other settings") != std::string::npos);
  other.dtype = "fp32";
  other.out = fresh_dir("ppart3c");
  other.stop_after_shards = 1;
  build_cache(other);
  const std::string unfinished = tlt::error_of([&] { merge_caches(fresh_dir("pm6"), {parts[0], parts[1], other.out}, false); });
  CHECK(unfinished.find("--merge: part 3/3 is not finished (") == 0);
  CHECK(unfinished.find(" in " + other.out + "); rerun its tl_cache --part 3/3 --out " + other.out + " command (it resumes)") !=
        std::string::npos);
  put_text(path_join(other.out, "rerun.txt"), "sbatch\nsecond line");
  CHECK(tlt::error_of([&] { merge_caches(fresh_dir("pm7"), {parts[0], parts[1], other.out}, false); })
            .find("); resubmit it: sbatch (it resumes)") != std::string::npos);
  CHECK(tlt::error_of([&] { merge_caches(merged, parts, false); }).find("already holds a cache") != std::string::npos);
}

CUDA_CASE("caching on the GPU (double-buffered copies, on-device fp16 cast) writes the CPU's cache") {
  const std::string data = fresh_dir("gdata");
  for (int i = 0; i < 3; i++) {
    put(path_join(data, strfmt("cat/c%d.jpg", i)), test_image(i, i % 2 == 0));
    put(path_join(data, strfmt("dog/d%d.jpg", i)), test_image(60 + i));
  }
  for (const char* dtype : {"fp32", "fp16"}) {
    CAPTURE(dtype);
    CacheOptions oc = small_options(data, fresh_dir(std::string("gc_cpu_") + dtype));
    oc.dtype = dtype;
    oc.batch = 1;  // 6 images in 6 batches: both slots of the double buffer are reused twice
    CacheOptions og = oc;
    og.out = fresh_dir(std::string("gc_gpu_") + dtype);
    og.device = "cuda";
    build_cache(oc);
    build_cache(og);
    Cache c = open_cache(oc.out), g = open_cache(og.out);
    int compared = 0;
    for (int sp = 0; sp < 2; sp++) {
      REQUIRE(c.shards[sp].size() == g.shards[sp].size());
      for (size_t k = 0; k < c.shards[sp].size(); k++) {
        const MappedShard &a = c.shards[sp][k], &b = g.shards[sp][k];
        REQUIRE(a.info().count == b.info().count);
        for (uint32_t i = 0; i < a.info().count; i++) {
          CHECK(a.ids()[i] == b.ids()[i]);
          CHECK(a.labels()[i] == b.labels()[i]);
          std::vector<float> fa(512), fb(512);
          a.feature_f32(i, fa.data());
          b.feature_f32(i, fb.data());
          // GPU direct conv vs CPU Winograd: fp32 rounding; fp16: at most one half-precision step.
          CHECK(tlt::rel_err(fb, fa) <= (std::string(dtype) == "fp16" ? 1e-3 : 1e-5));
          compared++;
        }
      }
    }
    CHECK(compared == 6);
  }
}

// --precision bf16 end to end on one device ("cpu": AVX512_BF16's Winograd planes, "cuda": the
// tensor cores): recorded in the cache and the model, an fp32 run refuses the cache, predict
// refuses a mismatch, and a CPU without AVX512_BF16 (TL_CPU_BF16=0) refuses bf16 with the fix.
void bf16_end_to_end(const char* device) {
  const Device dev = resolve_device(device);
  const std::string data = fresh_dir("bfdata");
  for (int i = 0; i < 3; i++) {
    put(path_join(data, strfmt("cat/c%d.jpg", i)), test_image(i));
    put(path_join(data, strfmt("dog/d%d.jpg", i)), test_image(60 + i));
  }
  CacheOptions o = small_options(data, fresh_dir("bfcache"));
  o.device = device;
  o.precision = "bf16";
  o.valid_fraction = 0.34;
  build_cache(o);
  CHECK(read_manifest(o.out).settings.get("precision") == "bf16");
  // The same folder at fp32: refused (a bf16 cache is never reused for an fp32 run), named.
  CacheOptions o32 = o;
  o32.precision = "fp32";
  CHECK(tlt::error_of([&] { build_cache(o32); }).find("holds a cache made with other settings (precision: bf16 -> fp32)") !=
        std::string::npos);
  // On a CPU without AMX or AVX512_BF16, bf16 is refused before anything is read.
  if (!cpu_amx_usable()) {
    CacheOptions ocpu = o;
    ocpu.device = "cpu";
    ocpu.out = fresh_dir("bfcpu");
    setenv("TL_CPU_BF16", "0", 1);
    cpu_set_bf16_emulated(false);  // the tile emulator, when the AMX run forced it in, counts as AMX
    CHECK(tlt::error_of([&] { build_cache(ocpu); }).find("--precision bf16 on the CPU needs AMX or AVX512_BF16") == 0);
    cpu_set_bf16_emulated(cpu::amx_kernels() == &cpu::amx_emu_kernels());
    unsetenv("TL_CPU_BF16");
  }
  // Its features differ from an fp32 cache's by bf16's rounding, no more.
  o32.out = fresh_dir("bfcache32");
  build_cache(o32);
  Cache cb = open_cache(o.out), cf = open_cache(o32.out);
  std::vector<float> fb(512), ff(512);
  cb.shards[0][0].feature_f32(0, fb.data());
  cf.shards[0][0].feature_f32(0, ff.data());
  const double err = tlt::rel_err(fb, ff);
  CHECK((err > 1e-5 && err < 3e-2));
  // A model trained on it records bf16; predicting with it needs that precision, and bf16 arithmetic.
  TrainOptions to;
  to.epochs = 1;
  to.batch = 2;
  to.plots = false;
  to.out = fresh_dir("bfmodel");
  train_head(*open_cached_source(o.out, Device::CPU), to);
  const std::string mp = path_join(to.out, "model.bin");
  CHECK(load_model(mp).meta.at("precision") == "bf16");
  if (!cpu_amx_usable()) {  // the AMX probe is read once per process: TL_CPU_AMX cannot turn it off here
    setenv("TL_CPU_BF16", "0", 1);
    cpu_set_bf16_emulated(false);
    CHECK(tlt::error_of([&] { Predictor(mp, o.weights, Device::CPU, 2, false); })
              .find("was trained on features computed in bf16, which this CPU cannot compute (no AMX, no "
                    "AVX512_BF16)") != std::string::npos);
    cpu_set_bf16_emulated(cpu::amx_kernels() == &cpu::amx_emu_kernels());
    unsetenv("TL_CPU_BF16");
  }
  CHECK(tlt::error_of([&] { Predictor(mp, o.weights, dev, 2, false, "fp32"); }).find("--precision fp32: ") == 0);
  Predictor pred(mp, o.weights, dev, 2, false, "bf16");
  std::vector<Prediction> ps = pred.run(expand_inputs({data}));
  CHECK(ps.size() == 6);
  for (auto& p : ps) CHECK(p.ok);
}

TEST_CASE("--precision bf16 on the CPU: recorded in the cache and the model, mismatches refused, predict runs") {
  if (cpu::bf16_path() == cpu::Bf16Path::None) {
    MESSAGE("SKIPPED: this CPU has neither AMX nor AVX512_BF16");
    return;
  }
  bf16_end_to_end("cpu");
}

TEST_CASE("tl_cache --until block4_pool: the activations before block5, recorded, refused where not expected") {
  const std::string data = fresh_dir("cutdata");
  for (int i = 0; i < 3; i++) {
    put(path_join(data, strfmt("cat/c%d.jpg", i)), test_image(i));
    put(path_join(data, strfmt("dog/d%d.jpg", i)), test_image(70 + i));
  }
  CacheOptions o = small_options(data, fresh_dir("cutcache"));
  o.until = "block4_pool";
  build_cache(o);
  const Manifest m = read_manifest(o.out);
  CHECK(m.settings.get("cut") == "block4_pool");
  CHECK(m.settings.get("feature_shape") == "2x2x512");  // 32 pixels through four pools
  Cache c = open_cache(o.out);
  CHECK(c.cut == "block4_pool");
  // The features are the first 10 conv layers' output, and block5 on them gives the whole base's.
  const VggWeights w = load_weights(o.weights);
  const InputRecipe r = InputRecipe::of(w, o.weights, 32, Resize::Nearest);
  const MappedShard& sh = c.shards[0][0];
  const DataFile* f = nullptr;
  Dataset ds = scan_dataset(data, "", ScanOptions());
  for (const DataFile& df : ds.files)
    if (df.rel == m.entries[sh.ids()[0]].rel) f = &df;
  REQUIRE(f != nullptr);
  Tensor x({1, 32, 32, 3});
  const std::vector<uint8_t> bytes = ds.read(*f, kMaxImageFileBytes);
  r.apply(bytes.data(), bytes.size(), f->rel, o.max_pixels, x.f32());
  VggBase cut(w, Device::CPU, Precision::FP32, 10), whole(w, Device::CPU);
  std::vector<float> got(2 * 2 * 512);
  sh.feature_f32(0, got.data());
  const Tensor fcut = cut.forward(x);
  CHECK(fcut.to_vector() == got);
  CHECK(fcut.dim(1) == 2);
  VggWeights block5;
  block5.arch = "custom";
  block5.layers.assign(w.layers.begin() + 10, w.layers.end());
  VggBase b5(block5, Device::CPU);
  Tensor fc = fcut.to(Device::CPU);
  CHECK(b5.forward(fc).to_vector() == whole.forward(x).to_vector());
  // Readers that expect the whole base's features refuse it, naming the cut.
  CHECK(tlt::error_of([&] { open_cached_source(o.out, Device::CPU); }) ==
        o.out + " holds activations cut at block4_pool (2x2x512), but the head trains on the whole base's "
                "(block5_pool): make the cache without --until, or fine-tune the blocks above the cut (--fine-tune)");
  // The same folder with another cut is another cache.
  CacheOptions whole_o = o;
  whole_o.until = "";
  CHECK(tlt::error_of([&] { build_cache(whole_o); }).find("other settings (cut: block4_pool -> (none)") != std::string::npos);
  // Naming the last pool is the whole base: no cut recorded, the same identity as caches before --until.
  CacheOptions last = small_options(data, fresh_dir("cutlast"));
  last.until = "block5_pool";
  build_cache(last);
  CacheOptions plain = small_options(data, fresh_dir("cutplain"));
  build_cache(plain);
  CHECK(read_manifest(last.out).settings.get("cut").empty());
  CHECK(read_manifest(last.out).settings.hash() == read_manifest(plain.out).settings.hash());
  CacheOptions bad = small_options(data, fresh_dir("cutbad"));
  bad.until = "block6_pool";
  CHECK(tlt::error_of([&] { build_cache(bad); }) ==
        "--until block6_pool: vgg16 has no such pooling layer; cut points are block1_pool, block2_pool, block3_pool, "
        "block4_pool, block5_pool");
}

TEST_CASE("--precision bf16 on AMX (the tile emulator): cache, model and predict through the AMX conv") {
  cpu::set_amx_kernels(&cpu::amx_emu_kernels());
  CHECK(ops::conv_path(Device::CPU, Precision::BF16, true) == "bf16 AMX");
  bf16_end_to_end("cpu");
  cpu::set_amx_kernels(nullptr);
}

CUDA_CASE("--precision bf16: recorded in the cache and the model, an fp32 run refuses the cache, predict refuses a mismatch") {
  bf16_end_to_end("cuda");
}

CUDA_CASE("several GPUs (--device cuda:0,1): batches in turn on each, the same cache as one GPU writes") {
  if (cuda::emulated()) setenv("TL_EMU_DEVICES", "2", 1);  // two emulated devices
  if (cuda::device_count() < 2) {
    MESSAGE("SKIPPED: one GPU here; the two-device case runs in the emulator");
    return;
  }
  const std::string data = fresh_dir("mgdata");
  for (int i = 0; i < 5; i++) {
    put(path_join(data, strfmt("cat/c%d.jpg", i)), test_image(i));
    put(path_join(data, strfmt("dog/d%d.jpg", i)), test_image(60 + i));
  }
  put(path_join(data, "dog/bad.jpg"), {'x'});
  for (int batch : {1, 3}) {
    CAPTURE(batch);
    CacheOptions one = small_options(data, fresh_dir("mg_one"));
    one.device = "cuda";
    one.batch = batch;
    one.max_bad = 0.5;
    CacheOptions two = one;
    two.out = fresh_dir("mg_two");
    two.device = "cuda:0,1";
    build_cache(one);
    build_cache(two);
    CHECK(cache_files(two.out) == cache_files(one.out));
  }
  CHECK(tlt::error_of([&] { cuda_device_list("cuda:0,7"); }).find("there is no GPU 7") != std::string::npos);
  CHECK(tlt::error_of([&] { cuda_device_list("cuda:1,1"); }).find("given twice") != std::string::npos);
  CHECK(cuda_device_list("cuda:all").size() == (size_t)cuda::device_count());
  cuda::set_device(0);
  if (cuda::emulated()) setenv("TL_EMU_DEVICES", "1", 1);
}
