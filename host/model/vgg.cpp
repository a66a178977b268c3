#include "host/model/vgg.h"

#include "host/ops/ops.h"

namespace tl {

VggBase::VggBase(const VggWeights& w, Device d, Precision precision, int n_layers)
    : w_(&w), device_(d), precision_(precision) {
  check_precision(precision, d);
  if (n_layers <= 0 || n_layers > (int)w.layers.size()) n_layers = (int)w.layers.size();
  for (int i = 0; i < n_layers; i++) {
    const ConvLayer& l = w.layers[(size_t)i];
    Layer L;
    L.w = Tensor({3, 3, l.spec.cin, l.spec.cout}, d);
    L.b = Tensor({l.spec.cout}, d);
    L.w.from_vector(l.w);
    L.b.from_vector(l.b);
    // The first layer computes in fp32 at every precision (forward()).
    L.prepared = ops::prepare_conv3x3(L.w, L.b, layers_.empty() ? Precision::FP32 : precision);
    layers_.push_back(std::move(L));
  }
}

Tensor VggBase::forward(const Tensor& x, bool final_pool) {
  if (x.ndim != 4 || x.dim(3) != w_->layers[0].spec.cin)
    fail("VGG forward: input %s, want [n, h, w, %d]", x.shape_str().c_str(), w_->layers[0].spec.cin);
  if (x.device != device_) fail("VGG forward: input on %s, base on %s", device_name(x.device), device_name(device_));
  const int64_t n = x.dim(0);
  int h = (int)x.dim(1), wd = (int)x.dim(2);
  // Two ping-pong buffers sized for the largest activation of this batch.
  int64_t need = 0;
  {
    int hh = h, ww = wd;
    for (size_t i = 0; i < layers_.size(); i++) {
      const ConvLayerSpec& l = w_->layers[i].spec;
      need = std::max<int64_t>(need, n * hh * ww * l.cout);
      if (l.pool_after) hh /= 2, ww /= 2;
    }
  }
  if (need > buf_elems_) {
    buf_[0] = Tensor({need}, device_);
    buf_[1] = Tensor({need}, device_);
    buf_elems_ = need;
  }
  ops::Range whole("vgg_forward");
  const Tensor* cur = &x;
  Tensor views[2];
  int which = 0;
  for (size_t i = 0; i < layers_.size(); i++) {
    const ConvLayerSpec& s = w_->layers[i].spec;
    // On AMX at bf16, the layers after the first run as one stack whose activations stay bf16
    // (bit-identical to running them one by one below; a third of the memory traffic).
    if (i == 1 && precision_ == Precision::BF16 && !x.on_cuda() && final_pool) {
      std::vector<const ops::PreparedConv*> stack;
      std::vector<bool> pools;
      int hh = h, ww = wd;
      for (size_t j = 1; j < layers_.size(); j++) {
        stack.push_back(layers_[j].prepared.get());
        pools.push_back(w_->layers[j].spec.pool_after);
        if (pools.back()) hh /= 2, ww /= 2;
      }
      Tensor out = Tensor::view(buf_[which].ptr, {n, hh, ww, (int64_t)out_channels()}, device_);
      if (ops::conv3x3_stack_bf16(*cur, stack, pools, out)) return out;
    }
    ops::Range r(s.name.c_str());
    Tensor out = Tensor::view(buf_[which].ptr, {n, h, wd, s.cout}, device_);
    // The first layer stays fp32 at every precision: its inputs are the raw preprocessed pixels
    // (|x| up to 152), whose rounding to bf16 alone doubled the base's feature error (1.08e-2 ->
    // 6.2e-3 relative L2 on real photos, tests/test_precision.cpp), for 0.6% of the FLOPs.
    ops::conv3x3(*cur, layers_[i].w, layers_[i].b, out, true, i == 0 ? Precision::FP32 : precision_,
                 layers_[i].prepared.get());
    views[which] = std::move(out);
    cur = &views[which];
    which ^= 1;
    if (s.pool_after && (final_pool || i + 1 < layers_.size())) {
      ops::Range rp("maxpool2x2");
      Tensor pooled = Tensor::view(buf_[which].ptr, {n, h / 2, wd / 2, s.cout}, device_);
      ops::maxpool2x2(*cur, pooled);
      views[which] = std::move(pooled);
      cur = &views[which];
      which ^= 1;
      h /= 2;
      wd /= 2;
    }
  }
  return Tensor::view(cur->ptr, {n, h, wd, (int64_t)out_channels()}, device_);
}

}  // namespace tl
