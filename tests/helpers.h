// helpers.h: shared helpers for the doctest suites: fixtures, comparisons, GPU detection.
#pragma once
#include <doctest/doctest.h>

#include <cmath>
#include <cstdlib>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "host/core/common.h"
#include "host/io/npy.h"
#include "host/core/tensor.h"
#include "host/io/weights.h"

namespace tlt {

// Folder of the committed fixtures (TL_FIXTURES overrides; default tests/fixtures).
std::string fixture_dir();
// ../shared/data (TL_SHARED_DATA overrides); empty when absent.
std::string shared_data_dir();

struct Fixture {
  std::string path;
  std::map<std::string, tl::NpyArray> arrays;
  explicit Fixture(const std::string& name);
  std::vector<float> f(const std::string& key) const;
  std::vector<int64_t> shape(const std::string& key) const;
  double scalar(const std::string& key) const;
  uint64_t u64(const std::string& key) const;
  bool has(const std::string& key) const { return arrays.count(key) > 0; }
};

// max |a - b| / max(max |b|, floor): the error relative to the reference's scale.
double rel_err(const std::vector<float>& a, const std::vector<float>& b, double floor = 1e-30);
double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b);

tl::Tensor tensor(const std::vector<float>& v, std::vector<int64_t> shape, tl::Device d = tl::Device::CPU);
std::vector<float> random_vec(size_t n, uint64_t seed, float scale = 1.0f);

// The message of the tl::Error fn throws ("" when it throws none).
std::string error_of(const std::function<void()>& fn);

bool gpu_present();
std::string real_keras_h5();   // a genuine ImageNet weights file, when one is present ("" otherwise)
std::string real_torch_pth();  // evaluated once, in main, before the suites run
std::string temp_dir();  // a fresh directory for this test run
// A float64 conv3x3 (stride 1, zero padding 1, NHWC, HWIO): y (after ReLU when relu) and, per
// output, S = |b| + sum |x w| (the scale of its rounding error bounds).
struct ConvRef {
  std::vector<double> y, s;
};
ConvRef conv3x3_reference(const std::vector<float>& x, const std::vector<float>& w, const std::vector<float>& b,
                          int n, int h, int wd, int cin, int cout, bool relu);
// n of the fixture's real photos (photos224.npz, 224x224) resized (nearest) to size and preprocessed
// for w's convention: [n, size, size, 3] on the CPU.
tl::Tensor real_photos(const tl::VggWeights& w, int size, int n);

}  // namespace tlt

// CUDA test cases carry this in their name; main skips them (visibly) without a GPU.
#define CUDA_CASE(name) TEST_CASE("[cuda] " name)
