// zip.h: a read-only ZIP archive reader on top of zlib: stored and deflated entries, ZIP64,
// CRC-checked; an archive with two entries of one name is refused. Used for .npz files, PyTorch's zip
// checkpoints and dataset archives (Kaggle's train.zip, Microsoft's PetImages zip), read in place
// without unpacking.
// Entries are read with pread, so several threads may read one archive at once.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace tl {

struct ZipEntry {
  std::string name;
  uint64_t compressed_size = 0, size = 0, local_offset = 0;
  uint32_t crc = 0;
  uint16_t method = 0, flags = 0;
  bool is_dir() const { return !name.empty() && name.back() == '/'; }
};

class ZipReader {
 public:
  explicit ZipReader(const std::string& path);  // throws tl::Error naming the path
  ~ZipReader();
  ZipReader(const ZipReader&) = delete;
  ZipReader& operator=(const ZipReader&) = delete;

  const std::vector<ZipEntry>& entries() const { return entries_; }
  const ZipEntry* find(const std::string& name) const;
  // Whole entry, inflated and CRC-checked. Entries larger than max_bytes are refused.
  std::vector<uint8_t> read(const ZipEntry& e, uint64_t max_bytes = (uint64_t)1 << 32) const;
  const std::string& path() const { return path_; }

  static bool looks_like_zip(const uint8_t* p, size_t n);  // starts with a local header or EOCD

 private:
  std::string path_;
  int fd_ = -1;
  uint64_t file_size_ = 0;
  std::vector<ZipEntry> entries_;
  void pread_all(void* dst, uint64_t bytes, uint64_t offset) const;
  void refuse_duplicate_names() const;
};

}  // namespace tl
