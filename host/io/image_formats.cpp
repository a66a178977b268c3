// The photo formats other than JPEG and PNG that PIL reads and the engine accepts: BMP, GIF, TGA and
// binary PNM (P5/P6, maxval 255 only). Small decoders of our own, every read bounds-checked, every size checked against
// the file and the pixel limit before anything is allocated; they replace stb_image, whose decoders
// are not meant for untrusted files. Results follow PIL's Image.open(...).convert("RGB") (tested on
// files PIL wrote, tests/test_image.cpp); GIFs give their first frame.
#include <algorithm>
#include <cstring>

#include "host/core/common.h"
#include "host/io/image.h"

namespace tl {

namespace {

// Little-endian reads with bounds checks; every failure names the file.
struct Bytes {
  const uint8_t* p;
  size_t n;
  const std::string& what;
  const char* kind;
  [[noreturn]] void truncated() const { fail("%s: truncated %s", what.c_str(), kind); }
  const uint8_t* at(size_t off, size_t len) const {
    if (off > n || len > n - off) truncated();
    return p + off;
  }
  uint32_t u8(size_t off) const { return *at(off, 1); }
  uint32_t u16(size_t off) const { const uint8_t* q = at(off, 2); return (uint32_t)q[0] | ((uint32_t)q[1] << 8); }
  uint32_t u32(size_t off) const {
    const uint8_t* q = at(off, 4);
    return (uint32_t)q[0] | ((uint32_t)q[1] << 8) | ((uint32_t)q[2] << 16) | ((uint32_t)q[3] << 24);
  }
};

void check_size(int64_t w, int64_t h, int64_t max_pixels, const std::string& what, const char* kind) {
  if (w <= 0 || h <= 0) fail("%s: corrupt %s header (%lldx%lld pixels)", what.c_str(), kind, (long long)w, (long long)h);
  if (w > (1 << 16) || h > (1 << 16) || w * h > max_pixels)
    fail("%s: image too large (%lldx%lld = %.0f megapixels; the limit is %.0f)", what.c_str(), (long long)w,
         (long long)h, (double)w * h / 1e6, (double)max_pixels / 1e6);
}

Image blank(int w, int h) {
  Image img;
  alloc_pixels(&img, w, h);  // under the decode memory budget (image.h)
  return img;
}

// PIL's unpackers for 5-bit channels: v * 255 / 31 (integer division).
inline uint8_t five(uint32_t v) { return (uint8_t)((v & 31) * 255 / 31); }

// ---------------------------------------------------------------- PNM (P5 gray, P6 RGB)

Image decode_pnm(const Bytes& b, int64_t max_pixels) {
  size_t pos = 2;
  auto number = [&]() -> int64_t {
    for (;;) {  // whitespace and comments
      if (pos >= b.n) b.truncated();
      const uint8_t c = b.p[pos];
      if (c == '#') {
        while (pos < b.n && b.p[pos] != '\n' && b.p[pos] != '\r') pos++;
      } else if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f') {
        pos++;
      } else {
        break;
      }
    }
    int64_t v = 0;
    const size_t start = pos;
    while (pos < b.n && b.p[pos] >= '0' && b.p[pos] <= '9') {
      v = v * 10 + (b.p[pos++] - '0');
      if (v > (1 << 30)) fail("%s: corrupt PNM header (a number is too large)", b.what.c_str());
    }
    if (pos == start) fail("%s: corrupt PNM header (a number was expected)", b.what.c_str());
    return v;
  };
  const bool rgb = b.p[1] == '6';
  const int64_t w = number(), h = number(), maxval = number();
  if (maxval < 1 || maxval > 65535) fail("%s: corrupt PNM header (maxval %lld)", b.what.c_str(), (long long)maxval);
  // Pillow (the reference for our pixels) clips 16-bit samples where a scale would be expected and
  // rounds other maxvals its own way: only 8-bit PNM (maxval 255) is read, the rest refused.
  if (maxval != 255)
    fail("%s: PNM with maxval %lld is not supported (only 255, 8 bits per sample); convert it to PNG", b.what.c_str(),
         (long long)maxval);
  check_size(w, h, max_pixels, b.what, "PNM");
  // One whitespace character ends the header; anything else there (`255#c`) would shift the raster.
  if (pos >= b.n || !(b.p[pos] == ' ' || b.p[pos] == '\t' || b.p[pos] == '\n' || b.p[pos] == '\r' ||
                      b.p[pos] == '\v' || b.p[pos] == '\f'))
    fail("%s: corrupt PNM header (no whitespace after maxval, e.g. a comment right after it); re-save the file",
         b.what.c_str());
  pos++;  // the single whitespace character after maxval
  const int ch = rgb ? 3 : 1, bytes = maxval > 255 ? 2 : 1;
  const uint8_t* d = b.at(pos, (size_t)w * h * ch * bytes);
  Image img = blank((int)w, (int)h);
  for (size_t i = 0; i < (size_t)w * h; i++)
    for (int c = 0; c < 3; c++) {
      const size_t k = (i * ch + (rgb ? c : 0)) * bytes;
      uint32_t v = bytes == 2 ? ((uint32_t)d[k] << 8 | d[k + 1]) : d[k];
      if (v > (uint32_t)maxval) v = (uint32_t)maxval;
      img.rgb[i * 3 + c] = maxval == 255 ? (uint8_t)v : (uint8_t)((v * 255 + (uint32_t)maxval / 2) / (uint32_t)maxval);
    }
  return img;
}

// ---------------------------------------------------------------- BMP

Image decode_bmp(const Bytes& b, int64_t max_pixels) {
  const uint32_t data_off = b.u32(10), hsize = b.u32(14);
  int64_t w, h;
  uint32_t bpp, comp = 0, colors = 0;
  size_t pal_off, pal_entry;
  if (hsize == 12) {  // OS/2 BITMAPCOREHEADER
    w = b.u16(18), h = (int16_t)b.u16(20), bpp = b.u16(24);
    pal_off = 26, pal_entry = 3;
  } else if (hsize >= 40 && hsize <= 124) {
    w = (int32_t)b.u32(18), h = (int32_t)b.u32(22), bpp = b.u16(28), comp = b.u32(30), colors = b.u32(46);
    pal_off = 14 + hsize, pal_entry = 4;
  } else {
    fail("%s: unsupported BMP header (size %u)", b.what.c_str(), hsize);
  }
  const bool top_down = h < 0;
  if (top_down) h = -h;
  check_size(w, h, max_pixels, b.what, "BMP");
  if (comp != 0 && comp != 3)
    fail("%s: compressed BMP (method %u) is not supported; save it uncompressed or as PNG", b.what.c_str(), comp);
  if (comp == 3 && bpp != 16 && bpp != 32) fail("%s: corrupt BMP (bit fields with %u bits)", b.what.c_str(), bpp);
  if (bpp != 1 && bpp != 4 && bpp != 8 && bpp != 16 && bpp != 24 && bpp != 32)
    fail("%s: BMP with %u bits per pixel is not supported", b.what.c_str(), bpp);
  // Channel masks: given (BI_BITFIELDS; after a 40-byte header, or inside a larger one) or implied.
  uint32_t mask[3] = {0x7C00, 0x03E0, 0x001F};
  if (bpp == 32) mask[0] = 0xFF0000, mask[1] = 0xFF00, mask[2] = 0xFF;
  if (comp == 3) {
    for (int k = 0; k < 3; k++) mask[k] = b.u32(54 + 4 * k);
    if (hsize == 40) pal_off += 12;
  }
  int shift[3], bits[3];
  for (int k = 0; k < 3; k++) {
    if (!mask[k]) fail("%s: corrupt BMP (an empty colour mask)", b.what.c_str());
    shift[k] = __builtin_ctz(mask[k]);
    bits[k] = 32 - __builtin_clz(mask[k] >> shift[k]);
  }
  // Palette (up to 256 entries; an index past the ones given is black, as PIL).
  uint8_t pal[256][3] = {};
  if (bpp <= 8) {
    uint32_t count = colors ? colors : 1u << bpp;
    if (count > 256) count = 256;
    const uint8_t* q = b.at(pal_off, count * pal_entry);
    for (uint32_t i = 0; i < count; i++)
      pal[i][0] = q[i * pal_entry + 2], pal[i][1] = q[i * pal_entry + 1], pal[i][2] = q[i * pal_entry];
  }
  const size_t stride = ((size_t)w * bpp + 31) / 32 * 4;
  const uint8_t* d = b.at(data_off, stride * (size_t)h);
  Image img = blank((int)w, (int)h);
  for (int64_t y = 0; y < h; y++) {
    const uint8_t* row = d + stride * (size_t)(top_down ? y : h - 1 - y);
    uint8_t* out = &img.rgb[(size_t)y * w * 3];
    for (int64_t x = 0; x < w; x++, out += 3) {
      if (bpp <= 8) {
        const uint32_t i = (row[x * bpp / 8] >> (8 - bpp - (x * bpp) % 8)) & ((1u << bpp) - 1);
        memcpy(out, pal[i], 3);
      } else if (bpp == 24) {
        out[0] = row[x * 3 + 2], out[1] = row[x * 3 + 1], out[2] = row[x * 3];
      } else {
        const uint32_t v = bpp == 16 ? (uint32_t)row[x * 2] | (uint32_t)row[x * 2 + 1] << 8
                                     : (uint32_t)row[x * 4] | (uint32_t)row[x * 4 + 1] << 8 |
                                           (uint32_t)row[x * 4 + 2] << 16 | (uint32_t)row[x * 4 + 3] << 24;
        for (int k = 0; k < 3; k++) {
          const uint64_t m = (1ull << bits[k]) - 1;
          out[k] = (uint8_t)(((v & mask[k]) >> shift[k]) * 255 / m);
        }
      }
    }
  }
  return img;
}

// ---------------------------------------------------------------- TGA

// A TGA file has no magic number: the header must describe an image this reader handles.
bool looks_like_tga(const uint8_t* p, size_t n) {
  if (n < 18) return false;
  const int cmap = p[1], type = p[2], bpp = p[16], cbits = p[7];
  const int base = type & 7;
  if (cmap > 1 || (type != 1 && type != 2 && type != 3 && type != 9 && type != 10 && type != 11)) return false;
  if ((p[12] | p[13]) == 0 || (p[14] | p[15]) == 0) return false;
  if (base == 1) return cmap == 1 && bpp == 8 && (cbits == 15 || cbits == 16 || cbits == 24 || cbits == 32);
  if (base == 2) return bpp == 15 || bpp == 16 || bpp == 24 || bpp == 32;
  return bpp == 8;
}

void tga_color(const uint8_t* px, int bits, uint8_t* out) {
  if (bits == 24 || bits == 32) {
    out[0] = px[2], out[1] = px[1], out[2] = px[0];
  } else {  // 15/16 bits: x RRRRR GGGGG BBBBB, little-endian
    const uint32_t v = (uint32_t)px[0] | (uint32_t)px[1] << 8;
    out[0] = five(v >> 10), out[1] = five(v >> 5), out[2] = five(v);
  }
}

Image decode_tga(const Bytes& b, int64_t max_pixels) {
  const int idlen = (int)b.u8(0), cmap = (int)b.u8(1), type = (int)b.u8(2), bpp = (int)b.u8(16), desc = (int)b.u8(17);
  const uint32_t cfirst = b.u16(3), clen = b.u16(5), cbits = b.u8(7);
  const int64_t w = b.u16(12), h = b.u16(14);
  check_size(w, h, max_pixels, b.what, "TGA");
  const int orient = desc & 0x30;
  if (orient != 0 && orient != 0x20) fail("%s: TGA with right-to-left pixel order is not supported", b.what.c_str());
  size_t pos = 18 + (size_t)idlen;
  uint8_t pal[256][3] = {};
  if (cmap) {
    if (cbits != 15 && cbits != 16 && cbits != 24 && cbits != 32)
      fail("%s: corrupt TGA (colour map entries of %u bits)", b.what.c_str(), cbits);
    const size_t eb = (cbits + 7) / 8;
    const uint8_t* q = b.at(pos, clen * eb);
    for (uint32_t i = 0; i < clen; i++)  // PIL: entries before the first index are black
      if (cfirst + i < 256) tga_color(q + i * eb, (int)cbits, pal[cfirst + i]);
    pos += clen * eb;
  }
  const int base = type & 7, pb = (bpp + 7) / 8;
  const size_t npx = (size_t)w * h;
  // Pixel values in file order (RLE packets may cross rows), each written straight to its place by
  // orientation: no buffer beyond the output (a raw copy once added 4 bytes a pixel to the peak).
  // Checked first: the uncompressed data is there; RLE data can hold them (a packet of 1 + pb bytes
  // gives at most 128 pixels).
  const uint8_t* plain = type >= 9 ? nullptr : b.at(pos, npx * pb);
  if (type >= 9 && (pos > b.n || npx / 128 > (b.n - pos) / (1 + (size_t)pb))) b.truncated();
  Image img = blank((int)w, (int)h);
  auto put = [&](size_t i, const uint8_t* px) {
    const size_t fy = i / (size_t)w, x = i % (size_t)w;
    const size_t y = orient == 0x20 ? fy : (size_t)h - 1 - fy;
    uint8_t* out = &img.rgb[(y * (size_t)w + x) * 3];
    if (base == 1)
      memcpy(out, pal[px[0]], 3);
    else if (base == 3)
      out[0] = out[1] = out[2] = px[0];
    else
      tga_color(px, bpp, out);
  };
  if (type >= 9) {
    size_t done = 0;
    while (done < npx) {
      const uint32_t hdr = b.u8(pos++);
      const size_t count = std::min<size_t>((hdr & 0x7F) + 1, npx - done);
      if (hdr & 0x80) {
        const uint8_t* v = b.at(pos, pb);
        pos += pb;
        for (size_t k = 0; k < count; k++) put(done + k, v);
      } else {
        const uint8_t* v = b.at(pos, count * pb);
        pos += count * pb;
        for (size_t k = 0; k < count; k++) put(done + k, v + k * pb);
      }
      done += count;
    }
  } else {
    for (size_t i = 0; i < npx; i++) put(i, plain + i * pb);
  }
  return img;
}

// ---------------------------------------------------------------- GIF (first frame)

// LZW codes of one image's data sub-blocks -> `count` palette indices, each handed to emit(k, index)
// as decoded (no index buffer); returns how many (fewer: the data is truncated).
template <typename Emit>
size_t gif_lzw(const std::vector<uint8_t>& in, int min_bits, Emit&& emit, size_t count) {
  const int clear = 1 << min_bits, eoi = clear + 1;
  uint16_t prefix[4096];
  uint8_t suffix[4096], first[4096], stack[4096];
  for (int i = 0; i < clear; i++) prefix[i] = 0, suffix[i] = first[i] = (uint8_t)i;
  int bits = min_bits + 1, next = clear + 2, prev = -1;
  size_t done = 0, bitpos = 0;
  const size_t total_bits = in.size() * 8;
  while (done < count && bitpos + (size_t)bits <= total_bits) {
    int code = 0;
    for (int k = 0; k < bits; k++, bitpos++) code |= ((in[bitpos >> 3] >> (bitpos & 7)) & 1) << k;
    if (code == clear) {
      bits = min_bits + 1, next = clear + 2, prev = -1;
      continue;
    }
    if (code == eoi) break;
    if (prev < 0 ? code >= clear : code > next) break;  // corrupt: the caller sees the short count
    if (prev >= 0 && next < 4096) {  // new entry: prev's string + the first byte of this code's string
      prefix[next] = (uint16_t)prev;
      suffix[next] = code == next ? first[prev] : first[code];
      first[next] = first[prev];
      next++;
      if (next == (1 << bits) && bits < 12) bits++;
    }
    int sp = 0;  // the code's string, last byte first (entries chain to smaller codes: at most 4096)
    for (int c = code; ; c = prefix[c]) {
      stack[sp++] = suffix[c];
      if (c < clear) break;
    }
    while (sp > 0 && done < count) emit(done, stack[--sp]), done++;
    prev = code;
  }
  return done;
}

Image decode_gif(const Bytes& b, int64_t max_pixels) {
  int64_t sw = b.u16(6), sh = b.u16(8);
  const uint32_t flags = b.u8(10);
  check_size(sw, sh, max_pixels, b.what, "GIF");
  size_t pos = 13;
  uint8_t gct[256][3] = {}, lct[256][3] = {};
  int gct_n = 0;
  if (flags & 0x80) {
    gct_n = 2 << (flags & 7);
    memcpy(gct, b.at(pos, (size_t)gct_n * 3), (size_t)gct_n * 3);
    pos += (size_t)gct_n * 3;
  }
  int trans = -1;  // the graphic control extension's transparent index
  for (;;) {
    const uint32_t block = b.u8(pos++);
    if (block == 0x21) {  // extension: label, then sub-blocks up to a zero size
      const uint32_t label = b.u8(pos++);
      if (label == 0xF9 && b.u8(pos) >= 4) trans = (b.u8(pos + 1) & 1) ? (int)b.u8(pos + 4) : -1;
      for (uint32_t len; (len = b.u8(pos++)) != 0;) pos += len;
      continue;
    }
    if (block == 0x3B) fail("%s: GIF without an image", b.what.c_str());
    if (block != 0x2C) fail("%s: corrupt GIF (block 0x%02x)", b.what.c_str(), block);
    const int64_t x0 = b.u16(pos), y0 = b.u16(pos + 2), fw = b.u16(pos + 4), fh = b.u16(pos + 6);
    const uint32_t iflags = b.u8(pos + 8);
    pos += 9;
    check_size(fw, fh, max_pixels, b.what, "GIF");
    const uint8_t(*pal)[3] = gct;
    if (iflags & 0x80) {
      const int n = 2 << (iflags & 7);
      memcpy(lct, b.at(pos, (size_t)n * 3), (size_t)n * 3);
      pos += (size_t)n * 3;
      pal = lct;
    } else if (!gct_n) {  // Pillow: mode L, the indices are the gray levels
      for (int i = 0; i < 256; i++) lct[i][0] = lct[i][1] = lct[i][2] = (uint8_t)i;
      pal = lct;
    }
    const int min_bits = (int)b.u8(pos++);
    if (min_bits < 1 || min_bits > 11) fail("%s: corrupt GIF (LZW code size %d)", b.what.c_str(), min_bits);
    std::vector<uint8_t> data;
    for (uint32_t len; (len = b.u8(pos++)) != 0; pos += len) {
      const uint8_t* q = b.at(pos, len);
      data.insert(data.end(), q, q + len);
    }
    // The frame on the logical screen, each index drawn as it is decoded: the output is the only
    // pixel buffer (an index buffer once added a byte a pixel).
    // As Pillow: a frame past the screen enlarges it; uncovered pixels are the frame palette's colour
    // of the transparent index, else of index 0 (not the background colour).
    sw = std::max(sw, x0 + fw), sh = std::max(sh, y0 + fh);
    check_size(sw, sh, max_pixels, b.what, "GIF");
    Image img = blank((int)sw, (int)sh);
    const uint8_t* fill = pal[trans >= 0 ? trans : 0];
    for (size_t i = 0; i < (size_t)sw * sh; i++) memcpy(&img.rgb[i * 3], fill, 3);
    // Interlaced frames store rows in four passes.
    std::vector<int64_t> rows;
    if (iflags & 0x40) {
      for (int64_t s : {0, 4, 2, 1})
        for (int64_t y = s; y < fh; y += s == 0 ? 8 : s == 4 ? 8 : s == 2 ? 4 : 2) rows.push_back(y);
    } else {
      for (int64_t y = 0; y < fh; y++) rows.push_back(y);
    }
    auto draw = [&](size_t k, uint8_t index) {
      const size_t r = k / (size_t)fw, x = k % (size_t)fw;
      const int64_t y = y0 + rows[r];
      if (y < sh && x0 + (int64_t)x < sw) memcpy(&img.rgb[((size_t)y * sw + (size_t)x0 + x) * 3], pal[index], 3);
    };
    if (gif_lzw(data, min_bits, draw, (size_t)fw * fh) < (size_t)fw * fh)
      fail("%s: truncated GIF image data", b.what.c_str());
    return img;
  }
}

}  // namespace

// BMP, GIF, TGA or binary PNM by content; false when the bytes are none of them.
bool decode_other_format(const uint8_t* data, size_t n, const std::string& what, int64_t max_pixels, Image* out) {
  if (n >= 2 && data[0] == 'P' && (data[1] == '5' || data[1] == '6')) {
    *out = decode_pnm(Bytes{data, n, what, "PNM"}, max_pixels);
  } else if (n >= 2 && data[0] == 'B' && data[1] == 'M') {
    *out = decode_bmp(Bytes{data, n, what, "BMP"}, max_pixels);
  } else if (n >= 6 && (!memcmp(data, "GIF87a", 6) || !memcmp(data, "GIF89a", 6))) {
    *out = decode_gif(Bytes{data, n, what, "GIF"}, max_pixels);
  } else if (looks_like_tga(data, n)) {
    *out = decode_tga(Bytes{data, n, what, "TGA"}, max_pixels);
  } else {
    return false;
  }
  return true;
}

}  // namespace tl
