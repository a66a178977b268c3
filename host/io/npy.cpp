#include "host/io/npy.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include "host/core/common.h"
#include "host/ops/cpu_ops.h"
#include "host/io/zip.h"

namespace tl {

int64_t NpyHeader::numel() const {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

std::string NpyHeader::shape_str() const {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); i++) s += strfmt(i ? ", %lld" : "%lld", (long long)shape[i]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

namespace {

// Finds 'key': in the header dict and returns the text after the colon.
std::string dict_value(const std::string& hdr, const std::string& key, const std::string& what) {
  size_t k = hdr.find("'" + key + "'");
  if (k == std::string::npos) k = hdr.find("\"" + key + "\"");
  if (k == std::string::npos) fail("%s: npy header has no '%s' entry", what.c_str(), key.c_str());
  size_t c = hdr.find(':', k);
  if (c == std::string::npos) fail("%s: malformed npy header", what.c_str());
  size_t s = c + 1;
  while (s < hdr.size() && hdr[s] == ' ') s++;
  return hdr.substr(s);
}

}  // namespace

NpyHeader parse_npy_header(const uint8_t* p, size_t n, const std::string& what) {
  if (n < 10 || memcmp(p, "\x93NUMPY", 6) != 0) fail("%s: not a .npy array (bad magic)", what.c_str());
  const int major = p[6];
  size_t hlen, hstart;
  if (major == 1) {
    hlen = (size_t)p[8] | ((size_t)p[9] << 8);
    hstart = 10;
  } else if (major == 2 || major == 3) {
    if (n < 12) fail("%s: truncated .npy header", what.c_str());
    hlen = (size_t)p[8] | ((size_t)p[9] << 8) | ((size_t)p[10] << 16) | ((size_t)p[11] << 24);
    hstart = 12;
  } else {
    fail("%s: .npy format version %d is not supported", what.c_str(), major);
  }
  if (hstart + hlen > n) fail("%s: truncated .npy header", what.c_str());
  std::string hdr((const char*)p + hstart, hlen);
  NpyHeader h;
  h.data_offset = hstart + hlen;
  std::string d = dict_value(hdr, "descr", what);
  if (d.empty() || (d[0] != '\'' && d[0] != '"')) fail("%s: unsupported npy dtype %s", what.c_str(), d.c_str());
  size_t q = d.find(d[0], 1);
  if (q == std::string::npos) fail("%s: malformed npy dtype", what.c_str());
  h.descr = d.substr(1, q - 1);
  h.fortran_order = starts_with(dict_value(hdr, "fortran_order", what), "True");
  std::string s = dict_value(hdr, "shape", what);
  if (s.empty() || s[0] != '(') fail("%s: malformed npy shape", what.c_str());
  size_t e = s.find(')');
  if (e == std::string::npos) fail("%s: malformed npy shape", what.c_str());
  for (const std::string& part : split(s.substr(1, e - 1), ',')) {
    std::string t;
    for (char c : part)
      if (c != ' ' && c != 'L') t += c;
    if (t.empty()) continue;
    char* end = nullptr;
    errno = 0;
    long long v = strtoll(t.c_str(), &end, 10);
    if (*end || v < 0 || errno == ERANGE) fail("%s: malformed npy shape %s", what.c_str(), s.substr(0, e + 1).c_str());
    h.shape.push_back(v);
  }
  const std::string& ds = h.descr;
  if (ds.size() < 3) fail("%s: unsupported npy dtype '%s'", what.c_str(), ds.c_str());
  if (ds[0] == '>') fail("%s: big-endian npy arrays are not supported (dtype %s)", what.c_str(), ds.c_str());
  h.item_size = (size_t)atoi(ds.c_str() + 2);
  if (h.item_size == 0 || h.item_size > 16) fail("%s: unsupported npy dtype '%s'", what.c_str(), ds.c_str());
  // numel() and numel() * item_size are used unchecked from here on: both must fit in 62 bits.
  int64_t total = (int64_t)h.item_size;
  for (int64_t v : h.shape)
    if (__builtin_mul_overflow(total, v, &total) || total > ((int64_t)1 << 62))
      fail("%s: npy shape %s is too large to be real (corrupt header)", what.c_str(), h.shape_str().c_str());
  return h;
}

NpyArray parse_npy(std::vector<uint8_t> bytes, const std::string& what) {
  NpyArray a;
  a.h = parse_npy_header(bytes.data(), bytes.size(), what);
  const uint64_t want = (uint64_t)a.h.numel() * a.h.item_size;
  if (bytes.size() - a.h.data_offset < want)
    fail("%s: .npy data is truncated (header promises %s %s = %llu bytes, file has %zu)", what.c_str(),
         a.h.descr.c_str(), a.h.shape_str().c_str(), (unsigned long long)want, bytes.size() - a.h.data_offset);
  a.bytes = std::move(bytes);
  return a;
}

std::vector<float> NpyArray::to_f32(const std::string& what) const {
  if (h.fortran_order && h.shape.size() > 1) fail("%s: Fortran-ordered arrays are not supported", what.c_str());
  const int64_t n = h.numel();
  std::vector<float> out((size_t)n);
  const uint8_t* d = data();
  const char kind = h.descr[1];
  const size_t sz = h.item_size;
  for (int64_t i = 0; i < n; i++) {
    const uint8_t* e = d + (size_t)i * sz;
    float v;
    if (kind == 'f' && sz == 4) {
      memcpy(&v, e, 4);
    } else if (kind == 'f' && sz == 8) {
      double x;
      memcpy(&x, e, 8);
      v = (float)x;
    } else if (kind == 'f' && sz == 2) {
      uint16_t x;
      memcpy(&x, e, 2);
      v = cpu::float_from_half(x);
    } else if ((kind == 'i' || kind == 'u' || kind == 'b') && (sz == 1 || sz == 2 || sz == 4 || sz == 8)) {
      int64_t x = 0;
      uint64_t ux = 0;
      memcpy(&ux, e, sz);
      if (kind == 'i' && sz < 8 && (ux >> (sz * 8 - 1)) & 1) ux |= ~0ull << (sz * 8);  // sign-extend
      x = (int64_t)ux;
      v = kind == 'u' || kind == 'b' ? (float)ux : (float)x;
    } else {
      fail("%s: unsupported npy dtype '%s'", what.c_str(), h.descr.c_str());
    }
    out[(size_t)i] = v;
  }
  return out;
}

NpyArray read_npy(const std::string& path) { return parse_npy(read_file(path), path); }

MappedNpy::MappedNpy(const std::string& path) : path_(path) {
  int fd = open(path.c_str(), O_RDONLY);
  if (fd < 0) fail("%s: cannot open (%s)", path.c_str(), strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0 || st.st_size < 10) {
    close(fd);
    fail("%s: not a .npy array (too short)", path.c_str());
  }
  size_ = (size_t)st.st_size;
  void* m = mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd);
  if (m == MAP_FAILED) fail("%s: cannot map (%s)", path.c_str(), strerror(errno));
  map_ = (const uint8_t*)m;
  try {
    h_ = parse_npy_header(map_, size_, path);
    const uint64_t want = (uint64_t)h_.numel() * h_.item_size;
    if (size_ - h_.data_offset < want)
      fail("%s: .npy data is truncated (header promises %s %s = %llu bytes, file has %zu)", path.c_str(),
           h_.descr.c_str(), h_.shape_str().c_str(), (unsigned long long)want, size_ - h_.data_offset);
  } catch (...) {
    munmap((void*)map_, size_);
    throw;
  }
}

MappedNpy::~MappedNpy() {
  if (map_) munmap((void*)map_, size_);
}

std::map<std::string, NpyArray> read_npz(const std::string& path) {
  ZipReader z(path);
  std::map<std::string, NpyArray> out;
  for (const ZipEntry& e : z.entries()) {
    if (e.is_dir()) continue;
    std::string key = e.name;
    if (ends_with(key, ".npy")) key = key.substr(0, key.size() - 4);
    out[key] = parse_npy(z.read(e), path + ":" + e.name);
  }
  return out;
}

std::vector<uint8_t> npy_header_bytes(const char* descr, const std::vector<int64_t>& shape) {
  std::string shp = "(";
  for (size_t i = 0; i < shape.size(); i++) shp += strfmt(i ? ", %lld" : "%lld", (long long)shape[i]);
  if (shape.size() == 1) shp += ",";
  shp += ")";
  std::string dict = strfmt("{'descr': '%s', 'fortran_order': False, 'shape': %s, }", descr, shp.c_str());
  size_t total = 10 + dict.size() + 1;
  size_t pad = (64 - total % 64) % 64;
  dict += std::string(pad, ' ') + "\n";
  std::vector<uint8_t> out = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
  out.push_back((uint8_t)(dict.size() & 0xFF));
  out.push_back((uint8_t)(dict.size() >> 8));
  out.insert(out.end(), dict.begin(), dict.end());
  return out;
}

namespace {
void write_npy_raw(const std::string& path, const char* descr, const void* data, size_t bytes,
                   const std::vector<int64_t>& shape) {
  std::vector<uint8_t> out = npy_header_bytes(descr, shape);
  out.insert(out.end(), (const uint8_t*)data, (const uint8_t*)data + bytes);
  write_file_atomic(path, out.data(), out.size());
}
int64_t count(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}
}  // namespace

void write_npy_f32(const std::string& path, const float* data, const std::vector<int64_t>& shape) {
  write_npy_raw(path, "<f4", data, (size_t)count(shape) * 4, shape);
}
void write_npy_u8(const std::string& path, const uint8_t* data, const std::vector<int64_t>& shape) {
  write_npy_raw(path, "|u1", data, (size_t)count(shape), shape);
}
void write_npy_i32(const std::string& path, const int32_t* data, const std::vector<int64_t>& shape) {
  write_npy_raw(path, "<i4", data, (size_t)count(shape) * 4, shape);
}

}  // namespace tl
