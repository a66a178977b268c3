// npy.h: numpy .npy arrays and .npz archives (plain or compressed), read and written.
// Used by the weight converter (vgg16_weights.npz), the test fixtures, tl_train's import of the
// tutorial's *_activations.npy files and tl_inspect --export-npy.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace tl {

struct NpyHeader {
  std::string descr;            // e.g. "<f4", "<f8", "|u1", "<i8"
  bool fortran_order = false;
  std::vector<int64_t> shape;
  size_t data_offset = 0;       // bytes from the start of the .npy data
  size_t item_size = 0;
  int64_t numel() const;
  std::string shape_str() const;
};

// Parses the header of .npy bytes; `what` names the file in errors.
NpyHeader parse_npy_header(const uint8_t* p, size_t n, const std::string& what);

struct NpyArray {
  NpyHeader h;
  std::vector<uint8_t> bytes;  // the whole .npy (header + data)
  const uint8_t* data() const { return bytes.data() + h.data_offset; }
  // Values converted to float32 (from f2/f4/f8 and integer dtypes), C order.
  std::vector<float> to_f32(const std::string& what) const;
};

NpyArray read_npy(const std::string& path);

// A .npy file mapped read-only (for arrays too large to read, e.g. 23,076 x 7 x 7 x 512 float32).
class MappedNpy {
 public:
  explicit MappedNpy(const std::string& path);
  ~MappedNpy();
  MappedNpy(const MappedNpy&) = delete;
  MappedNpy& operator=(const MappedNpy&) = delete;
  const NpyHeader& header() const { return h_; }
  const uint8_t* data() const { return map_ + h_.data_offset; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const uint8_t* map_ = nullptr;
  size_t size_ = 0;
  NpyHeader h_;
};
NpyArray parse_npy(std::vector<uint8_t> bytes, const std::string& what);
// Keys are the archive member names without ".npy".
std::map<std::string, NpyArray> read_npz(const std::string& path);

// Writes a float32 / uint8 / int32 array as .npy (atomically: temporary name, then rename).
void write_npy_f32(const std::string& path, const float* data, const std::vector<int64_t>& shape);
void write_npy_u8(const std::string& path, const uint8_t* data, const std::vector<int64_t>& shape);
void write_npy_i32(const std::string& path, const int32_t* data, const std::vector<int64_t>& shape);
// The header bytes alone, for writers that stream the data after it.
std::vector<uint8_t> npy_header_bytes(const char* descr, const std::vector<int64_t>& shape);

}  // namespace tl
