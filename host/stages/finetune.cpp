#include "host/stages/finetune.h"

#include "host/core/common.h"
#include "host/core/log.h"
#include "host/model/conv_block.h"
#include "host/model/recipe.h"
#include "host/ops/ops.h"

namespace tl {

std::string finetune_cut(const VggWeights& w, const std::string& block, int* first_layer) {
  const std::string prefix = block + "_";
  for (size_t i = 0; i < w.layers.size(); i++)
    if (starts_with(w.layers[i].spec.name, prefix)) {
      if (i == 0 || !w.layers[i - 1].spec.pool_after)
        fail("--fine-tune %s: the layer below %s is not a pooling layer to cut at", block.c_str(),
             w.layers[i].spec.name.c_str());
      if (first_layer) *first_layer = (int)i;
      const std::vector<std::string> pools = w.pool_names();
      int pool = 0;
      for (size_t j = 0; j < i; j++) pool += w.layers[j].spec.pool_after;
      return pools[(size_t)pool - 1];
    }
  std::string blocks;
  for (const ConvLayer& l : w.layers) {
    const std::string b = l.spec.name.substr(0, l.spec.name.find('_'));
    if (blocks.find(b) == std::string::npos) blocks += (blocks.empty() ? "" : ", ") + b;
  }
  fail("--fine-tune %s: no such block; %s has %s", block.c_str(), w.arch.c_str(), blocks.c_str());
}

void apply_tuned_layers(const ModelFile& m, VggWeights& w, const std::string& what) {
  for (size_t k = 0; k < m.convs.size(); k++) {
    const ConvLayerSpec& c = m.convs[k];
    ConvLayer* l = nullptr;
    for (ConvLayer& x : w.layers)
      if (x.spec.name == c.name) l = &x;
    if (!l || l->spec.cin != c.cin || l->spec.cout != c.cout)
      fail("%s: its fine-tuned layer %s (%d -> %d channels) is not a layer of these weights", what.c_str(), c.name.c_str(),
           c.cin, c.cout);
    l->w = m.params[6 + 2 * k];
    l->b = m.params[6 + 2 * k + 1];
  }
}

namespace {

class FineTuneSource : public FeatureSource {
 public:
  // inner: the activations below the block (a cut cache, or images through the frozen layers below
  // it); w: the weights they were made with; first: the block's first layer.
  FineTuneSource(std::unique_ptr<FeatureSource> inner, VggWeights w, int first, int image_size, Precision p, Device d,
                 const FineTuneOptions& o)
      : o_(o), device_(d), weights_(std::move(w)), inner_(std::move(inner)) {
    block_ = std::make_unique<ConvBlock>(weights_, first, false, d, p);
    for (Tensor* t : block_->params()) {
      v_.emplace_back(std::vector<int64_t>{t->numel()}, d);
      v_.back().zero();
    }
    in_h_ = inner_->feat_h();
    in_c_ = inner_->feat_c();
    out_h_ = weights_.out_size(image_size, (int)weights_.layers.size());
    out_c_ = weights_.out_channels();
    // The model this trains is a classifier on the whole base (with the tuned block).
    prov_ = inner_->provenance();
    InputRecipe whole = InputRecipe::read(prov_, "the features' provenance");
    whole.cut.clear();
    whole.feat_h = whole.feat_w = out_h_;
    whole.feat_c = out_c_;
    prov_.erase("cut");
    whole.write(&prov_, InputRecipe::Where::Model);
    prov_["fine_tune"] = strfmt("%s, warm-up %d epochs, lr %g", o.block.c_str(), o.warmup, o.opt.lr);
  }

  int64_t size(Split s) const override { return inner_->size(s); }
  const std::vector<float>& labels(Split s) const override { return inner_->labels(s); }
  int feat_h() const override { return out_h_; }
  int feat_w() const override { return out_h_; }
  int feat_c() const override { return out_c_; }
  std::map<std::string, std::string> provenance() const override { return prov_; }
  std::vector<std::string> classes() const override { return inner_->classes(); }
  std::string sample_name(Split s, int64_t i) const override { return inner_->sample_name(s, i); }
  std::vector<uint8_t> sample_bytes(Split s, int64_t i) const override { return inner_->sample_bytes(s, i); }
  std::string describe() const override {
    return inner_->describe() + strfmt("; %s (%d conv layers) runs on them", o_.block.c_str(), block_->num_convs());
  }
  std::string tuning() const override {
    const std::vector<std::string> n = block_->names();
    return strfmt("fine-tuning %s..%s: epochs 1-%d train the head alone on the frozen block, then the block and the "
                  "head together at RMSprop lr %g",
                  n.front().c_str(), n.back().c_str(), o_.warmup, o_.opt.lr);
  }

  void fetch(Split s, const std::vector<int64_t>& idx, Tensor& x, bool train, uint64_t epoch) override {
    const int64_t n = (int64_t)idx.size(), in_elems = (int64_t)in_h_ * in_h_ * in_c_;
    if (cut_.ndim == 0 || cut_.dim(0) < n) cut_ = Tensor({std::max<int64_t>(n, 1), in_elems}, device_);
    inner_->fetch(s, idx, cut_, train, epoch);
    Tensor a = Tensor::view(cut_.ptr, {n, in_h_, in_h_, in_c_}, device_);
    Tensor f = block_->forward(a);
    Tensor dst = Tensor::view(x.ptr, {n, (int64_t)out_h_ * out_h_ * out_c_}, device_);
    dst.copy_from(Tensor::view(f.ptr, {n, (int64_t)out_h_ * out_h_ * out_c_}, device_));
  }

  bool trainable(int epoch) const override { return epoch > o_.warmup; }

  void block_step(const Tensor& dfeat, int n) override {
    block_->backward(Tensor::view(dfeat.ptr, {n, out_h_, out_h_, out_c_}, device_), nullptr, true);
    ops::Range r("rmsprop_block");
    std::vector<Tensor*> p = block_->params(), g = block_->grads();
    for (size_t i = 0; i < p.size(); i++) ops::rmsprop(*p[i], *g[i], v_[i], o_.opt.lr, o_.opt.rho, o_.opt.eps);
  }

  void to_model(ModelFile& m, bool with_optimizer) override {
    const std::vector<std::string> names = block_->names();
    std::vector<Tensor*> p = block_->params();
    for (size_t k = 0; k < names.size(); k++) {
      ConvLayerSpec c;
      c.name = names[k];
      c.cin = (int)p[2 * k]->dim(2);
      c.cout = (int)p[2 * k]->dim(3);
      m.convs.push_back(c);
    }
    for (Tensor* t : p) m.params.push_back(t->to_vector());
    if (with_optimizer)
      for (Tensor& v : v_) m.opt_state.push_back(v.to_vector());
  }

  void from_model(const ModelFile& m, bool with_optimizer) override {
    if (m.convs.empty()) return;  // a head trained on the frozen block: the block starts as converted
    const std::vector<std::string> names = block_->names();
    std::vector<Tensor*> p = block_->params();
    if (m.convs.size() != names.size())
      fail("the model's fine-tuned layers (%zu) are not %s's %zu", m.convs.size(), o_.block.c_str(), names.size());
    for (size_t k = 0; k < names.size(); k++)
      if (m.convs[k].name != names[k])
        fail("the model's fine-tuned layer %zu is %s, here %s", k + 1, m.convs[k].name.c_str(), names[k].c_str());
    for (size_t i = 0; i < p.size(); i++) p[i]->from_vector(m.params[6 + i]);
    for (size_t i = 0; i < v_.size(); i++) {
      if (with_optimizer && !m.opt_state.empty())
        v_[i].from_vector(m.opt_state[6 + i]);
      else
        v_[i].zero();
    }
  }

 private:
  FineTuneOptions o_;
  Device device_;
  VggWeights weights_;
  std::unique_ptr<FeatureSource> inner_;
  std::unique_ptr<ConvBlock> block_;
  std::vector<Tensor> v_;  // RMSprop state of each block parameter
  Tensor cut_;             // a batch of the cached (cut) activations
  int in_h_ = 0, in_c_ = 0, out_h_ = 0, out_c_ = 0;
  std::map<std::string, std::string> prov_;
};

}  // namespace

std::unique_ptr<FeatureSource> open_finetune_source(const std::string& dir, Device d, const FineTuneOptions& o) {
  // The weights: the ones the cache was made with (checked by checksum).
  const Cache probe = open_cache(dir, true);
  const InputRecipe rec = InputRecipe::read(probe.manifest.settings.kv, path_join(dir, "manifest.tsv"));
  const std::string wpath = o.weights.empty() ? rec.weights_file : o.weights;
  if (wpath.empty() || !file_exists(wpath))
    fail("--fine-tune: the weights the cache %s was made with (%s) are not here; pass --weights FILE", dir.c_str(),
         rec.weights_file.c_str());
  VggWeights w = load_weights(wpath);
  rec.check_weights(w, wpath, dir);
  int first = 0;
  const std::string cut = finetune_cut(w, o.block, &first);
  std::unique_ptr<FeatureSource> inner = open_cached_source(dir, d, cut);
  return std::make_unique<FineTuneSource>(std::move(inner), std::move(w), first, rec.image_size, rec.precision, d, o);
}

std::unique_ptr<FeatureSource> open_finetune_images(ImageSourceOptions io, const FineTuneOptions& o) {
  VggWeights w = load_weights(io.weights);
  int first = 0;
  io.cut = finetune_cut(w, o.block, &first);
  std::unique_ptr<FeatureSource> inner = open_image_source(io);
  const Precision p = parse_precision(io.precision);
  return std::make_unique<FineTuneSource>(std::move(inner), std::move(w), first, io.image_size, p, io.device, o);
}

}  // namespace tl
