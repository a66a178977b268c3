#include "host/io/zip.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cstring>

#include "host/core/common.h"

namespace tl {

namespace {
uint16_t rd16(const uint8_t* p) { return (uint16_t)(p[0] | (p[1] << 8)); }
uint32_t rd32(const uint8_t* p) { return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24); }
uint64_t rd64(const uint8_t* p) { return (uint64_t)rd32(p) | ((uint64_t)rd32(p + 4) << 32); }
}  // namespace

bool ZipReader::looks_like_zip(const uint8_t* p, size_t n) {
  return n >= 4 && p[0] == 'P' && p[1] == 'K' && ((p[2] == 3 && p[3] == 4) || (p[2] == 5 && p[3] == 6));
}

void ZipReader::pread_all(void* dst, uint64_t bytes, uint64_t offset) const {
  if (offset > file_size_ || bytes > file_size_ - offset)
    fail("%s: zip archive is truncated or corrupt (wants bytes %llu..%llu of %llu)", path_.c_str(),
         (unsigned long long)offset, (unsigned long long)(offset + bytes), (unsigned long long)file_size_);
  uint8_t* d = (uint8_t*)dst;
  while (bytes > 0) {
    ssize_t r = pread(fd_, d, bytes > (1u << 30) ? (1u << 30) : bytes, (off_t)offset);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) fail("%s: read error in zip archive (%s)", path_.c_str(), r < 0 ? strerror(errno) : "unexpected end");
    d += r;
    bytes -= (uint64_t)r;
    offset += (uint64_t)r;
  }
}

ZipReader::ZipReader(const std::string& path) : path_(path) {
  fd_ = open(path.c_str(), O_RDONLY);
  if (fd_ < 0) fail("%s: cannot open (%s)", path.c_str(), strerror(errno));
  struct stat st;
  if (fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd_);
    fd_ = -1;
    fail("%s: not a regular file", path.c_str());
  }
  file_size_ = (uint64_t)st.st_size;
  try {
    // End of central directory: within the last 64 KiB + 22 bytes (the comment is at most 65535).
    const uint64_t tail = std::min<uint64_t>(file_size_, 65535 + 22);
    if (tail < 22) fail("%s: not a zip archive (too short)", path.c_str());
    std::vector<uint8_t> buf(tail);
    pread_all(buf.data(), tail, file_size_ - tail);
    int64_t eocd = -1;
    for (int64_t i = (int64_t)tail - 22; i >= 0; i--)
      if (rd32(&buf[i]) == 0x06054b50u) {
        eocd = i;
        break;
      }
    if (eocd < 0) fail("%s: not a zip archive, or truncated (no end-of-central-directory record)", path.c_str());
    const uint8_t* e = &buf[eocd];
    uint64_t count = rd16(e + 10), cd_size = rd32(e + 12), cd_off = rd32(e + 16);
    const uint64_t eocd_pos = file_size_ - tail + (uint64_t)eocd;
    if ((count == 0xFFFF || cd_size == 0xFFFFFFFFu || cd_off == 0xFFFFFFFFu) && eocd_pos >= 20) {
      uint8_t loc[20];
      pread_all(loc, 20, eocd_pos - 20);
      if (rd32(loc) == 0x07064b50u) {  // ZIP64 end of central directory locator
        uint8_t z[56];
        pread_all(z, 56, rd64(loc + 8));
        if (rd32(z) != 0x06064b50u) fail("%s: corrupt ZIP64 end-of-central-directory record", path.c_str());
        count = rd64(z + 32);
        cd_size = rd64(z + 40);
        cd_off = rd64(z + 48);
      }
    }
    if (cd_off > file_size_ || cd_size > file_size_ - cd_off)
      fail("%s: zip central directory lies outside the file (truncated download?)", path.c_str());
    // Each central-directory record takes at least 46 bytes: a larger count is a lie (checked
    // before anything is reserved for it).
    if (count > cd_size / 46)
      fail("%s: corrupt zip archive (%llu entries cannot fit in a %llu-byte central directory)", path.c_str(),
           (unsigned long long)count, (unsigned long long)cd_size);
    std::vector<uint8_t> cd(cd_size);
    pread_all(cd.data(), cd_size, cd_off);
    size_t pos = 0;
    entries_.reserve(count);
    for (uint64_t i = 0; i < count; i++) {
      if (pos + 46 > cd.size() || rd32(&cd[pos]) != 0x02014b50u)
        fail("%s: corrupt zip central directory at entry %llu", path.c_str(), (unsigned long long)i);
      const uint8_t* h = &cd[pos];
      ZipEntry z;
      z.flags = rd16(h + 8);
      z.method = rd16(h + 10);
      z.crc = rd32(h + 16);
      z.compressed_size = rd32(h + 20);
      z.size = rd32(h + 24);
      const size_t nlen = rd16(h + 28), xlen = rd16(h + 30), clen = rd16(h + 32);
      z.local_offset = rd32(h + 42);
      if (pos + 46 + nlen + xlen + clen > cd.size()) fail("%s: corrupt zip central directory", path.c_str());
      z.name.assign((const char*)h + 46, nlen);
      // ZIP64 extra field: the 64-bit values present are those whose 32-bit field is all ones.
      const uint8_t* x = h + 46 + nlen;
      for (size_t xp = 0; xp + 4 <= xlen;) {
        const uint16_t id = rd16(x + xp), sz = rd16(x + xp + 2);
        if (xp + 4 + sz > xlen) break;
        if (id == 0x0001) {
          const uint8_t* v = x + xp + 4;
          size_t vp = 0;
          if (z.size == 0xFFFFFFFFu && vp + 8 <= sz) z.size = rd64(v + vp), vp += 8;
          if (z.compressed_size == 0xFFFFFFFFu && vp + 8 <= sz) z.compressed_size = rd64(v + vp), vp += 8;
          if (z.local_offset == 0xFFFFFFFFu && vp + 8 <= sz) z.local_offset = rd64(v + vp), vp += 8;
        }
        xp += 4 + sz;
      }
      entries_.push_back(std::move(z));
      pos += 46 + nlen + xlen + clen;
    }
    refuse_duplicate_names();
  } catch (...) {
    close(fd_);
    fd_ = -1;
    throw;
  }
}

// Two entries of one name: readers disagree on which one counts (Python's zipfile and unzip take the
// last), so an archive holding them is refused rather than read one way.
void ZipReader::refuse_duplicate_names() const {
  std::vector<const std::string*> names;
  names.reserve(entries_.size());
  for (const ZipEntry& e : entries_) names.push_back(&e.name);
  std::sort(names.begin(), names.end(), [](const std::string* a, const std::string* b) { return *a < *b; });
  for (size_t i = 1; i < names.size(); i++)
    if (*names[i] == *names[i - 1])
      fail("%s: the zip archive holds two entries named %s (readers differ on which one counts); repack it "
           "with each name once",
           path_.c_str(), names[i]->c_str());
}

ZipReader::~ZipReader() {
  if (fd_ >= 0) close(fd_);
}

const ZipEntry* ZipReader::find(const std::string& name) const {
  for (auto& e : entries_)
    if (e.name == name) return &e;
  return nullptr;
}

std::vector<uint8_t> ZipReader::read(const ZipEntry& e, uint64_t max_bytes) const {
  const char* p = path_.c_str();
  const char* n = e.name.c_str();
  if (e.flags & 1) fail("%s: entry %s is encrypted; unpack the archive with its password first", p, n);
  if (e.size > max_bytes)
    fail("%s: entry %s is %s uncompressed, over the limit of %s", p, n, human_bytes((double)e.size).c_str(),
         human_bytes((double)max_bytes).c_str());
  uint8_t lh[30];
  pread_all(lh, 30, e.local_offset);
  if (rd32(lh) != 0x04034b50u) fail("%s: corrupt local header for entry %s", p, n);
  const uint64_t data_off = e.local_offset + 30 + rd16(lh + 26) + rd16(lh + 28);
  // Sizes come from the archive: checked against the file (and deflate's largest ratio, about
  // 1032:1) before anything is allocated for them.
  if (data_off > file_size_ || e.compressed_size > file_size_ - data_off)
    fail("%s: entry %s is truncated or corrupt (its %llu compressed bytes run past the end of the archive)", p, n,
         (unsigned long long)e.compressed_size);
  if (e.method == 8 && e.size / 1032 > e.compressed_size + 1)
    fail("%s: entry %s is corrupt (%llu bytes cannot inflate to %llu)", p, n, (unsigned long long)e.compressed_size,
         (unsigned long long)e.size);
  std::vector<uint8_t> comp(e.compressed_size);
  pread_all(comp.data(), e.compressed_size, data_off);
  std::vector<uint8_t> out;
  if (e.method == 0) {
    if (e.compressed_size != e.size) fail("%s: entry %s: stored sizes disagree", p, n);
    out = std::move(comp);
  } else if (e.method == 8) {
    out.resize(e.size);
    z_stream zs = {};
    if (inflateInit2(&zs, -15) != Z_OK) fail("%s: zlib inflateInit failed", p);
    // zlib counts in 32-bit chunks; total_in/total_out are 64-bit on LP64.
    int rc = Z_OK;
    for (;;) {
      if (zs.avail_in == 0 && zs.total_in < comp.size()) {
        zs.next_in = comp.data() + zs.total_in;
        zs.avail_in = (uInt)std::min<uint64_t>(comp.size() - zs.total_in, 1u << 30);
      }
      if (zs.avail_out == 0 && zs.total_out < out.size()) {
        zs.next_out = out.data() + zs.total_out;
        zs.avail_out = (uInt)std::min<uint64_t>(out.size() - zs.total_out, 1u << 30);
      }
      rc = inflate(&zs, Z_NO_FLUSH);
      if (rc != Z_OK) break;  // Z_STREAM_END when done; Z_BUF_ERROR when stuck (truncated or too long)
    }
    const uint64_t out_done = zs.total_out;
    inflateEnd(&zs);
    if (rc != Z_STREAM_END || out_done != e.size)
      fail("%s: entry %s is corrupt (deflate data does not decode to %llu bytes)", p, n, (unsigned long long)e.size);
  } else {
    fail("%s: entry %s uses compression method %u; only stored (0) and deflate (8) are supported", p, n, e.method);
  }
  if (crc32_of(out.data(), out.size()) != e.crc) fail("%s: entry %s fails its CRC check (corrupt archive)", p, n);
  return out;
}

}  // namespace tl
