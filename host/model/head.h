// head.h: the trainable classifier on top of the frozen base, as in the tutorial:
//   Flatten (h*w*c) -> Dense(400, relu) -> Dropout(0.2) -> Dense(20, relu) -> Dense(1, sigmoid)
// binary cross-entropy from the logit, RMSprop as tf.keras 2.x computes it. Flatten is free:
// features are NHWC, Keras' order. Runs on the CPU or the GPU with the ops of ops.h.
#pragma once
#include <cstdint>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "host/core/tensor.h"
#include "host/io/weights.h"

namespace tl {

struct HeadSpec {
  int feat_h = 7, feat_w = 7, feat_c = 512;
  int hidden1 = 400, hidden2 = 20;
  float dropout = 0.2f;
  int in_dim() const { return feat_h * feat_w * feat_c; }
  int64_t num_params() const;
};

struct RmsProp {
  float lr = 1e-3f, rho = 0.9f, eps = 1e-7f;
};

class Head {
 public:
  Head(const HeadSpec& spec, Device d);
  const HeadSpec& spec() const { return spec_; }
  Device device() const { return device_; }
  // glorot_uniform weights (limit sqrt(6 / (fan_in + fan_out))) and zero biases, from seed.
  void init(uint64_t seed);
  // One optimiser step on x [n, in_dim] with labels y [n] (both on this device). Dropout's mask
  // is a function of (dropout_seed, step). Returns the sum of per-sample losses (before the update)
  // and the number of correct predictions (prob > 0.5) in *correct.
  // x_next (optional, n_next rows): the batch the next train_step (step + 1) will get, unchanged, at
  // the same address. On the CPU with the fused update, W1's pass then also leaves that batch's
  // first-layer partial sums, and the next step's forward starts from them instead of reading W1
  // again: bit-identical results, one 40 MB pass per step fewer.
  // dx (optional, [>= n, in_dim] on this device): also the loss's gradient with respect to x, taken
  // before the update (fine-tuning passes it on into the conv block below; the fused W1 update is
  // then off, which gives the same bits).
  double train_step(const Tensor& x, const Tensor& y, int n, uint64_t dropout_seed, uint64_t step, const RmsProp& opt,
                    int* correct, const Tensor* x_next = nullptr, int n_next = 0, Tensor* dx = nullptr);
  // Gradients only (no update), for tests: the mean loss over the batch.
  double compute_gradients(const Tensor& x, const Tensor& y, int n, uint64_t dropout_seed, uint64_t step,
                           bool dropout_on);
  // Inference (no dropout): logits [n] to the host.
  void logits(const Tensor& x, int n, float* out);
  // The gradient of each sample's logit with respect to its features (inference: no dropout), into
  // dx [n, in_dim] on this device: the head's share of Grad-CAM and of a backward pass into the conv
  // base. The weights are unchanged; the gradient buffers (grads()) serve as scratch.
  void logit_input_gradient(const Tensor& x, int n, Tensor& dx);

  // 6 parameter tensors W1 b1 W2 b2 W3 b3, their gradients and RMSprop accumulators.
  std::vector<Tensor*> params();
  std::vector<Tensor*> grads();
  std::vector<Tensor*> opt_state();
  void summary(FILE* out) const;  // like Keras' model.summary()
  // The first weight or RMSprop mean square that is not finite, as "dense_1's kernel holds nan at
  // index 7" ("" when all are). with_w1 false: all but the first layer's kernel (the cheap check
  // after every step; W1, 10M values, is checked once an epoch).
  std::string non_finite_weight(bool with_w1);
  // On the CPU, train_step applies RMSprop to W1 inside the pass that computes its gradient (the
  // default; bit-identical to the separate passes, which false restores: tests and benchmarks).
  void set_fused_update(bool on) { fused_update_ = on; }
  // How many train_steps started from look-ahead partial sums (tests, benchmarks).
  int64_t steps_from_partials() const { return ahead_used_; }

 private:
  HeadSpec spec_;
  Device device_;
  Tensor W1_, b1_, W2_, b2_, W3_, b3_;
  Tensor gW1_, gb1_, gW2_, gb2_, gW3_, gb3_;
  Tensor vW1_, vb1_, vW2_, vb2_, vW3_, vb3_;
  // activations of the last batch, sized for the largest batch seen
  int cap_ = 0;
  Tensor a1_, d1_, a2_, z_, prob_, loss_, dz_, da2_, dd1_, da1_;
  bool fused_update_ = true;
  // The next batch's first-layer partial sums (train_step's x_next), valid for a train_step with
  // ahead_step_, ahead_n_ rows at ahead_x_; anything that may change the weights drops them.
  Tensor partials_;
  int ahead_n_ = 0;
  uint64_t ahead_step_ = 0;
  const void* ahead_x_ = nullptr;
  int64_t ahead_used_ = 0;
  void drop_ahead() { ahead_n_ = 0; }
  void ensure(int n);
  // from_partials: the first layer from partials_ (train_step checked they belong to x).
  void forward(const Tensor& x, int n, bool train, uint64_t seed, uint64_t step, bool from_partials = false);
  // forward + per-sample BCE (leaves dz for backward): the sum of the losses
  double forward_loss(const Tensor& x, const Tensor& y, int n, bool dropout_on, uint64_t seed, uint64_t step,
                      int* correct, bool from_partials = false);
  // dz (from forward_loss) -> every parameter's gradient; with fused_opt, W1's gradient is not
  // stored: RMSprop updates W1 and its state as the gradient is computed (gW1_ is left stale), and
  // with x_next the next batch's partial sums go into partials_. dx: also the input gradient (unfused only).
  void backward(const Tensor& x, int n, bool dropout_on, uint64_t seed, uint64_t step,
                const RmsProp* fused_opt = nullptr, const Tensor* x_next = nullptr, Tensor* dx = nullptr);
};

// The model file (docs/FORMATS.md): the head's spec and weights, optionally the optimiser state
// (for --resume), and a record of how the features were made (weights checksum, image size,
// resize, preprocessing), so tl_predict uses exactly the cache's preprocessing.
struct ModelFile {
  HeadSpec spec;
  std::vector<std::vector<float>> params;     // W1 b1 W2 b2 W3 b3
  std::vector<std::vector<float>> opt_state;  // empty, or v for each param
  std::map<std::string, std::string> meta;    // provenance and training state
  uint32_t crc = 0;
  // Fine-tuned conv layers (tl_train --fine-tune; format version 2): params (and opt_state) then hold,
  // after the head's six, w [3,3,cin,cout] and b [cout] of each, in order. Empty for a head alone.
  std::vector<ConvLayerSpec> convs;
};

void save_model(const std::string& path, const ModelFile& m);
ModelFile load_model(const std::string& path);
ModelFile model_from_head(Head& h, bool with_optimizer);
void head_from_model(const ModelFile& m, Head& h, bool with_optimizer);

constexpr char kModelMagic[8] = {'T', 'L', 'H', 'E', 'A', 'D', '\0', '\0'};
constexpr uint32_t kModelVersion = 2;  // 2: with fine-tuned conv layers (a head alone is still written as 1)

}  // namespace tl
