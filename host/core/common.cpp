#include "host/core/common.h"

#include <atomic>

#include <new>

#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <chrono>
#include <cmath>
#include <cstring>

namespace tl {

std::string current_exception_message() {
  try {
    throw;
  } catch (const Error& e) {
    return e.what();
  } catch (const std::bad_alloc&) {
    return "out of memory";
  } catch (const std::exception& e) {
    return std::string("unexpected error: ") + e.what();
  } catch (...) {
    return "unexpected error";
  }
}

std::string vstrfmt(const char* fmt, va_list ap) {
  va_list ap2;
  va_copy(ap2, ap);
  int n = vsnprintf(nullptr, 0, fmt, ap2);
  va_end(ap2);
  std::string s(n > 0 ? (size_t)n : 0, '\0');
  if (n > 0) vsnprintf(&s[0], (size_t)n + 1, fmt, ap);
  return s;
}

std::string strfmt(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  std::string s = vstrfmt(fmt, ap);
  va_end(ap);
  return s;
}

void fail(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  std::string s = vstrfmt(fmt, ap);
  va_end(ap);
  throw Error(s);
}

double now_s() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

std::vector<uint8_t> read_file(const std::string& path, const char* hint) {
  FILE* f = fopen(path.c_str(), "rb");
  if (!f)
    fail("%s: cannot open for reading (%s)%s%s", path.c_str(), strerror(errno), hint ? "; " : "", hint ? hint : "");
  std::vector<uint8_t> out;
  struct stat st;
  if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
    fclose(f);
    fail("%s: is a directory, expected a file", path.c_str());
  }
  if (st.st_size > 0) out.reserve((size_t)st.st_size);
  uint8_t buf[1 << 16];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) out.insert(out.end(), buf, buf + n);
  bool err = ferror(f);
  fclose(f);
  if (err) fail("%s: read error", path.c_str());
  return out;
}

bool file_exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

bool dir_exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

int64_t file_size(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return -1;
  return (int64_t)st.st_size;
}

void make_dirs(const std::string& path) {
  if (path.empty() || dir_exists(path)) return;
  std::string parent = dirname_of(path);
  if (!parent.empty() && parent != path && parent != "." && parent != "/") make_dirs(parent);
  if (mkdir(path.c_str(), 0755) != 0 && errno != EEXIST)
    fail("%s: cannot create directory (%s)", path.c_str(), strerror(errno));
}

void write_all_or_fail(int fd, const void* data, size_t n, const std::string& path) {
  const uint8_t* p = (const uint8_t*)data;
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      int e = errno;
      close(fd);
      unlink(path.c_str());
      fail("%s: write failed (%s)%s", path.c_str(), strerror(e), e == ENOSPC ? "; free some disk space" : "");
    }
    p += w;
    n -= (size_t)w;
  }
}

namespace {
// The registry of temporary files: fixed slots, so that a signal handler can walk it without
// allocating or locking. state: 0 free, 1 being filled, 2 holds a path, 3 being removed by the
// signal handler (the process is exiting).
constexpr int kTempSlots = 64;
char g_temp_path[kTempSlots][4096];
std::atomic<int> g_temp_state[kTempSlots];
}  // namespace

TempFileGuard::TempFileGuard(const std::string& tmp_path) {
  if (tmp_path.size() >= sizeof g_temp_path[0]) return;  // too long to register: left as before
  for (int i = 0; i < kTempSlots; i++) {
    int expect = 0;
    if (g_temp_state[i].compare_exchange_strong(expect, 1)) {
      memcpy(g_temp_path[i], tmp_path.c_str(), tmp_path.size() + 1);
      g_temp_state[i].store(2);
      slot_ = i;
      return;
    }
  }
}

TempFileGuard::~TempFileGuard() {
  int expect = 2;
  if (slot_ >= 0) g_temp_state[slot_].compare_exchange_strong(expect, 0);  // 3: the handler has it
}

void remove_temp_files_now() {
  for (int i = 0; i < kTempSlots; i++) {
    int expect = 2;  // 2 -> 3 first: a slot so taken cannot be freed and refilled while it is read
    if (g_temp_state[i].compare_exchange_strong(expect, 3)) unlink(g_temp_path[i]);
  }
}

void write_file_atomic(const std::string& path, const void* data, size_t bytes) {
  std::string tmp = path + ".tmp";
  TempFileGuard guard(tmp);
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) fail("%s: cannot open for writing (%s)", tmp.c_str(), strerror(errno));
  write_all_or_fail(fd, data, bytes, tmp);
  // Every failure below removes the temporary file: nothing half-written is left behind.
  if (fsync(fd) != 0 && errno != EINVAL) {
    int e = errno;
    close(fd);
    unlink(tmp.c_str());
    fail("%s: fsync failed (%s)", tmp.c_str(), strerror(e));
  }
  if (close(fd) != 0) {
    int e = errno;
    unlink(tmp.c_str());
    fail("%s: cannot write (%s)", tmp.c_str(), strerror(e));
  }
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    unlink(tmp.c_str());
    fail("%s: cannot rename %s into place (%s)%s", path.c_str(), tmp.c_str(), strerror(e),
         e == EISDIR || e == ENOTEMPTY || e == EEXIST ? "; it is a directory: give a file name" : "");
  }
}

std::string path_join(const std::string& a, const std::string& b) {
  if (a.empty()) return b;
  if (!b.empty() && b[0] == '/') return b;
  if (a.back() == '/') return a + b;
  return a + "/" + b;
}

std::string basename_of(const std::string& path) {
  size_t e = path.size();
  while (e > 1 && path[e - 1] == '/') e--;
  size_t s = path.rfind('/', e - 1);
  return s == std::string::npos ? path.substr(0, e) : path.substr(s + 1, e - s - 1);
}

std::string dirname_of(const std::string& path) {
  size_t e = path.size();
  while (e > 1 && path[e - 1] == '/') e--;
  size_t s = path.rfind('/', e - 1);
  if (s == std::string::npos) return ".";
  if (s == 0) return "/";
  return path.substr(0, s);
}

std::string lower(std::string s) {
  for (char& c : s) c = (char)tolower((unsigned char)c);
  return s;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.size() >= prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  for (size_t i = 0; i <= s.size(); i++) {
    if (i == s.size() || s[i] == sep) {
      out.push_back(s.substr(start, i - start));
      start = i + 1;
    }
  }
  return out;
}

std::string human_bytes(double b) {
  const char* units[] = {"B", "KB", "MB", "GB", "TB"};
  int u = 0;
  while (b >= 1000 && u < 4) {
    b /= 1000;
    u++;
  }
  return u == 0 ? strfmt("%.0f %s", b, units[u]) : strfmt("%.2f %s", b, units[u]);
}

std::string human_time(double s) {
  if (!(s >= 0) || s > 1e8) return "--:--";
  long t = (long)(s + 0.5);
  if (t >= 3600) return strfmt("%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
  return strfmt("%02ld:%02ld", t / 60, t % 60);
}

uint32_t crc32_of(const void* data, size_t bytes, uint32_t crc) {
  const uint8_t* p = (const uint8_t*)data;
  while (bytes > 0) {
    uInt chunk = bytes > (1u << 30) ? (1u << 30) : (uInt)bytes;
    crc = (uint32_t)crc32(crc, p, chunk);
    p += chunk;
    bytes -= chunk;
  }
  return crc;
}

int64_t first_non_finite(const float* v, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    if (!std::isfinite(v[i])) return i;
  return -1;
}

DirLock::DirLock(const std::string& dir, const std::string& prog) {
  const std::string path = path_join(dir, "." + prog + ".lock");
  fd_ = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) fail("%s: cannot create the lock file (%s)", path.c_str(), strerror(errno));
  if (flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int e = errno;
    char buf[32] = {0};
    ssize_t r = pread(fd_, buf, sizeof buf - 1, 0);
    close(fd_);
    fd_ = -1;
    const long pid = r > 0 ? strtol(buf, nullptr, 10) : 0;
    if (e == EWOULDBLOCK)
      fail("another %s is writing %s (pid %ld); wait for it to finish, stop it, or choose another --out", prog.c_str(),
           dir.c_str(), pid);
    fail("%s: cannot lock (%s)", path.c_str(), strerror(e));
  }
  const std::string pid = strfmt("%ld\n", (long)getpid());
  if (ftruncate(fd_, 0) != 0 || pwrite(fd_, pid.data(), pid.size(), 0) != (ssize_t)pid.size()) {
    // The lock holds without the pid; the message of a second run just cannot name it.
  }
}

DirLock::~DirLock() {
  if (fd_ >= 0) close(fd_);
}

}  // namespace tl
