#include "host/model/features.h"

#include <cstring>

#include "host/ops/cpu_ops.h"
#include "host/core/device.h"
#include "host/ops/ops.h"

namespace tl {

FeatureExtractor::FeatureExtractor(const VggWeights& w, Device d, int max_batch, int image_size, DType out_dtype,
                                   Precision precision, int n_layers)
    : base_(w, d, precision, n_layers), device_(d), max_batch_(max_batch), size_(image_size), out_dtype_(out_dtype) {
  fh_ = base_.out_size(image_size);
  if (fh_ < 1)
    fail("--image-size %d is too small for %s: its %d pools need at least %d pixels", image_size, w.arch.c_str(),
         w.num_pools(), 1 << w.num_pools());
  const size_t in_bytes = (size_t)max_batch * input_elems() * sizeof(float);
  const size_t out_bytes = (size_t)max_batch * feat_elems() * dtype_size(out_dtype);
  if (d == Device::CUDA) {
    for (int s = 0; s < 2; s++) {
      pinned_in_[s] = cuda::PinnedBuffer(in_bytes);
      pinned_out_[s] = cuda::PinnedBuffer(out_bytes);
      host_in_[s] = (float*)pinned_in_[s].get();
      host_out_[s] = (uint8_t*)pinned_out_[s].get();
      dev_in_[s] = Tensor({max_batch, image_size, image_size, 3}, d);
      events_[s] = cuda::event_create();
    }
    if (out_dtype == DType::F16) dev_half_ = Tensor({(int64_t)max_batch * feat_elems()}, d, DType::F16);
  } else {
    cpu_in_.resize((size_t)max_batch * input_elems());
    cpu_out_.resize(out_bytes);
  }
}

FeatureExtractor::~FeatureExtractor() {
  if (device_ == Device::CUDA) {
    try {
      cuda::sync_compute_stream();
    } catch (...) {
    }
    for (int s = 0; s < 2; s++) cuda::event_destroy(events_[s]);
  }
}

float* FeatureExtractor::next_input() { return device_ == Device::CUDA ? host_in_[slot_] : cpu_in_.data(); }

Tensor FeatureExtractor::run(int n) {
  TL_ASSERT(n >= 1 && n <= max_batch_);
  if (device_ == Device::CPU) {
    Tensor x = Tensor::view(cpu_in_.data(), {n, size_, size_, 3});
    return base_.forward(x);
  }
  Tensor x = Tensor::view(dev_in_[slot_].ptr, {n, size_, size_, 3}, device_);
  cuda::memcpy_h2d(x.ptr, host_in_[slot_], x.bytes());
  return base_.forward(x);
}

void FeatureExtractor::complete(int s) {
  Pending& p = pending_[s];
  if (!p.active) return;
  cuda::event_sync(events_[s]);
  p.active = false;
  p.done(host_out_[s], p.n);
}

void FeatureExtractor::submit(int n, std::function<void(const uint8_t*, int)> done) {
  TL_ASSERT(n >= 1 && n <= max_batch_);
  const int64_t fe = feat_elems();
  if (device_ == Device::CPU) {
    Tensor x = Tensor::view(cpu_in_.data(), {n, size_, size_, 3});
    Tensor y = base_.forward(x);
    if (out_dtype_ == DType::F16)
      cpu::f32_to_f16(y.f32(), (uint16_t*)cpu_out_.data(), (int64_t)n * fe);
    else
      memcpy(cpu_out_.data(), y.ptr, (size_t)n * fe * sizeof(float));
    done(cpu_out_.data(), n);
    return;
  }
  // GPU: input copy on the copy stream, compute and result copy on the compute stream.
  const int s = slot_;
  Tensor x = Tensor::view(dev_in_[s].ptr, {n, size_, size_, 3}, device_);
  cuda::memcpy_h2d_async_copy_stream(x.ptr, host_in_[s], x.bytes());
  cuda::compute_waits_for_copy();
  Tensor y = base_.forward(x);
  const size_t out_bytes = (size_t)n * fe * dtype_size(out_dtype_);
  if (out_dtype_ == DType::F16) {
    Tensor yf = Tensor::view(y.ptr, {(int64_t)n * fe}, device_);
    Tensor h = Tensor::view(dev_half_.ptr, {(int64_t)n * fe}, device_, DType::F16);
    ops::to_f16(yf, h);
    cuda::memcpy_d2h_async_compute_stream(host_out_[s], h.ptr, out_bytes);
  } else {
    cuda::memcpy_d2h_async_compute_stream(host_out_[s], y.ptr, out_bytes);
  }
  cuda::event_record(events_[s]);
  pending_[s] = {true, n, std::move(done)};
  // While this batch runs: hand back the previous one, then the caller fills the other slot.
  slot_ ^= 1;
  complete(slot_);
}

void FeatureExtractor::flush() {
  if (device_ != Device::CUDA) return;
  complete(slot_);
  complete(slot_ ^ 1);
}

}  // namespace tl
