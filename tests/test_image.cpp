// Decoding, PIL-exact resizing and preprocessing against PIL / Keras / torchvision fixtures, and
// bad image input.
//
// Tolerances: none. JPEG (libjpeg-turbo) and PNG (libpng) decoding equal PIL's convert('RGB') bit
// for bit, on every photo of ../shared/data and on small files in the layouts those lack; every
// resize is exact; the Keras 'caffe' and torchvision preprocessing exact (same float32 operations).
#include <cstring>

#include "helpers.h"
#include "host/io/image.h"

using namespace tl;

namespace {

std::vector<uint8_t> u8(const tlt::Fixture& f, const std::string& key) {
  const NpyArray& a = f.arrays.at(key);
  return std::vector<uint8_t>(a.data(), a.data() + a.h.numel());
}


}  // namespace

TEST_CASE("PNG decoding equals PIL's convert('RGB'), including grayscale and RGBA sources") {
  tlt::Fixture fx("images.npz");
  for (const char* name : {"noise_61x47", "smooth_200x150", "gray_33x121", "rgba_40x30"}) {
    CAPTURE(name);
    Image img = load_image(path_join(tlt::fixture_dir(), std::string("img_") + name + ".png"));
    auto shape = fx.shape(std::string(name) + "_rgb");
    CHECK(img.h == shape[0]);
    CHECK(img.w == shape[1]);
    CHECK(img.rgb == u8(fx, std::string(name) + "_rgb"));
  }
}

TEST_CASE("resize matches PIL NEAREST and BILINEAR bit for bit (down, up, odd and 1x1 sizes)") {
  tlt::Fixture fx("images.npz");
  int compared = 0;
  for (const char* name : {"noise_61x47", "smooth_200x150", "gray_33x121", "rgba_40x30"}) {
    Image img = load_image(path_join(tlt::fixture_dir(), std::string("img_") + name + ".png"));
    for (auto& [key, arr] : fx.arrays) {
      if (!starts_with(key, std::string(name) + "_") || key == std::string(name) + "_rgb") continue;
      const bool bilinear = ends_with(key, "_bilinear");
      CAPTURE(key);
      Image r = resize_image(img, (int)arr.h.shape[1], (int)arr.h.shape[0], bilinear ? Resize::Bilinear : Resize::Nearest);
      CHECK(r.rgb == u8(fx, key));
      compared++;
    }
  }
  CHECK(compared == 24);
}

TEST_CASE("preprocessing equals Keras preprocess_input ('caffe') and torchvision ToTensor+Normalize") {
  tlt::Fixture fx("images.npz");
  Image img;
  img.w = 37;
  img.h = 53;
  img.rgb = u8(fx, "noise_61x47_37x53_nearest");
  std::vector<float> out((size_t)37 * 53 * 3);
  preprocess_image(img, Preprocess::CaffeBGR, out.data());
  CHECK(out == fx.f("pre_caffe"));
  preprocess_image(img, Preprocess::Torch, out.data());
  CHECK(out == fx.f("pre_torch"));
  preprocess_image(img, Preprocess::CaffeRGB, out.data());
  CHECK(out[0] == (float)img.rgb[0] - 123.68f);
  CHECK(out[2] == (float)img.rgb[2] - 103.939f);
}

TEST_CASE("[data] real photos: decoding + our resize equal PIL's open/convert/resize bit for bit") {
  tlt::Fixture fx("photos224.npz");
  const std::string data = tlt::shared_data_dir();
  for (int i = 0; i < (int)fx.scalar("count"); i++) {
    std::string p = "p" + std::to_string(i) + "_";
    const NpyArray& pa = fx.arrays.at(p + "path");
    std::string rel((const char*)pa.data(), (size_t)pa.h.numel());
    CAPTURE(rel);
    Image img = load_image(path_join(data, rel));
    auto size = fx.f(p + "size");
    CHECK(img.w == (int)size[0]);
    CHECK(img.h == (int)size[1]);
    const int side = (int)fx.scalar(p + "side");
    Image r = resize_image(img, side, side, Resize::Nearest);
    CHECK(r.rgb == u8(fx, p + "224"));
  }
}

TEST_CASE("[data] every photo of the shared data decodes to PIL's exact pixels (CRC-32 of the RGB bytes)") {
  // tests/fixtures/decode_pil_crc.tsv: path, PIL's format, width, height, crc32 of
  // Image.open(path).convert("RGB").tobytes(), written by tools/gen_fixtures.py --only real.
  const std::string data = tlt::shared_data_dir();
  const std::vector<uint8_t> raw = read_file(path_join(tlt::fixture_dir(), "decode_pil_crc.tsv"));
  const std::string list(raw.begin(), raw.end());
  int compared = 0, refused = 0, mismatched = 0;
  double bytes = 0, t0 = now_s();
  for (const std::string& line : split(list, '\n')) {
    if (line.empty() || line[0] == '#') continue;
    std::vector<std::string> c = split(line, '\t');
    REQUIRE(c.size() == 5);
    CAPTURE(c[0]);
    std::vector<uint8_t> file = read_file(path_join(data, c[0]));
    bytes += file.size();
    if (c[1] == "WEBP") {  // PIL reads WebP; we refuse it with a clear reason (counted as a skip)
      CHECK(tlt::error_of([&] { decode_image(file.data(), file.size(), c[0]); }).find("WebP") != std::string::npos);
      refused++;
      continue;
    }
    Image img = decode_image(file.data(), file.size(), c[0]);
    CHECK(img.w == std::stoi(c[2]));
    CHECK(img.h == std::stoi(c[3]));
    const std::string crc = strfmt("%08x", crc32_of(img.rgb.data(), img.rgb.size()));
    if (crc != c[4]) mismatched++;
    CHECK(crc == c[4]);
    compared++;
  }
  MESSAGE("decoded " << compared << " photos (" << bytes / 1e6 << " MB) in " << now_s() - t0 << " s: " << mismatched
                     << " differ from PIL; " << refused << " refused (WebP)");
  CHECK(compared >= 4000);
}

TEST_CASE("CMYK JPEG, palette PNG with transparency, 16-bit gray and gray+alpha PNGs, and BMP, GIF, TGA, PNM files "
          "equal PIL's convert('RGB')") {
  tlt::Fixture fx("decode_formats.npz");
  for (int i = 0; i < (int)fx.scalar("count"); i++) {
    const NpyArray& na = fx.arrays.at(strfmt("f%d_name", i));
    const std::string name((const char*)na.data(), (size_t)na.h.numel());
    CAPTURE(name);
    Image img = load_image(path_join(tlt::fixture_dir(), name));
    auto shape = fx.shape(strfmt("f%d_rgb", i));
    CHECK(img.h == shape[0]);
    CHECK(img.w == shape[1]);
    CHECK(img.rgb == u8(fx, strfmt("f%d_rgb", i)));
  }
}

TEST_CASE("[data] unusual real files: grayscale progressive, EXIF phone photo, WebP named .png, tiny") {
  const std::string odd = path_join(tlt::shared_data_dir(), "odd");
  Image g = load_image(path_join(odd, "grayscale-L-progressive_cat_300x300.jpg"));
  CHECK(g.w == 300);
  CHECK(g.h == 300);
  bool gray = true;
  for (size_t i = 0; i < g.rgb.size(); i += 3) gray &= g.rgb[i] == g.rgb[i + 1] && g.rgb[i] == g.rgb[i + 2];
  CHECK(gray);
  Image big = load_image(path_join(odd, "large-iphone11_exif-icc_dog_3024x4032.jpg"));  // EXIF orientation ignored
  CHECK(big.w == 3024);
  CHECK(big.h == 4032);
  Image tiny = load_image(path_join(odd, "tiny_41x50_kaggle-test1-46.jpg"));
  CHECK(tiny.w == 41);
  std::string e = tlt::error_of([&] { load_image(path_join(odd, "webp-bytes-named-png_cat_800x450.png")); });
  CHECK(e.find("WebP") != std::string::npos);
  // A limit on decoded size refuses the 12-megapixel photo before decoding it.
  e = tlt::error_of([&] { load_image(path_join(odd, "large-iphone11_exif-icc_dog_3024x4032.jpg"), 5'000'000); });
  CHECK(e.find("image too large (3024x4032") != std::string::npos);
}

TEST_CASE("bad image bytes: empty, truncated, not an image, absurd dimensions") {
  CHECK(tlt::error_of([] { decode_image(nullptr, 0, "e.jpg"); }) == "e.jpg: empty file");
  const char text[] = "this is not an image";
  CHECK(tlt::error_of([&] { decode_image((const uint8_t*)text, sizeof text, "t.jpg"); }).find("not a supported image") !=
        std::string::npos);
  // Truncated JPEG: stb_image would pad it silently; we refuse it like PIL does.
  std::vector<uint8_t> png = read_file(path_join(tlt::fixture_dir(), "img_smooth_200x150.png"));
  Image src = decode_image(png.data(), png.size(), "src");
  const std::string jpg = path_join(tlt::temp_dir(), "t.jpg");
  write_jpeg(jpg, src, 90);
  std::vector<uint8_t> j = read_file(jpg);
  Image whole = decode_image(j.data(), j.size(), "whole.jpg");
  CHECK(whole.w == 200);
  for (size_t cut : {j.size() - 2, j.size() * 3 / 4, j.size() / 2, (size_t)40, (size_t)3}) {
    CAPTURE(cut);
    std::string err = tlt::error_of([&] { decode_image(j.data(), cut, "cut.jpg"); });
    CHECK(!err.empty());
    CHECK(starts_with(err, "cut.jpg: "));
  }
  CHECK(tlt::error_of([&] { decode_image(j.data(), j.size() / 2, "cut.jpg"); }).find("truncated JPEG") != std::string::npos);
  // Truncated PNG.
  CHECK(!tlt::error_of([&] { decode_image(png.data(), png.size() / 2, "cut.png"); }).empty());
  // A PNG header that claims 60000 x 60000 pixels is refused before any pixel memory is taken.
  std::vector<uint8_t> huge(png.begin(), png.begin() + 33);
  auto be32 = [&](size_t at, uint32_t v) {
    huge[at] = v >> 24, huge[at + 1] = v >> 16, huge[at + 2] = v >> 8, huge[at + 3] = v;
  };
  be32(16, 60000);
  be32(20, 60000);
  std::string err = tlt::error_of([&] { decode_image(huge.data(), huge.size(), "huge.png"); });
  CHECK(err.find("too large") != std::string::npos);
}

TEST_CASE("BMP, GIF, TGA and PNM: every truncation of PIL's files is refused with a message naming the file") {
  int refused = 0;
  for (const char* name : {"fmt_rgb24.bmp", "fmt_pal8.bmp", "fmt_bits1.bmp", "fmt_rgba32.bmp", "fmt_pal.gif",
                           "fmt_rgb_interlaced.gif", "fmt_rgb.tga", "fmt_rgb_rle.tga", "fmt_pal.tga", "fmt_rgb.ppm",
                           "fmt_gray.pgm"}) {
    const std::string file = name;
    CAPTURE(file);
    const std::vector<uint8_t> b = read_file(path_join(tlt::fixture_dir(), name));
    // Every prefix that cuts into the pixel data or the headers (a GIF's trailer byte and the
    // 26-byte footer PIL writes after a TGA's pixels are optional).
    const size_t keep = ends_with(name, ".gif") ? b.size() - 1 : ends_with(name, ".tga") ? b.size() - 26 : b.size();
    for (size_t n = 1; n < keep; n += (n < 64 ? 1 : 7)) {
      const std::string e = tlt::error_of([&] { decode_image(b.data(), n, "cut.img"); });
      CAPTURE(n);
      CHECK(starts_with(e, "cut.img: "));
      refused += !e.empty();
    }
  }
  CHECK(refused > 1000);
}
