#include "host/io/shard.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include "host/core/common.h"
#include "host/ops/cpu_ops.h"

namespace tl {

namespace {
constexpr uint32_t kHeaderBytes = 128;
inline uint64_t align64(uint64_t v) { return (v + 63) / 64 * 64; }

struct Layout {
  uint64_t labels, ids, skipped, reasons, features, total;
};

Layout layout_of(uint32_t count, uint32_t n_skipped, uint64_t reasons_bytes, uint64_t feature_bytes) {
  Layout l;
  l.labels = kHeaderBytes;
  l.ids = align64(l.labels + count);
  l.skipped = align64(l.ids + 4ull * count);
  l.reasons = align64(l.skipped + 4ull * n_skipped);
  l.features = align64(l.reasons + reasons_bytes);
  l.total = l.features + feature_bytes + 4;
  return l;
}
}  // namespace

std::string shard_file_name(Split s, uint32_t index) { return strfmt("%s-%05u.bin", split_name(s), index); }

void write_shard(const std::string& path, const ShardData& d) {
  const ShardInfo& in = d.info;
  TL_ASSERT(d.labels.size() == in.count && d.ids.size() == in.count && d.reasons.size() == d.skipped.size());
  const size_t esz = dtype_size(in.dtype);
  TL_ASSERT(d.features.size() == (size_t)in.count * in.feature_elems() * esz);
  std::string reasons;
  for (size_t i = 0; i < d.skipped.size(); i++) {
    std::string r = d.reasons[i];
    for (char& c : r)
      if (c == '\n' || c == '\t') c = ' ';
    reasons += r + "\n";
  }
  const Layout L = layout_of(in.count, (uint32_t)d.skipped.size(), reasons.size(), d.features.size());
  ByteWriter h;
  h.raw(kShardMagic, 8);
  h.u32(kShardVersion);
  h.u32(kHeaderBytes);
  h.u32(in.dtype == DType::F16 ? 1u : 0u);
  h.u32(in.count);
  h.u32(in.feat_h);
  h.u32(in.feat_w);
  h.u32(in.feat_c);
  h.u32((uint32_t)in.split);
  h.u32(in.index);
  h.u32((uint32_t)d.skipped.size());
  h.u32(in.range_count);
  h.u32(0);
  h.u64(in.first_pos);
  h.u64(in.settings_hash);
  h.u64(reasons.size());
  h.u64(L.total);
  h.pad_to(kHeaderBytes);
  // Stream the sections (no second copy of the features), with the crc computed on the way.
  std::string tmp = path + ".tmp";
  TempFileGuard guard(tmp);  // removed by a second Ctrl-C too
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) fail("%s: cannot open for writing (%s)", tmp.c_str(), strerror(errno));
  uint32_t crc = 0;
  uint64_t written = 0;
  auto put = [&](const void* p, size_t n) {
    crc = crc32_of(p, n, crc);
    write_all_or_fail(fd, p, n, tmp);
    written += n;
  };
  static const uint8_t zeros[64] = {0};
  auto pad_to = [&](uint64_t pos) {
    TL_ASSERT(pos >= written && pos - written <= 64);
    if (pos > written) put(zeros, pos - written);
  };
  put(h.buf.data(), h.buf.size());
  put(d.labels.data(), d.labels.size());
  pad_to(L.ids);
  put(d.ids.data(), d.ids.size() * 4);
  pad_to(L.skipped);
  put(d.skipped.data(), d.skipped.size() * 4);
  pad_to(L.reasons);
  put(reasons.data(), reasons.size());
  pad_to(L.features);
  put(d.features.data(), d.features.size());
  uint32_t c = crc;
  put(&c, 4);
  TL_ASSERT(written == L.total);
  if (fsync(fd) != 0 && errno != EINVAL) {
    const int e = errno;
    close(fd);
    unlink(tmp.c_str());
    fail("%s: fsync failed (%s)", tmp.c_str(), strerror(e));
  }
  if (close(fd) != 0) {
    const int e = errno;
    unlink(tmp.c_str());
    fail("%s: cannot write (%s)", tmp.c_str(), strerror(e));
  }
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = errno;
    unlink(tmp.c_str());
    fail("%s: cannot rename into place (%s)", path.c_str(), strerror(e));
  }
}

MappedShard::MappedShard(const std::string& path, bool verify) : path_(path) {
  const char* f = path.c_str();
  int fd = open(f, O_RDONLY);
  if (fd < 0) fail("%s: cannot open (%s)", f, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    close(fd);
    fail("%s: cannot stat", f);
  }
  size_ = (size_t)st.st_size;
  if (size_ < kHeaderBytes + 4) {
    close(fd);
    fail("%s: truncated shard (%zu bytes); delete it and rerun tl_cache to rebuild it", f, size_);
  }
  void* m = mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd);
  if (m == MAP_FAILED) fail("%s: cannot map (%s)", f, strerror(errno));
  map_ = (const uint8_t*)m;
  try {
    ByteReader r(map_, size_, path);
    char magic[8];
    r.raw(magic, 8);
    if (memcmp(magic, kShardMagic, 8) != 0) fail("%s: not an activation shard (bad magic)", f);
    const uint32_t version = r.u32();
    if (version > kShardVersion) fail("%s: shard format version %u is newer than this build (%u)", f, version, kShardVersion);
    if (r.u32() != kHeaderBytes) fail("%s: corrupt shard header", f);
    const uint32_t dt = r.u32();
    if (dt > 1) fail("%s: unknown feature dtype %u", f, dt);
    info_.dtype = dt ? DType::F16 : DType::F32;
    info_.count = r.u32();
    info_.feat_h = r.u32();
    info_.feat_w = r.u32();
    info_.feat_c = r.u32();
    const uint32_t sp = r.u32();
    if (sp > 1) fail("%s: corrupt shard header (split %u)", f, sp);
    info_.split = (Split)sp;
    info_.index = r.u32();
    n_skipped_ = r.u32();
    info_.range_count = r.u32();
    r.u32();
    info_.first_pos = r.u64();
    info_.settings_hash = r.u64();
    reasons_bytes_ = r.u64();
    const uint64_t total = r.u64();
    // Readers allocate one sample's features (feature_elems) on trust of these: bounded like a model's.
    if (info_.feat_h == 0 || info_.feat_w == 0 || info_.feat_c == 0)
      fail("%s: corrupt shard header (empty feature shape %ux%ux%u)", f, info_.feat_h, info_.feat_w, info_.feat_c);
    if (info_.feat_h > 4096 || info_.feat_w > 4096 || info_.feat_c > 65536 || info_.count > (1u << 24) ||
        (uint64_t)info_.feat_h * info_.feat_w * info_.feat_c > (1u << 26) ||
        n_skipped_ > (1u << 24) || reasons_bytes_ > (1ull << 32) || (uint64_t)info_.count + n_skipped_ != info_.range_count)
      fail("%s: corrupt shard header", f);
    const uint64_t fbytes = (uint64_t)info_.count * info_.feature_elems() * dtype_size(info_.dtype);
    const Layout L = layout_of(info_.count, n_skipped_, reasons_bytes_, fbytes);
    if (total != L.total || size_ != L.total)
      fail("%s: shard is %zu bytes but its header implies %llu (truncated or damaged); delete it and rerun tl_cache",
           f, size_, (unsigned long long)L.total);
    if (verify) {
      crc_ = crc32_of(map_, size_ - 4);
      uint32_t stored;
      memcpy(&stored, map_ + size_ - 4, 4);
      if (crc_ != stored)
        fail("%s: shard checksum mismatch (stored %08x, computed %08x): corrupt; delete it and rerun tl_cache", f,
             stored, crc_);
    }
    labels_ = map_ + L.labels;
    ids_ = (const uint32_t*)(map_ + L.ids);
    skipped_ = (const uint32_t*)(map_ + L.skipped);
    reasons_ = (const char*)(map_ + L.reasons);
    features_ = map_ + L.features;
    for (uint32_t i = 0; i < info_.count; i++)
      if (labels_[i] > 1) fail("%s: sample %u has label %u; labels must be 0 or 1", f, i, labels_[i]);
  } catch (...) {
    munmap((void*)map_, size_);
    map_ = nullptr;
    throw;
  }
}

MappedShard::MappedShard(MappedShard&& o) noexcept
    : path_(std::move(o.path_)), map_(o.map_), size_(o.size_), info_(o.info_), labels_(o.labels_), ids_(o.ids_),
      skipped_(o.skipped_), reasons_(o.reasons_), reasons_bytes_(o.reasons_bytes_), features_(o.features_),
      n_skipped_(o.n_skipped_), crc_(o.crc_) {
  o.map_ = nullptr;
}

MappedShard::~MappedShard() {
  if (map_) munmap((void*)map_, size_);
}

std::vector<uint32_t> MappedShard::skipped() const { return std::vector<uint32_t>(skipped_, skipped_ + n_skipped_); }

std::vector<std::string> MappedShard::reasons() const {
  std::vector<std::string> out = split(std::string(reasons_, reasons_bytes_), '\n');
  if (!out.empty() && out.back().empty()) out.pop_back();
  out.resize(n_skipped_);
  return out;
}

void MappedShard::feature_f32(uint32_t i, float* out) const {
  TL_ASSERT(i < info_.count);
  const int64_t n = info_.feature_elems();
  if (info_.dtype == DType::F32) {
    memcpy(out, (const float*)features_ + (size_t)i * n, (size_t)n * 4);
  } else {
    const uint16_t* h = (const uint16_t*)features_ + (size_t)i * n;
    for (int64_t k = 0; k < n; k++) out[k] = cpu::float_from_half(h[k]);
  }
}

}  // namespace tl
