// tensor.h: a small tensor type (shape, dtype, device) and the run-time device choice.
//
// Layout convention of the whole engine: activations are NHWC (batch, height, width, channel),
// row-major, which is Keras' order, so Flatten needs no permutation and the cached 7x7x512
// features are exactly what Keras' model.predict returns. Conv kernels are HWIO
// [3][3][in][out] (Keras' kernel layout); dense weights are [in][out], y = x W + b.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "host/core/common.h"

namespace tl {

enum class Device : uint8_t { CPU = 0, CUDA = 1 };
enum class DType : uint8_t { F32 = 0, F16 = 1, U8 = 2, I32 = 3 };

size_t dtype_size(DType t);
const char* dtype_name(DType t);
const char* device_name(Device d);

// The arithmetic of the frozen conv base (--precision): fp32 (the default and exact mode: FFMA on
// the GPU, within 1e-4 of float64 on the CPU), or operands rounded to tf32 (GPU tensor cores) or
// bf16 (GPU tensor cores, or CPUs with AVX512_BF16) and fp32 accumulation. Recorded in caches and models; features made at one precision
// are never mixed with another's.
enum class Precision : uint8_t { FP32 = 0, TF32 = 1, BF16 = 2 };
const char* precision_name(Precision p);
Precision parse_precision(const std::string& s);  // fails naming the flag on anything else
// Fails with the fix when `d` cannot compute at precision p (the CPU: fp32, and bf16 with AVX512_BF16).
void check_precision(Precision p, Device d);

struct Tensor {
  int ndim = 0;
  int64_t shape[4] = {0, 0, 0, 0};
  DType dtype = DType::F32;
  Device device = Device::CPU;
  void* ptr = nullptr;
  bool owned = false;

  Tensor() = default;
  Tensor(std::initializer_list<int64_t> shape, Device dev = Device::CPU, DType dt = DType::F32);
  Tensor(const std::vector<int64_t>& shape, Device dev = Device::CPU, DType dt = DType::F32);
  ~Tensor();
  Tensor(const Tensor&) = delete;
  Tensor& operator=(const Tensor&) = delete;
  Tensor(Tensor&& o) noexcept;
  Tensor& operator=(Tensor&& o) noexcept;

  // A non-owning view of memory that lives elsewhere.
  static Tensor view(void* p, std::initializer_list<int64_t> shape, Device dev = Device::CPU,
                     DType dt = DType::F32);
  // A view of the first n rows (dimension 0) of this tensor.
  Tensor rows(int64_t n) const;
  Tensor reshaped(std::initializer_list<int64_t> shape) const;  // non-owning

  int64_t numel() const;
  size_t bytes() const { return (size_t)numel() * dtype_size(dtype); }
  int64_t dim(int i) const { return shape[i < 0 ? ndim + i : i]; }
  float* f32() const { return (float*)ptr; }
  bool on_cuda() const { return device == Device::CUDA; }
  std::string shape_str() const;

  void zero();
  void copy_from(const Tensor& src);  // any device to any device, same numel and dtype
  Tensor to(Device dev) const;        // a copy on dev
  std::vector<float> to_vector() const;  // f32 only; copies from the GPU when needed
  void from_vector(const std::vector<float>& v);

 private:
  void allocate();
  void release();
};

// --device auto|cpu|cuda. "auto" takes CUDA when a usable GPU is present, otherwise the CPU,
// and says so in one line on stderr (prefixed with prog). "cuda" without a GPU is an error.
// "auto", "cpu" or "cuda"; says which (log.h). several: "cuda:all" / "cuda:0,1" accepted too (tl_cache).
Device resolve_device(const std::string& flag, bool several = false);
// --device cuda:all or cuda:0,1 (tl_cache: one pipeline per GPU): the device numbers, checked
// against the GPUs present; empty for auto, cpu and cuda (the current device only).
std::vector<int> cuda_device_list(const std::string& flag);

}  // namespace tl
