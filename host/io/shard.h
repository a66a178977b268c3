// shard.h: activation shards, the cache's files (format in docs/FORMATS.md).
//
// A shard holds the features of a fixed range of one split's files (by manifest order): for
// every sample its label, its id (index into the manifest's file list) and its features; plus the
// ids and reasons of files in the range that could not be used. Shards are written to a
// temporary name, fsynced and renamed, so a crash leaves only whole shards.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "host/io/dataset.h"
#include "host/core/tensor.h"

namespace tl {

constexpr char kShardMagic[8] = {'T', 'L', 'S', 'H', 'A', 'R', 'D', '\0'};
constexpr uint32_t kShardVersion = 1;

struct ShardInfo {
  DType dtype = DType::F32;  // F32 or F16
  uint32_t count = 0;        // samples stored
  uint32_t feat_h = 0, feat_w = 0, feat_c = 0;
  Split split = Split::Train;
  uint32_t index = 0;        // shard number within its split
  uint32_t range_count = 0;  // files in the range (count + skipped)
  uint64_t first_pos = 0;    // position of the range's first file in the split's file list
  uint64_t settings_hash = 0;
  int64_t feature_elems() const { return (int64_t)feat_h * feat_w * feat_c; }
};

struct ShardData {
  ShardInfo info;
  std::vector<uint8_t> labels;      // [count]
  std::vector<uint32_t> ids;        // [count]
  std::vector<uint32_t> skipped;    // ids of unusable files in the range
  std::vector<std::string> reasons; // one per skipped id (single line each)
  std::vector<uint8_t> features;    // [count][h][w][c] in info.dtype
};

std::string shard_file_name(Split s, uint32_t index);  // "train-00003.bin"
void write_shard(const std::string& path, const ShardData& d);  // atomic

// A shard mapped read-only; every check of the format is done on open (crc32 included unless
// verify is false). Errors name the file and the fix.
class MappedShard {
 public:
  MappedShard(const std::string& path, bool verify = true);
  ~MappedShard();
  MappedShard(MappedShard&& o) noexcept;
  MappedShard(const MappedShard&) = delete;
  MappedShard& operator=(const MappedShard&) = delete;
  const ShardInfo& info() const { return info_; }
  const uint8_t* labels() const { return labels_; }
  const uint32_t* ids() const { return ids_; }
  const void* features() const { return features_; }
  std::vector<uint32_t> skipped() const;
  std::vector<std::string> reasons() const;
  // Sample i's features as float32 (converting from fp16 when needed).
  void feature_f32(uint32_t i, float* out) const;
  const std::string& path() const { return path_; }
  uint32_t crc() const { return crc_; }

 private:
  std::string path_;
  const uint8_t* map_ = nullptr;
  size_t size_ = 0;
  ShardInfo info_;
  const uint8_t* labels_ = nullptr;
  const uint32_t* ids_ = nullptr;
  const uint32_t* skipped_ = nullptr;
  const char* reasons_ = nullptr;
  uint64_t reasons_bytes_ = 0;
  const void* features_ = nullptr;
  uint32_t n_skipped_ = 0, crc_ = 0;
};

}  // namespace tl
