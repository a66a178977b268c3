// common.h: errors, formatting, timing, file helpers shared by every part of the engine.
//
// Error policy (STYLE.md): user-facing failures throw tl::Error with one line that names the
// file or flag, what was expected, what was found, and the fix. Each program's main catches it,
// prints "<prog>: error: <message>" and exits 1. Internal invariants use TL_ASSERT, which names
// the source file and line.
#pragma once
#include <cstdarg>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

namespace tl {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

std::string strfmt(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
std::string vstrfmt(const char* fmt, va_list ap);
[[noreturn]] void fail(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
// Inside a catch (...): the message of the exception being handled, so that per-file work (decode
// threads, batches of photos) turns any exception into one error line instead of letting it escape.
std::string current_exception_message();

#define TL_ASSERT(cond)                                                                   \
  do {                                                                                    \
    if (!(cond)) ::tl::fail("internal error at %s:%d: check '%s' failed", __FILE__, __LINE__, #cond); \
  } while (0)

// Monotonic wall clock in seconds.
double now_s();

// Files. Every failure names the path and, where given, a hint about what to do.
std::vector<uint8_t> read_file(const std::string& path, const char* hint = nullptr);
bool file_exists(const std::string& path);
bool dir_exists(const std::string& path);
int64_t file_size(const std::string& path);  // -1 when missing
void make_dirs(const std::string& path);     // mkdir -p
// Writes to path.tmp, fsyncs, then renames over path: readers see the old file or the new one.
void write_file_atomic(const std::string& path, const void* data, size_t bytes);
// A temporary file being written (NAME.tmp), registered while the object lives so that an exit from
// a signal handler (a second Ctrl-C) can remove it: every writer of a .tmp holds one.
class TempFileGuard {
 public:
  explicit TempFileGuard(const std::string& tmp_path);
  ~TempFileGuard();
  TempFileGuard(const TempFileGuard&) = delete;
  TempFileGuard& operator=(const TempFileGuard&) = delete;

 private:
  int slot_ = -1;
};
// Removes every registered temporary file; async-signal-safe (unlink only), for signal handlers.
void remove_temp_files_now();
// Writes all n bytes to fd (retrying short writes); on failure closes fd, removes path and throws.
void write_all_or_fail(int fd, const void* data, size_t n, const std::string& path);
// One writer per output folder: an advisory lock (flock) on DIR/.PROG.lock, held while the object
// lives and released by the kernel however the process ends (kill -9 included); the file holds the
// pid, so a second run of prog into dir refuses, naming it.
class DirLock {
 public:
  DirLock(const std::string& dir, const std::string& prog);
  ~DirLock();
  DirLock(const DirLock&) = delete;
  DirLock& operator=(const DirLock&) = delete;

 private:
  int fd_ = -1;
};
// The index of the first NaN or infinity in v[0..n), or -1 (every reader of numbers checks with it).
int64_t first_non_finite(const float* v, int64_t n);
std::string path_join(const std::string& a, const std::string& b);
std::string basename_of(const std::string& path);
std::string dirname_of(const std::string& path);
std::string lower(std::string s);
bool ends_with(const std::string& s, const std::string& suffix);
bool starts_with(const std::string& s, const std::string& prefix);
std::vector<std::string> split(const std::string& s, char sep);
std::string human_bytes(double bytes);
std::string human_time(double seconds);

// Little-endian byte writer/reader for the project's binary formats.
struct ByteWriter {
  std::vector<uint8_t> buf;
  void raw(const void* p, size_t n) {
    const uint8_t* b = (const uint8_t*)p;
    buf.insert(buf.end(), b, b + n);
  }
  void u8(uint8_t v) { buf.push_back(v); }
  void u32(uint32_t v) { raw(&v, 4); }
  void i32(int32_t v) { raw(&v, 4); }
  void u64(uint64_t v) { raw(&v, 8); }
  void i64(int64_t v) { raw(&v, 8); }
  void f32(float v) { raw(&v, 4); }
  void f64(double v) { raw(&v, 8); }
  void str(const std::string& s, size_t fixed) {  // fixed-width, zero padded
    std::string t = s.substr(0, fixed);
    raw(t.data(), t.size());
    for (size_t i = t.size(); i < fixed; i++) buf.push_back(0);
  }
  void pad_to(size_t align) {
    while (buf.size() % align) buf.push_back(0);
  }
};

struct ByteReader {
  const uint8_t* p;
  size_t n, pos = 0;
  std::string what;  // file name for messages
  ByteReader(const uint8_t* p_, size_t n_, std::string what_) : p(p_), n(n_), what(std::move(what_)) {}
  void need(size_t k) {
    if (k > n || pos > n - k)
      fail("%s: file is truncated (needed %zu more bytes at offset %zu, file has %zu); re-create or re-download it",
           what.c_str(), k, pos, n);
  }
  void raw(void* out, size_t k) {
    need(k);
    for (size_t i = 0; i < k; i++) ((uint8_t*)out)[i] = p[pos + i];
    pos += k;
  }
  const uint8_t* take(size_t k) {
    need(k);
    const uint8_t* r = p + pos;
    pos += k;
    return r;
  }
  uint8_t u8() { uint8_t v; raw(&v, 1); return v; }
  uint32_t u32() { uint32_t v; raw(&v, 4); return v; }
  int32_t i32() { int32_t v; raw(&v, 4); return v; }
  uint64_t u64() { uint64_t v; raw(&v, 8); return v; }
  int64_t i64() { int64_t v; raw(&v, 8); return v; }
  float f32() { float v; raw(&v, 4); return v; }
  double f64() { double v; raw(&v, 8); return v; }
  std::string str(size_t fixed) {
    const uint8_t* s = take(fixed);
    size_t len = 0;
    while (len < fixed && s[len]) len++;
    return std::string((const char*)s, len);
  }
};

uint32_t crc32_of(const void* data, size_t bytes, uint32_t crc = 0);

// Deterministic random numbers: splitmix64 for seeding, and a counter-based hash used where
// the CPU and the GPU must draw the same numbers (dropout masks).
static inline uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed) {}
  uint64_t next() { return splitmix64(s); }
  // uniform in [0, 1) with 24 random bits
  float uniform() { return (float)(next() >> 40) * (1.0f / 16777216.0f); }
  double uniform64() { return (double)(next() >> 11) * (1.0 / 9007199254740992.0); }
  uint64_t below(uint64_t n) { return next() % n; }
};

}  // namespace tl
