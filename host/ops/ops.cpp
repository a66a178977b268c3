#include "host/ops/ops.h"

#include "host/ops/cpu_amx.h"
#include "host/ops/cpu_kernels.h"
#include "host/ops/cpu_ops.h"
#include "host/ops/cuda_ops.h"
#include "host/core/threads.h"

#include <cstdlib>
#include <cstring>

namespace tl {
namespace ops {

namespace {

void same_device(const char* op, std::initializer_list<const Tensor*> ts) {
  const Tensor* first = *ts.begin();
  for (const Tensor* t : ts) {
    if (!t) continue;
    if (t->device != first->device)
      fail("%s: tensors on different devices (%s and %s)", op, device_name(first->device), device_name(t->device));
    if (t->dtype != DType::F32 && t != first) fail("%s: expected fp32 tensors", op);
  }
}

void expect(bool ok, const char* op, const char* what, const Tensor& t) {
  if (!ok) fail("%s: bad shape %s for %s", op, t.shape_str().c_str(), what);
}

}  // namespace

namespace {
int g_fp32_conv = 0;  // 0: from TL_CUDA_CONV_FP32 (default 1)
}  // namespace

void set_cuda_fp32_conv(int kernel) {
  if (kernel < 0 || kernel > 2) fail("set_cuda_fp32_conv: no fp32 conv kernel %d", kernel);
  g_fp32_conv = kernel;
}

int cuda_conv_variant(Precision precision) {
  if (precision == Precision::TF32) return 3;
  if (precision == Precision::BF16) return 4;
  if (g_fp32_conv) return g_fp32_conv;
  static const int from_env = [] {
    const char* v = getenv("TL_CUDA_CONV_FP32");
    if (!v || !*v) return 1;
    if (strcmp(v, "1") && strcmp(v, "2")) fail("TL_CUDA_CONV_FP32=%s: expected 1 or 2 (the fp32 conv kernel)", v);
    return atoi(v);
  }();
  return from_env;
}

std::string conv_path(Device d, Precision precision, bool brief) {
  if (d == Device::CUDA) {
    const int k = cuda_conv_variant(precision);
    const char* what = k == 1 ? "fp32 FFMA" : k == 2 ? "fp32 FFMA 8x8" : k == 3 ? "tf32 tensor cores" : "bf16 tensor cores";
    return brief ? strfmt("%s GPU k%d", precision_name(precision), k) : strfmt("GPU conv kernel %d (%s)", k, what);
  }
  if (precision == Precision::BF16) {
    const cpu::Bf16Path p = cpu::bf16_path();
    if (brief) return p == cpu::Bf16Path::Amx ? "bf16 AMX" : p == cpu::Bf16Path::Avx512Bf16 ? "bf16 AVX512_BF16" : "bf16 -";
    return strfmt("CPU bf16 on %s", cpu::bf16_path_name(p));
  }
  if (cpu::conv_algo_for(64, 64) == cpu::ConvAlgo::Amx3)
    return brief ? "fp32 bf16x3 AMX" : "CPU fp32 as bf16x3 on AMX tiles (TL_CONV=amx3: three bf16 products a term)";
  return brief ? "fp32" : strfmt("CPU fp32 (%s kernels; Winograd F(4x4)/F(2x2) or direct, chosen per layer)",
                                 cpu::kernels().isa);
}

struct PreparedConv {
  std::shared_ptr<cpu::AmxConvWeights> amx;
};

std::shared_ptr<PreparedConv> prepare_conv3x3(const Tensor& w, const Tensor& b, Precision precision) {
  if (w.on_cuda() || w.ndim != 4 || !cpu::amx_kernels()) return nullptr;
  const int cin = (int)w.dim(2), cout = (int)w.dim(3);
  const bool x3 = precision == Precision::FP32 && cpu::conv_algo_for(cin, cout) == cpu::ConvAlgo::Amx3;
  if (precision != Precision::BF16 && !x3) return nullptr;
  auto p = std::make_shared<PreparedConv>();
  p->amx = cpu::amx_pack_conv(w.f32(), b.f32(), cin, cout, x3);
  return p;
}

bool conv3x3_stack_bf16(const Tensor& x, const std::vector<const PreparedConv*>& layers,
                        const std::vector<bool>& pool_after, Tensor& y) {
  if (x.on_cuda() || layers.empty() || layers.size() != pool_after.size()) return false;
  std::vector<cpu::AmxStackLayer> L;
  for (size_t i = 0; i < layers.size(); i++) {
    if (!layers[i] || !layers[i]->amx || layers[i]->amx->x3) return false;
    L.push_back({layers[i]->amx.get(), pool_after[i]});
  }
  same_device("conv3x3_stack_bf16", {&x, &y});
  expect(x.ndim == 4 && x.dim(3) == L[0].w->cin, "conv3x3_stack_bf16", "x (want [n,h,w,cin])", x);
  int64_t h = x.dim(1), wd = x.dim(2);
  for (size_t i = 0; i + 1 < L.size(); i++) {
    if (L[i].w->cout != L[i + 1].w->cin) fail("conv3x3_stack_bf16: layer %zu gives %d channels, layer %zu takes %d", i,
                                              L[i].w->cout, i + 1, L[i + 1].w->cin);
    if (L[i].pool_after) h /= 2, wd /= 2;
  }
  if (L.back().pool_after) h /= 2, wd /= 2;
  expect(y.ndim == 4 && y.dim(0) == x.dim(0) && y.dim(1) == h && y.dim(2) == wd && y.dim(3) == L.back().w->cout,
         "conv3x3_stack_bf16", "y (want the last layer's output)", y);
  cpu::conv3x3_amx_stack(x.f32(), (int)x.dim(0), (int)x.dim(1), (int)x.dim(2), L, y.f32());
  return true;
}

void conv3x3(const Tensor& x, const Tensor& w, const Tensor& b, Tensor& y, bool relu, Precision precision,
             const PreparedConv* prepared) {
  same_device("conv3x3", {&x, &w, &b, &y});
  expect(x.ndim == 4, "conv3x3", "x (want [n,h,w,cin])", x);
  const int n = (int)x.dim(0), h = (int)x.dim(1), wd = (int)x.dim(2), cin = (int)x.dim(3);
  expect(w.ndim == 4 && w.dim(0) == 3 && w.dim(1) == 3 && w.dim(2) == cin, "conv3x3", "w (want [3,3,cin,cout])", w);
  const int cout = (int)w.dim(3);
  expect(b.numel() == cout, "conv3x3", "b (want [cout])", b);
  expect(y.ndim == 4 && y.dim(0) == n && y.dim(1) == h && y.dim(2) == wd && y.dim(3) == cout, "conv3x3",
         "y (want [n,h,w,cout])", y);
  check_precision(precision, x.device);
  if (x.on_cuda())
    cuda::conv3x3_variant(cuda_conv_variant(precision), x.f32(), w.f32(), b.f32(), y.f32(), n, h, wd, cin, cout, relu);
  else if (prepared && prepared->amx && prepared->amx->x3 == (precision == Precision::FP32) &&
           prepared->amx->cin == cin && prepared->amx->cout == cout)
    cpu::conv3x3_amx(x.f32(), *prepared->amx, y.f32(), n, h, wd, relu);
  else
    cpu::conv3x3(x.f32(), w.f32(), b.f32(), y.f32(), n, h, wd, cin, cout, relu, precision == Precision::BF16);
}

void conv3x3_backward(const Tensor& x, const Tensor& w, const Tensor& dy, Tensor* dx, Tensor* dw, Tensor* db,
                      Precision precision) {
  same_device("conv3x3_backward", {&x, &w, &dy, dx, dw, db});
  expect(x.ndim == 4, "conv3x3_backward", "x (want [n,h,w,cin])", x);
  const int n = (int)x.dim(0), h = (int)x.dim(1), wd = (int)x.dim(2), cin = (int)x.dim(3);
  expect(w.ndim == 4 && w.dim(0) == 3 && w.dim(1) == 3 && w.dim(2) == cin, "conv3x3_backward",
         "w (want [3,3,cin,cout])", w);
  const int cout = (int)w.dim(3);
  expect(dy.ndim == 4 && dy.dim(0) == n && dy.dim(1) == h && dy.dim(2) == wd && dy.dim(3) == cout,
         "conv3x3_backward", "dy (want [n,h,w,cout])", dy);
  if (dw) expect(dw->numel() == w.numel(), "conv3x3_backward", "dw (want [3,3,cin,cout])", *dw);
  if (db) expect(db->numel() == cout, "conv3x3_backward", "db (want [cout])", *db);
  if (dx) expect(dx->numel() == x.numel(), "conv3x3_backward", "dx (want [n,h,w,cin])", *dx);
  check_precision(precision, x.device);
  float* dxp = dx ? dx->f32() : nullptr;
  float* dwp = dw ? dw->f32() : nullptr;
  float* dbp = db ? db->f32() : nullptr;
  if (x.on_cuda())
    cuda::conv3x3_backward(x.f32(), w.f32(), dy.f32(), dxp, dwp, dbp, n, h, wd, cin, cout);
  else
    cpu::conv3x3_backward(x.f32(), w.f32(), dy.f32(), dxp, dwp, dbp, n, h, wd, cin, cout, precision == Precision::BF16);
}

void maxpool2x2_backward(const Tensor& x, const Tensor& dy, Tensor& dx) {
  same_device("maxpool2x2_backward", {&x, &dy, &dx});
  expect(x.ndim == 4, "maxpool2x2_backward", "x (want [n,h,w,c])", x);
  const int n = (int)x.dim(0), h = (int)x.dim(1), w = (int)x.dim(2), c = (int)x.dim(3);
  expect(dy.ndim == 4 && dy.dim(0) == n && dy.dim(1) == h / 2 && dy.dim(2) == w / 2 && dy.dim(3) == c,
         "maxpool2x2_backward", "dy (want [n,h/2,w/2,c])", dy);
  expect(dx.numel() == x.numel(), "maxpool2x2_backward", "dx (want [n,h,w,c])", dx);
  if (x.on_cuda())
    cuda::maxpool2x2_backward(x.f32(), dy.f32(), dx.f32(), n, h, w, c);
  else
    cpu::maxpool2x2_backward(x.f32(), dy.f32(), dx.f32(), n, h, w, c);
}

void relu(const Tensor& x, Tensor& y) {
  same_device("relu", {&x, &y});
  expect(x.numel() == y.numel(), "relu", "y (want x's size)", y);
  if (x.on_cuda())
    cuda::relu(x.f32(), y.f32(), x.numel());
  else
    cpu::relu(x.f32(), y.f32(), x.numel());
}

void relu_backward(const Tensor& y, const Tensor& dy, Tensor& dx) {
  same_device("relu_backward", {&y, &dy, &dx});
  expect(dy.numel() == y.numel() && dx.numel() == y.numel(), "relu_backward", "dy/dx (want y's size)", dy);
  if (y.on_cuda())
    cuda::relu_backward(y.f32(), dy.f32(), dx.f32(), y.numel());
  else
    cpu::relu_backward(y.f32(), dy.f32(), dx.f32(), y.numel());
}

void maxpool2x2(const Tensor& x, Tensor& y) {
  same_device("maxpool2x2", {&x, &y});
  expect(x.ndim == 4, "maxpool2x2", "x (want [n,h,w,c])", x);
  const int n = (int)x.dim(0), h = (int)x.dim(1), w = (int)x.dim(2), c = (int)x.dim(3);
  expect(y.ndim == 4 && y.dim(0) == n && y.dim(1) == h / 2 && y.dim(2) == w / 2 && y.dim(3) == c, "maxpool2x2",
         "y (want [n,h/2,w/2,c])", y);
  if (x.on_cuda())
    cuda::maxpool2x2(x.f32(), y.f32(), n, h, w, c);
  else
    cpu::maxpool2x2(x.f32(), y.f32(), n, h, w, c);
}

void dense(const Tensor& x, const Tensor& w, const Tensor& b, Tensor& y, bool relu) {
  same_device("dense", {&x, &w, &b, &y});
  expect(x.ndim == 2, "dense", "x (want [m,k])", x);
  const int m = (int)x.dim(0), k = (int)x.dim(1);
  expect(w.ndim == 2 && w.dim(0) == k, "dense", "w (want [k,n])", w);
  const int n = (int)w.dim(1);
  expect(b.numel() == n, "dense", "b (want [n])", b);
  expect(y.ndim == 2 && y.dim(0) == m && y.dim(1) == n, "dense", "y (want [m,n])", y);
  if (x.on_cuda())
    cuda::dense(x.f32(), w.f32(), b.f32(), y.f32(), m, k, n, relu);
  else
    cpu::dense(x.f32(), w.f32(), b.f32(), y.f32(), m, k, n, relu);
}

void dense_backward(const Tensor& x, const Tensor& w, const Tensor& dy, Tensor* dx, Tensor& dw, Tensor& db) {
  same_device("dense_backward", {&x, &w, &dy, dx, &dw, &db});
  const int m = (int)x.dim(0), k = (int)x.dim(1), n = (int)w.dim(1);
  expect(x.ndim == 2, "dense_backward", "x (want [m,k])", x);
  expect(w.ndim == 2 && w.dim(0) == k, "dense_backward", "w (want [k,n])", w);
  expect(dy.ndim == 2 && dy.dim(0) == m && dy.dim(1) == n, "dense_backward", "dy (want [m,n])", dy);
  expect(dw.numel() == (int64_t)k * n, "dense_backward", "dw (want [k,n])", dw);
  expect(db.numel() == n, "dense_backward", "db (want [n])", db);
  if (dx) expect(dx->numel() == (int64_t)m * k, "dense_backward", "dx (want [m,k])", *dx);
  float* dxp = dx ? dx->f32() : nullptr;
  if (x.on_cuda())
    cuda::dense_backward(x.f32(), w.f32(), dy.f32(), dxp, dw.f32(), db.f32(), m, k, n);
  else
    cpu::dense_backward(x.f32(), w.f32(), dy.f32(), dxp, dw.f32(), db.f32(), m, k, n);
}

void dense_backward_rmsprop(const Tensor& x, const Tensor& dy, Tensor& w, Tensor& v, Tensor& db, float lr, float rho,
                            float eps, const Tensor* x_next, Tensor* next_partials) {
  same_device("dense_backward_rmsprop", {&x, &dy, &w, &v, &db, x_next, next_partials});
  const int m = (int)x.dim(0), k = (int)x.dim(1), n = (int)w.dim(1);
  expect(x.ndim == 2, "dense_backward_rmsprop", "x (want [m,k])", x);
  expect(w.ndim == 2 && w.dim(0) == k, "dense_backward_rmsprop", "w (want [k,n])", w);
  expect(dy.ndim == 2 && dy.dim(0) == m && dy.dim(1) == n, "dense_backward_rmsprop", "dy (want [m,n])", dy);
  expect(v.numel() == (int64_t)k * n, "dense_backward_rmsprop", "v (want [k,n])", v);
  expect(db.numel() == n, "dense_backward_rmsprop", "db (want [n])", db);
  if (x.on_cuda()) fail("dense_backward_rmsprop: CPU tensors only (the GPU path runs dense_backward, then rmsprop)");
  int m_next = 0;
  if (x_next) {
    m_next = (int)x_next->dim(0);
    expect(x_next->ndim == 2 && x_next->dim(1) == k, "dense_backward_rmsprop", "x_next (want [m',k])", *x_next);
    expect(next_partials && dense_partial_blocks(k) > 0 &&
               next_partials->numel() == (int64_t)dense_partial_blocks(k) * m_next * n,
           "dense_backward_rmsprop", "next_partials (want [blocks * m', n], k >= 1024)",
           next_partials ? *next_partials : *x_next);
  }
  cpu::dense_backward_rmsprop(x.f32(), dy.f32(), w.f32(), v.f32(), db.f32(), m, k, n, lr, rho, eps,
                              x_next ? x_next->f32() : nullptr, m_next, x_next ? next_partials->f32() : nullptr);
}

int dense_partial_blocks(int k) { return cpu::dense_partial_blocks(k); }

void dense_from_partials(const Tensor& P, int k, const Tensor& b, Tensor& y, bool relu) {
  same_device("dense_from_partials", {&P, &b, &y});
  const int nb = dense_partial_blocks(k);
  expect(y.ndim == 2, "dense_from_partials", "y (want [m,n])", y);
  const int m = (int)y.dim(0), n = (int)y.dim(1);
  expect(nb > 0 && P.numel() == (int64_t)nb * m * n, "dense_from_partials", "P (want [blocks * m, n], k >= 1024)", P);
  expect(b.numel() == n, "dense_from_partials", "b (want [n])", b);
  if (y.on_cuda()) fail("dense_from_partials: CPU tensors only");
  cpu::dense_from_partials(P.f32(), m, k, n, b.f32(), relu, y.f32());
}

void dropout(const Tensor& x, Tensor& y, float rate, uint64_t seed, uint64_t step) {
  same_device("dropout", {&x, &y});
  expect(x.numel() == y.numel(), "dropout", "y (want x's size)", y);
  if (!(rate >= 0.0f && rate < 1.0f)) fail("dropout: rate must be in [0, 1), got %g", rate);
  if (x.on_cuda())
    cuda::dropout(x.f32(), y.f32(), x.numel(), rate, seed, step);
  else
    cpu::dropout(x.f32(), y.f32(), x.numel(), rate, seed, step);
}

void sigmoid_bce(const Tensor& z, const Tensor& y, Tensor& prob, Tensor& loss, Tensor* dz) {
  same_device("sigmoid_bce", {&z, &y, &prob, &loss, dz});
  const int m = (int)z.numel();
  expect(y.numel() == m && prob.numel() == m && loss.numel() == m && (!dz || dz->numel() == m), "sigmoid_bce",
         "y/prob/loss/dz (want z's size)", y);
  float* dzp = dz ? dz->f32() : nullptr;
  if (z.on_cuda())
    cuda::sigmoid_bce(z.f32(), y.f32(), prob.f32(), loss.f32(), dzp, m);
  else
    cpu::sigmoid_bce(z.f32(), y.f32(), prob.f32(), loss.f32(), dzp, m);
}

void rmsprop(Tensor& w, const Tensor& g, Tensor& v, float lr, float rho, float eps) {
  same_device("rmsprop", {&w, &g, &v});
  expect(g.numel() == w.numel() && v.numel() == w.numel(), "rmsprop", "g/v (want w's size)", g);
  if (w.on_cuda())
    cuda::rmsprop(w.f32(), g.f32(), v.f32(), w.numel(), lr, rho, eps);
  else
    cpu::rmsprop(w.f32(), g.f32(), v.f32(), w.numel(), lr, rho, eps);
}

void to_f16(const Tensor& x, Tensor& y) {
  if (x.device != y.device) fail("to_f16: tensors on different devices");
  if (x.dtype != DType::F32 || y.dtype != DType::F16 || x.numel() != y.numel())
    fail("to_f16: want fp32 %s -> fp16 of the same size, got %s %s", x.shape_str().c_str(), dtype_name(y.dtype),
         y.shape_str().c_str());
  if (x.on_cuda())
    cuda::f32_to_f16(x.f32(), (uint16_t*)y.ptr, x.numel());
  else
    cpu::f32_to_f16(x.f32(), (uint16_t*)y.ptr, x.numel());
}

void gather_rows(const Tensor& src, const std::vector<int64_t>& idx, Tensor& dst) {
  if (src.device != dst.device) fail("gather_rows: tensors on different devices");
  if (src.ndim != 2 || dst.ndim != 2 || dst.dim(1) != src.dim(1) || dst.dim(0) < (int64_t)idx.size() ||
      dst.dtype != DType::F32 || (src.dtype != DType::F32 && src.dtype != DType::F16))
    fail("gather_rows: bad shapes %s -> %s", src.shape_str().c_str(), dst.shape_str().c_str());
  const int64_t d = src.dim(1);
  for (int64_t i : idx)
    if (i < 0 || i >= src.dim(0)) fail("gather_rows: row %lld out of range", (long long)i);
  if (src.on_cuda()) {
    // The device copy of the index list: one buffer per thread, grown as needed, freed with it.
    thread_local Tensor idx_dev;
    if (idx_dev.numel() < 2 * (int64_t)idx.size()) idx_dev = Tensor({2 * (int64_t)idx.size()}, Device::CUDA);
    cuda::gather_rows(src.ptr, src.dtype == DType::F16, idx.data(), (int64_t*)idx_dev.ptr, (int)idx.size(), d, dst.f32());
    return;
  }
  parallel_for((int64_t)idx.size(), [&](int64_t r) {
    float* o = dst.f32() + r * d;
    if (src.dtype == DType::F32)
      memcpy(o, src.f32() + idx[r] * d, (size_t)d * sizeof(float));
    else
      cpu::f16_to_f32((const uint16_t*)src.ptr + idx[r] * d, o, d);
  });
}

Range::Range(const char* name) { cuda::range_push(name); }
Range::~Range() { cuda::range_pop(); }

}  // namespace ops
}  // namespace tl
