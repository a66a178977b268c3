// input_options.h: what tl_cache (--data) and tl_train (--images) share: the dataset, its split and
// the input recipe's settings, with the tutorial's defaults, and the one declaration of their flags.
#pragma once
#include <cstdint>
#include <string>

#include "host/core/cli.h"
#include "host/model/recipe.h"

namespace tl {

struct DatasetInput {
  std::string data, valid_data, weights = kDefaultWeightsFile;
  int image_size = kTutorialImageSize;
  std::string resize = "nearest";
  std::string precision = "fp32";  // the conv base's arithmetic: fp32, tf32, bf16 (tensor.h)
  double valid_fraction = kTutorialValidFraction, max_bad = 0.05;
  uint64_t seed = 0;
  int64_t limit = 0, max_pixels = kMaxPixelsDefault;
  int64_t decode_memory_mb = kDecodeBudgetDefault >> 20;  // the decode memory budget (image.h)
};

// Declares the shared flags: data_flag ("--data" or "--images") and --valid-data, --weights,
// --image-size, --resize, --precision, --valid-fraction, --limit, --max-bad, --max-pixels, --decode-memory; every help text starts
// with `prefix` ("" or "with --images: "), the data flag's with data_help.
void add_input_flags(Cli& cli, DatasetInput* in, const char* data_flag, const std::string& prefix,
                     const std::string& data_help = "");
// Checks --max-pixels and --decode-memory and sets the process's decode memory budget from the latter.
void apply_decode_limits(const DatasetInput& in);

}  // namespace tl
