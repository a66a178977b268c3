#include "host/io/dataset.h"

#include <dirent.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <set>

#include "host/core/common.h"
#include "host/io/zip.h"

namespace tl {

const char* split_name(Split s) { return s == Split::Valid ? "valid" : "train"; }

bool has_image_extension(const std::string& name) {
  std::string l = lower(name);
  for (const char* e : {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".jpe", ".jfif", ".webp", ".tga", ".ppm", ".pgm"})
    if (ends_with(l, e)) return true;
  return false;
}

namespace {

uint64_t fnv1a(const std::string& s, uint64_t h = 0xcbf29ce484222325ull) {
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

bool hidden_or_junk(const std::string& rel) {
  for (const std::string& part : split(rel, '/'))
    if (part.empty() || part[0] == '.' || part == "__MACOSX") return true;
  return false;
}

// The folder walk: directory links that lead back into the tree (or to a folder holding it) are not
// followed (`ln -s . more` would list every photo again, without end); links to folders elsewhere
// are, each folder once. Each
// file is listed once (by device and inode): under its own name rather than a link's, else the first
// name in sorted order.
struct Walk {
  std::string root, real_root;
  std::set<std::pair<dev_t, ino_t>> dirs;
  struct Found {
    std::string rel;
    uint64_t bytes;
    bool linked;
  };
  std::map<std::pair<dev_t, ino_t>, Found> files;

  // A link to a folder of the tree, or to one that holds the tree (`ln -s .. up`).
  bool leads_back(const std::string& path) const {
    char* r = realpath(path.c_str(), nullptr);
    if (!r) return true;
    const std::string real(r);
    free(r);
    auto within = [](const std::string& a, const std::string& b) {  // a is b or inside it
      return a == b || starts_with(a, b == "/" ? "/" : b + "/");
    };
    return within(real, real_root) || within(real_root, real);
  }

  void add_file(const std::string& rel, const struct stat& st, bool linked) {
    Found f{rel, (uint64_t)st.st_size, linked};
    auto it = files.find({st.st_dev, st.st_ino});
    if (it == files.end())
      files.emplace(std::make_pair(st.st_dev, st.st_ino), f);
    else if (it->second.linked != linked ? it->second.linked : rel < it->second.rel)
      it->second = f;
  }

  void dir(const std::string& rel, bool linked, int depth) {
    if (depth > 32) return;
    const std::string d = rel.empty() ? root : path_join(root, rel);
    DIR* h = opendir(d.c_str());
    if (!h) fail("%s: cannot list directory", d.c_str());
    std::vector<std::string> names;
    while (struct dirent* e = readdir(h)) {
      if (e->d_name[0] == '.') continue;
      names.push_back(e->d_name);
    }
    closedir(h);
    std::sort(names.begin(), names.end());
    for (const std::string& n : names) {
      const std::string r = rel.empty() ? n : rel + "/" + n;
      const std::string p = path_join(root, r);
      struct stat lst, st;
      if (lstat(p.c_str(), &lst) != 0 || stat(p.c_str(), &st) != 0) continue;
      const bool link = S_ISLNK(lst.st_mode);
      if (S_ISDIR(st.st_mode)) {
        if (link && leads_back(p)) continue;
        if (!dirs.insert({st.st_dev, st.st_ino}).second) continue;
        dir(r, linked || link, depth + 1);
      } else if (S_ISREG(st.st_mode)) {
        add_file(r, st, linked || link);
      }
    }
  }
};

void walk(const std::string& root, std::vector<std::pair<std::string, uint64_t>>& out) {
  Walk w;
  w.root = root;
  char* r = realpath(root.c_str(), nullptr);
  if (!r) fail("%s: cannot resolve the folder's path", root.c_str());
  w.real_root = r;
  free(r);
  struct stat st;
  if (stat(root.c_str(), &st) != 0) fail("%s: cannot list directory", root.c_str());
  w.dirs.insert({st.st_dev, st.st_ino});
  w.dir("", false, 0);
  for (auto& kv : w.files) out.push_back({kv.second.rel, kv.second.bytes});
}

// "cats" -> "cat", "Dog" -> "dog": class folders of the known datasets name the same classes.
std::string class_key(const std::string& folder) {
  std::string k = lower(folder);
  if (k.size() > 3 && k.back() == 's') k.pop_back();
  return k;
}

bool is_split_dir(const std::string& name, Split* s) {
  std::string l = lower(name);
  if (l == "train" || l == "training") {
    *s = Split::Train;
    return true;
  }
  if (l == "valid" || l == "validation" || l == "val") {
    *s = Split::Valid;
    return true;
  }
  return false;
}

}  // namespace

double split_hash(uint64_t seed, const std::string& rel) {
  uint64_t s = seed ^ fnv1a(rel);
  return (double)(splitmix64(s) >> 11) * (1.0 / 9007199254740992.0);
}

DataSource::DataSource(const std::string& path) : path_(path) {
  if (dir_exists(path)) return;
  if (!file_exists(path)) fail("%s: not found", path.c_str());
  std::vector<uint8_t> head;
  {
    FILE* f = fopen(path.c_str(), "rb");
    if (!f) fail("%s: cannot open", path.c_str());
    head.resize(4);
    head.resize(fread(head.data(), 1, 4, f));
    fclose(f);
  }
  if (!ZipReader::looks_like_zip(head.data(), head.size()))
    fail("%s: expected a directory of images or a .zip archive of them", path.c_str());
  zip_ = std::make_unique<ZipReader>(path);
  for (size_t i = 0; i < zip_->entries().size(); i++) zip_index_.push_back({zip_->entries()[i].name, i});
  std::sort(zip_index_.begin(), zip_index_.end());
}

DataSource::~DataSource() = default;

std::vector<std::pair<std::string, uint64_t>> DataSource::list() const {
  std::vector<std::pair<std::string, uint64_t>> out;
  if (zip_) {
    for (const ZipEntry& e : zip_->entries())
      if (!e.is_dir()) out.push_back({e.name, e.size});
  } else {
    walk(path_, out);
  }
  out.erase(std::remove_if(out.begin(), out.end(), [](auto& p) { return hidden_or_junk(p.first); }), out.end());
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<uint8_t> DataSource::read(const std::string& rel, uint64_t max_bytes) const {
  if (zip_) {
    auto it = std::lower_bound(zip_index_.begin(), zip_index_.end(), std::make_pair(rel, (size_t)0));
    if (it == zip_index_.end() || it->first != rel) fail("%s: no entry %s", path_.c_str(), rel.c_str());
    return zip_->read(zip_->entries()[it->second], max_bytes);
  }
  const std::string p = path_join(path_, rel);
  const int64_t sz = file_size(p);
  if (sz < 0) fail("%s: vanished since the dataset was listed", p.c_str());
  if ((uint64_t)sz > max_bytes) fail("%s: file too large (%s)", p.c_str(), human_bytes((double)sz).c_str());
  return read_file(p);
}

int64_t Dataset::count(Split s) const {
  int64_t n = 0;
  for (auto& f : files) n += f.split == s;
  return n;
}

int64_t Dataset::count(Split s, int label) const {
  int64_t n = 0;
  for (auto& f : files) n += f.split == s && f.label == label;
  return n;
}

uint64_t Dataset::listing_hash() const {
  uint64_t h = 0xcbf29ce484222325ull;
  for (auto& c : classes) h = fnv1a(c + "\n", h);
  for (auto& f : files)
    h = fnv1a(strfmt("%d\t%s\t%llu\t%d\t%d\n", f.source, f.rel.c_str(), (unsigned long long)f.bytes, f.label,
                     (int)f.split),
              h);
  return h;
}

std::vector<uint8_t> Dataset::read(const DataFile& f, uint64_t max_bytes) const {
  return sources[f.source]->read(f.rel, max_bytes);
}

std::string Dataset::display_path(const DataFile& f) const {
  const DataSource& s = *sources[f.source];
  return s.is_zip() ? s.path() + ":" + f.rel : path_join(s.path(), f.rel);
}

namespace {

struct Labelled {
  std::string rel, cls;
  uint64_t bytes;
  bool fixed_split = false;
  Split split = Split::Train;
};

// Labels one source's files from their names and folders.
std::vector<Labelled> label_files(const DataSource& src, std::string* layout, int64_t* ignored) {
  std::vector<std::pair<std::string, uint64_t>> all = src.list();
  std::vector<std::pair<std::string, uint64_t>> imgs;
  for (auto& p : all) {
    if (has_image_extension(p.first))
      imgs.push_back(p);
    else
      (*ignored)++;
  }
  if (imgs.empty())
    fail("%s: no images found (looked for .jpg, .jpeg, .png, .bmp, .gif files; %lld other files). Expected the "
         "Kaggle layout (cat.0.jpg, dog.0.jpg, ... in one folder) or one folder per class (cat/, dog/)",
         src.path().c_str(), (long long)*ignored);
  // Kaggle flat layout: <letters>.<digits>.<ext>, e.g. cat.0.jpg / dog.12499.jpg.
  auto kaggle_name = [](const std::string& path) {
    std::string b = lower(basename_of(path));
    size_t d1 = b.find('.'), d2 = d1 == std::string::npos ? d1 : b.find('.', d1 + 1);
    if (d1 == std::string::npos || d1 == 0 || d2 == std::string::npos || d2 == d1 + 1) return false;
    for (size_t i = 0; i < d1; i++)
      if (!isalpha((unsigned char)b[i])) return false;
    for (size_t i = d1 + 1; i < d2; i++)
      if (!isdigit((unsigned char)b[i])) return false;
    return true;
  };
  size_t kaggle = 0;
  for (auto& p : imgs) kaggle += kaggle_name(p.first);
  std::vector<Labelled> out;
  if (kaggle * 10 >= imgs.size() * 9) {
    *layout = "kaggle-flat";
    for (auto& p : imgs) {
      if (!kaggle_name(p.first)) {
        (*ignored)++;
        continue;
      }
      std::string b = lower(basename_of(p.first));
      Labelled l{p.first, class_key(b.substr(0, b.find('.'))), p.second};
      std::vector<std::string> parts = split(p.first, '/');
      for (size_t i = 0; i + 1 < parts.size(); i++) l.fixed_split |= is_split_dir(parts[i], &l.split);
      out.push_back(l);
    }
    return out;
  }
  *layout = "class-folders";
  for (auto& p : imgs) {
    std::vector<std::string> parts = split(p.first, '/');
    if (parts.size() < 2) {  // an image beside the class folders has no label
      (*ignored)++;
      continue;
    }
    Labelled l{p.first, class_key(parts[parts.size() - 2]), p.second};
    for (size_t i = 0; i + 2 < parts.size(); i++) l.fixed_split |= is_split_dir(parts[i], &l.split);
    out.push_back(l);
  }
  if (out.empty())
    fail("%s: images found, but none inside a class folder; expected cat/, dog/ (or Cat/, Dog/) sub-folders, or "
         "Kaggle names cat.N.jpg",
         src.path().c_str());
  return out;
}

}  // namespace

Dataset scan_dataset(const std::string& data, const std::string& valid_data, const ScanOptions& opt) {
  if (!(opt.valid_fraction >= 0.0 && opt.valid_fraction < 1.0))
    fail("--valid-fraction must be in [0, 1), got %g", opt.valid_fraction);
  Dataset ds;
  std::vector<std::string> paths = {data};
  if (!valid_data.empty()) paths.push_back(valid_data);
  std::vector<std::vector<Labelled>> per_source;
  std::vector<std::string> layouts;
  for (size_t s = 0; s < paths.size(); s++) {
    ds.sources.push_back(std::make_unique<DataSource>(paths[s]));
    std::string layout;
    per_source.push_back(label_files(*ds.sources.back(), &layout, &ds.ignored));
    layouts.push_back(layout);
  }
  ds.layout = layouts[0];
  // Classes: the union, sorted (flow_from_directory's order): cat = 0, dog = 1.
  std::set<std::string> cls;
  for (auto& v : per_source)
    for (auto& l : v) cls.insert(l.cls);
  ds.classes.assign(cls.begin(), cls.end());
  if (ds.classes.size() != 2) {
    std::string found;
    int shown = 0;
    for (auto& c : ds.classes) {
      if (shown++ == 8) {
        found += ", ...";
        break;
      }
      found += (found.empty() ? "" : ", ") + c;
    }
    fail("%s: expected 2 classes (cat and dog), found %zu: %s", data.c_str(), ds.classes.size(), found.c_str());
  }
  // Folder names fix the split only when the data has both a train and a validation folder
  // (Kaggle's train.zip keeps everything under train/: that alone is no split).
  bool has_valid_folder = false;
  for (auto& l : per_source[0]) has_valid_folder |= l.fixed_split && l.split == Split::Valid;
  if (!has_valid_folder)
    for (auto& l : per_source[0]) l.fixed_split = false;
  bool any_fixed = false;
  for (size_t s = 0; s < per_source.size(); s++)
    for (auto& l : per_source[s]) {
      DataFile f;
      f.rel = l.rel;
      f.bytes = l.bytes;
      f.source = (int)s;
      f.label = (int)(std::find(ds.classes.begin(), ds.classes.end(), l.cls) - ds.classes.begin());
      if (s == 1) {
        f.split = Split::Valid;
      } else if (!valid_data.empty()) {
        f.split = Split::Train;
      } else if (l.fixed_split) {
        f.split = l.split;
        any_fixed = true;
      } else {
        // Identity = class and file name, so the split does not depend on where the dataset
        // lives or how it is packed (train.zip's train/cat.0.jpg = an unpacked cat.0.jpg).
        f.split = split_hash(opt.seed, l.cls + "/" + basename_of(l.rel)) < opt.valid_fraction ? Split::Valid : Split::Train;
      }
      ds.files.push_back(f);
    }
  if (any_fixed) ds.layout += ", train/valid folders";
  ds.folder_split = any_fixed || !valid_data.empty();
  if (!valid_data.empty()) ds.layout += " + --valid-data " + layouts[1];
  if (opt.limit > 0 && (int64_t)ds.files.size() > opt.limit) {
    // A deterministic sample that mixes the classes: the files with the smallest hash.
    std::vector<std::pair<double, size_t>> order;
    for (size_t i = 0; i < ds.files.size(); i++)
      order.push_back({split_hash(opt.seed ^ 0x5EED5A3Bull, ds.files[i].rel), i});
    std::sort(order.begin(), order.end());
    std::vector<DataFile> keep;
    for (int64_t i = 0; i < opt.limit; i++) keep.push_back(ds.files[order[i].second]);
    ds.files = std::move(keep);
  }
  std::sort(ds.files.begin(), ds.files.end(),
            [](const DataFile& a, const DataFile& b) { return a.source != b.source ? a.source < b.source : a.rel < b.rel; });
  return ds;
}

}  // namespace tl
