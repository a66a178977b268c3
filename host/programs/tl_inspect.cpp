// tl_inspect: prints the header and contents summary of any file the project writes (weights,
// activation shards, cache manifests, head models) and verifies its checksum.
#include <cstdio>
#include <cstring>

#include "host/core/cli.h"
#include "host/core/common.h"
#include "host/stages/inspect.h"

using namespace tl;

int main(int argc, char** argv) {
  return guarded_main("tl_inspect", [&] {
    std::vector<std::string> args;
    bool export_npy = false;
    Cli cli("tl_inspect", "tl_inspect FILE...\n       tl_inspect --export-npy SHARD_OR_CACHE_DIR OUT_PREFIX",
            "Prints the header and a summary of a weights file, an activation shard, a cache directory or its\n"
            "manifest, or a trained head model, and verifies its crc32. Exit status 1 when any file fails.");
    cli.positional(&args, "FILE...", "files or cache directories to inspect");
    cli.flag("--export-npy", &export_npy,
             "write OUT_PREFIX_features.npy (N x 7 x 7 x 512 float32, Keras' NHWC order), OUT_PREFIX_labels.npy "
             "and OUT_PREFIX_ids.npy from a shard or a whole cache (per split: OUT_PREFIX_train_*, "
             "OUT_PREFIX_valid_*)");
    if (!cli.parse(argc, argv)) return 0;
    if (export_npy) {
      if (args.size() != 2) fail("--export-npy takes SHARD_OR_CACHE_DIR OUT_PREFIX; see tl_inspect --help");
      export_npy_files(args[0], args[1]);
      return 0;
    }
    if (args.empty()) fail("no file given; see tl_inspect --help");
    int bad = 0;
    for (const std::string& a : args) {
      try {
        inspect_path(a, stdout);
      } catch (const Error& e) {
        fprintf(stderr, "tl_inspect: error: %s\n", e.what());
        bad++;
      }
    }
    return bad ? 1 : 0;
  });
}
