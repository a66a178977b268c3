// hdf5.h: a read-only subset of HDF5, enough for Keras weight files (the VGG16 notop .h5) and
// the files h5py writes with its default settings.
//
// Supported: superblock versions 0-3; object header versions 1 and 2 with continuation blocks;
// groups stored as symbol tables (v1 B-tree + local heap, what h5py/Keras write by default) or
// as compact link messages; datasets with contiguous, compact or chunked (v1 B-tree) layout,
// optionally deflate- and shuffle-filtered; float and integer element types, little-endian;
// attributes with fixed-length strings (Keras' layer_names / weight_names). Anything else is a
// one-line error that names the file and the construct. All reads are bounds-checked.
#pragma once
#include <cstdint>
#include <set>
#include <string>
#include <vector>

namespace tl {

class H5File {
 public:
  explicit H5File(const std::string& path);
  static bool is_hdf5(const uint8_t* p, size_t n);  // the signature at offset 0 (or a user block)

  uint64_t root() const { return root_; }
  struct Link {
    std::string name;
    uint64_t addr;
  };
  std::vector<Link> children(uint64_t obj) const;  // empty for a dataset
  bool is_group(uint64_t obj) const;
  bool is_dataset(uint64_t obj) const;
  // Resolves "a/b/c" relative to obj; returns false when absent.
  bool find(uint64_t obj, const std::string& path, uint64_t* out) const;
  // Fixed-length string attribute (array or scalar); false when absent or not a string.
  bool string_attr(uint64_t obj, const std::string& name, std::vector<std::string>* out) const;

  struct Dataset {
    std::vector<int64_t> shape;
    std::vector<float> data;  // converted to float32, C order
  };
  Dataset read_dataset(uint64_t obj, const std::string& what) const;
  const std::string& path() const { return path_; }

 private:
  struct Msg {
    uint16_t type;
    const uint8_t* p;
    size_t n;
  };
  std::string path_;
  std::vector<uint8_t> buf_;
  uint64_t base_ = 0, root_ = 0;
  int so_ = 8, sl_ = 8;  // size of offsets, size of lengths

  std::vector<Msg> messages(uint64_t addr) const;
  void parse_messages(const uint8_t* p, size_t n, int version, bool creation_order, std::vector<Msg>& out,
                      std::vector<std::pair<uint64_t, uint64_t>>& cont) const;
  const uint8_t* at(uint64_t addr, uint64_t n) const;  // bounds-checked pointer (addr relative to base)
  uint64_t off(const uint8_t*& p) const;  // reads a size-of-offsets value
  uint64_t len(const uint8_t*& p) const;  // reads a size-of-lengths value
  void symbol_table(uint64_t btree, uint64_t heap, std::vector<Link>& out, int depth, std::set<uint64_t>& seen) const;
  [[noreturn]] void bad(const char* what) const;
};

}  // namespace tl
