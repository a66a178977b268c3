// image.h: decoding (JPEG: libjpeg-turbo, PNG: libpng, as PIL; BMP/GIF/TGA/PNM: stb_image), resizing exactly as PIL does, and the preprocessing the weights
// expect. Keras' load_img(path, target_size) opens the file with PIL, converts it to RGB
// (grayscale replicated, alpha dropped; EXIF orientation ignored) and resizes it with NEAREST
// unless told otherwise, ignoring the aspect ratio; that is the default here.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "host/io/weights.h"

namespace tl {

struct PixelLease;  // a decoded image's share of the decode memory budget (below)

struct Image {
  int w = 0, h = 0;
  std::vector<uint8_t> rgb;  // h * w * 3, row-major, RGB
  std::shared_ptr<PixelLease> lease;  // set by the decoders: given back when the last copy is freed
  const uint8_t* px(int x, int y) const { return &rgb[((size_t)y * w + x) * 3]; }
};

enum class Resize { Nearest = 0, Bilinear = 1 };
const char* resize_name(Resize r);
Resize parse_resize(const std::string& s);

// Default ceiling on decoded size: larger images are refused before any pixel memory is taken.
constexpr int64_t kMaxPixelsDefault = 80'000'000;

// One memory budget shared by every decode in the process, whatever the number of decoding threads:
// a decoder takes its output's bytes (w x h x 3) from it before allocating them, and the Image gives
// them back when it is freed. A decode that would take the total past the budget waits until others
// have given theirs back; one that is bigger than the whole budget runs when nothing else is held, and
// a thread that already holds decoded pixels is never made to wait (so no set of threads can wait on
// each other). Peak pixel memory is therefore max(budget, the largest image) plus what one thread
// holds. Resized images (224 x 224) are not counted.
constexpr int64_t kDecodeBudgetDefault = (int64_t)1 << 30;
void set_decode_budget(int64_t bytes);  // <= 0: no limit
int64_t decode_budget();
// The most bytes held at once, and the decodes that had to wait, since the last reset (tests).
int64_t decode_budget_peak();
int64_t decode_budget_waits();
void reset_decode_budget_stats();
// Allocates img->rgb for w x h pixels (zeroed) under the budget; the decoders' one allocation.
// scratch_bytes: memory the decoder will also need while it decodes (a progressive JPEG's
// coefficients), counted until settle_lease(img) gives it back.
void alloc_pixels(Image* img, int w, int h, int64_t scratch_bytes = 0);
void settle_lease(Image* img);

// Decodes JPEG (baseline, progressive, grayscale, CMYK), PNG, BMP, GIF (first frame), TGA and PNM to
// RGB; JPEG and PNG pixels equal PIL's Image.open(f).convert("RGB") bit for bit.
// Throws tl::Error with a short reason ("empty file", "truncated JPEG", "WebP is not supported",
// "image too large: ...") that callers print or count as a skip; `what` names the file.
Image decode_image(const uint8_t* data, size_t n, const std::string& what, int64_t max_pixels = kMaxPixelsDefault);
Image load_image(const std::string& path, int64_t max_pixels = kMaxPixelsDefault);

// PIL Image.resize((w, h), NEAREST) and (w, h), BILINEAR), bit for bit (Pillow 9's Resample.c and
// Geometry.c: nearest picks floor((x + 0.5) * in/out) by accumulated double steps; bilinear is a
// triangle filter widened by the downscale factor, 22-bit fixed point, horizontal pass first).
Image resize_image(const Image& src, int w, int h, Resize mode);

// RGB uint8 -> float32 HWC in the weights' convention (see Preprocess in weights.h).
void preprocess_image(const Image& img, Preprocess p, float* out);
// The same for float RGB values in [0, 255] (augmented images); in place allowed.
void preprocess_rgb_float(const float* rgb, int64_t pixels, Preprocess p, float* out);

// Writes an RGB image as PNG (stb_image_write); throws on failure.
void write_png(const std::string& path, const Image& img);
void write_jpeg(const std::string& path, const Image& img, int quality);

// JPEG (libjpeg-turbo) and PNG (libpng) with PIL's settings (image_decode.cpp); used by decode_image.
Image decode_jpeg_or_png(const uint8_t* data, size_t n, bool jpeg, const std::string& what, int64_t max_pixels);
std::vector<uint8_t> encode_jpeg(const Image& img, int quality, const std::string& what);  // libjpeg-turbo
// BMP, GIF (first frame), TGA and binary PNM (image_formats.cpp); false when the bytes are none of them.
bool decode_other_format(const uint8_t* data, size_t n, const std::string& what, int64_t max_pixels, Image* out);

}  // namespace tl
