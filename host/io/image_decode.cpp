// image_decode.cpp: JPEG and PNG decoding with the reference decoders PIL itself uses
// (libjpeg-turbo, libpng), with PIL's settings, so that decoded pixels equal Keras' load_img bit
// for bit: JPEG with libjpeg's defaults (islow DCT, fancy upsampling), grayscale replicated, CMYK
// converted as Pillow does (Adobe-inverted data un-inverted first); PNG to 8-bit RGB with palettes
// expanded, alpha and transparency dropped (no compositing), 16-bit samples cut to their high byte
// (gray: clipped at 255, as PIL's I -> L), gamma ignored.
#include <csetjmp>
#include <cstdio>
#include <cstring>

#include <jpeglib.h>
#include <png.h>

#include "host/core/common.h"
#include "host/io/image.h"

namespace tl {

namespace {

// ---------------------------------------------------------------- JPEG

struct JpegErr {
  jpeg_error_mgr mgr;
  jmp_buf jump;
  char msg[JMSG_LENGTH_MAX];
};

void jpeg_error_exit(j_common_ptr c) {
  JpegErr* e = (JpegErr*)c->err;
  (*c->err->format_message)(c, e->msg);
  longjmp(e->jump, 1);
}
void jpeg_quiet(j_common_ptr, int) {}  // warnings (e.g. extraneous bytes): PIL decodes on, so do we

inline uint8_t clip8(int v) { return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v); }
inline int muldiv255(int a, int b) {
  const int t = a * b + 128;
  return ((t >> 8) + t) >> 8;
}

// Returns false with *err set on a libjpeg error; no C++ object with a destructor lives in this
// frame across setjmp, so longjmp is safe.
bool jpeg_decode_raw(const uint8_t* data, size_t n, int64_t max_pixels, Image* img, std::string* err,
                     bool* too_large) {
  jpeg_decompress_struct cinfo;
  JpegErr jerr;
  cinfo.err = jpeg_std_error(&jerr.mgr);
  jerr.mgr.error_exit = jpeg_error_exit;
  jerr.mgr.emit_message = jpeg_quiet;
  JSAMPROW row = nullptr;
  if (setjmp(jerr.jump)) {
    jpeg_destroy_decompress(&cinfo);
    err->assign(jerr.msg);
    return false;
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, data, (unsigned long)n);
  jpeg_read_header(&cinfo, TRUE);
  if ((int64_t)cinfo.image_width * cinfo.image_height > max_pixels) {
    img->w = (int)cinfo.image_width;
    img->h = (int)cinfo.image_height;
    *too_large = true;
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  const bool cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
  const bool gray = cinfo.jpeg_color_space == JCS_GRAYSCALE;
  cinfo.out_color_space = cmyk ? JCS_CMYK : gray ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_calc_output_dimensions(&cinfo);
  const int w = (int)cinfo.output_width, h = (int)cinfo.output_height, comps = cinfo.output_components;
  // Under the decode memory budget (image.h), before libjpeg allocates: a progressive (multi-scan)
  // file also holds every component's DCT coefficients (64 x 2 bytes a block) while it decodes.
  int64_t coef_bytes = 0;
  if (jpeg_has_multiple_scans(&cinfo))
    for (int c = 0; c < cinfo.num_components; c++)
      coef_bytes += (int64_t)cinfo.comp_info[c].width_in_blocks * cinfo.comp_info[c].height_in_blocks * 128;
  alloc_pixels(img, w, h, coef_bytes);
  jpeg_start_decompress(&cinfo);
  // One row buffer from libjpeg's own pool (freed by jpeg_destroy_decompress, also on error).
  row = (JSAMPROW)(*cinfo.mem->alloc_large)((j_common_ptr)&cinfo, JPOOL_IMAGE, (size_t)w * comps);
  const bool adobe_inverted = cmyk && cinfo.saw_Adobe_marker;
  while (cinfo.output_scanline < cinfo.output_height) {
    const int y = (int)cinfo.output_scanline;
    jpeg_read_scanlines(&cinfo, &row, 1);
    uint8_t* out = &img->rgb[(size_t)y * w * 3];
    if (comps == 3) {
      memcpy(out, row, (size_t)w * 3);
    } else if (comps == 1) {
      for (int x = 0; x < w; x++) out[3 * x] = out[3 * x + 1] = out[3 * x + 2] = row[x];
    } else {  // CMYK: Pillow's rawmode CMYK;I for Adobe files, then its cmyk2rgb
      for (int x = 0; x < w; x++) {
        int c[4];
        for (int k = 0; k < 4; k++) c[k] = adobe_inverted ? 255 - row[4 * x + k] : row[4 * x + k];
        const int nk = 255 - c[3];
        for (int k = 0; k < 3; k++) out[3 * x + k] = clip8(nk - muldiv255(c[k], nk));
      }
    }
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  settle_lease(img);  // the coefficients are freed: the lease is the pixels' alone
  return true;
}

// ---------------------------------------------------------------- PNG

struct PngSrc {
  const uint8_t* p;
  size_t n, pos;
  char msg[200];
};

void png_read_mem(png_structp png, png_bytep out, png_size_t len) {
  PngSrc* s = (PngSrc*)png_get_io_ptr(png);
  if (len > s->n - s->pos) png_error(png, "truncated PNG");
  memcpy(out, s->p + s->pos, len);
  s->pos += len;
}
void png_err(png_structp png, png_const_charp msg) {
  PngSrc* s = (PngSrc*)png_get_io_ptr(png);
  snprintf(s->msg, sizeof s->msg, "%s", msg);
  png_longjmp(png, 1);
}
void png_warn(png_structp, png_const_charp) {}

bool png_decode_raw(const uint8_t* data, size_t n, int64_t max_pixels, Image* img, std::string* err, bool* too_large) {
  PngSrc src{data, n, 0, {0}};
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &src, png_err, png_warn);
  if (!png) {
    err->assign("out of memory");
    return false;
  }
  png_infop info = png_create_info_struct(png);
  // volatile: assigned after setjmp and freed after a longjmp back to it (a plain local could be
  // restored from a register holding its old value, leaking the row table on a corrupt PNG).
  png_bytep* volatile rows = nullptr;
  png_bytep volatile row16 = nullptr;
  if (!info || setjmp(png_jmpbuf(png))) {
    free(rows);
    free(row16);
    png_destroy_read_struct(&png, info ? &info : nullptr, nullptr);
    err->assign(src.msg[0] ? src.msg : "corrupt PNG");
    return false;
  }
  png_set_read_fn(png, &src, png_read_mem);
  png_set_user_limits(png, 1 << 16, 1 << 16);
  png_set_chunk_malloc_max(png, 64u << 20);
  png_read_info(png, info);
  const png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
  if ((int64_t)w * h > max_pixels) {
    img->w = (int)w;
    img->h = (int)h;
    *too_large = true;
    png_destroy_read_struct(&png, &info, nullptr);
    return false;
  }
  // libpng's transformations deliver 8-bit RGB rows straight into the output (no image-sized
  // intermediate), except 16-bit gray, which PIL clips at 255 (no libpng transformation does).
  const int color = png_get_color_type(png, info), depth = png_get_bit_depth(png, info);
  const bool gray16 = depth == 16 && !(color & PNG_COLOR_MASK_COLOR) && color != PNG_COLOR_TYPE_PALETTE;
  if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  if (depth == 16 && !gray16) png_set_strip_16(png);  // high byte, as PIL's RGB;16B unpacker
  png_set_strip_alpha(png);  // also the alpha that palette expansion adds from tRNS (PIL drops both)
  if (!gray16) png_set_gray_to_rgb(png);  // 16-bit gray stays big-endian samples, clipped below
  const int passes = png_set_interlace_handling(png);
  png_read_update_info(png, info);
  const size_t rowbytes = png_get_rowbytes(png, info);
  const size_t out_row = (size_t)w * 3;
  if (rowbytes != (gray16 ? (size_t)w * 2 : out_row) || png_get_channels(png, info) != (gray16 ? 1 : 3))
    png_error(png, "unexpected row layout");
  alloc_pixels(img, (int)w, (int)h);  // under the decode memory budget (image.h)
  uint8_t* out = img->rgb.data();
  auto clip_gray16 = [](const uint8_t* s, uint8_t* d, size_t px) {  // PIL: I;16 -> I -> L clips
    for (size_t i = px; i-- > 0;) {  // backwards: in place when d == s (3 bytes out per 2 in)
      const unsigned v = (unsigned)s[2 * i] << 8 | s[2 * i + 1];  // PNG's byte order, any host
      d[3 * i] = d[3 * i + 1] = d[3 * i + 2] = v > 255 ? 255 : (uint8_t)v;
    }
  };
  if (gray16 && passes == 1) {  // one row at a time through a row buffer
    row16 = (png_bytep)malloc(rowbytes);
    if (!row16) png_error(png, "out of memory");
    for (png_uint_32 y = 0; y < h; y++) {
      png_read_row(png, row16, nullptr);
      clip_gray16(row16, out + (size_t)y * out_row, w);
    }
    free(row16);
    row16 = nullptr;
  } else {  // every row in its place in the output (interlaced gray16: packed at its front)
    rows = (png_bytep*)malloc(sizeof(png_bytep) * h);
    if (!rows) png_error(png, "out of memory");
    for (png_uint_32 y = 0; y < h; y++) rows[y] = out + (size_t)y * rowbytes;
    png_read_image(png, rows);
    free(rows);
    rows = nullptr;
    if (gray16) clip_gray16(out, out, (size_t)w * h);
  }
  png_read_end(png, nullptr);
  png_destroy_read_struct(&png, &info, nullptr);
  return true;
}

}  // namespace

// JPEG encoding with libjpeg-turbo (4:2:0, libjpeg's defaults at the given quality), for test files
// and photo sheets; stb's JPEG writer has undefined behaviour (shifts of negative values).
std::vector<uint8_t> encode_jpeg(const Image& img, int quality, const std::string& what) {
  jpeg_compress_struct cinfo;
  JpegErr jerr;
  cinfo.err = jpeg_std_error(&jerr.mgr);
  jerr.mgr.error_exit = jpeg_error_exit;
  unsigned char* volatile mem = nullptr;  // assigned by libjpeg after setjmp: volatile across longjmp
  unsigned long size = 0;
  if (setjmp(jerr.jump)) {
    jpeg_destroy_compress(&cinfo);
    free(mem);
    fail("%s: cannot encode JPEG (%s)", what.c_str(), jerr.msg);
  }
  jpeg_create_compress(&cinfo);
  unsigned char* out = nullptr;
  jpeg_mem_dest(&cinfo, &out, &size);
  mem = out;
  cinfo.image_width = (JDIMENSION)img.w;
  cinfo.image_height = (JDIMENSION)img.h;
  cinfo.input_components = 3;
  cinfo.in_color_space = JCS_RGB;
  jpeg_set_defaults(&cinfo);
  jpeg_set_quality(&cinfo, quality, TRUE);
  jpeg_start_compress(&cinfo, TRUE);
  while (cinfo.next_scanline < cinfo.image_height) {
    JSAMPROW row = (JSAMPROW)&img.rgb[(size_t)cinfo.next_scanline * img.w * 3];
    jpeg_write_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_compress(&cinfo);
  mem = out;  // the destination may have grown (reallocated) while compressing
  std::vector<uint8_t> bytes(out, out + size);
  jpeg_destroy_compress(&cinfo);
  free(out);
  return bytes;
}

// Called by decode_image for JPEG and PNG bytes; throws tl::Error with a short reason.
Image decode_jpeg_or_png(const uint8_t* data, size_t n, bool jpeg, const std::string& what, int64_t max_pixels) {
  Image img;
  std::string err;
  bool too_large = false;
  const bool ok = jpeg ? jpeg_decode_raw(data, n, max_pixels, &img, &err, &too_large)
                       : png_decode_raw(data, n, max_pixels, &img, &err, &too_large);
  if (too_large)
    fail("%s: image too large (%dx%d = %.0f megapixels; the limit is %.0f)", what.c_str(), img.w, img.h,
         (double)img.w * img.h / 1e6, (double)max_pixels / 1e6);
  if (!ok) fail("%s: corrupt %s (%s)", what.c_str(), jpeg ? "JPEG" : "PNG", err.c_str());
  return img;
}

}  // namespace tl
