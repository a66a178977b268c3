#include "host/model/conv_block.h"

#include "host/core/common.h"
#include "host/ops/ops.h"

namespace tl {

ConvBlock::ConvBlock(const VggWeights& w, int first, bool pool_first, Device d, Precision p)
    : device_(d), precision_(p) {
  if (first < 0 || first > (int)w.layers.size()) fail("conv block: layer %d of %zu", first, w.layers.size());
  check_precision(p, d);
  if (pool_first) steps_.push_back(Step{});
  for (size_t i = (size_t)first; i < w.layers.size(); i++) {
    const ConvLayer& l = w.layers[i];
    Conv c;
    c.name = l.spec.name;
    c.cin = l.spec.cin;
    c.cout = l.spec.cout;
    c.w = Tensor({3, 3, c.cin, c.cout}, d);
    c.b = Tensor({c.cout}, d);
    c.w.from_vector(l.w);
    c.b.from_vector(l.b);
    c.dw = Tensor({3, 3, c.cin, c.cout}, d);
    c.db = Tensor({c.cout}, d);
    convs_.push_back(std::move(c));
    steps_.push_back(Step{(int)convs_.size() - 1});
    if (l.spec.pool_after) steps_.push_back(Step{});
  }
}

Tensor ConvBlock::forward(const Tensor& x) {
  if (x.ndim != 4 || x.device != device_) fail("conv block: input %s on %s", x.shape_str().c_str(), device_name(x.device));
  const int64_t n = x.dim(0);
  const int h = (int)x.dim(1), wd = (int)x.dim(2);
  if (!convs_.empty() && x.dim(3) != convs_[0].cin)
    fail("conv block: input %s, want %d channels (%s)", x.shape_str().c_str(), convs_[0].cin, convs_[0].name.c_str());
  if (n != batch_ || h != h_ || wd != w_) {  // activations sized for this batch
    acts_.clear();
    grad_.clear();
    int hh = h, ww = wd;
    int64_t c = x.dim(3);
    acts_.emplace_back(std::vector<int64_t>{n, hh, ww, c}, device_);
    for (const Step& s : steps_) {
      if (s.conv < 0)
        hh /= 2, ww /= 2;
      else
        c = convs_[(size_t)s.conv].cout;
      acts_.emplace_back(std::vector<int64_t>{n, hh, ww, c}, device_);
    }
    for (const Tensor& a : acts_) grad_.emplace_back(std::vector<int64_t>{a.dim(0), a.dim(1), a.dim(2), a.dim(3)}, device_);
    batch_ = n;
    h_ = h;
    w_ = wd;
  }
  acts_[0].copy_from(x);
  for (size_t k = 0; k < steps_.size(); k++) {
    if (steps_[k].conv < 0) {
      ops::maxpool2x2(acts_[k], acts_[k + 1]);
    } else {
      Conv& c = convs_[(size_t)steps_[k].conv];
      ops::conv3x3(acts_[k], c.w, c.b, acts_[k + 1], true, precision_);
    }
  }
  const Tensor& out = acts_.back();
  return Tensor::view(out.ptr, {out.dim(0), out.dim(1), out.dim(2), out.dim(3)}, device_);
}

void ConvBlock::backward(const Tensor& dy, Tensor* dx, bool weight_grads) {
  if (acts_.empty()) fail("conv block: backward before forward");
  if (dy.numel() != acts_.back().numel() || dy.device != device_)
    fail("conv block: gradient %s, want %s", dy.shape_str().c_str(), acts_.back().shape_str().c_str());
  if (dx && (dx->numel() != acts_[0].numel() || dx->device != device_))
    fail("conv block: input gradient %s, want %s", dx->shape_str().c_str(), acts_[0].shape_str().c_str());
  const size_t K = steps_.size();
  grad_[K].copy_from(dy);
  for (size_t k = K; k-- > 0;) {
    Tensor* gin = k == 0 ? dx : &grad_[k];
    if (k == 0 && !dx && !(steps_[k].conv >= 0 && weight_grads)) break;  // nothing left to compute
    if (steps_[k].conv < 0) {
      if (gin) ops::maxpool2x2_backward(acts_[k], grad_[k + 1], *gin);
      continue;
    }
    Conv& c = convs_[(size_t)steps_[k].conv];
    ops::relu_backward(acts_[k + 1], grad_[k + 1], grad_[k + 1]);
    ops::conv3x3_backward(acts_[k], c.w, grad_[k + 1], gin, weight_grads ? &c.dw : nullptr,
                          weight_grads ? &c.db : nullptr, precision_);
  }
}

std::vector<Tensor*> ConvBlock::params() {
  std::vector<Tensor*> v;
  for (Conv& c : convs_) v.insert(v.end(), {&c.w, &c.b});
  return v;
}

std::vector<Tensor*> ConvBlock::grads() {
  std::vector<Tensor*> v;
  for (Conv& c : convs_) v.insert(v.end(), {&c.dw, &c.db});
  return v;
}

std::vector<std::string> ConvBlock::names() const {
  std::vector<std::string> v;
  for (const Conv& c : convs_) v.push_back(c.name);
  return v;
}

}  // namespace tl
