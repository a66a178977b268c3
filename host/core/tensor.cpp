#include "host/core/tensor.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "host/core/device.h"
#include "host/core/log.h"
#include "host/core/threads.h"
#include "host/core/cpu_features.h"

namespace tl {

size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32: return 4;
    case DType::F16: return 2;
    case DType::U8: return 1;
    case DType::I32: return 4;
  }
  return 0;
}

const char* precision_name(Precision p) {
  switch (p) {
    case Precision::FP32: return "fp32";
    case Precision::TF32: return "tf32";
    case Precision::BF16: return "bf16";
  }
  return "?";
}

Precision parse_precision(const std::string& s) {
  if (s == "fp32") return Precision::FP32;
  if (s == "tf32") return Precision::TF32;
  if (s == "bf16") return Precision::BF16;
  fail("--precision: expected fp32, tf32 or bf16, got '%s'", s.c_str());
}

void check_precision(Precision p, Device d) {
  if (p == Precision::FP32 || d == Device::CUDA) return;
  if (p == Precision::BF16 && cpu_bf16_capable()) return;
  if (p == Precision::BF16)
    fail("--precision bf16 on the CPU needs AMX or AVX512_BF16, which this CPU lacks: use --precision fp32 (also "
         "faster here) or --device cuda");
  fail("--precision %s runs on the GPU's tensor cores only; the CPU computes in fp32 or bf16: use --precision fp32 "
       "or --device cuda",
       precision_name(p));
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "fp32";
    case DType::F16: return "fp16";
    case DType::U8: return "uint8";
    case DType::I32: return "int32";
  }
  return "?";
}

const char* device_name(Device d) { return d == Device::CUDA ? "cuda" : "cpu"; }

Tensor::Tensor(std::initializer_list<int64_t> shp, Device dev, DType dt)
    : Tensor(std::vector<int64_t>(shp), dev, dt) {}

Tensor::Tensor(const std::vector<int64_t>& shp, Device dev, DType dt) : dtype(dt), device(dev) {
  TL_ASSERT(shp.size() >= 1 && shp.size() <= 4);
  ndim = (int)shp.size();
  for (int i = 0; i < ndim; i++) {
    TL_ASSERT(shp[i] >= 0);
    shape[i] = shp[i];
  }
  allocate();
}

Tensor::~Tensor() { release(); }

Tensor::Tensor(Tensor&& o) noexcept { *this = std::move(o); }

Tensor& Tensor::operator=(Tensor&& o) noexcept {
  if (this != &o) {
    release();
    ndim = o.ndim;
    for (int i = 0; i < 4; i++) shape[i] = o.shape[i];
    dtype = o.dtype;
    device = o.device;
    ptr = o.ptr;
    owned = o.owned;
    o.ptr = nullptr;
    o.owned = false;
  }
  return *this;
}

Tensor Tensor::view(void* p, std::initializer_list<int64_t> shp, Device dev, DType dt) {
  Tensor t;
  t.ndim = (int)shp.size();
  TL_ASSERT(t.ndim >= 1 && t.ndim <= 4);
  int i = 0;
  for (int64_t s : shp) t.shape[i++] = s;
  t.dtype = dt;
  t.device = dev;
  t.ptr = p;
  t.owned = false;
  return t;
}

Tensor Tensor::rows(int64_t n) const {
  TL_ASSERT(n >= 0 && n <= shape[0]);
  Tensor t;
  t.ndim = ndim;
  for (int i = 0; i < 4; i++) t.shape[i] = shape[i];
  t.shape[0] = n;
  t.dtype = dtype;
  t.device = device;
  t.ptr = ptr;
  return t;
}

Tensor Tensor::reshaped(std::initializer_list<int64_t> shp) const {
  Tensor t = view(ptr, shp, device, dtype);
  TL_ASSERT(t.numel() == numel());
  return t;
}

int64_t Tensor::numel() const {
  if (ndim == 0) return 0;
  int64_t n = 1;
  for (int i = 0; i < ndim; i++) n *= shape[i];
  return n;
}

std::string Tensor::shape_str() const {
  std::string s = "[";
  for (int i = 0; i < ndim; i++) s += strfmt(i ? ",%lld" : "%lld", (long long)shape[i]);
  return s + "]";
}

void Tensor::allocate() {
  size_t b = bytes();
  if (b == 0) {
    ptr = nullptr;
    owned = false;
    return;
  }
  if (device == Device::CUDA) {
    ptr = cuda::malloc(b);
  } else {
    size_t rounded = (b + 63) / 64 * 64;
    ptr = aligned_alloc(64, rounded);
    if (!ptr) fail("out of host memory allocating %s for a tensor %s", human_bytes((double)b).c_str(), shape_str().c_str());
  }
  owned = true;
}

void Tensor::release() {
  if (owned && ptr) {
    if (device == Device::CUDA)
      cuda::free(ptr);
    else
      ::free(ptr);
  }
  ptr = nullptr;
  owned = false;
}

void Tensor::zero() {
  if (!ptr) return;
  if (device == Device::CUDA)
    cuda::memset0(ptr, bytes());
  else
    memset(ptr, 0, bytes());
}

void Tensor::copy_from(const Tensor& src) {
  TL_ASSERT(src.numel() == numel() && src.dtype == dtype);
  size_t b = bytes();
  if (b == 0) return;
  if (device == Device::CPU && src.device == Device::CPU)
    memcpy(ptr, src.ptr, b);
  else if (device == Device::CUDA && src.device == Device::CPU)
    cuda::memcpy_h2d(ptr, src.ptr, b);
  else if (device == Device::CPU && src.device == Device::CUDA)
    cuda::memcpy_d2h(ptr, src.ptr, b);
  else
    cuda::memcpy_d2d(ptr, src.ptr, b);
}

Tensor Tensor::to(Device dev) const {
  std::vector<int64_t> shp(shape, shape + ndim);
  Tensor t(shp, dev, dtype);
  t.copy_from(*this);
  return t;
}

std::vector<float> Tensor::to_vector() const {
  TL_ASSERT(dtype == DType::F32);
  std::vector<float> v((size_t)numel());
  if (v.empty()) return v;
  if (device == Device::CUDA)
    cuda::memcpy_d2h(v.data(), ptr, bytes());
  else
    memcpy(v.data(), ptr, bytes());
  return v;
}

void Tensor::from_vector(const std::vector<float>& v) {
  TL_ASSERT(dtype == DType::F32 && (int64_t)v.size() == numel());
  if (v.empty()) return;
  if (device == Device::CUDA)
    cuda::memcpy_h2d(ptr, v.data(), bytes());
  else
    memcpy(ptr, v.data(), bytes());
}

std::vector<int> cuda_device_list(const std::string& flag) {
  if (!starts_with(flag, "cuda:")) return {};
  const int n = cuda::device_count();
  std::vector<int> ids;
  if (flag == "cuda:all") {
    for (int d = 0; d < n; d++) ids.push_back(d);
  } else {
    for (const std::string& part : split(flag.substr(5), ',')) {
      char* end = nullptr;
      const long d = strtol(part.c_str(), &end, 10);
      if (part.empty() || *end || d < 0) fail("--device %s: '%s' is not a device number", flag.c_str(), part.c_str());
      if (d >= n) fail("--device %s: there is no GPU %ld (%d here: 0 to %d)", flag.c_str(), d, n, n - 1);
      if (std::find(ids.begin(), ids.end(), (int)d) != ids.end())
        fail("--device %s: GPU %ld given twice", flag.c_str(), d);
      ids.push_back((int)d);
    }
  }
  if (ids.empty()) fail("--device %s: no GPU here", flag.c_str());
  return ids;
}

Device resolve_device(const std::string& flag, bool allow_several) {
  if (flag == "cpu") {
    note("device: CPU, %d threads", num_threads());
    return Device::CPU;
  }
  const bool several = starts_with(flag, "cuda:");
  if (several && !allow_several)
    fail("--device %s: only tl_cache runs on several GPUs; this program uses one: --device cuda (choose it with "
         "CUDA_VISIBLE_DEVICES)", flag.c_str());
  if (flag != "auto" && flag != "cuda" && !several)
    fail("--device: expected auto, cpu, cuda, cuda:all or cuda:0,1,..., got '%s'", flag.c_str());
  std::string why;
  if (cuda::available(&why)) {
    note("device: CUDA, %s", cuda::device_description().c_str());
    return Device::CUDA;
  }
  if (flag == "cuda" || several)
    fail("--device %s: no usable GPU (%s); use --device cpu or auto", flag.c_str(), why.c_str());
  // A machine without an NVIDIA driver or device never had a GPU: nothing to say. One with a driver
  // whose GPU cannot be used is told why.
  if (why.find("no NVIDIA driver") == std::string::npos && why.find("no CUDA device") == std::string::npos &&
      why.find("built without CUDA") == std::string::npos)
    note("no usable GPU (%s); running on the CPU with %d threads", why.c_str(), num_threads());
  return Device::CPU;
}

}  // namespace tl
