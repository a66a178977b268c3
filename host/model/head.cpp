#include "host/model/head.h"

#include <cmath>
#include <cstring>

#include "host/core/common.h"
#include "host/ops/ops.h"

namespace tl {

int64_t HeadSpec::num_params() const {
  return (int64_t)in_dim() * hidden1 + hidden1 + (int64_t)hidden1 * hidden2 + hidden2 + hidden2 + 1;
}

Head::Head(const HeadSpec& spec, Device d) : spec_(spec), device_(d) {
  const int64_t in = spec.in_dim(), h1 = spec.hidden1, h2 = spec.hidden2;
  if (in <= 0 || h1 <= 0 || h2 <= 0) fail("head: bad sizes %lld -> %lld -> %lld", (long long)in, (long long)h1, (long long)h2);
  auto make = [&](std::initializer_list<int64_t> s) { return Tensor(s, d); };
  W1_ = make({in, h1}), b1_ = make({h1}), W2_ = make({h1, h2}), b2_ = make({h2}), W3_ = make({h2, 1}), b3_ = make({1});
  gW1_ = make({in, h1}), gb1_ = make({h1}), gW2_ = make({h1, h2}), gb2_ = make({h2}), gW3_ = make({h2, 1}), gb3_ = make({1});
  vW1_ = make({in, h1}), vb1_ = make({h1}), vW2_ = make({h1, h2}), vb2_ = make({h2}), vW3_ = make({h2, 1}), vb3_ = make({1});
  for (Tensor* t : opt_state()) t->zero();
  for (Tensor* t : params()) t->zero();
}

// Callers may change what these point at: the look-ahead partial sums are dropped.
std::vector<Tensor*> Head::params() {
  drop_ahead();
  return {&W1_, &b1_, &W2_, &b2_, &W3_, &b3_};
}
std::vector<Tensor*> Head::grads() { return {&gW1_, &gb1_, &gW2_, &gb2_, &gW3_, &gb3_}; }
std::vector<Tensor*> Head::opt_state() {
  drop_ahead();
  return {&vW1_, &vb1_, &vW2_, &vb2_, &vW3_, &vb3_};
}

void Head::init(uint64_t seed) {
  drop_ahead();
  Rng rng(seed);
  for (Tensor* w : {&W1_, &W2_, &W3_}) {
    const double limit = std::sqrt(6.0 / (double)(w->dim(0) + w->dim(1)));
    std::vector<float> v((size_t)w->numel());
    for (float& x : v) x = (float)((rng.uniform64() * 2.0 - 1.0) * limit);
    w->from_vector(v);
  }
  for (Tensor* b : {&b1_, &b2_, &b3_}) b->zero();
  for (Tensor* t : opt_state()) t->zero();
}

void Head::ensure(int n) {
  if (n <= cap_) return;
  const int64_t h1 = spec_.hidden1, h2 = spec_.hidden2;
  auto make = [&](std::initializer_list<int64_t> s) { return Tensor(s, device_); };
  a1_ = make({n, h1}), d1_ = make({n, h1}), a2_ = make({n, h2}), z_ = make({n, 1});
  prob_ = make({n}), loss_ = make({n}), dz_ = make({n, 1}), da2_ = make({n, h2}), dd1_ = make({n, h1}), da1_ = make({n, h1});
  cap_ = n;
}

void Head::forward(const Tensor& x, int n, bool train, uint64_t seed, uint64_t step, bool from_partials) {
  ensure(n);
  if (x.device != device_ || x.ndim != 2 || x.dim(1) != spec_.in_dim() || x.dim(0) < n)
    fail("head: input %s on %s, want [%d, %d] on %s", x.shape_str().c_str(), device_name(x.device), n, spec_.in_dim(),
         device_name(device_));
  ops::Range r("head_forward");
  Tensor xv = x.rows(n), a1 = a1_.rows(n), d1 = d1_.rows(n), a2 = a2_.rows(n), z = z_.rows(n);
  if (from_partials)
    ops::dense_from_partials(partials_.rows((int64_t)ops::dense_partial_blocks(spec_.in_dim()) * n), spec_.in_dim(), b1_,
                             a1, true);
  else
    ops::dense(xv, W1_, b1_, a1, true);
  if (train && spec_.dropout > 0)
    ops::dropout(a1, d1, spec_.dropout, seed, step);
  else
    d1.copy_from(a1);
  ops::dense(d1, W2_, b2_, a2, true);
  ops::dense(a2, W3_, b3_, z, false);
}

void Head::backward(const Tensor& x, int n, bool dropout_on, uint64_t seed, uint64_t step, const RmsProp* fused_opt,
                    const Tensor* x_next, Tensor* dx) {
  ops::Range r("head_backward");
  Tensor xv = x.rows(n), a1 = a1_.rows(n), d1 = d1_.rows(n), a2 = a2_.rows(n);
  Tensor dz = dz_.rows(n), da2 = da2_.rows(n), dd1 = dd1_.rows(n), da1 = da1_.rows(n);
  // dz was filled by sigmoid_bce: (sigmoid(z) - y) / n
  ops::dense_backward(a2, W3_, dz, &da2, gW3_, gb3_);
  ops::relu_backward(a2, da2, da2);
  ops::dense_backward(d1, W2_, da2, &dd1, gW2_, gb2_);
  if (dropout_on && spec_.dropout > 0)
    ops::dropout(dd1, da1, spec_.dropout, seed, step);
  else
    da1.copy_from(dd1);
  ops::relu_backward(a1, da1, da1);
  if (fused_opt) {
    Tensor p;
    if (x_next) p = partials_.rows((int64_t)ops::dense_partial_blocks(spec_.in_dim()) * x_next->dim(0));
    ops::dense_backward_rmsprop(xv, da1, W1_, vW1_, gb1_, fused_opt->lr, fused_opt->rho, fused_opt->eps, x_next,
                                x_next ? &p : nullptr);
  } else
    ops::dense_backward(xv, W1_, da1, dx, gW1_, gb1_);
}

namespace {
double loss_sum_and_correct(const Tensor& loss, const Tensor& z, const Tensor& y, int n, int* correct) {
  std::vector<float> l = loss.rows(n).to_vector(), zl = z.to_vector(), yl = y.to_vector();
  double s = 0;
  int c = 0;
  for (int i = 0; i < n; i++) {
    s += l[i];
    c += (zl[i] > 0.0f) == (yl[i] > 0.5f);
  }
  if (correct) *correct = c;
  return s;
}
}  // namespace

double Head::forward_loss(const Tensor& x, const Tensor& y, int n, bool dropout_on, uint64_t seed, uint64_t step,
                          int* correct, bool from_partials) {
  forward(x, n, dropout_on, seed, step, from_partials);
  Tensor z = Tensor::view(z_.ptr, {n}, device_), yv = y.rows(n), prob = prob_.rows(n), loss = loss_.rows(n);
  Tensor dz = Tensor::view(dz_.ptr, {n}, device_);
  ops::sigmoid_bce(z, yv, prob, loss, &dz);
  return loss_sum_and_correct(loss, z, yv, n, correct);
}

double Head::train_step(const Tensor& x, const Tensor& y, int n, uint64_t seed, uint64_t step, const RmsProp& opt,
                        int* correct, const Tensor* x_next, int n_next, Tensor* dx) {
  const bool from_partials = ahead_n_ > 0 && ahead_n_ == n && ahead_step_ == step && ahead_x_ == x.ptr;
  drop_ahead();
  ahead_used_ += from_partials;
  const double s = forward_loss(x, y, n, true, seed, step, correct, from_partials);
  // W1 (25088 x 400 = 40 MB, nearly all the head) updated in the pass that computes its gradient
  // on the CPU: 2 of the 7 passes over it per step saved, bit-identical results; with the next
  // batch, that pass also does the next forward's share of W1: one pass more saved.
  const bool fuse = fused_update_ && device_ == Device::CPU && !dx;
  const int nb = ops::dense_partial_blocks(spec_.in_dim());
  const bool ahead = fuse && x_next && n_next > 0 && nb > 0 && x_next->device == device_;
  Tensor xn;
  if (ahead) {
    if (x_next->ndim != 2 || x_next->dim(1) != spec_.in_dim() || x_next->dim(0) < n_next)
      fail("head: next input %s, want [%d, %d]", x_next->shape_str().c_str(), n_next, spec_.in_dim());
    if (partials_.ndim != 2 || partials_.dim(0) < (int64_t)nb * n_next)
      partials_ = Tensor({(int64_t)nb * std::max(n_next, cap_), (int64_t)spec_.hidden1}, device_);
    xn = x_next->rows(n_next);
  }
  Tensor dxv;
  if (dx) {
    if (dx->device != device_ || dx->numel() < (int64_t)n * spec_.in_dim())
      fail("head: input gradient %s, want [%d, %d]", dx->shape_str().c_str(), n, spec_.in_dim());
    dxv = Tensor::view(dx->ptr, {n, spec_.in_dim()}, device_);
  }
  backward(x, n, true, seed, step, fuse ? &opt : nullptr, ahead ? &xn : nullptr, dx ? &dxv : nullptr);
  ops::Range r("rmsprop");
  const std::vector<Tensor*> p = {&W1_, &b1_, &W2_, &b2_, &W3_, &b3_}, g = grads(),
                             v = {&vW1_, &vb1_, &vW2_, &vb2_, &vW3_, &vb3_};
  for (size_t i = fuse ? 1 : 0; i < p.size(); i++) ops::rmsprop(*p[i], *g[i], *v[i], opt.lr, opt.rho, opt.eps);
  if (ahead) {
    ahead_n_ = n_next;
    ahead_step_ = step + 1;
    ahead_x_ = x_next->ptr;
  }
  return s;
}

double Head::compute_gradients(const Tensor& x, const Tensor& y, int n, uint64_t seed, uint64_t step, bool dropout_on) {
  drop_ahead();
  const double s = forward_loss(x, y, n, dropout_on, seed, step, nullptr);
  backward(x, n, dropout_on, seed, step);
  return s / n;
}

void Head::logits(const Tensor& x, int n, float* out) {
  drop_ahead();
  forward(x, n, false, 0, 0);
  std::vector<float> z = Tensor::view(z_.ptr, {n}, device_).to_vector();
  memcpy(out, z.data(), sizeof(float) * (size_t)n);
}

void Head::logit_input_gradient(const Tensor& x, int n, Tensor& dx) {
  if (dx.device != device_ || dx.numel() != (int64_t)n * spec_.in_dim())
    fail("head: input gradient %s on %s, want [%d, %d] on %s", dx.shape_str().c_str(), device_name(dx.device), n,
         spec_.in_dim(), device_name(device_));
  drop_ahead();
  forward(x, n, false, 0, 0);
  Tensor xv = x.rows(n), a1 = a1_.rows(n), d1 = d1_.rows(n), a2 = a2_.rows(n);
  Tensor dz = dz_.rows(n), da2 = da2_.rows(n), da1 = da1_.rows(n);
  Tensor dxv = Tensor::view(dx.ptr, {n, spec_.in_dim()}, device_);
  dz.from_vector(std::vector<float>((size_t)n, 1.0f));  // d logit / d logit
  ops::dense_backward(a2, W3_, dz, &da2, gW3_, gb3_);
  ops::relu_backward(a2, da2, da2);
  ops::dense_backward(d1, W2_, da2, &da1, gW2_, gb2_);  // d1 = a1 without dropout
  ops::relu_backward(a1, da1, da1);
  ops::dense_backward(xv, W1_, da1, &dxv, gW1_, gb1_);
}

std::string Head::non_finite_weight(bool with_w1) {
  static const char* names[6] = {"dense's kernel", "dense's bias", "dense_1's kernel", "dense_1's bias",
                                 "dense_2's kernel", "dense_2's bias"};
  // Not params()/opt_state(): they drop the look-ahead sums.
  const Tensor* p[2][6] = {{&W1_, &b1_, &W2_, &b2_, &W3_, &b3_}, {&vW1_, &vb1_, &vW2_, &vb2_, &vW3_, &vb3_}};
  for (int k = 0; k < 2; k++)
    for (int i = with_w1 ? 0 : 1; i < 6; i++) {
      const std::vector<float> v = p[k][i]->to_vector();
      const int64_t at = first_non_finite(v.data(), (int64_t)v.size());
      if (at >= 0)
        return strfmt("%s%s holds %s at index %lld", names[i], k ? " (its RMSprop mean square)" : "",
                      std::isnan(v[(size_t)at]) ? "nan" : "inf", (long long)at);
    }
  return "";
}

void Head::summary(FILE* out) const {
  const HeadSpec& s = spec_;
  auto row = [&](const char* name, const std::string& shape, long long params) {
    fprintf(out, " %-28s %-24s %12s\n", name, shape.c_str(), params < 0 ? "0" : strfmt("%lld", params).c_str());
  };
  fprintf(out, "Model: \"head\"\n");
  fprintf(out, "_________________________________________________________________\n");
  fprintf(out, " %-28s %-24s %12s\n", "Layer (type)", "Output Shape", "Param #");
  fprintf(out, "=================================================================\n");
  row("flatten (Flatten)", strfmt("(None, %d)", s.in_dim()), 0);
  row("dense (Dense, relu)", strfmt("(None, %d)", s.hidden1), (long long)s.in_dim() * s.hidden1 + s.hidden1);
  row(strfmt("dropout (Dropout %.2g)", s.dropout).c_str(), strfmt("(None, %d)", s.hidden1), 0);
  row("dense_1 (Dense, relu)", strfmt("(None, %d)", s.hidden2), (long long)s.hidden1 * s.hidden2 + s.hidden2);
  row("dense_2 (Dense, sigmoid)", "(None, 1)", (long long)s.hidden2 + 1);
  fprintf(out, "=================================================================\n");
  const long long total = (long long)s.num_params();
  std::string t = std::to_string(total), c;
  for (int i = (int)t.size() - 1, k = 0; i >= 0; i--, k++) {
    if (k && k % 3 == 0) c.insert(c.begin(), ',');
    c.insert(c.begin(), t[i]);
  }
  fprintf(out, "Total params: %s (%s)\nTrainable params: %s\nNon-trainable params: 0\n", c.c_str(),
          human_bytes((double)total * 4).c_str(), c.c_str());
  fprintf(out, "_________________________________________________________________\n");
}

// ------------------------------------------------------------------------------------------------
// Model file: 256-byte header, metadata text, arrays (64-byte aligned), crc32.

namespace {
constexpr uint32_t kHeaderBytes = 256;
inline uint64_t align64(uint64_t v) { return (v + 63) / 64 * 64; }
std::vector<int64_t> param_sizes(const HeadSpec& s) {
  const int64_t in = s.in_dim(), h1 = s.hidden1, h2 = s.hidden2;
  return {in * h1, h1, h1 * h2, h2, h2, 1};
}
}  // namespace

namespace {
// The tensors a model file holds: the head's six, then w and b of each fine-tuned conv layer.
std::vector<int64_t> model_sizes(const HeadSpec& spec, const std::vector<ConvLayerSpec>& convs) {
  std::vector<int64_t> sizes = param_sizes(spec);
  for (const ConvLayerSpec& c : convs) sizes.insert(sizes.end(), {(int64_t)9 * c.cin * c.cout, (int64_t)c.cout});
  return sizes;
}
// meta "tuned_convs": name:cin:cout for each fine-tuned conv layer, comma-separated.
std::string convs_record(const std::vector<ConvLayerSpec>& convs) {
  std::string s;
  for (const ConvLayerSpec& c : convs) s += strfmt("%s%s:%d:%d", s.empty() ? "" : ",", c.name.c_str(), c.cin, c.cout);
  return s;
}
}  // namespace

void save_model(const std::string& path, const ModelFile& m) {
  std::map<std::string, std::string> meta_map = m.meta;
  if (!m.convs.empty()) meta_map["tuned_convs"] = convs_record(m.convs);  // the layers' record travels in the meta
  std::vector<int64_t> sizes = model_sizes(m.spec, m.convs);
  TL_ASSERT(m.params.size() == sizes.size());
  for (size_t i = 0; i < sizes.size(); i++) TL_ASSERT((int64_t)m.params[i].size() == sizes[i]);
  const bool opt = !m.opt_state.empty();
  std::string meta;
  for (auto& [k, v] : meta_map) {
    std::string vv = v;
    for (char& c : vv)
      if (c == '\n') c = ' ';
    meta += k + "=" + vv + "\n";
  }
  ByteWriter w;
  w.raw(kModelMagic, 8);
  w.u32(m.convs.empty() ? 1u : kModelVersion);  // a head alone keeps version 1 (and its bytes)
  w.u32(kHeaderBytes);
  w.u32((uint32_t)m.spec.feat_h);
  w.u32((uint32_t)m.spec.feat_w);
  w.u32((uint32_t)m.spec.feat_c);
  w.u32((uint32_t)m.spec.hidden1);
  w.u32((uint32_t)m.spec.hidden2);
  w.f32(m.spec.dropout);
  w.u32(opt ? 1u : 0u);
  w.u32((uint32_t)m.convs.size());
  w.u64(meta.size());
  uint64_t total = align64(kHeaderBytes + meta.size());
  for (int k = 0; k < (opt ? 2 : 1); k++)
    for (int64_t s : sizes) total = align64(total + 4 * (uint64_t)s);
  total += 4;
  w.u64(total);
  w.pad_to(kHeaderBytes);
  w.raw(meta.data(), meta.size());
  w.pad_to(64);
  for (int k = 0; k < (opt ? 2 : 1); k++)
    for (size_t i = 0; i < sizes.size(); i++) {
      const std::vector<float>& a = k ? m.opt_state[i] : m.params[i];
      TL_ASSERT((int64_t)a.size() == sizes[i]);
      w.raw(a.data(), a.size() * 4);
      w.pad_to(64);
    }
  w.u32(crc32_of(w.buf.data(), w.buf.size()));
  TL_ASSERT(w.buf.size() == total);
  std::string dir = dirname_of(path);
  if (!dir.empty() && dir != ".") make_dirs(dir);
  write_file_atomic(path, w.buf.data(), w.buf.size());
}

ModelFile load_model(const std::string& path) {
  const char* f = path.c_str();
  if (dir_exists(path))
    fail("%s is a directory; give the model file inside it (%s/best.bin or %s/model.bin)", f, f, f);
  if (!file_exists(path)) fail("%s: not found; train one with ./tl_train (it writes model/model.bin)", f);
  std::vector<uint8_t> b = read_file(path);
  if (b.size() < kHeaderBytes + 4 || memcmp(b.data(), kModelMagic, 8) != 0) {
    if (b.size() >= 8 && !memcmp(b.data(), "TLVGGWT", 7))
      fail("%s: this is a VGG weights file; --model wants a trained head (model/model.bin)", f);
    fail("%s: not a tl head model (bad magic or too short)", f);
  }
  ByteReader r(b.data(), b.size(), path);
  r.take(8);
  const uint32_t version = r.u32();
  if (version > kModelVersion) fail("%s: model format %u is newer than this build (%u)", f, version, kModelVersion);
  if (r.u32() != kHeaderBytes) fail("%s: corrupt header", f);
  ModelFile m;
  m.spec.feat_h = (int)r.u32();
  m.spec.feat_w = (int)r.u32();
  m.spec.feat_c = (int)r.u32();
  m.spec.hidden1 = (int)r.u32();
  m.spec.hidden2 = (int)r.u32();
  m.spec.dropout = r.f32();
  const bool opt = r.u32() != 0;
  const uint32_t n_convs = r.u32();
  const uint64_t meta_bytes = r.u64(), total = r.u64();
  if (n_convs > 64 || (version < 2 && n_convs != 0)) fail("%s: corrupt header (%u fine-tuned layers)", f, n_convs);
  // Each dimension is bounded before any product is formed (no product can overflow), and the
  // sizes they imply must add up to the file's real size before anything is allocated for them.
  const HeadSpec& sp = m.spec;
  if (sp.feat_h <= 0 || sp.feat_w <= 0 || sp.feat_c <= 0 || sp.hidden1 <= 0 || sp.hidden2 <= 0 || sp.feat_h > 4096 ||
      sp.feat_w > 4096 || sp.feat_c > 65536 || sp.hidden1 > (1 << 20) || sp.hidden2 > (1 << 20) ||
      (int64_t)sp.feat_h * sp.feat_w * sp.feat_c > (1 << 28) || meta_bytes > (1u << 24) ||
      !(sp.dropout >= 0.0f && sp.dropout < 1.0f))
    fail("%s: corrupt header (dimensions %dx%dx%d -> %d -> %d, dropout %g)", f, sp.feat_h, sp.feat_w, sp.feat_c,
         sp.hidden1, sp.hidden2, sp.dropout);
  if (total != b.size())
    fail("%s: file is %zu bytes but its header says %llu (truncated?); retrain or copy it again", f, b.size(),
         (unsigned long long)total);
  if (kHeaderBytes + meta_bytes + 4 > total) fail("%s: corrupt header (meta of %llu bytes)", f, (unsigned long long)meta_bytes);
  uint32_t stored;
  memcpy(&stored, b.data() + b.size() - 4, 4);
  m.crc = crc32_of(b.data(), b.size() - 4);
  if (stored != m.crc) fail("%s: checksum mismatch (stored %08x, computed %08x): the file is corrupt", f, stored, m.crc);
  r.pos = kHeaderBytes;
  std::string meta((const char*)r.take(meta_bytes), meta_bytes);
  for (const std::string& line : split(meta, '\n')) {
    size_t eq = line.find('=');
    if (eq != std::string::npos) m.meta[line.substr(0, eq)] = line.substr(eq + 1);
  }
  if (n_convs > 0) {  // the fine-tuned layers, as recorded: name:cin:cout,...
    const std::vector<std::string> rec = split(m.meta["tuned_convs"], ',');
    if (rec.size() != n_convs) fail("%s: corrupt record of its %u fine-tuned layers", f, n_convs);
    for (const std::string& e : rec) {
      const std::vector<std::string> p = split(e, ':');
      ConvLayerSpec c;
      if (p.size() != 3 || p[0].empty() || p[0].size() > 64) fail("%s: corrupt fine-tuned layer record '%s'", f, e.c_str());
      c.name = p[0];
      c.cin = atoi(p[1].c_str());
      c.cout = atoi(p[2].c_str());
      if (c.cin <= 0 || c.cout <= 0 || c.cin > 8192 || c.cout > 8192) fail("%s: corrupt fine-tuned layer record '%s'", f, e.c_str());
      m.convs.push_back(c);
    }
  }
  const std::vector<int64_t> sizes = model_sizes(m.spec, m.convs);
  uint64_t expect = align64(kHeaderBytes + meta_bytes);
  for (int k = 0; k < (opt ? 2 : 1); k++)
    for (int64_t s : sizes) expect = align64(expect + 4 * (uint64_t)s);
  expect += 4;
  if (expect != total)
    fail("%s: corrupt header (its dimensions need %llu bytes, the file has %llu)", f, (unsigned long long)expect,
         (unsigned long long)total);
  r.pos = align64(r.pos);
  for (int k = 0; k < (opt ? 2 : 1); k++)
    for (size_t i = 0; i < sizes.size(); i++) {
      std::vector<float> a((size_t)sizes[i]);
      r.raw(a.data(), a.size() * 4);
      r.pos = align64(r.pos);
      const int64_t bad = first_non_finite(a.data(), (int64_t)a.size());
      if (bad >= 0)
        fail("%s: %s %zu holds %g at index %lld (a model must hold finite numbers); the file is damaged or the run "
             "diverged: use another checkpoint or retrain",
             f, k ? "optimiser state of tensor" : "tensor", i + 1, a[(size_t)bad], (long long)bad);
      (k ? m.opt_state : m.params).push_back(std::move(a));
    }
  return m;
}

ModelFile model_from_head(Head& h, bool with_optimizer) {
  ModelFile m;
  m.spec = h.spec();
  for (Tensor* t : h.params()) m.params.push_back(t->to_vector());
  if (with_optimizer)
    for (Tensor* t : h.opt_state()) m.opt_state.push_back(t->to_vector());
  return m;
}

void head_from_model(const ModelFile& m, Head& h, bool with_optimizer) {
  const HeadSpec& a = m.spec;
  const HeadSpec& b = h.spec();
  if (a.in_dim() != b.in_dim() || a.hidden1 != b.hidden1 || a.hidden2 != b.hidden2)
    fail("the model expects %dx%dx%d features (%d -> %d -> %d), not %dx%dx%d", a.feat_h, a.feat_w, a.feat_c, a.in_dim(),
         a.hidden1, a.hidden2, b.feat_h, b.feat_w, b.feat_c);
  std::vector<Tensor*> p = h.params();
  for (size_t i = 0; i < 6; i++) p[i]->from_vector(m.params[i]);
  std::vector<Tensor*> v = h.opt_state();
  for (size_t i = 0; i < 6; i++) {
    if (with_optimizer && !m.opt_state.empty())
      v[i]->from_vector(m.opt_state[i]);
    else
      v[i]->zero();
  }
}

}  // namespace tl
