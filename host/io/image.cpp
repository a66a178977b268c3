#include "host/io/image.h"

#include <cmath>
#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>

#include "host/core/common.h"

// Photos are decoded by libjpeg-turbo and libpng (image_decode.cpp) and by the small checked
// decoders of image_formats.cpp; stb_image's decoders are not used (they are not meant for untrusted
// files: its JPEG decoder writes out of bounds on fuzzed input). stb only writes PNG/JPEG here.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wmisleading-indentation"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb_image_write.h>
#pragma GCC diagnostic pop

namespace tl {

const char* resize_name(Resize r) { return r == Resize::Bilinear ? "bilinear" : "nearest"; }

Resize parse_resize(const std::string& s) {
  if (s == "nearest") return Resize::Nearest;
  if (s == "bilinear") return Resize::Bilinear;
  fail("--resize: expected nearest (Keras load_img's default) or bilinear, got '%s'", s.c_str());
}

namespace {

// stb_image decodes a truncated JPEG without complaint (it pads the missing entropy data), where
// PIL raises "image file is truncated". Walk the marker segments and require an EOI marker after
// the last scan's entropy-coded data.
bool jpeg_complete(const uint8_t* p, size_t n) {
  if (n < 4 || p[0] != 0xFF || p[1] != 0xD8) return false;
  size_t i = 2;
  while (i + 1 < n) {
    if (p[i] != 0xFF) return false;  // lost sync: corrupt
    uint8_t m = p[i + 1];
    if (m == 0xFF) {  // fill byte
      i++;
      continue;
    }
    if (m == 0xD9) return true;  // EOI
    if (m == 0x01 || (m >= 0xD0 && m <= 0xD7)) {  // markers without a length
      i += 2;
      continue;
    }
    if (i + 3 >= n) return false;
    size_t len = ((size_t)p[i + 2] << 8) | p[i + 3];
    if (len < 2) return false;
    i += 2 + len;
    if (i > n) return false;
    if (m == 0xDA) {  // start of scan: skip entropy-coded data up to the next real marker
      while (i + 1 < n) {
        if (p[i] == 0xFF && p[i + 1] != 0x00 && !(p[i + 1] >= 0xD0 && p[i + 1] <= 0xD7) && p[i + 1] != 0xFF) break;
        i++;
      }
      if (i + 1 >= n) return false;
    }
  }
  return false;
}

// Dimensions from a PNG or JPEG header, read without stb_image (which refuses images over 1 GiB
// with a vague message): false when unknown.
bool header_dims(const uint8_t* p, size_t n, int64_t* w, int64_t* h) {
  if (n >= 24 && !memcmp(p, "\x89PNG\r\n\x1a\n", 8) && !memcmp(p + 12, "IHDR", 4)) {
    *w = ((int64_t)p[16] << 24) | (p[17] << 16) | (p[18] << 8) | p[19];
    *h = ((int64_t)p[20] << 24) | (p[21] << 16) | (p[22] << 8) | p[23];
    return true;
  }
  if (n >= 4 && p[0] == 0xFF && p[1] == 0xD8) {
    size_t i = 2;
    while (i + 9 < n) {
      if (p[i] != 0xFF) return false;
      const uint8_t m = p[i + 1];
      if (m == 0xFF) {
        i++;
        continue;
      }
      const size_t len = ((size_t)p[i + 2] << 8) | p[i + 3];
      if (m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC) {
        *h = (p[i + 5] << 8) | p[i + 6];
        *w = (p[i + 7] << 8) | p[i + 8];
        return true;
      }
      if (m == 0xDA || len < 2) return false;
      i += 2 + len;
    }
  }
  return false;
}

bool is_webp(const uint8_t* p, size_t n) { return n >= 12 && !memcmp(p, "RIFF", 4) && !memcmp(p + 8, "WEBP", 4); }

}  // namespace

// ------------------------------------------------------------------------------------------------
// The decode memory budget.

namespace {

struct DecodeBudget {
  std::mutex mu;
  std::condition_variable cv;
  int64_t cap = kDecodeBudgetDefault, used = 0, peak = 0, waits = 0;
  std::map<std::thread::id, int> holders;  // leases held, by the thread that took them
};

DecodeBudget& budget() {
  static DecodeBudget* b = new DecodeBudget;  // never destroyed: leases may outlive static destructors
  return *b;
}

}  // namespace

struct PixelLease {
  int64_t bytes;
  std::thread::id owner;
  ~PixelLease() {
    DecodeBudget& b = budget();
    {
      std::lock_guard<std::mutex> lk(b.mu);
      b.used -= bytes;
      auto it = b.holders.find(owner);
      if (it != b.holders.end() && --it->second == 0) b.holders.erase(it);
    }
    b.cv.notify_all();
  }
};

void set_decode_budget(int64_t bytes) {
  DecodeBudget& b = budget();
  {
    std::lock_guard<std::mutex> lk(b.mu);
    b.cap = bytes;
  }
  b.cv.notify_all();
}
int64_t decode_budget() {
  std::lock_guard<std::mutex> lk(budget().mu);
  return budget().cap;
}
int64_t decode_budget_peak() {
  std::lock_guard<std::mutex> lk(budget().mu);
  return budget().peak;
}
int64_t decode_budget_waits() {
  std::lock_guard<std::mutex> lk(budget().mu);
  return budget().waits;
}
void reset_decode_budget_stats() {
  std::lock_guard<std::mutex> lk(budget().mu);
  budget().peak = budget().used;
  budget().waits = 0;
}

void alloc_pixels(Image* img, int w, int h, int64_t scratch_bytes) {
  const int64_t bytes = (int64_t)w * h * 3 + scratch_bytes;
  DecodeBudget& b = budget();
  const std::thread::id me = std::this_thread::get_id();
  {
    std::unique_lock<std::mutex> lk(b.mu);
    auto fits = [&] { return b.cap <= 0 || b.used == 0 || b.used + bytes <= b.cap || b.holders.count(me); };
    if (!fits()) {
      b.waits++;
      b.cv.wait(lk, fits);
    }
    b.used += bytes;
    b.peak = std::max(b.peak, b.used);
    b.holders[me]++;
  }
  std::shared_ptr<PixelLease> lease(new PixelLease{bytes, me});
  img->lease.reset();  // an earlier lease of this image (its pixels are replaced)
  img->w = w;
  img->h = h;
  img->rgb.assign((size_t)w * h * 3, 0);
  img->lease = std::move(lease);
}

void settle_lease(Image* img) {
  if (!img->lease) return;
  DecodeBudget& b = budget();
  {
    std::lock_guard<std::mutex> lk(b.mu);
    const int64_t px = (int64_t)img->w * img->h * 3;
    if (img->lease->bytes > px) b.used -= img->lease->bytes - px, img->lease->bytes = px;
  }
  b.cv.notify_all();
}

Image decode_image(const uint8_t* data, size_t n, const std::string& what, int64_t max_pixels) {
  const char* f = what.c_str();
  if (n == 0) fail("%s: empty file", f);
  if (n > (size_t)INT32_MAX) fail("%s: file too large (%s)", f, human_bytes((double)n).c_str());
  if (is_webp(data, n)) fail("%s: WebP image (not supported; convert it to JPEG or PNG)", f);
  int64_t hw = 0, hh = 0;
  int64_t header_pixels = 0;  // PNG dimensions reach 2^32 each: the product is checked, not assumed
  if (header_dims(data, n, &hw, &hh) && (__builtin_mul_overflow(hw, hh, &header_pixels) || header_pixels > max_pixels))
    fail("%s: image too large (%lldx%lld = %.0f megapixels; the limit is %.0f)", f, (long long)hw, (long long)hh,
         (double)hw * hh / 1e6, (double)max_pixels / 1e6);
  const bool jpeg = n >= 2 && data[0] == 0xFF && data[1] == 0xD8;
  if (jpeg && !jpeg_complete(data, n)) fail("%s: truncated JPEG (no end-of-image marker after the last scan)", f);
  if (jpeg || (n >= 8 && !memcmp(data, "\x89PNG\r\n\x1a\n", 8))) return decode_jpeg_or_png(data, n, jpeg, what, max_pixels);
  // Other formats PIL also reads: BMP, GIF, TGA, binary PNM (image_formats.cpp).
  Image img;
  if (!decode_other_format(data, n, what, max_pixels, &img))
    fail("%s: not a supported image (not JPEG, PNG, BMP, GIF, TGA or PNM)", f);
  return img;
}

Image load_image(const std::string& path, int64_t max_pixels) {
  std::vector<uint8_t> bytes = read_file(path);
  return decode_image(bytes.data(), bytes.size(), path, max_pixels);
}

// ------------------------------------------------------------------------------------------------
// PIL-exact resizing.

namespace {

Image resize_nearest(const Image& src, int w, int h) {
  // Geometry.c ImagingScaleAffine: xo = a[2] + a[0] * 0.5, then xo += a[0] per pixel (double).
  Image out;
  out.w = w;
  out.h = h;
  out.rgb.resize((size_t)w * h * 3);
  std::vector<int> xs(w);
  const double ax = (double)src.w / w, ay = (double)src.h / h;
  double xo = ax * 0.5;
  for (int x = 0; x < w; x++) {
    int xi = xo < 0.0 ? -1 : (int)xo;
    xs[x] = xi < 0 ? 0 : (xi >= src.w ? src.w - 1 : xi);
    xo += ax;
  }
  double yo = ay * 0.5;
  for (int y = 0; y < h; y++) {
    int yi = yo < 0.0 ? -1 : (int)yo;
    yi = yi < 0 ? 0 : (yi >= src.h ? src.h - 1 : yi);
    yo += ay;
    uint8_t* row = &out.rgb[(size_t)y * w * 3];
    for (int x = 0; x < w; x++) memcpy(row + x * 3, src.px(xs[x], yi), 3);
  }
  return out;
}

constexpr int kPrecisionBits = 32 - 8 - 2;

// Resample.c precompute_coeffs with the bilinear (triangle) filter, then normalize_coeffs_8bpc.
int bilinear_coeffs(int in_size, int out_size, std::vector<int>& bounds, std::vector<int32_t>& kk) {
  double scale = (double)(float)in_size / out_size;
  double filterscale = scale < 1.0 ? 1.0 : scale;
  double support = 1.0 * filterscale;
  int ksize = (int)std::ceil(support) * 2 + 1;
  std::vector<double> k((size_t)out_size * ksize, 0.0);
  bounds.assign((size_t)out_size * 2, 0);
  for (int xx = 0; xx < out_size; xx++) {
    double center = (xx + 0.5) * scale;
    double ww = 0.0, ss = 1.0 / filterscale;
    int xmin = (int)(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = (int)(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double* kr = &k[(size_t)xx * ksize];
    for (int x = 0; x < xmax; x++) {
      double t = (x + xmin - center + 0.5) * ss;
      if (t < 0.0) t = -t;
      double wv = t < 1.0 ? 1.0 - t : 0.0;
      kr[x] = wv;
      ww += wv;
    }
    for (int x = 0; x < xmax; x++)
      if (ww != 0.0) kr[x] /= ww;
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  kk.resize(k.size());
  for (size_t i = 0; i < k.size(); i++)
    kk[i] = k[i] < 0 ? (int32_t)(-0.5 + k[i] * (1 << kPrecisionBits)) : (int32_t)(0.5 + k[i] * (1 << kPrecisionBits));
  return ksize;
}

inline uint8_t clip8(int32_t v) {
  if (v >= (1 << kPrecisionBits << 8)) return 255;
  if (v <= 0) return 0;
  return (uint8_t)(v >> kPrecisionBits);
}

Image resize_bilinear(const Image& src, int w, int h) {
  std::vector<int> bh, bv;
  std::vector<int32_t> kh, kv;
  const int ksh = bilinear_coeffs(src.w, w, bh, kh);
  const int ksv = bilinear_coeffs(src.h, h, bv, kv);
  const bool need_h = w != src.w, need_v = h != src.h;
  // Horizontal pass over the rows the vertical pass will use.
  const int y_first = bv[0], y_last = bv[(h - 1) * 2] + bv[(h - 1) * 2 + 1];
  Image tmp;
  const Image* mid = &src;
  int row0 = 0;  // source row of mid's row 0
  if (need_h) {
    tmp.w = w;
    tmp.h = y_last - y_first;
    tmp.rgb.resize((size_t)tmp.w * tmp.h * 3);
    for (int y = 0; y < tmp.h; y++) {
      const uint8_t* in = &src.rgb[(size_t)(y + y_first) * src.w * 3];
      uint8_t* o = &tmp.rgb[(size_t)y * w * 3];
      for (int xx = 0; xx < w; xx++) {
        const int xmin = bh[xx * 2], xmax = bh[xx * 2 + 1];
        const int32_t* k = &kh[(size_t)xx * ksh];
        int32_t s0 = 1 << (kPrecisionBits - 1), s1 = s0, s2 = s0;
        for (int x = 0; x < xmax; x++) {
          const uint8_t* p = in + (size_t)(x + xmin) * 3;
          s0 += p[0] * k[x];
          s1 += p[1] * k[x];
          s2 += p[2] * k[x];
        }
        o[xx * 3] = clip8(s0);
        o[xx * 3 + 1] = clip8(s1);
        o[xx * 3 + 2] = clip8(s2);
      }
    }
    mid = &tmp;
    row0 = y_first;
  }
  if (!need_v) {
    if (need_h) return tmp;
    return src;
  }
  Image out;
  out.w = w;
  out.h = h;
  out.rgb.resize((size_t)w * h * 3);
  for (int yy = 0; yy < h; yy++) {
    const int ymin = bv[yy * 2] - row0, ymax = bv[yy * 2 + 1];
    const int32_t* k = &kv[(size_t)yy * ksv];
    uint8_t* o = &out.rgb[(size_t)yy * w * 3];
    for (int xx = 0; xx < w * 3; xx++) {
      int32_t s = 1 << (kPrecisionBits - 1);
      for (int y = 0; y < ymax; y++) s += mid->rgb[(size_t)(y + ymin) * mid->w * 3 + xx] * k[y];
      o[xx] = clip8(s);
    }
  }
  return out;
}

}  // namespace

Image resize_image(const Image& src, int w, int h, Resize mode) {
  TL_ASSERT(w > 0 && h > 0 && src.w > 0 && src.h > 0);
  if (w == src.w && h == src.h) {
    Image copy = src;
    copy.lease.reset();  // the decode's lease ends with the decoded image, not with its copies
    return copy;
  }
  return mode == Resize::Bilinear ? resize_bilinear(src, w, h) : resize_nearest(src, w, h);
}

void preprocess_image(const Image& img, Preprocess p, float* out) {
  const size_t n = (size_t)img.w * img.h;
  const uint8_t* s = img.rgb.data();
  switch (p) {
    case Preprocess::CaffeBGR:  // Keras: x[..., ::-1] then x[..., c] -= mean[c] in float32
      for (size_t i = 0; i < n; i++) {
        out[i * 3 + 0] = (float)s[i * 3 + 2] - 103.939f;
        out[i * 3 + 1] = (float)s[i * 3 + 1] - 116.779f;
        out[i * 3 + 2] = (float)s[i * 3 + 0] - 123.68f;
      }
      break;
    case Preprocess::CaffeRGB:
      for (size_t i = 0; i < n; i++) {
        out[i * 3 + 0] = (float)s[i * 3 + 0] - 123.68f;
        out[i * 3 + 1] = (float)s[i * 3 + 1] - 116.779f;
        out[i * 3 + 2] = (float)s[i * 3 + 2] - 103.939f;
      }
      break;
    case Preprocess::Torch: {  // ToTensor (x / 255) then Normalize ((x - mean) / std), float32
      const float mean[3] = {0.485f, 0.456f, 0.406f}, stdv[3] = {0.229f, 0.224f, 0.225f};
      for (size_t i = 0; i < n * 3; i++) {
        const int c = (int)(i % 3);
        out[i] = ((float)s[i] / 255.0f - mean[c]) / stdv[c];
      }
      break;
    }
  }
}

void preprocess_rgb_float(const float* s, int64_t n, Preprocess p, float* out) {
  switch (p) {
    case Preprocess::CaffeBGR:
      for (int64_t i = 0; i < n; i++) {
        const float r = s[i * 3], g = s[i * 3 + 1], b = s[i * 3 + 2];
        out[i * 3 + 0] = b - 103.939f;
        out[i * 3 + 1] = g - 116.779f;
        out[i * 3 + 2] = r - 123.68f;
      }
      break;
    case Preprocess::CaffeRGB:
      for (int64_t i = 0; i < n; i++) {
        out[i * 3 + 0] = s[i * 3] - 123.68f;
        out[i * 3 + 1] = s[i * 3 + 1] - 116.779f;
        out[i * 3 + 2] = s[i * 3 + 2] - 103.939f;
      }
      break;
    case Preprocess::Torch: {
      const float mean[3] = {0.485f, 0.456f, 0.406f}, stdv[3] = {0.229f, 0.224f, 0.225f};
      for (int64_t i = 0; i < n * 3; i++) out[i] = (s[i] / 255.0f - mean[i % 3]) / stdv[i % 3];
      break;
    }
  }
}

// stb encodes into memory; the file is written by write_file_atomic, which checks every write, the
// fsync and the rename (stb's own file writer ignores write errors: a full disk gave truncated PNGs).
namespace {
void append_bytes(void* ctx, void* data, int size) {
  auto* v = (std::vector<uint8_t>*)ctx;
  v->insert(v->end(), (const uint8_t*)data, (const uint8_t*)data + size);
}
}  // namespace

void write_png(const std::string& path, const Image& img) {
  std::vector<uint8_t> out;
  if (!stbi_write_png_to_func(append_bytes, &out, img.w, img.h, 3, img.rgb.data(), img.w * 3) || out.empty())
    fail("%s: cannot encode PNG (%dx%d)", path.c_str(), img.w, img.h);
  write_file_atomic(path, out.data(), out.size());
}

void write_jpeg(const std::string& path, const Image& img, int quality) {
  const std::vector<uint8_t> out = encode_jpeg(img, quality, path);
  write_file_atomic(path, out.data(), out.size());
}

}  // namespace tl
