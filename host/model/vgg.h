// vgg.h: the frozen VGG conv base (13 conv3x3+ReLU and 5 max-pools for VGG16), built from a
// weights file and run on the CPU or the GPU with the ops of ops.h.
#pragma once
#include <memory>
#include <vector>

#include "host/core/tensor.h"
#include "host/io/weights.h"

namespace tl {

class VggBase {
 public:
  VggBase(const VggWeights& w, Device d);
  // x: [n, s, s, 3] preprocessed input on this base's device -> [n, s', s', C] (s' = s / 2^pools).
  // The returned tensor is a view of internal scratch, valid until the next call.
  Tensor forward(const Tensor& x);
  Device device() const { return device_; }
  const VggWeights& weights() const { return *w_; }
  int out_channels() const { return w_->out_channels(); }
  int out_size(int s) const { return w_->out_size(s); }
 private:
  const VggWeights* w_;
  Device device_;
  struct Layer {
    Tensor w, b;
  };
  std::vector<Layer> layers_;
  Tensor buf_[2];
  int64_t buf_elems_ = 0;
};

}  // namespace tl
