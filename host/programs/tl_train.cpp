// tl_train: trains the tutorial's dense head on cached VGG16 activations (or on the tutorial's own
// .npy files), printing Keras-like epoch lines and writing the model, history, curves and a report.
#include <algorithm>
#include <cstdio>

#include "host/core/cli.h"
#include "host/core/common.h"
#include "host/core/log.h"
#include "host/core/threads.h"
#include "host/stages/finetune.h"
#include "host/stages/image_source.h"
#include "host/stages/train.h"

using namespace tl;

namespace {
FineTuneOptions finetune_options(const std::string& block, int warmup, const TrainOptions& o) {
  FineTuneOptions ft;
  ft.block = block;
  ft.warmup = warmup >= 0 ? warmup : (o.from.empty() ? 2 : 0);
  if (ft.warmup >= o.epochs)
    warn("--fine-tune: --epochs %d ends within the %d warm-up epochs: %s does not train in this run (continue with "
         "--resume --epochs N, N > %d)",
         o.epochs, ft.warmup, block.c_str(), ft.warmup);
  if (!(o.fine_tune_lr > 0)) fail("--fine-tune-lr must be > 0, got %g", o.fine_tune_lr);
  ft.opt = RmsProp{(float)o.fine_tune_lr, (float)o.rho, (float)o.eps};
  return ft;
}
}  // namespace

int main(int argc, char** argv) {
  return guarded_main("tl_train", [&] {
    TrainOptions o;
    std::string cache = "cache", npy, device = "auto";
    int threads = 0, save_augmented = 0;
    bool no_plots = false;
    ImageSourceOptions io;
    Cli cli("tl_train", "tl_train [--cache DIR | --npy DIR] [--out DIR] [--epochs N] [options]",
            "Trains Flatten -> Dense(400, relu) -> Dropout(0.2) -> Dense(20, relu) -> Dense(1, sigmoid) with binary\n"
            "cross-entropy and RMSprop (tf.keras 2.x: lr 0.001, rho 0.9, epsilon 1e-7 outside the square root) on\n"
            "the cached features. Writes to --out: model.bin (last epoch, with optimiser state), best.bin (lowest\n"
            "validation loss), history.csv, curves.png and report.txt (confusion matrix, log loss).\n"
            "With --images, features are computed by the frozen base for every batch instead (the tutorial's\n"
            "uncached path, which allows --augment); the loop, outputs and guards are the same.");
    cli.opt("--cache", &cache, "DIR", "cache made by tl_cache");
    cli.opt("--npy", &npy, "DIR",
            "train on the tutorial's numpy files instead: DIR/train_activations.npy, train_labels.npy, "
            "validation_activations.npy, validation_labels.npy (float32 N x 7 x 7 x 512)");
    add_input_flags(cli, &io, "--images", "with --images: ", "train without a cache, on ");
    cli.flag("--augment", &io.augment,
             "with --images: Keras ImageDataGenerator augmentation of the training batches (rotation 40, shifts 0.2, "
             "shear 0.2, zoom 0.2, horizontal flip, nearest fill); validation is never augmented");
    cli.opt("--save-augmented", &save_augmented, "N",
            "with --images: write N augmented training samples as PNG strips to --out/augmented/");
    std::string fine_tune;
    int warmup = -1;
    cli.opt("--fine-tune", &fine_tune, "BLOCK",
            "train a conv block (and every block above it) with the head (the book's next step): block5 on a cache "
            "made with tl_cache --until block4_pool (block4: blocks 4 and 5 on a block3_pool cache), or with --images "
            "(the blocks below frozen in the loop, --augment allowed). First --warmup epochs "
            "of the head alone on the frozen block, then block and head together at --fine-tune-lr; the model holds "
            "the tuned block (tl_predict uses it)");
    cli.opt("--warmup", &warmup, "N", "with --fine-tune: epochs of the head alone first (default 2; 0 with --from)");
    cli.opt("--fine-tune-lr", &o.fine_tune_lr, "F",
            "with --fine-tune: RMSprop rate of the block and the head while the block trains (default 3e-5, chosen on the 4k validation set; the book: 1e-5)");
    cli.opt("--from", &o.from, "MODEL", "start from this trained head (e.g. a frozen run's best.bin) instead of new weights");
    cli.opt("--out", &o.out, "DIR", "output folder");
    cli.opt("--dropout", &o.dropout, "F", "dropout rate after the first dense layer");
    cli.opt("--epochs", &o.epochs, "N", "epochs (default 10: the validation loss of this head bottoms out within a few)");
    cli.opt("--batch", &o.batch, "N", "batch size");
    cli.opt("--lr", &o.lr, "F", "RMSprop learning rate");
    cli.opt("--seed", &o.seed, "N", "seed of the initial weights, the shuffling and the dropout masks");
    cli.opt("--device", &device, "D", "auto, cpu or cuda");
    cli.opt("--threads", &threads, "N", "CPU threads (0: all cores; results are identical for any count)");
    cli.flag("--resume", &o.resume, "continue from --out/model.bin (weights, optimiser state, epoch) to --epochs");
    cli.flag("--force", &o.force, "replace an earlier run in --out (without it, one is refused)");
    cli.opt("--monitor", &o.monitor, "M",
            "which epoch best.bin keeps: val_loss (the lowest; Keras' default) or val_accuracy (the highest)");
    cli.opt("--patience", &o.patience, "N", "stop after N epochs without a lower validation loss (0: never)");
    cli.opt("--clip", &o.clip, "F", "the report's clipped log loss clips probabilities to [F, 1-F]");
    cli.flag("--no-plots", &no_plots, "do not draw curves.png");
    bool quiet_flag = false;
    cli.flag("--quiet", &quiet_flag, "only errors");
    if (!cli.parse(argc, argv)) return 0;
    set_quiet(quiet_flag);
    if (threads > 0) set_num_threads(threads);
    if (!(o.clip >= 0 && o.clip < 0.5)) fail("--clip must be in [0, 0.5), got %g", o.clip);
    o.plots = !no_plots;
    install_interrupt_handler();
    o.device = resolve_device(device);
    std::unique_ptr<FeatureSource> src;
    if (!io.data.empty()) {
      if (cli.given("--cache") || !npy.empty()) fail("give one of --cache, --npy or --images");
      io.seed = o.seed;
      io.base_batch = default_base_batch(o.device);
      io.device = o.device;
      if (save_augmented > 0) save_augmented_samples(io, save_augmented, path_join(o.out, "augmented"));
      src = fine_tune.empty() ? open_image_source(io) : open_finetune_images(io, finetune_options(fine_tune, warmup, o));
    } else if (io.augment || save_augmented > 0 || cli.given("--valid-data")) {
      fail("--augment, --save-augmented and --valid-data need --images (training without a cache)");
    } else if (cli.given("--precision")) {
      fail("--precision needs --images: cached features were computed at the precision their cache records "
           "(tl_inspect shows it; make the cache with tl_cache --precision)");
    } else if (!npy.empty()) {
      if (cli.given("--cache")) fail("give --cache or --npy, not both");
      src = open_npy_source(npy, o.device);
    } else if (!fine_tune.empty()) {
      FineTuneOptions ft = finetune_options(fine_tune, warmup, o);
      if (cli.given("--weights")) ft.weights = io.weights;  // else the file the cache records
      src = open_finetune_source(cache, o.device, ft);
    } else {
      src = open_cached_source(cache, o.device);
    }
    if (fine_tune.empty() && (warmup >= 0 || cli.given("--fine-tune-lr")))
      fail("--warmup and --fine-tune-lr go with --fine-tune");
    TrainResult r = train_head(*src, o);
    if (r.nan_stop) return 2;
    if (r.interrupted) return 130;
    return 0;
  });
}
