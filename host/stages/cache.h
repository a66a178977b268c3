// cache.h: the activation cache: a folder with manifest.tsv and shards (docs/FORMATS.md).
//
// build_cache() streams a dataset through the frozen VGG base into shards (tl_cache);
// open_cache() maps a finished cache for training and export (tl_train, tl_inspect).
#pragma once
#include "host/stages/input_options.h"
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "host/io/dataset.h"
#include "host/io/image.h"
#include "host/io/shard.h"
#include "host/core/tensor.h"
#include "host/io/weights.h"

namespace tl {

// The settings that determine a cache's bytes. Two runs with equal settings produce identical
// shards, so a cache is reused only when they match; anything else is refused (or rebuilt with
// --force), never silently mixed.
struct CacheSettings {
  std::map<std::string, std::string> kv;  // canonical key -> value
  uint64_t hash() const;
  std::string get(const std::string& key) const;  // "" when absent
  int get_int(const std::string& key) const;
  // The differences from another settings set, as "key: old -> new" (for the refusal message).
  std::string diff(const CacheSettings& newer) const;
};

struct ManifestEntry {
  uint32_t id = 0;
  Split split = Split::Train;
  int label = 0;
  uint64_t bytes = 0;
  int source = 0;
  std::string rel;
  std::string status = "pending";  // "ok", "skipped: <reason>" or "pending"
};

struct Manifest {
  CacheSettings settings;
  std::vector<std::string> classes;
  std::vector<std::string> sources;
  std::vector<ManifestEntry> entries;
};

void write_manifest(const std::string& dir, const Manifest& m);
Manifest read_manifest(const std::string& dir);  // dir/manifest.tsv

// The dataset and input settings (data, valid_data, weights, image_size, resize, valid_fraction,
// max_bad, seed, limit, max_pixels) come from DatasetInput, shared with tl_train --images.
struct CacheOptions : DatasetInput {
  CacheOptions() { data = "data/train"; }
  std::string out = "cache", dtype = "fp32", device = "auto";
  std::string until;  // --until: cache the activations after this pooling layer ("" = the whole base)
  int batch = 0;          // 0: default_base_batch(device)
  int threads = 0;        // CPU compute threads (0: all cores)
  int decode_threads = 0; // 0: automatic
  int shard_size = 512;
  bool force = false;
  // --part K/N (1 <= K <= N): only the files of part K of N (see part_of_file); N = 1: all of them.
  int part_k = 1, part_n = 1;
  // Tests: stop (as if interrupted) after this many shards have been written (0: never).
  int stop_after_shards = 0;
};

struct CacheSummary {
  int64_t files = 0, cached = 0, skipped = 0, reused_shards = 0, written_shards = 0;
  int64_t per_split[2] = {0, 0};
  double seconds = 0, images_per_s = 0;
  // Where the pipeline's time went (seconds of the main thread): the forward passes (on the GPU:
  // handing batches over, waiting for the previous one), waiting for decoded images, the rest
  // (copying inputs, assembling shards, waiting for the writer).
  double forward_s = 0, wait_decode_s = 0, pipeline_s = 0;
  bool interrupted = false;
};

// Runs the caching pass; returns its summary (interrupted when Ctrl-C or stop_after_shards).
CacheSummary build_cache(const CacheOptions& opt);

// Partitioned caching. A file's part (1..n) is a hash of its identity (class and file name, as the
// train/valid split, with another salt): every machine agrees without talking to the others, the
// part does not depend on where or how the dataset is stored, and adding files moves none.
int part_of_file(uint64_t seed, const std::string& cls, const std::string& rel, int n);
// "K/N", "auto" (Slurm job arrays: SLURM_ARRAY_TASK_ID, _MIN, _COUNT) or "auto/N" (Kubernetes
// indexed Jobs: JOB_COMPLETION_INDEX, 0-based) -> (k, n); *how says where it came from. env(name)
// returns the variable's value or nullptr.
void parse_part(const std::string& spec, const std::function<const char*(const char*)>& env, int* k, int* n,
                std::string* how);
// Joins the caches of parts 1..N (made with --part K/N and otherwise the same settings and data)
// into one cache in out: the same manifest and shards, byte for byte, as one run over all files.
// Missing, duplicated, incomplete or mismatched parts are refused with the reason.
void merge_caches(const std::string& out, const std::vector<std::string>& parts, bool force);

// A finished cache, mapped.
struct Cache {
  std::string dir;
  Manifest manifest;
  std::vector<MappedShard> shards[2];  // per split, in order
  int64_t count(Split s) const;
  int feat_h = 0, feat_w = 0, feat_c = 0;
  DType dtype = DType::F32;
  std::string cut;  // InputRecipe::cut: "" = the whole base
  int64_t feature_elems() const { return (int64_t)feat_h * feat_w * feat_c; }
};

// Opens dir (checks every shard's header, crc and that they all belong to this manifest and
// cover it completely). Errors say what is wrong and what to run.
Cache open_cache(const std::string& dir, bool verify = true);

}  // namespace tl
