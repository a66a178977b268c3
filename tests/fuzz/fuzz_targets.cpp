// libFuzzer harnesses, one per parser of untrusted files; this file is compiled once per target
// with -DFUZZ_<TARGET> (see `make fuzz`). Any input must end in a result or a tl::Error: never a
// crash, a hang, an out-of-bounds access, undefined behaviour or a huge allocation (run under
// ASan+UBSan with -rss_limit_mb / -malloc_limit_mb).
//
// Where a format carries a checksum or its own total size, the harness rewrites them from the
// mutated bytes first, so that the fuzzer's inputs get past those checks to the parsing behind them
// (the checks themselves are covered by the unit tests).
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "host/core/common.h"

#if defined(FUZZ_WEIGHTS_H5) || defined(FUZZ_WEIGHTS_TORCH) || defined(FUZZ_WEIGHTS_NPZ) || defined(FUZZ_ONNX)
#include "tools/convert/convert.h"
#endif
#if defined(FUZZ_ZIP)
#include "host/io/zip.h"
#endif
#if defined(FUZZ_NPY)
#include "host/io/npy.h"
#endif
#if defined(FUZZ_RAW_WEIGHTS)
#include "host/io/weights.h"
#endif
#if defined(FUZZ_SHARD)
#include "host/io/shard.h"
#endif
#if defined(FUZZ_MANIFEST)
#include "host/stages/cache.h"
#endif
#if defined(FUZZ_MODEL)
#include "host/model/head.h"
#endif
#if defined(FUZZ_IMAGE)
#include "host/io/image.h"
#endif

namespace {

// The input as a file: a memfd, named through /proc (no disk traffic, one per process).
std::string as_file(const uint8_t* data, size_t size) {
  static int fd = -1;
  if (fd < 0) fd = memfd_create("fuzz_input", 0);
  if (fd < 0) __builtin_trap();
  if (ftruncate(fd, 0) != 0 || (size && pwrite(fd, data, size, 0) != (ssize_t)size)) __builtin_trap();
  return "/proc/self/fd/" + std::to_string(fd);
}

[[maybe_unused]] void put_u64(std::vector<uint8_t>& b, size_t at, uint64_t v) {
  if (b.size() >= at + 8) memcpy(b.data() + at, &v, 8);
}
// The last 4 bytes: crc32 of everything before them (the engine's formats end this way).
[[maybe_unused]] void fix_crc(std::vector<uint8_t>& b) {
  if (b.size() < 4) return;
  const uint32_t c = tl::crc32_of(b.data(), b.size() - 4);
  memcpy(b.data() + b.size() - 4, &c, 4);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<uint8_t> b(data, data + size);
  try {
#if defined(FUZZ_WEIGHTS_H5) || defined(FUZZ_WEIGHTS_TORCH) || defined(FUZZ_WEIGHTS_NPZ) || defined(FUZZ_ONNX)
    // The whole converter: format detection, the format's reader, the VGG checks.
    const tl::Preprocess pre = tl::Preprocess::CaffeBGR;
    tl::WeightsFormat fmt;
    tl::VggWeights w = tl::convert_weights(as_file(b.data(), b.size()), &pre, &fmt);
    if (w.layers.empty()) __builtin_trap();
#elif defined(FUZZ_ZIP)
    tl::ZipReader z(as_file(b.data(), b.size()));
    for (const tl::ZipEntry& e : z.entries()) {
      std::vector<uint8_t> out = z.read(e, 1 << 20);
      if (out.size() != e.size) __builtin_trap();
    }
#elif defined(FUZZ_NPY)
    tl::NpyArray a = tl::parse_npy(b, "fuzz.npy");
    std::vector<float> v = a.to_f32("fuzz.npy");
    if ((int64_t)v.size() != a.h.numel()) __builtin_trap();
    tl::MappedNpy m(as_file(data, size));
    if (m.header().numel() != a.h.numel()) __builtin_trap();
#elif defined(FUZZ_RAW_WEIGHTS)
    put_u64(b, 48, b.size());  // total size
    fix_crc(b);
    tl::VggWeights w = tl::parse_weights(b, "fuzz.bin");
    (void)tl::weights_fingerprint(w);
#elif defined(FUZZ_SHARD)
    put_u64(b, 80, b.size());
    fix_crc(b);
    tl::MappedShard s(as_file(b.data(), b.size()), true);
    std::vector<uint32_t> sk = s.skipped();
    std::vector<std::string> rs = s.reasons();
    if (sk.size() != rs.size()) __builtin_trap();
    std::vector<float> f((size_t)s.info().feature_elems());
    for (uint32_t i = 0; i < s.info().count && i < 4; i++) s.feature_f32(i, f.data());
#elif defined(FUZZ_MANIFEST)
    // The settings hash line is recomputed from the (mutated) settings lines.
    std::string text(b.begin(), b.end()), out;
    tl::CacheSettings st;
    for (const std::string& line : tl::split(text, '\n')) {
      std::vector<std::string> f = tl::split(line, '\t');
      if (f.size() == 3 && f[0] == "# setting" && f[1] != "settings_hash") st.kv[f[1]] = f[2];
    }
    for (const std::string& line : tl::split(text, '\n')) {
      if (tl::starts_with(line, "# setting\tsettings_hash\t"))
        out += tl::strfmt("# setting\tsettings_hash\t%016llx", (unsigned long long)st.hash());
      else
        out += line;
      out += "\n";
    }
    static const std::string dir = [] {
      std::string d = tl::strfmt("/dev/shm/tl_fuzz_manifest_%d", (int)getpid());
      tl::make_dirs(d);
      atexit([] { system(tl::strfmt("rm -rf /dev/shm/tl_fuzz_manifest_%d", (int)getpid()).c_str()); });
      return d;
    }();
    tl::write_file_atomic(dir + "/manifest.tsv", out.data(), out.size());
    tl::Manifest m = tl::read_manifest(dir);
    if (m.classes.size() != 2) __builtin_trap();
    for (const tl::ManifestEntry& e : m.entries)
      if (e.label < 0 || e.label > 1) __builtin_trap();
#elif defined(FUZZ_MODEL)
    put_u64(b, 56, b.size());
    fix_crc(b);
    tl::ModelFile m = tl::load_model(as_file(b.data(), b.size()));
    // The head's six tensors, then w and b of each fine-tuned conv layer (format 2).
    if (m.params.size() != 6 + 2 * m.convs.size()) __builtin_trap();
    if (!m.opt_state.empty() && m.opt_state.size() != m.params.size()) __builtin_trap();
#elif defined(FUZZ_IMAGE)
    tl::Image img = tl::decode_image(b.data(), b.size(), "fuzz", 1 << 22);
    if (img.w <= 0 || img.h <= 0 || img.rgb.size() != (size_t)img.w * img.h * 3) __builtin_trap();
#else
#error "define one FUZZ_<TARGET>"
#endif
  } catch (const tl::Error&) {
  }
  return 0;
}
