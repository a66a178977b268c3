#include "host/stages/inspect.h"

#include <unistd.h>

#include "host/core/defaults.h"

#include <cmath>
#include <cstring>

#include "host/stages/cache.h"
#include "host/model/head.h"
#include "host/core/common.h"
#include "host/io/npy.h"
#include "host/io/shard.h"
#include "host/io/weights.h"
#include "host/ops/cpu_amx.h"
#include "host/ops/ops.h"

namespace tl {

namespace {

void inspect_weights(const std::string& path, FILE* out) {
  VggWeights w = load_weights(path);
  fprintf(out, "%s: tl weights, format version %u, %s\n", path.c_str(), kWeightsVersion, human_bytes((double)file_size(path)).c_str());
  fprintf(out, "  architecture   %s\n", w.arch.c_str());
  fprintf(out, "  preprocessing  %s: %s\n", preprocess_name(w.preprocess), preprocess_formula(w.preprocess).c_str());
  fprintf(out, "  origin         %s\n",
          w.synthetic ? strfmt("SYNTHETIC (seed %llu): not ImageNet weights", (unsigned long long)w.seed).c_str()
                      : "converted from published weights");
  const uint64_t fp = w.fingerprint ? w.fingerprint : weights_fingerprint(w);
  const KnownWeights* k = w.known.empty() ? identify_weights(w) : known_weights_by_key(w.known);
  fprintf(out, "  fingerprint    %016llx%s\n", (unsigned long long)fp, w.fingerprint ? "" : " (computed; not recorded in this older file)");
  fprintf(out, "  known as       %s\n", k ? strfmt("%s: %s", k->key, k->description).c_str() : "(not a release this engine knows)");
  fprintf(out, "  parameters     %lld\n", (long long)w.num_params());
  fprintf(out, "  output         %dx%dx%d for a %dx%d input\n", w.out_size(kTutorialImageSize),
          w.out_size(kTutorialImageSize), w.out_channels(), kTutorialImageSize, kTutorialImageSize);
  fprintf(out, "  crc32          %08x (verified)\n", w.crc);
  fprintf(out, "  %-14s %6s %6s %10s  %s\n", "layer", "in", "out", "params", "then");
  for (const ConvLayer& l : w.layers)
    fprintf(out, "  %-14s %6d %6d %10zu  %s\n", l.spec.name.c_str(), l.spec.cin, l.spec.cout, l.w.size() + l.b.size(),
            l.spec.pool_after ? "relu, maxpool 2x2" : "relu");
}

void inspect_shard(const std::string& path, FILE* out) {
  MappedShard sh(path, true);
  const ShardInfo& in = sh.info();
  int64_t per_label[2] = {0, 0};
  for (uint32_t i = 0; i < in.count; i++) per_label[sh.labels()[i]]++;
  fprintf(out, "%s: activation shard, format version %u, %s\n", path.c_str(), kShardVersion,
          human_bytes((double)file_size(path)).c_str());
  fprintf(out, "  split          %s (shard %u: files %llu..%llu of the split)\n", split_name(in.split), in.index,
          (unsigned long long)in.first_pos, (unsigned long long)(in.first_pos + in.range_count - 1));
  fprintf(out, "  samples        %u (label 0: %lld, label 1: %lld), %zu skipped\n", in.count, (long long)per_label[0],
          (long long)per_label[1], sh.skipped().size());
  fprintf(out, "  features       %ux%ux%u %s per sample\n", in.feat_h, in.feat_w, in.feat_c, dtype_name(in.dtype));
  fprintf(out, "  settings hash  %016llx\n", (unsigned long long)in.settings_hash);
  fprintf(out, "  crc32          %08x (verified)\n", sh.crc());
  if (in.count > 0) {
    std::vector<float> f((size_t)in.feature_elems());
    double sum = 0, mx = 0;
    int64_t zeros = 0;
    for (uint32_t i = 0; i < in.count; i++) {
      sh.feature_f32(i, f.data());
      for (float v : f) {
        sum += v;
        mx = std::max(mx, (double)v);
        zeros += v == 0.0f;
      }
    }
    const double n = (double)in.count * f.size();
    fprintf(out, "  values         mean %.4g, max %.4g, zero %.1f%%\n", sum / n, mx, 100.0 * zeros / n);
  }
  std::vector<uint32_t> sk = sh.skipped();
  std::vector<std::string> rs = sh.reasons();
  for (size_t i = 0; i < sk.size() && i < 10; i++) fprintf(out, "  skipped id %u: %s\n", sk[i], rs[i].c_str());
}

// Which conv this machine's CPU runs for features at this precision (absent: fp32).
void print_conv_path(const std::string& precision, FILE* out) {
  const Precision p = precision.empty() ? Precision::FP32 : parse_precision(precision);
  std::string path = "none: tf32 runs on GPUs only";
  if (p != Precision::TF32)
    path = p == Precision::BF16 && cpu::bf16_path() == cpu::Bf16Path::None ? "none (no AMX, no AVX512_BF16): use a GPU"
                                                                           : ops::conv_path(Device::CPU, p, false);
  fprintf(out, "  conv here      %s\n", path.c_str());
}

void inspect_model(const std::string& path, FILE* out) {
  ModelFile m = load_model(path);
  const HeadSpec& s = m.spec;
  fprintf(out, "%s: tl head model, format version %u, %s\n", path.c_str(), m.convs.empty() ? 1u : kModelVersion,
          human_bytes((double)file_size(path)).c_str());
  if (!m.convs.empty()) {
    int64_t n = 0;
    std::string names;
    for (const ConvLayerSpec& c : m.convs) {
      n += (int64_t)9 * c.cin * c.cout + c.cout;
      names += (names.empty() ? "" : ", ") + strfmt("%s %d->%d", c.name.c_str(), c.cin, c.cout);
    }
    fprintf(out, "  fine-tuned     %s (%lld parameters; the base's other layers keep the converted weights)\n",
            names.c_str(), (long long)n);
  }
  fprintf(out, "  layers         Flatten %dx%dx%d (%d) -> Dense %d relu -> Dropout %.2g -> Dense %d relu -> Dense 1 sigmoid\n",
          s.feat_h, s.feat_w, s.feat_c, s.in_dim(), s.hidden1, s.dropout, s.hidden2);
  fprintf(out, "  parameters     %lld%s\n", (long long)s.num_params(),
          m.opt_state.empty() ? "" : " (+ RMSprop state: resumable)");
  fprintf(out, "  crc32          %08x (verified)\n", m.crc);
  for (auto& [k, v] : m.meta) fprintf(out, "  %-14s %s\n", k.c_str(), v.c_str());
  print_conv_path(m.meta.count("precision") ? m.meta.at("precision") : "", out);
  const char* names[6] = {"dense/kernel", "dense/bias", "dense_1/kernel", "dense_1/bias", "dense_2/kernel", "dense_2/bias"};
  for (int i = 0; i < 6; i++) {
    double sum = 0, sq = 0;
    for (float v : m.params[i]) sum += v, sq += (double)v * v;
    const double n = (double)m.params[i].size();
    fprintf(out, "  %-14s %9zu values, mean %+.4g, rms %.4g\n", names[i], m.params[i].size(), sum / n, std::sqrt(sq / n));
  }
}

void inspect_cache(const std::string& dir, FILE* out) {
  Cache c = open_cache(dir, true);
  const Manifest& m = c.manifest;
  int64_t skipped = 0;
  for (auto& e : m.entries) skipped += starts_with(e.status, "skipped");
  uint64_t bytes = 0;
  size_t nshards = 0;
  for (int s = 0; s < 2; s++)
    for (auto& sh : c.shards[s]) {
      bytes += (uint64_t)file_size(sh.path());
      nshards++;
    }
  fprintf(out, "%s: activation cache, %zu shards, %s, every crc32 verified\n", dir.c_str(), nshards,
          human_bytes((double)bytes).c_str());
  size_t other = 0;  // a part of a partitioned cache (tl_cache --part) lists the other parts' files too
  for (auto& e : m.entries) other += e.status == "other part";
  fprintf(out, "  files          %zu listed, %lld cached (train %lld, valid %lld), %lld skipped%s\n", m.entries.size(),
          (long long)(c.count(Split::Train) + c.count(Split::Valid)), (long long)c.count(Split::Train),
          (long long)c.count(Split::Valid), (long long)skipped,
          other ? strfmt(", %zu in the other parts (this is part %s; tl_cache --merge joins them)", other,
                         m.settings.get("part").c_str()).c_str() : "");
  fprintf(out, "  classes        %s=0, %s=1\n", m.classes[0].c_str(), m.classes[1].c_str());
  for (auto& [k, v] : m.settings.kv)
    if (k != "classes") fprintf(out, "  %-14s %s\n", k.c_str(), v.c_str());
  print_conv_path(m.settings.get("precision"), out);
  int shown = 0;
  for (auto& e : m.entries)
    if (starts_with(e.status, "skipped") && shown++ < 10) fprintf(out, "  %s: %s\n", e.rel.c_str(), e.status.c_str());
}

}  // namespace

void inspect_path(const std::string& path, FILE* out) {
  if (dir_exists(path)) {
    if (!file_exists(path_join(path, "manifest.tsv"))) fail("%s: a directory, but not a cache (no manifest.tsv)", path.c_str());
    return inspect_cache(path, out);
  }
  if (!file_exists(path)) fail("%s: not found", path.c_str());
  if (basename_of(path) == "manifest.tsv") return inspect_cache(dirname_of(path), out);
  char magic[8] = {0};
  FILE* f = fopen(path.c_str(), "rb");
  if (!f) fail("%s: cannot open", path.c_str());
  size_t n = fread(magic, 1, 8, f);
  fclose(f);
  if (n == 8 && memcmp(magic, kWeightsMagic, 8) == 0) return inspect_weights(path, out);
  if (n == 8 && memcmp(magic, kShardMagic, 8) == 0) return inspect_shard(path, out);
  if (n == 8 && memcmp(magic, kModelMagic, 8) == 0) return inspect_model(path, out);
  fail("%s: not a file this project writes (unknown magic)", path.c_str());
}

namespace {

// Streams the samples of some shards into three .npy files (features float32 N x h x w x c,
// labels uint8, ids int32), without holding all features in memory.
void export_shards(const std::vector<const MappedShard*>& shards, const std::string& prefix) {
  if (shards.empty()) return;
  const ShardInfo& f0 = shards[0]->info();
  int64_t n = 0;
  for (auto* s : shards) n += s->info().count;
  std::vector<int64_t> shape = {n, f0.feat_h, f0.feat_w, f0.feat_c};
  const std::string fpath = prefix + "_features.npy";
  std::vector<uint8_t> hdr = npy_header_bytes("<f4", shape);
  std::string tmp = fpath + ".tmp";
  TempFileGuard guard(tmp);  // removed by a second Ctrl-C too
  FILE* out = fopen(tmp.c_str(), "wb");
  if (!out) fail("%s: cannot open for writing", tmp.c_str());
  fwrite(hdr.data(), 1, hdr.size(), out);
  std::vector<float> buf((size_t)f0.feature_elems());
  std::vector<uint8_t> labels;
  std::vector<int32_t> ids;
  for (auto* s : shards) {
    for (uint32_t i = 0; i < s->info().count; i++) {
      s->feature_f32(i, buf.data());
      if (fwrite(buf.data(), 4, buf.size(), out) != buf.size()) {
        fclose(out);
        unlink(tmp.c_str());
        fail("%s: write failed (disk full?)", tmp.c_str());
      }
      labels.push_back(s->labels()[i]);
      ids.push_back((int32_t)s->ids()[i]);
    }
  }
  if (fclose(out) != 0) {
    unlink(tmp.c_str());
    fail("%s: write failed", tmp.c_str());
  }
  if (rename(tmp.c_str(), fpath.c_str()) != 0) {
    unlink(tmp.c_str());
    fail("%s: cannot rename into place", fpath.c_str());
  }
  write_npy_u8(prefix + "_labels.npy", labels.data(), {n});
  write_npy_i32(prefix + "_ids.npy", ids.data(), {n});
  printf("wrote %s (%lld x %u x %u x %u float32), %s_labels.npy, %s_ids.npy\n", fpath.c_str(), (long long)n, f0.feat_h,
         f0.feat_w, f0.feat_c, prefix.c_str(), prefix.c_str());
}

}  // namespace

void export_npy_files(const std::string& src, const std::string& prefix) {
  if (dir_exists(src)) {
    Cache c = open_cache(src, true);
    for (Split s : {Split::Train, Split::Valid}) {
      std::vector<const MappedShard*> v;
      for (auto& sh : c.shards[(int)s]) v.push_back(&sh);
      export_shards(v, prefix + "_" + split_name(s));
    }
    return;
  }
  MappedShard sh(src, true);
  export_shards({&sh}, prefix);
}

}  // namespace tl
