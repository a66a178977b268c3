#include "host/stages/cache.h"

#include "host/ops/ops.h"

#include "host/core/log.h"
#include "host/model/recipe.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>

#include "host/core/cli.h"
#include "host/core/common.h"
#include "host/model/features.h"
#include "host/io/loader.h"
#include "host/core/progress.h"
#include "host/core/threads.h"

namespace tl {

// ------------------------------------------------------------------------------------------------
// Settings and manifest

uint64_t CacheSettings::hash() const {
  uint64_t h = 0xcbf29ce484222325ull;
  for (auto& [k, v] : kv) {
    if (starts_with(k, "info.")) continue;  // recorded, but not part of the cache's identity
    // fp32 is what every cache made before --precision holds: left out, so their hashes (kept in
    // their shards) still match; tf32 and bf16 caches hash differently from fp32 ones.
    if (k == "precision" && v == "fp32") continue;
    for (char c : k + "=" + v + "\n") {
      h ^= (unsigned char)c;
      h *= 0x100000001b3ull;
    }
  }
  return h;
}

std::string CacheSettings::get(const std::string& key) const {
  auto it = kv.find(key);
  return it == kv.end() ? "" : it->second;
}

int CacheSettings::get_int(const std::string& key) const { return atoi(get(key).c_str()); }

std::string CacheSettings::diff(const CacheSettings& n) const {
  std::string out;
  std::vector<std::string> keys;
  for (auto& [k, v] : kv) keys.push_back(k);
  for (auto& [k, v] : n.kv)
    if (!kv.count(k)) keys.push_back(k);
  for (auto& k : keys) {
    // A cache made before --precision existed is fp32.
    auto val = [&](const CacheSettings& s) { return k == "precision" && s.get(k).empty() ? std::string("fp32") : s.get(k); };
    const std::string a = val(*this), b = val(n);
    if (starts_with(k, "info.") || a == b) continue;
    if (!out.empty()) out += "; ";
    if (k == "listing_hash")
      out += "the dataset's files changed";
    else
      out += k + ": " + (a.empty() ? "(none)" : a) + " -> " + (b.empty() ? "(none)" : b);
  }
  return out;
}

namespace {
std::string clean_field(std::string s) {
  for (char& c : s)
    if (c == '\t' || c == '\n' || c == '\r') c = ' ';
  return s;
}
}  // namespace

void write_manifest(const std::string& dir, const Manifest& m) {
  std::string out = "# tl-cache-manifest 1\n";
  out += "# The settings that produced this cache, then one line per file (read with pandas: comment='#').\n";
  for (auto& [k, v] : m.settings.kv) out += "# setting\t" + k + "\t" + clean_field(v) + "\n";
  out += "# setting\tsettings_hash\t" + strfmt("%016llx", (unsigned long long)m.settings.hash()) + "\n";
  for (size_t i = 0; i < m.classes.size(); i++) out += strfmt("# class\t%zu\t%s\n", i, clean_field(m.classes[i]).c_str());
  for (size_t i = 0; i < m.sources.size(); i++) out += strfmt("# source\t%zu\t%s\n", i, clean_field(m.sources[i]).c_str());
  out += "id\tsplit\tlabel\tclass\tbytes\tsource\tpath\tstatus\n";
  for (const ManifestEntry& e : m.entries)
    out += strfmt("%u\t%s\t%d\t%s\t%llu\t%d\t%s\t%s\n", e.id, split_name(e.split), e.label,
                  m.classes.at((size_t)e.label).c_str(), (unsigned long long)e.bytes, e.source, clean_field(e.rel).c_str(),
                  clean_field(e.status).c_str());
  write_file_atomic(path_join(dir, "manifest.tsv"), out.data(), out.size());
}

namespace {
// True when dir (or a folder up to three levels inside it) holds image files.
bool holds_images(const std::string& dir, int depth = 0) {
  DIR* d = opendir(dir.c_str());
  if (!d) return false;
  bool found = false;
  std::vector<std::string> subdirs;
  while (struct dirent* e = readdir(d)) {
    const std::string n = e->d_name;
    if (n == "." || n == "..") continue;
    std::string lower = n;
    for (char& c : lower) c = (char)tolower((unsigned char)c);
    if (ends_with(lower, ".jpg") || ends_with(lower, ".jpeg") || ends_with(lower, ".png")) {
      found = true;
      break;
    }
    if (depth < 3 && dir_exists(path_join(dir, n))) subdirs.push_back(path_join(dir, n));
  }
  closedir(d);
  for (size_t i = 0; !found && i < subdirs.size() && i < 16; i++) found = holds_images(subdirs[i], depth + 1);
  return found;
}
}  // namespace

Manifest read_manifest(const std::string& dir) {
  const std::string path = path_join(dir, "manifest.tsv");
  if (!file_exists(path)) {
    if (!dir_exists(dir)) fail("%s: no such cache folder; run ./tl_cache first (--out %s)", dir.c_str(), dir.c_str());
    if (holds_images(dir))
      fail("%s holds photos, not a cache: make a cache of them with ./tl_cache --data %s (then ./tl_train --cache "
           "cache), or train without a cache: ./tl_train --images %s",
           dir.c_str(), dir.c_str(), dir.c_str());
    fail("%s: missing: %s is not a finished cache; run ./tl_cache --out %s", path.c_str(), dir.c_str(), dir.c_str());
  }
  std::vector<uint8_t> bytes = read_file(path);
  std::string text(bytes.begin(), bytes.end());
  Manifest m;
  bool header_seen = false, magic = false;
  std::string stored_hash;
  size_t line_no = 0;
  auto check_classes = [&] {
    if (m.classes.size() != 2)
      fail("%s: lists %zu classes ('# class' lines), a cache has exactly 2: the file is damaged; re-create the cache "
           "with tl_cache --force",
           path.c_str(), m.classes.size());
  };
  for (const std::string& line : split(text, '\n')) {
    line_no++;
    if (line.empty()) continue;
    if (line_no == 1) {
      if (!starts_with(line, "# tl-cache-manifest ")) fail("%s: not a tl cache manifest", path.c_str());
      if (atoi(line.c_str() + 20) > 1) fail("%s: manifest format is newer than this build", path.c_str());
      magic = true;
      continue;
    }
    std::vector<std::string> f = split(line, '\t');
    if (line[0] == '#') {
      if (f.size() == 3 && f[0] == "# setting") {
        if (f[1] == "settings_hash")
          stored_hash = f[2];
        else
          m.settings.kv[f[1]] = f[2];
      } else if (f.size() == 3 && f[0] == "# class") {
        m.classes.push_back(f[2]);
      } else if (f.size() == 3 && f[0] == "# source") {
        m.sources.push_back(f[2]);
      }
      continue;
    }
    if (!header_seen) {
      header_seen = true;
      check_classes();  // the class lines come before the table
      continue;
    }
    if (f.size() != 8) fail("%s:%zu: malformed line (%zu fields, expected 8)", path.c_str(), line_no, f.size());
    ManifestEntry e;
    e.id = (uint32_t)strtoul(f[0].c_str(), nullptr, 10);
    e.split = f[1] == "valid" ? Split::Valid : Split::Train;
    e.label = atoi(f[2].c_str());
    e.bytes = strtoull(f[4].c_str(), nullptr, 10);
    e.source = atoi(f[5].c_str());
    e.rel = f[6];
    e.status = f[7];
    if (e.id != m.entries.size()) fail("%s:%zu: ids out of order", path.c_str(), line_no);
    if (e.label < 0 || e.label >= (int)m.classes.size()) fail("%s:%zu: label out of range", path.c_str(), line_no);
    m.entries.push_back(e);
  }
  if (!magic) fail("%s: empty manifest", path.c_str());
  check_classes();
  if (stored_hash != strfmt("%016llx", (unsigned long long)m.settings.hash()))
    fail("%s: the settings were edited by hand (their hash does not match); re-create the cache with tl_cache --force",
         path.c_str());
  return m;
}

int64_t Cache::count(Split s) const {
  int64_t n = 0;
  for (auto& sh : shards[(int)s]) n += sh.info().count;
  return n;
}

namespace {

// The status of a file that another part of a partitioned cache holds (--part).
const char* const kOtherPart = "other part";

// Shards of one split: ranges of `shard_size` files of the split, in manifest order (the files of
// this cache: a part's manifest lists every file, the other parts' marked as such).
std::vector<uint32_t> split_ids(const Manifest& m, Split s) {
  std::vector<uint32_t> ids;
  for (auto& e : m.entries)
    if (e.split == s && e.status != kOtherPart) ids.push_back(e.id);
  return ids;
}

void remove_cache_files(const std::string& dir, bool shards_too) {
  DIR* d = opendir(dir.c_str());
  if (!d) return;
  std::vector<std::string> names;
  while (struct dirent* e = readdir(d)) names.push_back(e->d_name);
  closedir(d);
  for (auto& n : names) {
    bool shard = (starts_with(n, "train-") || starts_with(n, "valid-")) && (ends_with(n, ".bin") || ends_with(n, ".tmp"));
    if (ends_with(n, ".tmp") || (shards_too && (shard || n == "manifest.tsv")))
      unlink(path_join(dir, n).c_str());
  }
}

}  // namespace

Cache open_cache(const std::string& dir, bool verify) {
  Cache c;
  c.dir = dir;
  c.manifest = read_manifest(dir);
  const CacheSettings& st = c.manifest.settings;
  const uint64_t hash = st.hash();
  const int shard_size = st.get_int("shard_size");
  if (shard_size <= 0) fail("%s: manifest has no shard_size setting", dir.c_str());
  const InputRecipe recipe = InputRecipe::read(st.kv, path_join(dir, "manifest.tsv"));
  c.feat_h = recipe.feat_h;
  c.feat_w = recipe.feat_w;
  c.feat_c = recipe.feat_c;
  c.dtype = recipe.dtype;
  c.cut = recipe.cut;
  for (Split s : {Split::Train, Split::Valid}) {
    const std::vector<uint32_t> ids = split_ids(c.manifest, s);
    const uint32_t n_shards = (uint32_t)((ids.size() + shard_size - 1) / shard_size);
    for (uint32_t k = 0; k < n_shards; k++) {
      const std::string p = path_join(dir, shard_file_name(s, k));
      if (!file_exists(p))
        fail("%s: missing: the cache is incomplete (%u of %u %s shards); rerun the same tl_cache command to finish it",
             p.c_str(), k, n_shards, split_name(s));
      MappedShard sh(p, verify);
      const ShardInfo& in = sh.info();
      if (in.settings_hash != hash)
        fail("%s: belongs to another cache (settings differ from %s/manifest.tsv); rebuild with tl_cache --force",
             p.c_str(), dir.c_str());
      if (in.split != s || in.index != k || in.first_pos != (uint64_t)k * shard_size)
        fail("%s: shard header does not match its name/position; rebuild with tl_cache --force", p.c_str());
      if ((int)in.feat_h != c.feat_h || (int)in.feat_w != c.feat_w || (int)in.feat_c != c.feat_c || in.dtype != c.dtype)
        fail("%s: feature shape/dtype differ from the manifest", p.c_str());
      for (uint32_t i = 0; i < in.count; i++) {
        const uint32_t id = sh.ids()[i];
        if (id >= c.manifest.entries.size() || c.manifest.entries[id].split != s ||
            c.manifest.entries[id].label != (int)sh.labels()[i])
          fail("%s: sample %u (id %u) disagrees with the manifest; rebuild with tl_cache --force", p.c_str(), i, id);
      }
      c.shards[(int)s].push_back(std::move(sh));
    }
  }
  return c;
}

// ------------------------------------------------------------------------------------------------
// Building

namespace {

std::string missing_data_hint(const std::string& data) {
  return strfmt(
      "%s is missing. Download the Kaggle 'Dogs vs. Cats' train.zip (https://www.kaggle.com/c/dogs-vs-cats/data, "
      "25,000 photos cat.N.jpg / dog.N.jpg) or Microsoft's PetImages (kagglecatsanddogs_5340.zip from "
      "https://www.microsoft.com/en-us/download/details.aspx?id=54765) and pass the zip itself (no unpacking "
      "needed): ./tl_cache --data train.zip; a folder works too (Kaggle layout, or cat/ and dog/ sub-folders)",
      data.c_str());
}

// The shard being filled.
struct OpenShard {
  ShardData d;
  uint32_t processed = 0;  // files of the range handled so far (cached or skipped)
};

// Writes finished shards on a thread of its own (at most two waiting), so the forward pass
// does not wait for the disk.
class ShardWriter {
 public:
  explicit ShardWriter(std::string dir) : dir_(std::move(dir)), t_([this] { loop(); }) {}
  ~ShardWriter() { close(); }
  void push(ShardData&& d) {
    std::unique_lock<std::mutex> lk(mu_);
    cv_.wait(lk, [&] { return q_.size() < 2 || error_; });
    if (error_) std::rethrow_exception(error_);
    q_.push_back(std::move(d));
    cv_.notify_all();
  }
  // Waits for the queue to drain; rethrows a write error.
  void close() {
    {
      std::unique_lock<std::mutex> lk(mu_);
      done_ = true;
      cv_.notify_all();
    }
    if (t_.joinable()) t_.join();
  }
  void check() {
    std::lock_guard<std::mutex> lk(mu_);
    if (error_) std::rethrow_exception(error_);
  }
  int written() const { return written_; }

 private:
  std::string dir_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<ShardData> q_;
  bool done_ = false;
  std::exception_ptr error_;
  std::atomic<int> written_{0};
  std::thread t_;
  void loop() {
    for (;;) {
      ShardData d;
      {
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, [&] { return !q_.empty() || done_; });
        if (q_.empty()) return;
        d = std::move(q_.front());
        q_.pop_front();
        cv_.notify_all();
      }
      try {
        write_shard(path_join(dir_, shard_file_name(d.info.split, d.info.index)), d);
        written_++;
      } catch (...) {
        std::lock_guard<std::mutex> lk(mu_);
        error_ = std::current_exception();
        cv_.notify_all();
        return;
      }
    }
  }
};

std::string strip_prefix(const std::string& msg, const std::string& prefix) {
  return starts_with(msg, prefix + ": ") ? msg.substr(prefix.size() + 2) : msg;
}

}  // namespace

namespace {

void validate_cache_options(const CacheOptions& opt) {
  if (opt.image_size < 1 || opt.image_size > 4096) fail("--image-size must be between 1 and 4096, got %d", opt.image_size);
  if (opt.shard_size < 1 || opt.shard_size > 1 << 20) fail("--shard-size must be between 1 and 1048576");
  if (!(opt.max_bad >= 0 && opt.max_bad <= 1)) fail("--max-bad must be a fraction in [0, 1], got %g", opt.max_bad);
  if (opt.batch < 0 || opt.batch > 4096) fail("--batch must be between 1 and 4096, got %d", opt.batch);
  if (opt.limit < 0) fail("--limit must be positive");
  apply_decode_limits(opt);
  if (opt.dtype != "fp32" && opt.dtype != "fp16") fail("--dtype: expected fp32 or fp16, got '%s'", opt.dtype.c_str());
  parse_resize(opt.resize);
  parse_precision(opt.precision);
  // What is missing, all at once, with what to do about it.
  std::vector<std::string> missing;
  if (!file_exists(opt.weights)) missing.push_back(opt.weights + " is missing. " + missing_weights_hint());
  if (!file_exists(opt.data) && !dir_exists(opt.data)) missing.push_back(missing_data_hint(opt.data));
  if (!opt.valid_data.empty() && !file_exists(opt.valid_data) && !dir_exists(opt.valid_data))
    missing.push_back(opt.valid_data + " (--valid-data) is missing");
  if (missing.size() == 1) fail("%s", missing[0].c_str());
  if (missing.size() > 1) {
    std::string all = "nothing to cache yet:";
    for (auto& m : missing) all += "\n  - " + m;
    fail("%s", all.c_str());
  }
}

// One caching run: its settings, plan, pipeline and summary.
class CacheBuild {
 public:
  explicit CacheBuild(const CacheOptions& opt) : opt_(opt), t_start_(now_s()) {
    if (opt.threads > 0) set_num_threads(opt.threads);
    device_ = resolve_device(opt.device, true);
    check_precision(parse_precision(opt.precision), device_);
    weights_ = load_weights(opt.weights);
    if (weights_.out_size(opt.image_size) < 1)
      fail("--image-size %d is too small for %s: its %d pools need at least %d pixels", opt.image_size,
           weights_.arch.c_str(), weights_.num_pools(), 1 << weights_.num_pools());
    recipe_ = InputRecipe::of(weights_, opt.weights, opt.image_size, parse_resize(opt.resize),
                              opt.dtype == "fp16" ? DType::F16 : DType::F32, parse_precision(opt.precision), opt.until);
    layers_ = weights_.layers_until(recipe_.cut);
    ScanOptions so;
    so.valid_fraction = opt.valid_fraction;
    so.seed = opt.seed;
    so.limit = opt.limit;
    ds_ = scan_dataset(opt.data, opt.valid_data, so);
    if (ds_.files.size() > 0xFFFFFFF0u) fail("%s: too many files", opt.data.c_str());
    if (opt.part_k < 1 || opt.part_k > opt.part_n) fail("--part %d/%d: K must be between 1 and N", opt.part_k, opt.part_n);
    make_manifest();
  }

  // An existing cache in --out is reused only when it was made with these settings.
  void prepare_out_dir() {
    make_dirs(opt_.out);
    lock_ = std::make_unique<DirLock>(opt_.out, "tl_cache");
    if (file_exists(path_join(opt_.out, "manifest.tsv"))) {
      std::string why;
      try {
        Manifest old = read_manifest(opt_.out);
        if (old.settings.hash() != hash_) why = old.settings.diff(m_.settings);
      } catch (const Error& e) {
        why = e.what();
      }
      if (!why.empty()) {
        if (!opt_.force)
          fail("%s holds a cache made with other settings (%s); pass --force to rebuild it, or choose another --out",
               opt_.out.c_str(), why.c_str());
        note("--force: removing the old cache in %s (%s)", opt_.out.c_str(), why.c_str());
        remove_cache_files(opt_.out, true);
      }
    } else if (opt_.force) {
      remove_cache_files(opt_.out, true);
    }
    remove_cache_files(opt_.out, false);  // stale temporaries of an interrupted run
    write_manifest(opt_.out, m_);
  }

  // Plans the shards; complete ones already on disk are kept (resume).
  void plan_shards() {
    sum_.files = 0;
    for (auto& e : m_.entries) sum_.files += e.status != kOtherPart;
    for (Split s : {Split::Train, Split::Valid}) {
      std::vector<uint32_t> ids = split_ids(m_, s);
      sum_.per_split[(int)s] = (int64_t)ids.size();
      for (uint32_t k = 0; (size_t)k * opt_.shard_size < ids.size(); k++) {
        Plan p{s, k, std::vector<uint32_t>(ids.begin() + (size_t)k * opt_.shard_size,
                                           ids.begin() + std::min(ids.size(), (size_t)(k + 1) * opt_.shard_size))};
        if (reuse_shard(p)) {
          sum_.reused_shards++;
          done_files_ += (int64_t)p.ids.size();
        } else {
          todo_.push_back(std::move(p));
        }
      }
    }
  }

  void announce() const {
    if (opt_.part_n > 1)
      note("part %d of %d: %lld of the dataset's %zu files", opt_.part_k, opt_.part_n, (long long)sum_.files,
           ds_.files.size());
    note("%s: %lld images (%lld train, %lld valid; classes %s=0, %s=1; layout %s)%s", opt_.data.c_str(),
         (long long)sum_.files, (long long)sum_.per_split[0], (long long)sum_.per_split[1], ds_.classes[0].c_str(),
         ds_.classes[1].c_str(), ds_.layout.c_str(),
         ds_.ignored ? strfmt("; %lld non-image files ignored", (long long)ds_.ignored).c_str() : "");
    note("weights %s: %s", opt_.weights.c_str(), weights_.describe().c_str());
    note("features %dx%dx%d %s per image (%s; computed in %s: %s), %d images per shard%s", recipe_.feat_h,
         recipe_.feat_w, recipe_.feat_c, opt_.dtype.c_str(),
         recipe_.cut.empty() ? "the whole base" : ("cut at " + recipe_.cut).c_str(), precision_name(recipe_.precision),
         ops::conv_path(device_, recipe_.precision, false).c_str(), opt_.shard_size,
         sum_.reused_shards ? strfmt("; resuming: %lld complete shards kept", (long long)sum_.reused_shards).c_str() : "");
    if (weights_.synthetic) note("NOTE: synthetic weights: these features are not ImageNet features");
  }

  // decoding threads -> batches -> forward pass -> shards -> writer thread. False when interrupted.
  // Its stages: extractors and shards opened, files fed into batches, batches submitted, results
  // taken into shards, finished shards handed to the writer.
  bool run_pipeline();
  struct Run;
  void start_extractors(Run& r);
  void open_shards(Run& r);
  void maybe_finish(Run& r, int p);
  void take(Run& r, const std::vector<int64_t>& items, const uint8_t* feats, int n);
  void submit_batch(Run& r);
  void check_bad_limit() const;
  bool feed(Run& r, OrderedLoader& loader, Progress& prog);

  CacheSummary interrupted_summary() {
    sum_.interrupted = true;
    if (Progress::is_tty() && !quiet()) fprintf(stderr, "\n");
    alert("interrupted: %lld complete shards are on disk in %s; run the same command again to resume",
         (long long)(sum_.reused_shards + sum_.written_shards), opt_.out.c_str());
    sum_.seconds = now_s() - t_start_;
    return sum_;
  }

  // Every file's status into the manifest; the summary; --max-bad.
  CacheSummary finish() {
    sum_.skipped = (int64_t)skips_.size();
    sum_.seconds = now_s() - t_start_;
    for (auto& e : m_.entries)
      if (e.status != kOtherPart) e.status = "ok";
    for (auto& [id, reason] : skips_) m_.entries[id].status = "skipped: " + reason;
    write_manifest(opt_.out, m_);
    if (!quiet()) print_summary();
    if ((double)sum_.skipped > opt_.max_bad * (double)sum_.files)
      fail("%lld of %lld files could not be used, over --max-bad %g", (long long)sum_.skipped, (long long)sum_.files,
           opt_.max_bad);
    return sum_;
  }

 private:
  std::unique_ptr<DirLock> lock_;  // held from prepare_out_dir to the end of the run
  struct Plan {
    Split split;
    uint32_t index;
    std::vector<uint32_t> ids;
  };
  const CacheOptions& opt_;
  const double t_start_;
  Device device_ = Device::CPU;
  VggWeights weights_;
  InputRecipe recipe_;
  int layers_ = 0;  // conv layers up to the cut
  Dataset ds_;
  Manifest m_;
  uint64_t hash_ = 0;
  std::vector<Plan> todo_;
  CacheSummary sum_;
  std::vector<std::pair<uint32_t, std::string>> skips_;  // (id, reason) of every skipped file
  int64_t done_files_ = 0;

  void make_manifest() {
    CacheSettings& st = m_.settings;
    st.kv["format"] = "1";
    recipe_.write(&st.kv, InputRecipe::Where::Cache);
    st.kv["valid_fraction"] = !opt_.valid_data.empty() ? "explicit --valid-data"
                              : ds_.folder_split        ? "from train/valid folders"
                                                        : strfmt("%.10g", opt_.valid_fraction);
    st.kv["seed"] = std::to_string(opt_.seed);
    st.kv["limit"] = std::to_string(opt_.limit);
    st.kv["shard_size"] = std::to_string(opt_.shard_size);
    st.kv["max_pixels"] = std::to_string(opt_.max_pixels);
    st.kv["layout"] = ds_.layout;
    st.kv["classes"] = ds_.classes[0] + "," + ds_.classes[1];
    st.kv["files"] = std::to_string(ds_.files.size());
    st.kv["listing_hash"] = strfmt("%016llx", (unsigned long long)ds_.listing_hash());
    st.kv["info.data"] = opt_.data;
    if (opt_.part_n > 1) st.kv["part"] = strfmt("%d/%d", opt_.part_k, opt_.part_n);
    hash_ = st.hash();
    m_.classes = ds_.classes;
    for (auto& s : ds_.sources) m_.sources.push_back(s->path());
    for (size_t i = 0; i < ds_.files.size(); i++) {
      ManifestEntry e;
      e.id = (uint32_t)i;
      e.split = ds_.files[i].split;
      e.label = ds_.files[i].label;
      e.bytes = ds_.files[i].bytes;
      e.source = ds_.files[i].source;
      e.rel = ds_.files[i].rel;
      if (opt_.part_n > 1 &&
          part_of_file(opt_.seed, ds_.classes[(size_t)e.label], e.rel, opt_.part_n) != opt_.part_k)
        e.status = kOtherPart;
      m_.entries.push_back(e);
    }
  }

  // A complete shard of these settings already on disk: its skipped files are taken over.
  bool reuse_shard(const Plan& p) {
    const std::string path = path_join(opt_.out, shard_file_name(p.split, p.index));
    if (!file_exists(path)) return false;
    try {
      MappedShard sh(path, true);
      const ShardInfo& in = sh.info();
      if (in.settings_hash != hash_ || in.split != p.split || in.index != p.index ||
          in.first_pos != (uint64_t)p.index * opt_.shard_size || in.range_count != p.ids.size())
        return false;
      std::vector<uint32_t> sk = sh.skipped();
      std::vector<std::string> rs = sh.reasons();
      // The shard must account for exactly the files of its range (cached or skipped), or a
      // damaged id would mark the wrong file skipped (or index past the file list).
      std::vector<uint32_t> have(sh.ids(), sh.ids() + in.count), want = p.ids;
      have.insert(have.end(), sk.begin(), sk.end());
      std::sort(have.begin(), have.end());
      std::sort(want.begin(), want.end());
      if (have != want || rs.size() != sk.size()) {
        note("%s: its file ids do not match this dataset's files for that range: rebuilding it", path.c_str());
        return false;
      }
      for (size_t i = 0; i < sk.size(); i++) skips_.push_back({sk[i], rs[i]});
      sum_.cached += in.count;
      return true;
    } catch (const Error& e) {
      note("%s: rebuilding it", e.what());
      return false;
    }
  }

  void print_summary() const {
    uint64_t bytes = 0;
    for (Split s : {Split::Train, Split::Valid})
      for (uint32_t k = 0; (size_t)k * opt_.shard_size < (size_t)sum_.per_split[(int)s]; k++)
        bytes += (uint64_t)std::max<int64_t>(0, file_size(path_join(opt_.out, shard_file_name(s, k))));
    note("cached %lld of %lld images in %s (%.1f images/s this run); skipped %lld%s", (long long)sum_.cached,
         (long long)sum_.files, human_time(sum_.seconds).c_str(), sum_.images_per_s, (long long)sum_.skipped,
         sum_.skipped ? " (reasons in manifest.tsv, status column)" : "");
    if (sum_.pipeline_s > 0)
      note("time: forward passes %.1f s (%.0f%%), waiting for decoded images %.1f s (%.0f%%), the rest %.1f s (copies, "
           "shards, writer)",
           sum_.forward_s, 100.0 * sum_.forward_s / sum_.pipeline_s, sum_.wait_decode_s,
           100.0 * sum_.wait_decode_s / sum_.pipeline_s,
           std::max(0.0, sum_.pipeline_s - sum_.forward_s - sum_.wait_decode_s));
    for (size_t i = 0; i < skips_.size() && i < 5; i++)
      say("  skipped %s: %s\n", ds_.display_path(ds_.files[skips_[i].first]).c_str(), skips_[i].second.c_str());
    if (skips_.size() > 5) say("  ... and %zu more\n", skips_.size() - 5);
    note("%s: %s in shards (%lld reused, %lld written), manifest.tsv; next: ./tl_train --cache %s", opt_.out.c_str(),
         human_bytes((double)bytes).c_str(), (long long)sum_.reused_shards, (long long)sum_.written_shards,
         opt_.out.c_str());
  }
};

// The pipeline's moving parts, shared by its stages.
struct CacheBuild::Run {
  std::vector<std::pair<int, uint32_t>> seq;  // (plan index, id) in processing order
  int batch = 0;
  int64_t in_elems = 0;
  size_t fbytes = 0;  // bytes of one sample's features
  // One extractor per GPU with --device cuda:0,1 / cuda:all (each made, and always used, with its
  // device current); batches go round-robin and their results are taken in batch order.
  std::vector<int> gpus;
  std::vector<std::unique_ptr<FeatureExtractor>> fxs;
  std::vector<OpenShard> open;   // per plan entry
  std::vector<int64_t> in_batch;  // positions in seq of the batch being assembled
  float* xin = nullptr;           // where its inputs go
  int64_t batch_no = 0, next_emit = 0, newly_cached = 0;
  std::map<int64_t, std::pair<std::vector<int64_t>, std::vector<uint8_t>>> early;  // several GPUs: out of turn
  int shards_finished = 0;
  double forward_s = 0, wait_s = 0;
  std::unique_ptr<ShardWriter> writer;

  size_t ndev() const { return fxs.size(); }
  FeatureExtractor& fx(int64_t b) {
    if (!gpus.empty()) cuda::set_device(gpus[(size_t)(b % (int64_t)ndev())]);
    return *fxs[(size_t)(b % (int64_t)ndev())];
  }
};

void CacheBuild::start_extractors(Run& r) {
  r.batch = opt_.batch > 0 ? opt_.batch : default_base_batch(device_);
  r.in_elems = (int64_t)opt_.image_size * opt_.image_size * 3;
  r.gpus = device_ == Device::CUDA ? cuda_device_list(opt_.device) : std::vector<int>();
  const size_t ndev = r.gpus.empty() ? 1 : r.gpus.size();
  for (size_t g = 0; g < ndev; g++) {
    if (!r.gpus.empty()) cuda::set_device(r.gpus[g]);
    r.fxs.push_back(std::make_unique<FeatureExtractor>(weights_, device_, r.batch, opt_.image_size, recipe_.dtype,
                                                     recipe_.precision, layers_));
  }
  r.fbytes = (size_t)r.fxs[0]->feat_elems() * dtype_size(recipe_.dtype);
  r.xin = r.fx(0).next_input();
}

void CacheBuild::open_shards(Run& r) {
  r.open.resize(todo_.size());
  for (size_t p = 0; p < todo_.size(); p++) {
    ShardInfo& in = r.open[p].d.info;
    in.dtype = recipe_.dtype;
    in.feat_h = (uint32_t)recipe_.feat_h;
    in.feat_w = (uint32_t)recipe_.feat_w;
    in.feat_c = (uint32_t)recipe_.feat_c;
    in.split = todo_[p].split;
    in.index = todo_[p].index;
    in.range_count = (uint32_t)todo_[p].ids.size();
    in.first_pos = (uint64_t)todo_[p].index * opt_.shard_size;
    in.settings_hash = hash_;
  }
}

// A shard whose every file was handled goes to the writer.
void CacheBuild::maybe_finish(Run& r, int p) {
  OpenShard& o = r.open[p];
  if (o.processed != o.d.info.range_count) return;
  o.d.info.count = (uint32_t)o.d.ids.size();
  r.writer->push(std::move(o.d));
  o.d = ShardData();
  r.shards_finished++;
}

// A batch's features into its shards (in batch order: shards list their samples in file order).
void CacheBuild::take(Run& r, const std::vector<int64_t>& items, const uint8_t* feats, int n) {
  for (int j = 0; j < n; j++) {
    const auto [p, id] = r.seq[(size_t)items[j]];
    OpenShard& o = r.open[p];
    if (o.d.features.capacity() == 0) o.d.features.reserve((size_t)o.d.info.range_count * r.fbytes);
    o.d.ids.push_back(id);
    o.d.labels.push_back((uint8_t)ds_.files[id].label);
    o.d.features.insert(o.d.features.end(), feats + (size_t)j * r.fbytes, feats + (size_t)(j + 1) * r.fbytes);
    o.processed++;
    r.newly_cached++;
    maybe_finish(r, p);
  }
}

// The assembled batch to its extractor (timed); results come back through take(), in batch order.
void CacheBuild::submit_batch(Run& r) {
  if (r.in_batch.empty()) return;
  const double t0 = now_s();
  std::vector<int64_t> items = r.in_batch;
  r.in_batch.clear();
  const int64_t b = r.batch_no;
  r.fx(b).submit((int)items.size(), [this, &r, items, b](const uint8_t* feats, int n) {
    if (r.ndev() == 1) return take(r, items, feats, n);
    r.early[b] = {items, std::vector<uint8_t>(feats, feats + (size_t)n * r.fbytes)};
    for (auto it = r.early.find(r.next_emit); it != r.early.end(); it = r.early.find(r.next_emit)) {
      take(r, it->second.first, it->second.second.data(), (int)it->second.first.size());
      r.early.erase(it);
      r.next_emit++;
    }
  });
  r.batch_no++;
  r.xin = r.fx(r.batch_no).next_input();
  r.forward_s += now_s() - t0;
}

void CacheBuild::check_bad_limit() const {
  if ((double)skips_.size() > opt_.max_bad * (double)sum_.files)
    fail("%zu of %lld files could not be used, over --max-bad %g (%.1f%%); the last: %s: %s. Is --data the right "
         "folder? Raise --max-bad to accept more",
         skips_.size(), (long long)sum_.files, opt_.max_bad, 100.0 * opt_.max_bad,
         ds_.display_path(ds_.files[skips_.back().first]).c_str(), skips_.back().second.c_str());
}

// Decoded files, in order: skips are recorded, images go into batches. False when stopped early.
bool CacheBuild::feed(Run& r, OrderedLoader& loader, Progress& prog) {
  int64_t idx;
  const float* data;
  std::string err;
  for (;;) {
    const double t_wait = now_s();
    const bool more = loader.next(&idx, &data, &err);
    r.wait_s += now_s() - t_wait;
    if (!more) return true;
    const auto [p, id] = r.seq[(size_t)idx];
    if (!err.empty()) {
      const std::string reason = strip_prefix(err, ds_.files[id].rel);
      skips_.push_back({id, reason});
      r.open[p].d.skipped.push_back(id);
      r.open[p].d.reasons.push_back(reason);
      r.open[p].processed++;
      maybe_finish(r, p);
    } else {
      memcpy(r.xin + (size_t)r.in_batch.size() * r.in_elems, data, (size_t)r.in_elems * sizeof(float));
      r.in_batch.push_back(idx);
    }
    loader.release();
    if ((int)r.in_batch.size() == r.batch) submit_batch(r);
    r.writer->check();
    check_bad_limit();
    prog.update(done_files_ + idx + 1, strfmt("skipped %zu", skips_.size()));
    if (interrupted() || (opt_.stop_after_shards > 0 && r.shards_finished >= opt_.stop_after_shards)) return false;
  }
}

bool CacheBuild::run_pipeline() {
  Run r;
  for (size_t p = 0; p < todo_.size(); p++)
    for (uint32_t id : todo_[p].ids) r.seq.push_back({(int)p, id});
  const double t_compute0 = now_s();
  if (r.seq.empty()) return true;
  start_extractors(r);
  const int decoders = opt_.decode_threads > 0 ? opt_.decode_threads : default_decode_threads();
  OrderedLoader loader((int64_t)r.seq.size(), (size_t)r.in_elems, decoders, 2 * r.batch + 2 * decoders,
                       [&](int64_t i, float* out) {
                         const DataFile& f = ds_.files[r.seq[(size_t)i].second];
                         std::vector<uint8_t> bytes = ds_.read(f, kMaxImageFileBytes);
                         recipe_.apply(bytes.data(), bytes.size(), f.rel, opt_.max_pixels, out);
                       });
  r.writer = std::make_unique<ShardWriter>(opt_.out);
  open_shards(r);
  Progress prog(strfmt("tl_cache [%s]", ops::conv_path(device_, recipe_.precision, true).c_str()), sum_.files, "images",
                quiet());
  const bool complete = feed(r, loader, prog);
  if (complete) submit_batch(r);
  const double t0 = now_s();
  for (size_t g = 0; g < r.ndev(); g++) r.fx((int64_t)g).flush();
  r.forward_s += now_s() - t0;
  loader.stop();
  r.writer->close();
  r.writer->check();
  sum_.written_shards = r.writer->written();
  if (!complete) return false;
  prog.finish(strfmt("skipped %zu", skips_.size()));
  const double compute_s = now_s() - t_compute0;
  sum_.forward_s = r.forward_s;
  sum_.wait_decode_s = r.wait_s;
  sum_.pipeline_s = compute_s;
  sum_.cached += r.newly_cached;
  sum_.images_per_s = compute_s > 0 ? (double)r.newly_cached / compute_s : 0.0;
  return true;
}

}  // namespace

// validate -> settings and dataset -> the out folder -> plan (resume) -> pipeline -> summary.
CacheSummary build_cache(const CacheOptions& opt) {
  validate_cache_options(opt);
  CacheBuild b(opt);
  b.prepare_out_dir();
  b.plan_shards();
  b.announce();
  if (!b.run_pipeline()) return b.interrupted_summary();
  return b.finish();
}

}  // namespace tl

// ------------------------------------------------------------------------------------------------
// Partitioned caching: parts and their merge.

namespace tl {

int part_of_file(uint64_t seed, const std::string& cls, const std::string& rel, int n) {
  // The split's identity (class/file name) under another salt, so parts and splits are independent.
  const double u = split_hash(seed ^ 0x9A27C0DEF00DULL, cls + "/" + basename_of(rel));
  return std::min(n, (int)(u * n) + 1);
}

void parse_part(const std::string& spec, const std::function<const char*(const char*)>& env, int* k, int* n,
                std::string* how) {
  auto number = [&](const char* name, const char* v) -> long {
    char* end = nullptr;
    const long x = v && *v ? strtol(v, &end, 10) : -1;
    if (!v || !*v || *end || x < 0 || x > 1000000)
      fail("--part %s: %s is %s", spec.c_str(), name, v ? strfmt("'%s', not a number", v).c_str() : "not set");
    return x;
  };
  if (spec == "auto")  // Slurm: a task resubmitted alone (sbatch --array=K) sees an array of one task
    fail("--part auto: the number of parts is not in the scheduler's environment (a Slurm task resubmitted alone "
         "sees an array of one); give it: --part auto/N");
  if (starts_with(spec, "auto/")) {
    *n = (int)number("N", spec.c_str() + 5);
    if (*n < 1) fail("--part %s: N must be at least 1", spec.c_str());
    if (env("SLURM_ARRAY_TASK_ID")) {  // Slurm job array: sbatch --array=1-N, the task id is the part
      *k = (int)number("SLURM_ARRAY_TASK_ID", env("SLURM_ARRAY_TASK_ID"));
      if (*k < 1 || *k > *n)
        fail("--part %s: SLURM_ARRAY_TASK_ID=%d, but the parts are the array's task ids 1..%d (sbatch --array=1-%d)",
             spec.c_str(), *k, *n, *n);
      *how = strfmt("from Slurm: SLURM_ARRAY_TASK_ID=%d, N=%d", *k, *n);
    } else {  // Kubernetes indexed Job: JOB_COMPLETION_INDEX counts from 0; N is the Job's completions
      if (!env("JOB_COMPLETION_INDEX"))
        fail("--part %s: neither SLURM_ARRAY_TASK_ID nor JOB_COMPLETION_INDEX in the environment (not a Slurm job "
             "array or a Kubernetes indexed Job?); elsewhere use --part K/N", spec.c_str());
      *k = (int)number("JOB_COMPLETION_INDEX", env("JOB_COMPLETION_INDEX")) + 1;
      *how = strfmt("from Kubernetes: JOB_COMPLETION_INDEX=%d, N=%d", *k - 1, *n);
    }
  } else {
    const size_t slash = spec.find('/');
    if (slash == std::string::npos) fail("--part: expected K/N (e.g. 2/8) or auto/N, got '%s'", spec.c_str());
    *k = (int)number("K", spec.substr(0, slash).c_str());
    *n = (int)number("N", spec.substr(slash + 1).c_str());
    *how = "given";
  }
  if (*n < 1 || *k < 1 || *k > *n) fail("--part %s: part %d of %d does not exist (K runs from 1 to N)", spec.c_str(), *k, *n);
}

namespace {

std::string real_path_of(const std::string& p) {
  char* r = realpath(p.c_str(), nullptr);
  if (!r) return "";
  std::string s(r);
  free(r);
  return s;
}

// The output is emptied before the parts are read: it must be none of them, nor hold one.
void check_merge_output(const std::string& out, const std::vector<std::string>& parts) {
  const std::string ro = real_path_of(out);
  if (ro.empty()) return;  // not there yet: it can hold no part
  for (const std::string& dir : parts) {
    const std::string rp = real_path_of(dir);
    if (rp == ro)
      fail("--merge: the output folder %s is also a part (%s); write the merged cache to a new folder", out.c_str(),
           dir.c_str());
    if (!rp.empty() && starts_with(rp, ro == "/" ? "/" : ro + "/"))
      fail("--merge: the output folder %s holds the part %s; write the merged cache to a new folder", out.c_str(),
           dir.c_str());
  }
}

}  // namespace

// A part folder may hold rerun.txt, one line that a scheduler's submit script (tools/cluster/) writes
// there: the command that makes the part. --merge quotes it for a part that is missing or unfinished.
std::string redo_part(const std::string& dir, int k, int n) {
  const std::string f = path_join(dir, "rerun.txt");
  if (file_exists(f)) {
    const std::vector<uint8_t> b = read_file(f);
    const std::string line = std::string(b.begin(), b.end()).substr(0, std::string(b.begin(), b.end()).find('\n'));
    if (!line.empty()) return "resubmit it: " + line;
  }
  return strfmt("rerun its tl_cache --part %s --out %s command", k ? strfmt("%d/%d", k, n).c_str() : "K/N", dir.c_str());
}

// The folders given to --merge that hold no cache: named with what remakes each, in one error.
[[noreturn]] void fail_absent_parts(const std::vector<std::string>& parts, const std::vector<size_t>& absent,
                                    const std::vector<int>& missing_k, int n) {
  auto what = [&](size_t i, int k) {
    const std::string& dir = parts[i];
    return strfmt("%s (%s)", dir_exists(dir) ? (dir + " holds no cache").c_str() : ("no folder " + dir).c_str(),
                  redo_part(dir, k, n).c_str());
  };
  if (!n) fail("--merge: none of the folders holds a cache: %s", what(absent[0], 0).c_str());
  std::string ks, dirs;
  for (int k : missing_k) ks += strfmt("%s%d/%d", ks.empty() ? "" : ", ", k, n);
  const int k = absent.size() == 1 && missing_k.size() == 1 ? missing_k[0] : 0;
  for (size_t i : absent) dirs += (dirs.empty() ? "" : "; ") + what(i, k);
  fail("--merge: part%s %s missing: %s; its job did not run or stopped before it began (merge again once it has run)",
       missing_k.size() == 1 ? "" : "s", ks.c_str(), dirs.c_str());
}

void merge_caches(const std::string& out, const std::vector<std::string>& parts, bool force) {
  if (parts.empty()) fail("--merge: no part folders given (tl_cache --merge OUT PART_DIR...)");
  check_merge_output(out, parts);
  // The parts: one of each 1..N, the same settings (but for the part) and the same files.
  std::vector<Manifest> ms;
  int n = 0;
  std::vector<int> owner_of_part, k_of(parts.size(), 0);
  std::vector<size_t> absent;  // folders without a cache (a job that never ran, a cancelled task)
  size_t first = 0;            // the first folder with a cache
  for (size_t i = 0; i < parts.size(); i++) {
    const std::string& dir = parts[i];
    if (!file_exists(path_join(dir, "manifest.tsv")) && (!dir_exists(dir) || !holds_images(dir))) {
      absent.push_back(i);
      continue;
    }
    ms.push_back(read_manifest(dir));
    const std::string p = ms.back().settings.get("part");
    int k = 0, pn = 0;
    if (p.empty() || sscanf(p.c_str(), "%d/%d", &k, &pn) != 2 || k < 1 || k > pn)
      fail("--merge: %s is not a part of a partitioned cache (made without --part K/N)", dir.c_str());
    if (!n) n = pn, first = i, owner_of_part.assign((size_t)n + 1, -1);
    if (pn != n) fail("--merge: %s is part %d of %d, but %s is a part of %d", dir.c_str(), k, pn, parts[first].c_str(), n);
    if (owner_of_part[(size_t)k] >= 0)
      fail("--merge: part %d/%d given twice (%s and %s)", k, n, parts[(size_t)owner_of_part[(size_t)k]].c_str(), dir.c_str());
    owner_of_part[(size_t)k] = (int)i;
    k_of[i] = k;
  }
  std::string missing;
  std::vector<int> missing_k;
  for (int k = 1; k <= n; k++)
    if (owner_of_part[(size_t)k] < 0) missing_k.push_back(k), missing += strfmt("%s%d/%d", missing.empty() ? "" : ", ", k, n);
  if (!absent.empty()) fail_absent_parts(parts, absent, missing_k, n);
  if (!missing.empty()) fail("--merge: part %s missing (every part 1..%d must be given once)", missing.c_str(), n);
  CacheSettings st = ms[0].settings;
  st.kv.erase("part");
  for (size_t i = 1; i < ms.size(); i++) {
    CacheSettings other = ms[i].settings;
    other.kv.erase("part");
    if (other.hash() != st.hash())
      fail("--merge: %s was made with other settings than %s (%s)", parts[i].c_str(), parts[0].c_str(),
           st.diff(other).c_str());
    if (ms[i].classes != ms[0].classes || ms[i].entries.size() != ms[0].entries.size())
      fail("--merge: %s and %s list different files", parts[i].c_str(), parts[0].c_str());
    for (size_t j = 0; j < ms[0].entries.size(); j++) {
      const ManifestEntry &a = ms[0].entries[j], &b = ms[i].entries[j];
      if (a.rel != b.rel || a.split != b.split || a.label != b.label || a.bytes != b.bytes || a.source != b.source)
        fail("--merge: %s and %s list different files (%s / %s)", parts[i].c_str(), parts[0].c_str(), a.rel.c_str(),
             b.rel.c_str());
    }
  }
  // Each file cached (or skipped) by exactly one part, which has finished.
  Manifest m = ms[0];
  m.settings = st;
  std::vector<int> owner(m.entries.size(), -1);
  for (size_t i = 0; i < ms.size(); i++)
    for (size_t j = 0; j < m.entries.size(); j++) {
      const std::string& s = ms[i].entries[j].status;
      if (s == kOtherPart) continue;
      if (s != "ok" && !starts_with(s, "skipped: "))
        fail("--merge: part %d/%d is not finished (%s: %s in %s); %s (it resumes)", k_of[i], n,
             ms[i].entries[j].rel.c_str(), s.c_str(), parts[i].c_str(), redo_part(parts[i], k_of[i], n).c_str());
      if (owner[j] >= 0)
        fail("--merge: %s is in two parts (%s and %s)", m.entries[j].rel.c_str(), parts[(size_t)owner[j]].c_str(),
             parts[i].c_str());
      owner[j] = (int)i;
      m.entries[j].status = s;
    }
  for (size_t j = 0; j < m.entries.size(); j++)
    if (owner[j] < 0) fail("--merge: no part holds %s", m.entries[j].rel.c_str());
  // Where each cached file's features are, and why each skipped file was skipped.
  std::vector<Cache> caches;
  for (const std::string& dir : parts) caches.push_back(open_cache(dir, true));
  struct Where {
    const MappedShard* shard = nullptr;
    uint32_t row = 0;
    std::string reason;
  };
  std::vector<Where> where(m.entries.size());
  for (const Cache& c : caches)
    for (int s = 0; s < 2; s++)
      for (const MappedShard& sh : c.shards[s]) {
        for (uint32_t r = 0; r < sh.info().count; r++) where[sh.ids()[r]] = {&sh, r, ""};
        const std::vector<uint32_t> sk = sh.skipped();
        const std::vector<std::string> rs = sh.reasons();
        for (size_t q = 0; q < sk.size(); q++) {
          if (sk[q] >= where.size()) fail("--merge: %s lists a skipped file id %u past the manifest", sh.path().c_str(), sk[q]);
          where[sk[q]].reason = rs[q];
        }
      }
  // The output: shards in the single run's layout, then the manifest.
  make_dirs(out);
  DirLock lock(out, "tl_cache");
  if (file_exists(path_join(out, "manifest.tsv")) && !force)
    fail("%s already holds a cache; pass --force to replace it, or choose another folder", out.c_str());
  remove_cache_files(out, true);
  const int shard_size = st.get_int("shard_size");
  const Cache& c0 = caches[0];
  const size_t fbytes = (size_t)c0.feature_elems() * dtype_size(c0.dtype);
  for (Split s : {Split::Train, Split::Valid}) {
    const std::vector<uint32_t> ids = split_ids(m, s);
    for (uint32_t k = 0; (size_t)k * shard_size < ids.size(); k++) {
      ShardData d;
      d.info.dtype = c0.dtype;
      d.info.feat_h = (uint32_t)c0.feat_h, d.info.feat_w = (uint32_t)c0.feat_w, d.info.feat_c = (uint32_t)c0.feat_c;
      d.info.split = s;
      d.info.index = k;
      d.info.first_pos = (uint64_t)k * shard_size;
      d.info.settings_hash = st.hash();
      for (size_t q = (size_t)k * shard_size; q < ids.size() && q < (size_t)(k + 1) * shard_size; q++) {
        const uint32_t id = ids[q];
        const Where& w = where[id];
        if (m.entries[id].status == "ok") {
          if (!w.shard) fail("--merge: %s is marked cached but is in no shard of its part", m.entries[id].rel.c_str());
          d.ids.push_back(id);
          d.labels.push_back((uint8_t)m.entries[id].label);
          const uint8_t* f = (const uint8_t*)w.shard->features() + (size_t)w.row * fbytes;
          d.features.insert(d.features.end(), f, f + fbytes);
        } else {
          d.skipped.push_back(id);
          d.reasons.push_back(w.reason);
        }
      }
      d.info.count = (uint32_t)d.ids.size();
      d.info.range_count = (uint32_t)(d.ids.size() + d.skipped.size());
      write_shard(path_join(out, shard_file_name(s, k)), d);
    }
  }
  write_manifest(out, m);
  open_cache(out, true);  // the result reads as any cache
}

}  // namespace tl
