// conv_block.h: VGG conv layers above a cut (conv+ReLU, each optionally followed by a 2x2 max-pool)
// that keep their activations for a backward pass: the trainable block5 of fine-tuning
// (tl_train --fine-tune) and Grad-CAM's layers above the map it explains (tl_predict --explain).
#pragma once
#include <vector>

#include "host/core/tensor.h"
#include "host/io/weights.h"

namespace tl {

class ConvBlock {
 public:
  // Layers first..end of w, in order; pool_first: a 2x2 max-pool before the first of them (the pool
  // that follows the layer below the cut). first == w.layers.size() with pool_first: the pool alone.
  ConvBlock(const VggWeights& w, int first, bool pool_first, Device d, Precision p = Precision::FP32);
  // x [n,h,w,cin] on this block's device -> the block's output (a view valid until the next call).
  // The activations backward() needs are kept.
  Tensor forward(const Tensor& x);
  // dy: the gradient at the last forward()'s output -> dx at its input (null: not wanted). With
  // weight_grads, each conv's dw and db land in grads() (overwritten, not accumulated).
  void backward(const Tensor& dy, Tensor* dx, bool weight_grads);
  int num_convs() const { return (int)convs_.size(); }
  // Per conv, in order: w [3,3,cin,cout], b [cout]; the same for the gradients.
  std::vector<Tensor*> params();
  std::vector<Tensor*> grads();
  // The block's layer names (e.g. "block5_conv1"), in order.
  std::vector<std::string> names() const;
  Device device() const { return device_; }

 private:
  struct Step {
    int conv = -1;  // index into convs_, or -1: a 2x2 max-pool
  };
  struct Conv {
    std::string name;
    int cin = 0, cout = 0;
    Tensor w, b, dw, db;
  };
  Device device_;
  Precision precision_;
  std::vector<Conv> convs_;
  std::vector<Step> steps_;
  std::vector<Tensor> acts_;  // acts_[k]: the input of step k; acts_.back(): the output
  std::vector<Tensor> grad_;  // grad_[k]: the gradient at acts_[k] (scratch)
  int64_t batch_ = -1;
  int h_ = 0, w_ = 0;
};

}  // namespace tl
