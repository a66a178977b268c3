// Regression tests for what malicious or damaged files could do to the parsers (issue: hardening).
// Each input is built here by hand, byte by byte: PyTorch pickles, HDF5 files, zip archives, head
// model files, .npy headers; plus the checked PNG writes, and the loader that lets no exception
// out of its threads. Each must end in one clear tl::Error (or an error line), never a crash, an
// out-of-bounds access (the sanitized suite runs these too), a hang or a huge allocation.
#include <signal.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <stdexcept>

#include "helpers.h"
#include "host/core/cli.h"
#include "host/io/image.h"
#include "host/io/loader.h"
#include "host/io/npy.h"
#include "host/io/zip.h"
#include "host/model/head.h"
#include "tools/convert/hdf5.h"
#include "tools/convert/torch_file.h"

using namespace tl;

namespace {

std::string write_temp(const std::string& name, const std::vector<uint8_t>& b) {
  const std::string p = path_join(tlt::temp_dir(), name);
  write_file_atomic(p, b.data(), b.size());
  return p;
}

void le(std::vector<uint8_t>& b, uint64_t v, int n) {
  for (int i = 0; i < n; i++) b.push_back((uint8_t)(v >> (8 * i)));
}

bool has(const std::string& msg, const char* text) {
  if (msg.find(text) != std::string::npos) return true;
  MESSAGE("got: " << msg);
  return false;
}

// ------------------------------------------------------------------------------------------------
// PyTorch legacy checkpoints: a pickle writer for the few opcodes needed.

struct Pickle {
  std::vector<uint8_t> b;
  Pickle& op(uint8_t c) { return b.push_back(c), *this; }
  Pickle& str(const std::string& s) {
    op('X');
    le(b, s.size(), 4);
    b.insert(b.end(), s.begin(), s.end());
    return *this;
  }
  Pickle& integer(int64_t v) {  // LONG1 with 8 bytes: any int64
    op(0x8a).op(8);
    le(b, (uint64_t)v, 8);
    return *this;
  }
  Pickle& global(const char* mod, const char* name) {
    op('c');
    b.insert(b.end(), mod, mod + strlen(mod));
    op('\n');
    b.insert(b.end(), name, name + strlen(name));
    return op('\n');
  }
  Pickle& ints(std::initializer_list<int64_t> v) {
    op('(');
    for (int64_t x : v) integer(x);
    return op('t');
  }
  Pickle& put(uint32_t k) { return op('r'), le(b, k, 4), *this; }
  Pickle& get(uint32_t k) { return op('j'), le(b, k, 4), *this; }
};

// A legacy checkpoint {"w": tensor} whose storage "0" holds `stored` floats; the tensor's offset,
// size and stride are given, and optionally an old-style view (root key, offset, size).
std::vector<uint8_t> legacy_checkpoint(int64_t stored, int64_t offset, std::initializer_list<int64_t> size,
                                       std::initializer_list<int64_t> stride, const int64_t* view = nullptr,
                                       const Pickle* top_override = nullptr) {
  std::vector<uint8_t> out = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, '.'};
  Pickle proto;
  proto.op(0x80).op(2).op('M').op(0xe9).op(0x03).op('.');
  Pickle sys;
  sys.op(0x80).op(2).op('}').op('.');
  Pickle top;
  if (top_override) {
    top = *top_override;
  } else {
    top.op(0x80).op(2).op('}').str("w").global("torch._utils", "_rebuild_tensor_v2").op('(');
    top.op('(').str("storage").global("torch", "FloatStorage").str("0").str("cpu").integer(stored);
    if (view) top.op('(').str("0").integer(view[0]).integer(view[1]).op('t');
    top.op('t').op('Q').integer(offset);
    top.op('(');
    for (int64_t s : size) top.integer(s);
    top.op('t').op('(');
    for (int64_t s : stride) top.integer(s);
    top.op('t').op(0x89).op('N').op('t').op('R').op('s').op('.');
  }
  Pickle keys;
  keys.op(0x80).op(2).op(']').str("0").op('a').op('.');
  for (const Pickle* p : {&proto, &sys, &top, &keys}) out.insert(out.end(), p->b.begin(), p->b.end());
  le(out, (uint64_t)stored, 8);
  for (int64_t i = 0; i < stored; i++) {
    const float v = (float)i;
    le(out, [&] { uint32_t u; memcpy(&u, &v, 4); return u; }(), 4);
  }
  return out;
}

std::string torch_error(const std::string& name, const std::vector<uint8_t>& b) {
  const std::string p = write_temp(name, b);
  return tlt::error_of([&] { read_torch_checkpoint(p); });
}

}  // namespace

TEST_CASE("PyTorch checkpoints: the hand-made legacy file reads; malicious views, sizes and pickles are refused") {
  // The writer itself: a valid file gives the tensor.
  {
    const std::string p = write_temp("ok.pth", legacy_checkpoint(6, 1, {2, 2}, {2, 1}));
    auto t = read_torch_checkpoint(p);
    REQUIRE(t.count("w"));
    CHECK(t["w"].data == std::vector<float>{1, 2, 3, 4});
  }
  // A storage view with a negative offset used to read before the buffer.
  const int64_t neg_view[2] = {-4, 3};
  CHECK(has(torch_error("negview.pth", legacy_checkpoint(6, 0, {3}, {1}, neg_view)), "storage view offset or size"));
  const int64_t far_view[2] = {100, 3};
  CHECK(has(torch_error("farview.pth", legacy_checkpoint(6, 0, {3}, {1}, far_view)), "past its end"));
  // (size - 1) * stride overflowing int64 used to pass the bounds check.
  CHECK(has(torch_error("overflow.pth", legacy_checkpoint(6, 0, {(int64_t)1 << 62}, {4})), "too large to address"));
  CHECK(has(torch_error("overflow2.pth", legacy_checkpoint(6, 0, {3, (int64_t)1 << 40}, {(int64_t)1 << 62, 0})),
            "too large to address"));
  // A negative storage offset.
  CHECK(has(torch_error("negoff.pth", legacy_checkpoint(6, -2, {2}, {1})), "negative storage offset"));
  // Stride 0 with a huge size used to allocate gigabytes from a tiny file.
  CHECK(has(torch_error("stride0.pth", legacy_checkpoint(1, 0, {(int64_t)1 << 36}, {0})), "an expanded view"));
  // A pickle of 200,000 nested lists used to overflow the stack when freed.
  {
    Pickle deep;
    deep.op(0x80).op(2);
    const int n = 200000;
    for (int i = 0; i < n; i++) deep.op(']');
    for (int i = 0; i < n - 1; i++) deep.op('a');
    deep.op('.');
    CHECK(has(torch_error("deep.pth", legacy_checkpoint(1, 0, {1}, {1}, nullptr, &deep)), "not a state_dict"));
  }
  // Shared lists (a DAG 60 levels deep: 2^60 paths) used to make the storage walk hang; a list that
  // contains itself must end too.
  {
    Pickle dag;
    dag.op(0x80).op(2).op(']').put(0);
    for (uint32_t k = 1; k <= 60; k++) dag.op(']').op('(').get(k - 1).get(k - 1).op('e').put(k);
    dag.op('0').op('}').str("x").get(60).op('s').op('.');
    CHECK(has(torch_error("dag.pth", legacy_checkpoint(1, 0, {1}, {1}, nullptr, &dag)), "no tensors found"));
    Pickle self;
    self.op(0x80).op(2).op('}').str("x").op(']').put(0).get(0).op('a').op('s').op('.');
    CHECK(has(torch_error("self.pth", legacy_checkpoint(1, 0, {1}, {1}, nullptr, &self)), "no tensors found"));
  }
  // Memo indices far beyond the pickle's size are refused (a 10^7-entry memo from a few bytes).
  {
    Pickle memo;
    memo.op(0x80).op(2).op('}').op('r');
    le(memo.b, 9000000, 4);
    memo.op('.');
    CHECK(has(torch_error("memo.pth", legacy_checkpoint(1, 0, {1}, {1}, nullptr, &memo)), "memo index"));
  }
}

// ------------------------------------------------------------------------------------------------
// HDF5: a superblock (version 0) and one version-1 object header holding the given messages.

namespace {

struct H5Msg {
  uint16_t type;
  std::vector<uint8_t> body;
};

std::vector<uint8_t> h5_file(const std::vector<H5Msg>& msgs, size_t trailing_pad = 0) {
  std::vector<uint8_t> b = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n', 0, 0, 0, 0, 0, 8, 8, 0};
  le(b, 4, 2), le(b, 16, 2), le(b, 0, 4);  // leaf K, internal K, flags
  const uint64_t header_at = 96;
  size_t body = 0;
  for (auto& m : msgs) body += 8 + m.body.size();
  le(b, 0, 8), le(b, ~0ull, 8), le(b, header_at + 16 + body + trailing_pad, 8), le(b, ~0ull, 8);  // base, free, eof, driver
  le(b, 0, 8), le(b, header_at, 8), le(b, 0, 4), le(b, 0, 4);  // root entry: name offset, header, cache type
  b.resize(header_at, 0);
  b.push_back(1), b.push_back(0), le(b, msgs.size(), 2), le(b, 1, 4), le(b, body, 4), le(b, 0, 4);
  for (auto& m : msgs) {
    le(b, m.type, 2), le(b, m.body.size(), 2), le(b, 0, 4);
    b.insert(b.end(), m.body.begin(), m.body.end());
  }
  b.resize(b.size() + trailing_pad, 0);
  return b;
}

std::vector<uint8_t> h5_space(std::initializer_list<uint64_t> dims) {
  std::vector<uint8_t> s = {1, (uint8_t)dims.size(), 0, 0, 0, 0, 0, 0};
  for (uint64_t d : dims) le(s, d, 8);
  return s;
}

std::vector<uint8_t> h5_float32() { return {0x11, 0x20, 0x1f, 0x00, 4, 0, 0, 0, 0, 0, 32, 0, 23, 8, 0, 23, 127, 0, 0, 0}; }

}  // namespace

TEST_CASE("HDF5: continuation at the end of the file, a wrapping string attribute, huge unstored datasets") {
  // The builder itself: a float dataset stored contiguously reads back.
  {
    std::vector<uint8_t> layout = {3, 1};
    le(layout, 96 + 16 + (8 + 20) + (8 + 16) + (8 + 18), 8);  // the data right after the header
    le(layout, 8, 8);
    std::vector<uint8_t> f = h5_file({{0x03, h5_float32()}, {0x01, h5_space({2})}, {0x08, layout}}, 8);
    const float v[2] = {1.5f, -2.0f};
    memcpy(f.data() + f.size() - 8, v, 8);
    H5File h(write_temp("ok.h5", f));
    H5File::Dataset d = h.read_dataset(h.root(), "x");
    CHECK(d.shape == std::vector<int64_t>{2});
    CHECK(d.data == std::vector<float>{1.5f, -2.0f});
  }
  // A continuation message of size 0 as the file's last bytes used to be read past the buffer.
  {
    H5File h(write_temp("cont.h5", h5_file({{0x10, {}}})));
    CHECK(has(tlt::error_of([&] { h.children(h.root()); }), "continuation message too short"));
  }
  // A string attribute whose count times size wraps to 0 used to read 2^52 strings.
  {
    std::vector<uint8_t> a = {1, 0};
    le(a, 12, 2), le(a, 8, 2), le(a, 24, 2);
    const char name[16] = "layer_names";
    a.insert(a.end(), name, name + 16);
    std::vector<uint8_t> type = {0x13, 0, 0, 0};
    le(type, 4096, 4);
    a.insert(a.end(), type.begin(), type.end());
    std::vector<uint8_t> space = h5_space({(uint64_t)1 << 52});
    space.resize(24, 0);
    a.insert(a.end(), space.begin(), space.end());
    H5File h(write_temp("attr.h5", h5_file({{0x0C, a}})));
    std::vector<std::string> out;
    CHECK(has(tlt::error_of([&] { h.string_attr(h.root(), "layer_names", &out); }), "attribute data"));
  }
  // A dataset of 4 GiB with no storage (contiguous, address undefined) used to be allocated in full.
  {
    std::vector<uint8_t> layout = {3, 1};
    le(layout, ~0ull, 8), le(layout, 0, 8);
    H5File h(write_temp("huge.h5", h5_file({{0x03, h5_float32()}, {0x01, h5_space({1 << 20, 1 << 10})}, {0x08, layout}})));
    CHECK(has(tlt::error_of([&] { h.read_dataset(h.root(), "x"); }), "more than this"));
    // The same shape chunked (B-tree address undefined).
    std::vector<uint8_t> chunked = {3, 2, 3};
    le(chunked, ~0ull, 8), le(chunked, 64, 4), le(chunked, 64, 4), le(chunked, 4, 4);
    H5File c(write_temp("huge_chunked.h5",
                        h5_file({{0x03, h5_float32()}, {0x01, h5_space({1 << 20, 1 << 10})}, {0x08, chunked}})));
    CHECK(has(tlt::error_of([&] { c.read_dataset(c.root(), "x"); }), "more than this"));
  }
  // A layout message too short for what it declares (it used to be read past its end).
  {
    H5File h(write_temp("shortlayout.h5", h5_file({{0x03, h5_float32()}, {0x01, h5_space({2})}, {0x08, {3, 1}}})));
    CHECK(has(tlt::error_of([&] { h.read_dataset(h.root(), "x"); }), "layout message too short"));
  }
}

// ------------------------------------------------------------------------------------------------
// Zip archives.

namespace {

// One stored entry "a.jpg" whose sizes are given; optionally with a ZIP64 extra field.
std::vector<uint8_t> lying_zip(uint32_t csize32, uint64_t csize64, bool zip64) {
  std::vector<uint8_t> z;
  const std::string name = "a.jpg";
  le(z, 0x04034b50, 4), le(z, 20, 2), le(z, 0, 2), le(z, 0, 2), le(z, 0, 4), le(z, 0, 4);
  le(z, csize32, 4), le(z, csize32, 4), le(z, name.size(), 2), le(z, 0, 2);
  z.insert(z.end(), name.begin(), name.end());
  z.insert(z.end(), {1, 2, 3, 4});
  const size_t cd_off = z.size();
  le(z, 0x02014b50, 4), le(z, 20, 2), le(z, 20, 2), le(z, 0, 2), le(z, 0, 2), le(z, 0, 4), le(z, 0, 4);
  le(z, zip64 ? 0xFFFFFFFFu : csize32, 4), le(z, zip64 ? 0xFFFFFFFFu : csize32, 4), le(z, name.size(), 2);
  le(z, zip64 ? 20 : 0, 2), le(z, 0, 2), le(z, 0, 2), le(z, 0, 2), le(z, 0, 4), le(z, 0, 4);
  z.insert(z.end(), name.begin(), name.end());
  if (zip64) le(z, 1, 2), le(z, 16, 2), le(z, csize64, 8), le(z, csize64, 8);
  const size_t cd_size = z.size() - cd_off;
  le(z, 0x06054b50, 4), le(z, 0, 4), le(z, 1, 2), le(z, 1, 2), le(z, cd_size, 4), le(z, cd_off, 4), le(z, 0, 2);
  return z;
}

}  // namespace

TEST_CASE("zip: entry sizes and entry counts are checked against the file before anything is allocated") {
  for (auto [c32, c64, z64] : {std::make_tuple(0xFFFFFFF0u, (uint64_t)0, false),
                               std::make_tuple(0u, (uint64_t)1 << 62, true)}) {
    ZipReader z(write_temp("lying.zip", lying_zip(c32, c64, z64)));
    REQUIRE(z.entries().size() == 1);
    CHECK(has(tlt::error_of([&] { z.read(z.entries()[0], (uint64_t)1 << 63); }), "run past the end of the archive"));
  }
  // A deflated entry claiming to inflate over 1032 times its compressed size.
  {
    std::vector<uint8_t> b = lying_zip(4, 0, false);
    b[8] = 8;                                       // local header: method deflate
    const size_t cd = b.size() - 22 - 46 - 5;      // central directory record
    b[cd + 10] = 8;                                 // method
    const uint32_t big = 4 * 1032 * 4;
    memcpy(b.data() + cd + 24, &big, 4);            // uncompressed size
    ZipReader z(write_temp("bomb.zip", b));
    CHECK(has(tlt::error_of([&] { z.read(z.entries()[0]); }), "cannot inflate to"));
  }
  // A ZIP64 entry count of 2^60 used to be reserved before it was checked.
  {
    std::vector<uint8_t> b = lying_zip(4, 0, false);
    const size_t eocd = b.size() - 22;
    b[eocd + 8] = b[eocd + 9] = b[eocd + 10] = b[eocd + 11] = 0xFF;  // entry counts: see ZIP64
    std::vector<uint8_t> z64;                                        // ZIP64 EOCD record + locator
    const uint64_t rec_at = eocd;
    le(z64, 0x06064b50, 4), le(z64, 44, 8), le(z64, 45, 2), le(z64, 45, 2), le(z64, 0, 4), le(z64, 0, 4);
    le(z64, (uint64_t)1 << 60, 8), le(z64, (uint64_t)1 << 60, 8);
    uint32_t cd_size, cd_off;
    memcpy(&cd_size, b.data() + eocd + 12, 4);
    memcpy(&cd_off, b.data() + eocd + 16, 4);
    le(z64, cd_size, 8), le(z64, cd_off, 8);
    le(z64, 0x07064b50, 4), le(z64, 0, 4), le(z64, rec_at, 8), le(z64, 1, 4);
    b.insert(b.begin() + (long)eocd, z64.begin(), z64.end());
    CHECK(has(tlt::error_of([&] { ZipReader z(write_temp("count.zip", b)); }), "entries cannot fit"));
  }
}

TEST_CASE("no exception type escapes a loader thread: each becomes that item's error line") {
  OrderedLoader l(3, 4, 2, 4, [](int64_t i, float* out) {
    if (i == 0) throw std::length_error("vector::_M_default_append");
    if (i == 1) throw std::bad_alloc();
    out[0] = 7.0f;
  });
  int64_t idx;
  const float* data;
  std::string err;
  REQUIRE(l.next(&idx, &data, &err));
  CHECK(has(err, "unexpected error: vector::_M_default_append"));
  l.release();
  REQUIRE(l.next(&idx, &data, &err));
  CHECK(err == "out of memory");
  l.release();
  REQUIRE(l.next(&idx, &data, &err));
  CHECK(err.empty());
  CHECK(data[0] == 7.0f);
  l.release();
}

// ------------------------------------------------------------------------------------------------
// Head model files and .npy headers.

namespace {

std::vector<uint8_t> model_bytes(uint32_t fh, uint32_t fw, uint32_t fc, uint32_t h1, uint32_t h2, size_t total) {
  std::vector<uint8_t> b(kModelMagic, kModelMagic + 8);
  le(b, kModelVersion, 4), le(b, 256, 4), le(b, fh, 4), le(b, fw, 4), le(b, fc, 4), le(b, h1, 4), le(b, h2, 4);
  const float d = 0.2f;
  uint32_t du;
  memcpy(&du, &d, 4);
  le(b, du, 4), le(b, 0, 4), le(b, 0, 4), le(b, 0, 8), le(b, total, 8);
  b.resize(total - 4, 0);
  le(b, crc32_of(b.data(), b.size()), 4);
  return b;
}

}  // namespace

TEST_CASE("head model files: dimensions are bounded and must add up to the file before any allocation") {
  // A 324-byte file with a valid crc whose header asks for 7x7x512 -> 1048576 -> 1024 (used to take 4 GB).
  CHECK(has(tlt::error_of([&] { load_model(write_temp("m1.bin", model_bytes(7, 7, 512, 1 << 20, 1024, 324))); }),
            "its dimensions need"));
  // Dimensions whose product overflowed (signed) in the old check.
  CHECK(has(tlt::error_of([&] {
          load_model(write_temp("m2.bin", model_bytes(0x7fffffff, 0x7fffffff, 0x7fffffff, 1, 1, 324)));
        }),
            "corrupt header"));
  // The right size for a tiny head loads.
  const size_t total = 256 + 64 * 6 + 4;  // params 2*2*1 -> 1 -> 1: each array in its own 64-byte block
  ModelFile m = load_model(write_temp("m3.bin", model_bytes(2, 2, 1, 1, 1, total)));
  CHECK(m.params.size() == 6);
  CHECK(m.params[0].size() == 4);
}

TEST_CASE(".npy: element counts that overflow are refused (no signed-overflow UB)") {
  for (const char* shape : {"(4294967296, 4294967296)", "(99999999999999999999,)", "(3037000500, 3037000500, 2)"}) {
    std::string dict = std::string("{'descr': '<f4', 'fortran_order': False, 'shape': ") + shape + ", }";
    dict.resize(118, ' ');
    dict += "\n";
    const uint8_t head[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (uint8_t)dict.size(), 0};
    std::vector<uint8_t> b(head, head + 10);
    b.resize(10 + dict.size());
    memcpy(b.data() + 10, dict.data(), dict.size());
    const std::string e = tlt::error_of([&] { parse_npy(b, "x.npy"); });
    CHECK(e.find("x.npy") != std::string::npos);
    CHECK((e.find("too large") != std::string::npos || e.find("malformed npy shape") != std::string::npos));
  }
}

// ------------------------------------------------------------------------------------------------
// PNG output: a failed write is an error and leaves nothing in place (a full disk used to give
// truncated PNGs renamed into place). The file size limit stands in for a full disk.

TEST_CASE("PNG writes are checked: a write that cannot complete fails and leaves no file") {
  Image img;
  img.w = 300, img.h = 200;
  img.rgb.resize((size_t)img.w * img.h * 3);
  uint64_t s = 1;
  for (auto& v : img.rgb) v = (uint8_t)(splitmix64(s) >> 56);  // noise: does not compress
  const std::string path = path_join(tlt::temp_dir(), "full_disk.png");
  struct rlimit old;
  REQUIRE(getrlimit(RLIMIT_FSIZE, &old) == 0);
  struct sigaction ign = {}, prev = {};
  ign.sa_handler = SIG_IGN;
  sigaction(SIGXFSZ, &ign, &prev);
  struct rlimit small = old;
  small.rlim_cur = 16384;
  REQUIRE(setrlimit(RLIMIT_FSIZE, &small) == 0);
  const std::string e = tlt::error_of([&] { write_png(path, img); });
  setrlimit(RLIMIT_FSIZE, &old);
  sigaction(SIGXFSZ, &prev, nullptr);
  CHECK(has(e, "write failed"));
  CHECK(!file_exists(path));
  CHECK(!file_exists(path + ".tmp"));
  // Without the limit the same image is written and decodes back to the same pixels.
  write_png(path, img);
  CHECK(load_image(path).rgb == img.rgb);
}

// ------------------------------------------------------------------------------------------------
// A second Ctrl-C exits at once from the signal handler (issue 26, finding 10): the temporary file
// being written goes too. A child process stands in for a program caught mid-write: it holds a
// .tmp the way every writer does (write_file_atomic, shards, .npy export), then gets SIGINT twice.

TEST_CASE("a second Ctrl-C (or the first, in programs without a graceful stop) removes the .tmp being written") {
  const std::string dir = path_join(tlt::temp_dir(), "second_sigint");
  make_dirs(dir);
  const std::string done = path_join(dir, "done.bin"), tmp = path_join(dir, "shard.bin.tmp"),
                    other = path_join(dir, "unregistered.tmp");
  unlink(done.c_str()), unlink(tmp.c_str()), unlink(other.c_str());
  int ready[2];
  REQUIRE(pipe(ready) == 0);
  fflush(nullptr);
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {  // the child: only calls that are safe after fork
    install_interrupt_handler();
    write_file_atomic(done, "finished", 8);
    TempFileGuard guard(tmp);
    const int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int fo = open(other.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || fo < 0 || write(fd, "half", 4) != 4) _exit(3);
    if (write(ready[1], "r", 1) != 1) _exit(4);
    for (;;) pause();  // mid-write: the first SIGINT only sets the flag, the second exits
  }
  close(ready[1]);
  char c = 0;
  REQUIRE(read(ready[0], &c, 1) == 1);
  close(ready[0]);
  CHECK(file_exists(tmp));
  kill(pid, SIGINT);
  usleep(100 * 1000);
  kill(pid, SIGINT);
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 130);
  CHECK(!file_exists(tmp));  // before the fix the half-written .tmp stayed
  CHECK(file_exists(done));  // finished files are kept
  CHECK(read_file(done) == std::vector<uint8_t>{'f', 'i', 'n', 'i', 's', 'h', 'e', 'd'});
  CHECK(file_exists(other));  // only registered files are removed (nothing else is touched)
  unlink(other.c_str());
  // tl_predict, tl_inspect and tl_convert have no graceful stop: one SIGINT (or SIGTERM, SIGHUP)
  // ends them as the signal does, after removing the .tmp being written (it stayed before).
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) {
    CAPTURE(sig);
    REQUIRE(pipe(ready) == 0);
    fflush(nullptr);
    const pid_t p2 = fork();
    REQUIRE(p2 >= 0);
    if (p2 == 0) {
      _exit(guarded_main("child", [&] {
        TempFileGuard guard(tmp);
        const int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0 || write(fd, "half", 4) != 4 || write(ready[1], "r", 1) != 1) return 3;
        for (;;) pause();
        return 0;
      }));
    }
    close(ready[1]);
    REQUIRE(read(ready[0], &c, 1) == 1);
    close(ready[0]);
    CHECK(file_exists(tmp));
    kill(p2, sig);
    REQUIRE(waitpid(p2, &status, 0) == p2);
    CHECK(WIFSIGNALED(status));
    CHECK(WTERMSIG(status) == sig);
    CHECK(!file_exists(tmp));
  }
}
