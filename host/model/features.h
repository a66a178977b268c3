// features.h: runs batches of preprocessed images through the frozen VGG base.
//
// run(): synchronous, features stay on the base's device (prediction, uncached training).
// submit()/flush(): the caching pipeline. On the GPU it double-buffers: the next batch is
// assembled in pinned host memory and copied on a second stream while the current one computes,
// and results come back (optionally as fp16, converted on the device) while the next runs.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>

#include "host/core/device.h"
#include "host/core/tensor.h"
#include "host/model/vgg.h"

namespace tl {

class FeatureExtractor {
 public:
  // n_layers: the cut (VggBase); 0: the whole base.
  FeatureExtractor(const VggWeights& w, Device d, int max_batch, int image_size, DType out_dtype = DType::F32,
                   Precision precision = Precision::FP32, int n_layers = 0);
  ~FeatureExtractor();
  int image_size() const { return size_; }
  int feat_h() const { return fh_; }
  int feat_w() const { return fh_; }
  int feat_c() const { return base_.out_channels(); }
  int64_t feat_elems() const { return (int64_t)fh_ * fh_ * base_.out_channels(); }
  int64_t input_elems() const { return (int64_t)size_ * size_ * 3; }
  Device device() const { return device_; }
  VggBase& base() { return base_; }

  // Host buffer for the next batch (pinned on the GPU): max_batch * input_elems floats.
  float* next_input();
  // Synchronous: the batch in next_input() -> features [n, fh, fw, C] on the device (a view,
  // valid until the next call).
  Tensor run(int n);
  // Pipelined: done(features on the host in out_dtype, n) is called for every batch, in order,
  // possibly after later submits; flush() waits for the rest.
  void submit(int n, std::function<void(const uint8_t*, int)> done);
  void flush();

 private:
  VggBase base_;
  Device device_;
  int max_batch_, size_, fh_;
  DType out_dtype_;
  int slot_ = 0;
  cuda::PinnedBuffer pinned_in_[2], pinned_out_[2];  // on the GPU
  float* host_in_[2] = {nullptr, nullptr};           // = pinned_in_, pinned_out_
  uint8_t* host_out_[2] = {nullptr, nullptr};
  Tensor dev_in_[2], dev_half_;
  void* events_[2] = {nullptr, nullptr};
  struct Pending {
    bool active = false;
    int n = 0;
    std::function<void(const uint8_t*, int)> done;
  } pending_[2];
  std::vector<float> cpu_in_;
  std::vector<uint8_t> cpu_out_;
  void complete(int slot);
};

}  // namespace tl
