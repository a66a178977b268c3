#include "inspect.h"

#include <cstring>

#include "common.h"
#include "weights.h"

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
  fprintf(out, "  parameters     %lld\n", (long long)w.num_params());
  fprintf(out, "  output         %dx%dx%d for a 224x224 input\n", w.out_size(224), w.out_size(224), w.out_channels());
  fprintf(out, "  crc32          %08x (verified)\n", w.crc);
  fprintf(out, "  %-14s %6s %6s %10s  %s\n", "layer", "in", "out", "params", "then");
  for (const ConvLayer& l : w.layers)
    fprintf(out, "  %-14s %6d %6d %10zu  %s\n", l.spec.name.c_str(), l.spec.cin, l.spec.cout, l.w.size() + l.b.size(),
            l.spec.pool_after ? "relu, maxpool 2x2" : "relu");
}

}  // namespace

void inspect_path(const std::string& path, FILE* out) {
  if (!file_exists(path)) {
    if (dir_exists(path)) fail("%s: a directory, but not a cache (no manifest.tsv)", path.c_str());
    fail("%s: not found", path.c_str());
  }
  char magic[8] = {0};
  FILE* f = fopen(path.c_str(), "rb");
  if (!f) fail("%s: cannot open", path.c_str());
  size_t n = fread(magic, 1, 8, f);
  fclose(f);
  if (n == 8 && memcmp(magic, kWeightsMagic, 8) == 0) return inspect_weights(path, out);
  fail("%s: not a file this project writes (unknown magic)", path.c_str());
}

void export_npy_files(const std::string& src, const std::string& prefix) {
  (void)prefix;
  fail("%s: not an activation shard or cache directory", src.c_str());
}

}  // namespace tl
