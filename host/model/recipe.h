// recipe.h: the input recipe: everything that decides how a photo becomes the network's input
// (which weights, their input convention, image size, resize mode) and how cached features are
// stored (dtype). One function applies it to a file's bytes (decode -> resize -> preprocess), and
// one pair writes and reads it as the key/value settings of the cache manifest and of model files;
// no other code names those keys.
#pragma once
#include <cstdint>
#include <map>
#include <string>

#include "host/core/defaults.h"
#include "host/core/tensor.h"
#include "host/io/image.h"
#include "host/io/weights.h"

namespace tl {

struct InputRecipe {
  uint32_t weights_crc = 0;  // crc32 of the converted weights file; 0 when unknown (imported .npy features)
  std::string weights_arch, weights_file;  // weights_file: where it was, for messages (not identity)
  bool weights_synthetic = false;
  uint64_t weights_seed = 0;
  Preprocess preprocess = Preprocess::CaffeBGR;
  int image_size = kTutorialImageSize;
  Resize resize = Resize::Nearest;
  DType dtype = DType::F32;   // storage of cached features
  Precision precision = Precision::FP32;  // the conv base's arithmetic (--precision)
  // The cut (tl_cache --until): the pooling layer the features are taken after, by its Keras name
  // ("block4_pool"); "" = the whole base (its last pool), what every cache held before cuts existed.
  std::string cut;
  int feat_h = 0, feat_w = 0, feat_c = 0;  // what the base (up to the cut) gives at image_size
  // The whole base's last pool for these weights ("block5_pool" for VGG16), for messages.
  std::string cut_name() const { return cut.empty() ? "the whole base" : cut; }

  // The recipe of these weights at this size.
  static InputRecipe of(const VggWeights& w, const std::string& weights_file, int image_size, Resize resize,
                        DType dtype = DType::F32, Precision precision = Precision::FP32,
                        const std::string& cut = "");

  // A file's bytes -> the network's input (image_size^2 * 3 floats, HWC): decode, resize, preprocess.
  // Throws tl::Error with the reason for a file that cannot be used.
  void apply(const uint8_t* bytes, size_t n, const std::string& what, int64_t max_pixels, float* out) const;
  Image resized(const Image& decoded) const;            // the decode -> resize half
  void preprocessed(const Image& resized, float* out) const;  // and the preprocess half

  // Written into and read from the cache's settings (where the weights file is informational:
  // "info." keys are not part of the cache's identity) or a model's metadata.
  enum class Where { Cache, Model };
  void write(std::map<std::string, std::string>* kv, Where where) const;
  // Refuses (naming `what` and what to rebuild) a record that lacks what it needs.
  static InputRecipe read(const std::map<std::string, std::string>& kv, const std::string& what);

  std::string weights_crc_str() const;  // "%08x", or "unknown"
  // Fails unless w (loaded from wpath) are the weights these features were made with; prints a note
  // when that is unknown (imported features).
  void check_weights(const VggWeights& w, const std::string& wpath, const std::string& what) const;
};

}  // namespace tl
