// dataset.h: finds the labelled images of a dataset and splits them into train and validation.
//
// Sources: a directory or a .zip archive (read in place with zlib). Layouts, detected from the
// file names:
//   Kaggle flat     cat.0.jpg, dog.0.jpg, ... in one folder (train.zip holds train/cat.0.jpg ...)
//   class folders   cat/ dog/, Cat/ Dog/ (Microsoft's PetImages), cats/ dogs/, ... at any depth;
//                   classes are the folder names, sorted (cat = 0, dog = 1), as Keras'
//                   flow_from_directory does
// A directory holding train/ and valid/ (or validation/) sub-trees uses them as the split.
// The split is by file identity: a file is in validation when a hash of (seed, its class and file
// name) falls below the validation fraction, so adding files, listing them in another order, or
// packing them differently (Kaggle's train.zip or the unpacked folder) never moves a file
// between the sets.
#pragma once
#include "host/core/defaults.h"
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace tl {

class ZipReader;

enum class Split : uint8_t { Train = 0, Valid = 1 };
const char* split_name(Split s);

struct DataFile {
  std::string rel;       // path inside the dataset, '/'-separated (the identity used for the split)
  int label = -1;        // index into Dataset::classes
  Split split = Split::Train;
  uint64_t bytes = 0;
  int source = 0;        // which DataSource holds it
};

// Where image bytes come from: a directory or a zip archive.
class DataSource {
 public:
  explicit DataSource(const std::string& path);
  ~DataSource();
  const std::string& path() const { return path_; }
  bool is_zip() const { return zip_ != nullptr; }
  // Every regular file below the source: (relative path, size).
  std::vector<std::pair<std::string, uint64_t>> list() const;
  std::vector<uint8_t> read(const std::string& rel, uint64_t max_bytes) const;

 private:
  std::string path_;
  std::unique_ptr<ZipReader> zip_;
  std::vector<std::pair<std::string, size_t>> zip_index_;  // sorted name -> entry index
};

struct Dataset {
  std::vector<std::unique_ptr<DataSource>> sources;
  std::vector<DataFile> files;  // sorted by (source, rel); ids are indices into this list
  std::vector<std::string> classes;
  std::string layout;           // "kaggle-flat", "class-folders", "train/valid folders"
  int64_t ignored = 0;          // files that are not images by their extension (Thumbs.db, ...)
  bool folder_split = false;    // the split came from train/ and valid/ folders (or --valid-data)

  int64_t count(Split s) const;
  int64_t count(Split s, int label) const;
  // Hash of every (source, rel, bytes, label, split): a changed dataset gives another value.
  uint64_t listing_hash() const;
  std::vector<uint8_t> read(const DataFile& f, uint64_t max_bytes) const;
  std::string display_path(const DataFile& f) const;  // source path + rel, for messages
};

struct ScanOptions {
  double valid_fraction = kTutorialValidFraction;
  uint64_t seed = 0;
  int64_t limit = 0;  // 0: all; else a deterministic sample of this many files (by hash)
};

// data: a directory or zip; valid_data (optional): an explicit validation set, which turns
// off the hash split. Throws tl::Error with what was expected when nothing usable is found.
Dataset scan_dataset(const std::string& data, const std::string& valid_data, const ScanOptions& opt);

// The split hash of one file: uniform in [0, 1).
double split_hash(uint64_t seed, const std::string& rel);

bool has_image_extension(const std::string& name);

}  // namespace tl
