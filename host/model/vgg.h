// vgg.h: the frozen VGG conv base (13 conv3x3+ReLU and 5 max-pools for VGG16), built from a
// weights file and run on the CPU or the GPU with the ops of ops.h.
#pragma once
#include <memory>
#include <vector>

#include "host/core/tensor.h"
#include "host/io/weights.h"

namespace tl {
namespace ops {
struct PreparedConv;
}
}  // namespace tl

namespace tl {

class VggBase {
 public:
  // precision: the convolutions' arithmetic (tensor.h); tf32 and bf16 need a CUDA device. The
  // first layer (K = 27) computes in fp32 at every precision.
  // n_layers: run only the first n conv layers (a cut base, tl_cache --until; 0: all of them).
  VggBase(const VggWeights& w, Device d, Precision precision = Precision::FP32, int n_layers = 0);
  // x: [n, s, s, 3] preprocessed input on this base's device -> [n, s', s', C] (s' = s / 2^pools).
  // The returned tensor is a view of internal scratch, valid until the next call.
  // final_pool false: the last layer's pool (if it has one) is left out (Grad-CAM takes the conv's maps).
  Tensor forward(const Tensor& x, bool final_pool = true);
  Device device() const { return device_; }
  Precision precision() const { return precision_; }
  const VggWeights& weights() const { return *w_; }
  int num_layers() const { return (int)layers_.size(); }
  int out_channels() const { return w_->out_channels(num_layers()); }
  int out_size(int s) const { return w_->out_size(s, num_layers()); }
 private:
  const VggWeights* w_;
  Device device_;
  Precision precision_;
  struct Layer {
    Tensor w, b;
    std::shared_ptr<ops::PreparedConv> prepared;  // packed once for the kernel that runs it (AMX), or null
  };
  std::vector<Layer> layers_;
  Tensor buf_[2];
  int64_t buf_elems_ = 0;
};

}  // namespace tl
