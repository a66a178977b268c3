// tl_convert: published VGG weights (Keras .h5, PyTorch .pth, numpy .npz) -> the engine's raw
// format, or deterministic synthetic weights for tests and demos.
#include <cstdio>

#include "host/core/cli.h"
#include "host/core/common.h"
#include "host/io/weights.h"
#include "tools/convert/convert.h"

using namespace tl;

int main(int argc, char** argv) {
  return guarded_main("tl_convert", [&] {
    std::vector<std::string> args;
    std::string synthetic_out, arch = "vgg16", pre_s;
    uint64_t seed = 1;
    bool force = false;
    Cli cli("tl_convert", "tl_convert IN OUT [--preprocess P]\n       tl_convert --synthetic OUT [--seed N] [--arch vgg16]",
            "Converts published VGG conv-base weights into the engine's raw format (weights/FORMAT.md). The input\n"
            "format is detected from the content: Keras .h5 (vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5),\n"
            "PyTorch .pth (vgg16-397923af.pth, legacy or zip serialisation) or numpy .npz (vgg16_weights.npz).\n"
            "The input convention the weights expect is recorded in the file and applied automatically:\n"
            "Keras -> caffe (BGR, mean subtracted), PyTorch -> torch (RGB/255, mean/std), npz -> caffe-rgb.\n"
            "Dense/classifier layers are ignored.");
    cli.positional(&args, "IN OUT", "published weights file, and the raw file to write");
    cli.opt("--synthetic", &synthetic_out, "OUT",
            "write deterministic synthetic weights instead (He-uniform; NOT ImageNet weights: accuracy from them "
            "means nothing)");
    cli.opt("--seed", &seed, "N", "seed of the synthetic weights");
    cli.opt("--arch", &arch, "NAME", "architecture of the synthetic weights: vgg11, vgg13, vgg16, vgg19");
    cli.opt("--preprocess", &pre_s, "P",
            "override the input convention: caffe, torch or caffe-rgb (default: implied by the input format)");
    cli.flag("--force", &force, "overwrite OUT if it exists");
    cli.epilog("Get the real weights (on a machine with internet):\n"
               "  Keras:  https://storage.googleapis.com/tensorflow/keras-applications/vgg16/"
               "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5\n"
               "  torch:  https://download.pytorch.org/models/vgg16-397923af.pth\n"
               "then: ./tl_convert vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5 weights/vgg16_notop.bin");
    if (!cli.parse(argc, argv)) return 0;
    Preprocess pre_override{};
    const bool have_pre = !pre_s.empty();
    if (have_pre) pre_override = parse_preprocess(pre_s);

    if (!synthetic_out.empty()) {
      if (!args.empty()) fail("--synthetic takes no IN/OUT arguments; see tl_convert --help");
      if (file_exists(synthetic_out) && !force) {
        // Same content already there: nothing to do (keeps `make demo` idempotent).
        VggWeights want = synthetic_weights(arch, seed, have_pre ? pre_override : Preprocess::CaffeBGR);
        std::vector<uint8_t> bytes = serialize_weights(want);
        if (read_file(synthetic_out) == bytes) {
          printf("%s: already holds synthetic %s weights (seed %llu)\n", synthetic_out.c_str(), arch.c_str(),
                 (unsigned long long)seed);
          return 0;
        }
        fail("%s exists; pass --force to overwrite it", synthetic_out.c_str());
      }
      VggWeights w = synthetic_weights(arch, seed, have_pre ? pre_override : Preprocess::CaffeBGR);
      save_weights(w, synthetic_out);
      VggWeights back = load_weights(synthetic_out);
      printf("wrote %s: %s\n", synthetic_out.c_str(), back.describe().c_str());
      printf("crc32 %08x, %s. These are SYNTHETIC weights: features and accuracies from them say nothing about "
             "transfer learning.\n",
             back.crc, human_bytes((double)file_size(synthetic_out)).c_str());
      return 0;
    }
    if (args.size() != 2) fail("expected IN and OUT (or --synthetic OUT); see tl_convert --help");
    const std::string& in = args[0];
    const std::string& out = args[1];
    if (file_exists(out) && !force) fail("%s exists; pass --force to overwrite it", out.c_str());
    WeightsFormat fmt;
    double t0 = now_s();
    VggWeights w = convert_weights(in, have_pre ? &pre_override : nullptr, &fmt);
    save_weights(w, out);
    VggWeights back = load_weights(out);  // re-read: proves the file is whole
    printf("read %s as %s in %.2f s\n", in.c_str(), weights_format_name(fmt), now_s() - t0);
    printf("wrote %s: %s, crc32 %08x\n", out.c_str(), back.describe().c_str(), back.crc);
    printf("input convention: %s\n", preprocess_formula(back.preprocess).c_str());
    if (back.known == "keras-vgg16-imagenet") {
      const std::string bad = check_keras_published_values(back);
      if (!bad.empty()) fail("%s: %s; these are not the genuine Keras weights", in.c_str(), bad.c_str());
      printf("checked against every value in shared/weights/REFERENCE_VALUES.md: all 13 layers match\n");
    }
    if (const KnownWeights* k = known_weights_by_key(back.known))
      printf("known weights: %s (fingerprint %016llx)%s\n", k->description, (unsigned long long)back.fingerprint,
             have_pre && pre_override != k->preprocess ? "; NOTE: --preprocess overrides the convention they expect" : "");
    else
      printf("fingerprint %016llx: not a release this engine knows\n", (unsigned long long)back.fingerprint);
    const ConvLayer& l0 = back.layers[0];
    printf("check against ../shared/weights/REFERENCE_VALUES.md: %s bias[0:4] =", l0.spec.name.c_str());
    for (int i = 0; i < 4 && i < (int)l0.b.size(); i++) printf(" %.8g", l0.b[i]);
    printf("\n");
    if (back.arch == "custom")
      printf("note: the layer list matches no standard VGG (11/13/16/19); it loads as a custom architecture\n");
    return 0;
  });
}
