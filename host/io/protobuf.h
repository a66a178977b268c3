// protobuf.h: the protocol-buffers wire format, read and written by hand (no libprotobuf): the
// few messages of ONNX that the converter reads (onnx.cpp) and the exporter writes. Every length
// and varint is checked against the bytes that hold it; a malformed message is a tl::Error.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "host/core/common.h"

namespace tl {
namespace pb {

enum WireType : uint32_t { Varint = 0, Fixed64 = 1, Bytes = 2, Fixed32 = 5 };

// One field of a message: its number, wire type, and either an integer (varint, fixed) or a span
// of bytes (length-delimited) inside the buffer being read.
struct Field {
  uint32_t number = 0;
  WireType type = Varint;
  uint64_t value = 0;             // varint / fixed32 / fixed64
  const uint8_t* data = nullptr;  // Bytes
  size_t size = 0;
  std::string str() const { return std::string((const char*)data, size); }
};

// Reads the fields of one message in order. `what` names the file for errors.
class Reader {
 public:
  Reader(const uint8_t* p, size_t n, const std::string& what) : p_(p), end_(p + n), what_(what) {}
  bool next(Field* f) {
    if (p_ == end_) return false;
    const uint64_t key = varint();
    const uint64_t number = key >> 3;
    if (number == 0 || number > 536870911u) bad("field number");
    f->number = (uint32_t)number;
    f->type = (WireType)(key & 7);
    f->data = nullptr;
    f->size = 0;
    switch (f->type) {
      case Varint: f->value = varint(); break;
      case Fixed64: f->value = fixed(8); break;
      case Fixed32: f->value = fixed(4); break;
      case Bytes: {
        const uint64_t len = varint();
        if (len > (uint64_t)(end_ - p_)) bad("length past the end of its message");
        f->data = p_;
        f->size = (size_t)len;
        p_ += len;
        break;
      }
      default: bad("wire type (groups or an unknown type)");
    }
    return true;
  }
  // Repeated scalars arrive packed (one Bytes field) or one per field; both are accepted.
  static void append_int64s(const Field& f, std::vector<int64_t>* out, const std::string& what) {
    if (f.type == Varint) {
      out->push_back((int64_t)f.value);
    } else if (f.type == Bytes) {
      Reader r(f.data, f.size, what);
      while (r.p_ != r.end_) out->push_back((int64_t)r.varint());
    } else {
      fail("%s: malformed ONNX/protobuf (an integer list with wire type %u)", what.c_str(), (unsigned)f.type);
    }
  }
  static void append_floats(const Field& f, std::vector<float>* out, const std::string& what) {
    if (f.type == Fixed32) {
      uint32_t u = (uint32_t)f.value;
      float x;
      memcpy(&x, &u, 4);
      out->push_back(x);
    } else if (f.type == Bytes) {
      if (f.size % 4) fail("%s: malformed ONNX/protobuf (a packed float list of %zu bytes)", what.c_str(), f.size);
      const size_t n = out->size();
      out->resize(n + f.size / 4);
      if (f.size) memcpy(out->data() + n, f.data, f.size);
    } else {
      fail("%s: malformed ONNX/protobuf (a float list with wire type %u)", what.c_str(), (unsigned)f.type);
    }
  }

 private:
  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (p_ == end_) bad("varint past the end");
      const uint8_t b = *p_++;
      v |= (uint64_t)(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
    }
    bad("varint longer than 10 bytes");
  }
  uint64_t fixed(int n) {
    if (end_ - p_ < n) bad("fixed-size value past the end");
    uint64_t v = 0;
    memcpy(&v, p_, n);
    p_ += n;
    return v;
  }
  [[noreturn]] void bad(const char* what) {
    fail("%s: malformed ONNX/protobuf data (%s); the file is damaged or not an ONNX model", what_.c_str(), what);
  }
  const uint8_t* p_;
  const uint8_t* end_;
  const std::string& what_;
};

// Writes fields; nested messages are built in their own Writer and added with bytes().
struct Writer {
  std::vector<uint8_t> buf;
  void varint(uint64_t v) {
    while (v >= 0x80) {
      buf.push_back((uint8_t)(v | 0x80));
      v >>= 7;
    }
    buf.push_back((uint8_t)v);
  }
  void key(uint32_t number, WireType t) { varint((uint64_t)number << 3 | t); }
  void int_field(uint32_t number, int64_t v) {
    key(number, Varint);
    varint((uint64_t)v);
  }
  void float_field(uint32_t number, float x) {
    key(number, Fixed32);
    uint32_t u;
    memcpy(&u, &x, 4);
    for (int i = 0; i < 4; i++) buf.push_back((uint8_t)(u >> (8 * i)));
  }
  void bytes(uint32_t number, const void* p, size_t n) {
    key(number, Bytes);
    varint(n);
    buf.insert(buf.end(), (const uint8_t*)p, (const uint8_t*)p + n);
  }
  void string(uint32_t number, const std::string& s) { bytes(number, s.data(), s.size()); }
  void message(uint32_t number, const Writer& m) { bytes(number, m.buf.data(), m.buf.size()); }
};

}  // namespace pb
}  // namespace tl
