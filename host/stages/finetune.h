// finetune.h: fine-tuning a conv block with the head (tl_train --fine-tune block5), as the
// tutorial's book does next: the cache holds the activations before the block (tl_cache --until
// block4_pool); each batch runs the block (conv+ReLU x3, pool) on them, and after the warm-up epochs
// (the head alone on the frozen block) the head's gradient flows back into the block, whose weights
// take an RMSprop step at a low rate. The block's weights and optimiser state live in the model file.
#pragma once
#include <memory>
#include <string>

#include "host/model/head.h"
#include "host/stages/image_source.h"
#include "host/stages/train.h"

namespace tl {

struct FineTuneOptions {
  std::string block = "block5";  // the block to train (its Keras prefix); the cache must be cut before it
  int warmup = 2;                // epochs of the head alone on the frozen block first
  std::string weights;           // the converted weights the cache was made with ("": the cache's record)
  RmsProp opt{1e-5f, 0.9f, 1e-7f};
};

// From a cache cut below the block (tl_cache --until block4_pool for block5).
std::unique_ptr<FeatureSource> open_finetune_source(const std::string& cache_dir, Device d, const FineTuneOptions& o);
// From images (tl_train --images --fine-tune): the layers below the block run frozen in the loop,
// with --augment if asked.
std::unique_ptr<FeatureSource> open_finetune_images(ImageSourceOptions io, const FineTuneOptions& o);

// The pooling layer a block's fine-tuning cache is cut at ("block5" -> "block4_pool"); fails naming
// the blocks there are.
std::string finetune_cut(const VggWeights& w, const std::string& block, int* first_layer = nullptr);

// A model's fine-tuned layers put into w (the weights its base starts from): fails unless each
// names a layer of w with the same shape.
void apply_tuned_layers(const ModelFile& m, VggWeights& w, const std::string& what);

}  // namespace tl
