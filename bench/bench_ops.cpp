// bench_ops: times every op on the VGG16 layer shapes (224x224 input) and on the head's shapes,
// on the CPU and (when present) the GPU, and prints the achieved GFLOP/s or GB/s next to the
// machine's ceiling. The CPU ceilings are measured here, in the same run: the peak FMA rate of
// the kernel build in use on all threads, and the bandwidth of a large multi-threaded copy.
//
//   build/bench_ops [--batch 8,32] [--device cpu|cuda|all] [--reps N] [--only conv,pool,head,base,backward] [--kernels 1,2,3,4]
//                   [--precision fp32|bf16]
//
// --kernels: the GPU's numbered conv3x3 kernels to time (host/ops/cuda_ops.h: 1 fp32 FFMA, 2 fp32
// FFMA 8x8 per thread, 3 TF32 tensor cores, 4 BF16 tensor cores), each per layer and in total.
#include <algorithm>
#if defined(__x86_64__)
#include <immintrin.h>
#endif
#include <cmath>
#include <cstring>
#include <functional>
#include <thread>

#include "host/core/cli.h"
#include "host/core/cpu_features.h"
#include "host/ops/cpu_amx.h"
#include "host/ops/cpu_kernels.h"
#include "host/ops/cuda_ops.h"
#include "host/ops/ops.h"
#include "host/core/threads.h"
#include "host/io/weights.h"
#include "host/model/vgg.h"

using namespace tl;

namespace {

struct Ceil {
  double flops = 0, bytes = 0;
};

#if defined(__x86_64__)
// The bf16 dot-product ceiling (VDPBF16PS: 32 multiply-adds per instruction), for the record: where
// it is not twice the fp32 FMA rate, a bf16 conv path cannot beat the fp32 one.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"  // GCC 12: a false report inside _mm512_reduce_add_ps
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
__attribute__((target("avx512f,avx512bf16"))) float dpbf16_loop(long iters) {
  __m512 acc[24];
  for (int i = 0; i < 24; i++) acc[i] = _mm512_setzero_ps();
  const __m512bh a = (__m512bh)_mm512_set1_epi32(0x3f803f80), b = (__m512bh)_mm512_set1_epi32(0x33803380);
  for (long it = 0; it < iters; it++) {
#pragma GCC unroll 24
    for (int i = 0; i < 24; i++) acc[i] = _mm512_dpbf16_ps(acc[i], a, b);
  }
  float s = 0;
  for (int i = 0; i < 24; i++) s += _mm512_reduce_add_ps(acc[i]);
  return s;
}
#pragma GCC diagnostic pop
double bf16_ceiling() {  // flop/s on all threads; 0 without AVX512_BF16
  if (!__builtin_cpu_supports("avx512bf16")) return 0;
  const int nt = num_threads();
  const long iters = 10000000;
  std::vector<float> sink(nt);
  const double t0 = now_s();
  parallel_for(nt, [&](int64_t t) { sink[t] = dpbf16_loop(iters); });
  return (double)iters * 24 * 32 * 2 * nt / (now_s() - t0);
}
#else
double bf16_ceiling() { return 0; }
#endif

// The AMX ceiling: TDPBF16PS on tiles already loaded, 2x2 blocking (4 accumulators), all threads.
double amx_ceiling() {  // flop/s; 0 where AMX is not usable
  if (!cpu_amx_usable()) return 0;
  const cpu::AmxKernels& K = cpu::amx_hw_kernels();
  const int nt = num_threads();
  const long iters = 2000000;
  std::vector<float> sink(nt);
  const double t0 = now_s();
  parallel_for(nt, [&](int64_t t) { sink[t] = K.peak_loop(iters); });
  return (double)iters * cpu::kAmxPeakFlops * nt / (now_s() - t0);
}

Ceil measure_cpu_ceilings() {
  Ceil c;
  const cpu::Kernels& k = cpu::kernels();
  const int nt = num_threads();
  const long iters = 20000000;
  std::vector<float> sink(nt);
  double t0 = now_s();
  parallel_for(nt, [&](int64_t t) { sink[t] = k.fma_loop(iters); });
  double dt = now_s() - t0;
  c.flops = (double)iters * k.fma_loop_flops * nt / dt;
  const size_t n = (size_t)64 << 20;  // 256 MB per buffer
  std::vector<float> a(n, 1.0f), b(n, 0.0f);
  double best = 1e30;
  for (int r = 0; r < 3; r++) {
    t0 = now_s();
    parallel_for(64, [&](int64_t t) {
      size_t s = n / 64 * t;
      memcpy(b.data() + s, a.data() + s, n / 64 * sizeof(float));
    });
    best = std::min(best, now_s() - t0);
  }
  c.bytes = 2.0 * n * sizeof(float) / best;  // read + write
  return c;
}

double time_op(Device d, int reps, const std::function<void()>& fn) {
  fn();  // warm-up (and first-touch of the outputs)
  if (d == Device::CUDA) cuda::synchronize();
  std::vector<double> ts;
  for (int r = 0; r < reps; r++) {
    if (d == Device::CUDA) {
      cuda::timer_start();
      fn();
      ts.push_back(cuda::timer_stop_ms() / 1e3);
    } else {
      double t0 = now_s();
      fn();
      ts.push_back(now_s() - t0);
    }
  }
  std::sort(ts.begin(), ts.end());
  return ts[ts.size() / 2];  // median
}

void fill(Tensor& t, uint64_t seed, float scale) {
  Rng r(seed);
  std::vector<float> v((size_t)t.numel());
  for (auto& x : v) x = (r.uniform() * 2 - 1) * scale;
  t.from_vector(v);
}

void row(const char* dev, const std::string& op, const std::string& shape, double s, double work, bool is_flops,
         const Ceil& c) {
  double rate = work / s;
  double ceil = is_flops ? c.flops : c.bytes;
  printf("%-5s %-22s %-28s %10.3f ms %9.1f %-7s %5.1f%%\n", dev, op.c_str(), shape.c_str(), s * 1e3,
         rate / 1e9, is_flops ? "GFLOP/s" : "GB/s", ceil > 0 ? 100.0 * rate / ceil : 0.0);
}

struct ConvShape {
  const char* name;
  int hw, cin, cout;
  bool pool_after;
};
const ConvShape kVgg16[] = {
    {"block1_conv1", 224, 3, 64, false},   {"block1_conv2", 224, 64, 64, true},
    {"block2_conv1", 112, 64, 128, false}, {"block2_conv2", 112, 128, 128, true},
    {"block3_conv1", 56, 128, 256, false}, {"block3_conv2", 56, 256, 256, false},
    {"block3_conv3", 56, 256, 256, true},  {"block4_conv1", 28, 256, 512, false},
    {"block4_conv2", 28, 512, 512, false}, {"block4_conv3", 28, 512, 512, true},
    {"block5_conv1", 14, 512, 512, false}, {"block5_conv2", 14, 512, 512, false},
    {"block5_conv3", 14, 512, 512, true},
};

const char* kernel_label(int k) {
  return k == 1 ? "fp32 FFMA" : k == 2 ? "fp32 FFMA 8x8" : k == 3 ? "tf32 tensor cores" : "bf16 tensor cores";
}

Precision g_cpu_precision = Precision::FP32;  // --precision (the CPU's conv: fp32 or bf16)

void bench_device(Device d, const std::vector<int>& batches, int reps, const std::string& only, const Ceil& c,
                  const std::vector<int>& kernels) {
  const Precision prec = d == Device::CPU ? g_cpu_precision : Precision::FP32;
  const char* dn = device_name(d);
  bool do_conv = only.find("conv") != std::string::npos, do_pool = only.find("pool") != std::string::npos,
       do_head = only.find("head") != std::string::npos, do_base = only.find("base") != std::string::npos;
  if (do_base) {  // the whole base as tl_cache runs it: 13 convs + 5 pools, synthetic weights
    static const VggWeights vw = synthetic_weights("vgg16", 1);
    for (int B : batches) {
      VggBase base(vw, d, prec);
      Tensor x({B, 224, 224, 3}, d);
      fill(x, 11, 50.0f);
      const double s = time_op(d, reps, [&] { base.forward(x); });
      printf("%-5s %-22s %-28s %10.3f ms  -> %.2f images/s (whole forward, batch %d, %s)\n", dn, "VGG16 base forward",
             strfmt("%dx224x224x3", B).c_str(), s * 1e3, B / s, B, precision_name(prec));
      fflush(stdout);
    }
  }
  // The CPU has one conv (its own algorithm choice); the GPU each numbered kernel asked for.
  const std::vector<int> ks = d == Device::CUDA ? kernels : std::vector<int>{0};
  for (int B : batches) {
    std::vector<double> conv_total(ks.size(), 0.0);
    for (const ConvShape& L : kVgg16) {
      if (!do_conv && !(do_pool && L.pool_after)) continue;
      Tensor x({B, L.hw, L.hw, L.cin}, d), w({3, 3, L.cin, L.cout}, d), b({L.cout}, d), y({B, L.hw, L.hw, L.cout}, d);
      fill(x, 1, 1.0f);
      fill(w, 2, 0.05f);
      fill(b, 3, 0.1f);
      if (do_conv) {
        for (size_t ki = 0; ki < ks.size(); ki++) {
          const int k = ks[ki];
          double s = time_op(d, reps, [&] {
            if (k == 0)
              ops::conv3x3(x, w, b, y, true, prec);
            else
              cuda::conv3x3_variant(k, x.f32(), w.f32(), b.f32(), y.f32(), B, L.hw, L.hw, L.cin, L.cout, true);
          });
          conv_total[ki] += s;
          double flops = 2.0 * B * L.hw * L.hw * 9.0 * L.cin * L.cout;
          // Tensor-core kernels are shown against the fp32 ceiling too (their own is 8-16x higher).
          row(dn, (k ? strfmt("conv3x3+relu k%d ", k) : std::string("conv3x3+relu ")) + L.name,
              strfmt("%dx%dx%dx%d->%d", B, L.hw, L.hw, L.cin, L.cout), s, flops, true, c);
        }
      }
      if (do_pool && L.pool_after) {
        Tensor p({B, L.hw / 2, L.hw / 2, L.cout}, d);
        double s = time_op(d, reps, [&] { ops::maxpool2x2(y, p); });
        row(dn, "maxpool2x2", strfmt("%dx%dx%dx%d", B, L.hw, L.hw, L.cout), s, (double)(y.bytes() + p.bytes()), false,
            c);
      }
    }
    if (do_conv) {
      for (size_t ki = 0; ki < ks.size(); ki++) {
        const int k = ks[ki];
        printf("%-5s %-22s %-28s %10.3f ms  -> %.2f images/s through the 13 conv layers (batch %d)%s\n", dn,
               k ? strfmt("VGG16 conv total k%d", k).c_str() : "VGG16 conv total", strfmt("%dx224x224x3", B).c_str(),
               conv_total[ki] * 1e3, B / conv_total[ki], B,
               k ? strfmt(" [kernel %d: %s]", k, kernel_label(k)).c_str() : "");
      }
    }
  }
  if (only.find("backward") != std::string::npos) {  // fine-tuning's block5 (and Grad-CAM): fwd vs the gradients
    for (int B : batches)
      for (const ConvShape& L : kVgg16) {
        if (L.hw != 14) continue;
        Tensor x({B, L.hw, L.hw, L.cin}, d), w({3, 3, L.cin, L.cout}, d), b({L.cout}, d), y({B, L.hw, L.hw, L.cout}, d);
        Tensor dy({B, L.hw, L.hw, L.cout}, d), dx({B, L.hw, L.hw, L.cin}, d), dw({3, 3, L.cin, L.cout}, d), db({L.cout}, d);
        fill(x, 1, 1.0f);
        fill(w, 2, 0.05f);
        fill(b, 3, 0.1f);
        fill(dy, 4, 0.1f);
        const double flops = 2.0 * B * L.hw * L.hw * 9.0 * L.cin * L.cout;
        const std::string shape = strfmt("%dx%dx%dx%d->%d", B, L.hw, L.hw, L.cin, L.cout);
        double s = time_op(d, reps, [&] { ops::conv3x3(x, w, b, y, true, prec); });
        row(dn, std::string("conv3x3 fwd ") + L.name, shape, s, flops, true, c);
        s = time_op(d, reps, [&] { ops::conv3x3_backward(x, w, dy, &dx, nullptr, nullptr, prec); });
        row(dn, std::string("conv3x3 bwd dx ") + L.name, shape, s, flops, true, c);
        s = time_op(d, reps, [&] { ops::conv3x3_backward(x, w, dy, nullptr, &dw, &db, prec); });
        row(dn, std::string("conv3x3 bwd dw,db ") + L.name, shape, s, flops, true, c);
        if (L.pool_after) {
          Tensor p({B, L.hw / 2, L.hw / 2, L.cout}, d);
          s = time_op(d, reps, [&] { ops::maxpool2x2_backward(y, p, dy); });
          row(dn, "maxpool2x2 backward", strfmt("%dx%dx%dx%d", B, L.hw, L.hw, L.cout), s,
              (double)(y.bytes() + p.bytes() + dy.bytes()), false, c);
        }
      }
  }
  if (!do_head) return;
  for (int B : {32, 128}) {
    const int K = 25088, N = 400;
    Tensor x({B, K}, d), w({K, N}, d), b({N}, d), y({B, N}, d), dy({B, N}, d), dw({K, N}, d), db({N}, d);
    fill(x, 4, 1.0f);
    fill(w, 5, 0.01f);
    fill(b, 6, 0.1f);
    fill(dy, 7, 0.1f);
    double s = time_op(d, reps * 5, [&] { ops::dense(x, w, b, y, true); });
    row(dn, "dense+relu", strfmt("%dx%d->%d", B, K, N), s, 2.0 * B * K * N, true, c);
    s = time_op(d, reps * 5, [&] { ops::dense_backward(x, w, dy, nullptr, dw, db); });
    row(dn, "dense backward (dW,db)", strfmt("%dx%d->%d", B, K, N), s, 2.0 * B * K * N, true, c);
    Tensor h1({B, N}, d), h2({B, N}, d);
    fill(h1, 8, 1.0f);
    s = time_op(d, reps * 5, [&] { ops::dropout(h1, h2, 0.2f, 1, 2); });
    row(dn, "dropout", strfmt("%dx%d", B, N), s, 2.0 * h1.bytes(), false, c);
  }
  {
    const int64_t P = 10043641;  // the head's parameters
    Tensor w({P}, d), g({P}, d), v({P}, d);
    fill(w, 9, 0.01f);
    fill(g, 10, 0.01f);
    v.zero();
    double s = time_op(d, reps * 5, [&] { ops::rmsprop(w, g, v, 1e-3f, 0.9f, 1e-7f); });
    row(dn, "rmsprop", strfmt("%lld params", (long long)P), s, 5.0 * w.bytes(), false, c);
    Tensor r({P}, d);
    s = time_op(d, reps * 5, [&] { ops::relu(g, r); });
    row(dn, "relu", strfmt("%lld", (long long)P), s, 2.0 * w.bytes(), false, c);
  }
}

}  // namespace

int main(int argc, char** argv) {
  return guarded_main("bench_ops", [&] {
    std::string batches_s = "8,32", device = "all", only = "conv,pool,head";
    int reps = 3, threads = 0;
    Cli cli("bench_ops", "bench_ops [options]",
            "Times each op on the VGG16 layer shapes and the head's shapes; prints GFLOP/s or GB/s and the\n"
            "fraction of the machine's ceiling (CPU ceilings are measured in the same run).");
    cli.opt("--batch", &batches_s, "LIST", "comma-separated batch sizes for the conv layers");
    cli.opt("--device", &device, "D", "cpu, cuda or all (all: the CPU, and the GPU when present)");
    cli.opt("--reps", &reps, "N", "timed repetitions per op (the median is reported)");
    cli.opt("--only", &only, "LIST",
            "subset of conv,pool,head,base,backward (base: the whole VGG16 forward, pools included; backward: block5's "
            "conv forward against its dx and dw+db passes, and the pool's backward)");
    cli.opt("--threads", &threads, "N", "CPU threads (default: all cores)");
    std::string kernels_s = "1";
    cli.opt("--kernels", &kernels_s, "LIST",
            "GPU conv kernels to time: 1 fp32 FFMA (the fp32 default), 2 fp32 FFMA 8x8, 3 tf32 and 4 bf16 tensor cores");
    std::string precision = "fp32";
    cli.opt("--precision", &precision, "P",
            "the CPU's conv arithmetic: fp32 or bf16 (AMX tiles, else AVX512_BF16; TL_CONV=amx3 makes fp32 bf16x3)");
    if (!cli.parse(argc, argv)) return 0;
    g_cpu_precision = parse_precision(precision);
    if (g_cpu_precision == Precision::TF32) fail("--precision tf32: the CPU computes in fp32 or bf16");
    if (reps < 1) fail("--reps must be at least 1");
    if (threads > 0) set_num_threads(threads);
    std::vector<int> kernels;
    for (auto& s : split(kernels_s, ',')) {
      const int k = atoi(s.c_str());
      if (k < 1 || k > 4) fail("--kernels: expected numbers 1-4, got '%s'", s.c_str());
      kernels.push_back(k);
    }
    std::vector<int> batches;
    for (auto& s : split(batches_s, ',')) batches.push_back(std::max(1, atoi(s.c_str())));
    printf("%-5s %-22s %-28s %13s %17s %6s\n", "dev", "op", "shape", "median", "rate", "ceil");
    if (device == "cpu" || device == "all") {
      Ceil c = measure_cpu_ceilings();
      const double bf16 = bf16_ceiling(), amx = amx_ceiling();
      printf("cpu: %d threads, kernels %s; measured ceilings: %.1f GFLOP/s fp32 FMA, %.1f GB/s copy%s\n",
             num_threads(), cpu::kernels().isa, c.flops / 1e9, c.bytes / 1e9,
             bf16 > 0 ? strfmt(", %.1f GFLOP/s bf16 dot products (AVX512_BF16)", bf16 / 1e9).c_str() : "");
      printf("cpu: AMX: %s%s\n", cpu_amx_status().c_str(),
             amx > 0 ? strfmt("; measured TDPBF16PS ceiling %.2f TFLOP/s (%.0f images/s for VGG16's 30.69 GFLOP)",
                              amx / 1e12, amx / 30.69e9).c_str() : "");
      if (g_cpu_precision == Precision::BF16) {
        printf("cpu: --precision bf16 runs %s\n", cpu::bf16_path_name(cpu::bf16_path()));
        // AMX conv rows are shown as a fraction of the AMX ceiling (the fp32 FMA one is 13x lower).
        if (cpu::bf16_path() == cpu::Bf16Path::Amx && amx > 0) c.flops = amx;
      }
      bench_device(Device::CPU, batches, reps, only, c, kernels);
    }
    std::string why;
    if (device == "cuda" || device == "all") {
      if (!cuda::available(&why)) {
        if (device == "cuda") fail("--device cuda: %s", why.c_str());
        printf("cuda: skipped (%s)\n", why.c_str());
      } else {
        Ceil c;
        cuda::device_peaks(&c.flops, &c.bytes);
        printf("cuda: %s; datasheet-style ceilings from attributes: %.1f TFLOP/s fp32, %.0f GB/s\n",
               cuda::device_description().c_str(), c.flops / 1e12, c.bytes / 1e9);
        bench_device(Device::CUDA, batches, reps, only, c, kernels);
      }
    }
    return 0;
  });
}
