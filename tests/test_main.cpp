// The doctest main: runs every suite; without a GPU the "[cuda]" cases are skipped and counted
// as skipped in doctest's summary (and listed in one line), never reported as passed.
#define DOCTEST_CONFIG_IMPLEMENT
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include "helpers.h"
#include "host/core/device.h"
#include "host/core/log.h"
#include "host/core/threads.h"
#include "host/io/image.h"

namespace tlt {

static bool g_gpu = false;
bool gpu_present() { return g_gpu; }

std::string fixture_dir() {
  const char* e = getenv("TL_FIXTURES");
  return e ? e : "tests/fixtures";
}

std::string shared_data_dir() {
  const char* e = getenv("TL_SHARED_DATA");
  std::string d = e ? e : "../shared/data";
  return tl::dir_exists(d) ? d : "";
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const tl::Error& e) {
    return e.what();
  }
  return "";
}

std::string temp_dir() {
  static std::string dir = [] {
    char tmpl[] = "/tmp/tl_test_XXXXXX";
    char* d = mkdtemp(tmpl);
    if (!d) tl::fail("cannot create a temporary directory");
    return std::string(d);
  }();
  return dir;
}

ConvRef conv3x3_reference(const std::vector<float>& x, const std::vector<float>& w, const std::vector<float>& b,
                          int n, int h, int wd, int cin, int cout, bool relu) {
  ConvRef r;
  const size_t outs = (size_t)n * h * wd * cout;
  r.y.assign(outs, 0.0);
  r.s.assign(outs, 0.0);
  std::vector<double> acc(cout), sa(cout);
  for (int i = 0; i < n; i++)
    for (int yy = 0; yy < h; yy++)
      for (int xx = 0; xx < wd; xx++) {
        for (int co = 0; co < cout; co++) acc[co] = b[co], sa[co] = std::fabs((double)b[co]);
        for (int dy = -1; dy <= 1; dy++)
          for (int dx = -1; dx <= 1; dx++) {
            const int sy = yy + dy, sx = xx + dx;
            if (sy < 0 || sy >= h || sx < 0 || sx >= wd) continue;
            const float* px = &x[(((size_t)i * h + sy) * wd + sx) * cin];
            const float* pw = &w[(size_t)((dy + 1) * 3 + dx + 1) * cin * cout];
            for (int ci = 0; ci < cin; ci++) {
              const double a = px[ci];
              for (int co = 0; co < cout; co++) {
                const double p = a * pw[(size_t)ci * cout + co];
                acc[co] += p;
                sa[co] += std::fabs(p);
              }
            }
          }
        const size_t o = (((size_t)i * h + yy) * wd + xx) * cout;
        for (int co = 0; co < cout; co++) {
          r.y[o + co] = relu && acc[co] < 0 ? 0.0 : acc[co];
          r.s[o + co] = sa[co];
        }
      }
  return r;
}

tl::Tensor real_photos(const tl::VggWeights& w, int size, int n) {
  Fixture photos("photos224.npz");
  tl::Tensor x({n, size, size, 3});
  for (int i = 0; i < n; i++) {
    const tl::NpyArray& a = photos.arrays.at("p" + std::to_string(i) + "_224");
    tl::Image img;
    img.w = img.h = 224;
    img.rgb.assign(a.data(), a.data() + a.h.numel());
    tl::preprocess_image(size == 224 ? img : tl::resize_image(img, size, size, tl::Resize::Nearest), w.preprocess,
                         x.f32() + (size_t)i * size * size * 3);
  }
  return x;
}

Fixture::Fixture(const std::string& name) : path(tl::path_join(fixture_dir(), name)) {
  if (!tl::file_exists(path)) tl::fail("%s: fixture missing; run make fixtures", path.c_str());
  arrays = tl::read_npz(path);
}

std::vector<float> Fixture::f(const std::string& key) const {
  auto it = arrays.find(key);
  if (it == arrays.end()) tl::fail("%s: no array '%s'", path.c_str(), key.c_str());
  return it->second.to_f32(path + ":" + key);
}

std::vector<int64_t> Fixture::shape(const std::string& key) const {
  auto it = arrays.find(key);
  if (it == arrays.end()) tl::fail("%s: no array '%s'", path.c_str(), key.c_str());
  return it->second.h.shape;
}

double Fixture::scalar(const std::string& key) const { return f(key).at(0); }

uint64_t Fixture::u64(const std::string& key) const {
  auto it = arrays.find(key);
  if (it == arrays.end()) tl::fail("%s: no array '%s'", path.c_str(), key.c_str());
  uint64_t v = 0;
  memcpy(&v, it->second.data(), std::min<size_t>(8, it->second.h.item_size));
  return v;
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  double m = 0;
  for (size_t i = 0; i < a.size(); i++) {
    double d = std::fabs((double)a[i] - (double)b[i]);
    if (std::isnan(d)) return INFINITY;
    m = std::max(m, d);
  }
  return m;
}

double rel_err(const std::vector<float>& a, const std::vector<float>& b, double floor) {
  double scale = floor;
  for (float v : b) scale = std::max(scale, (double)std::fabs(v));
  return max_abs_diff(a, b) / scale;
}

tl::Tensor tensor(const std::vector<float>& v, std::vector<int64_t> shape, tl::Device d) {
  tl::Tensor t(shape, d);
  t.from_vector(v);
  return t;
}

std::vector<float> random_vec(size_t n, uint64_t seed, float scale) {
  tl::Rng r(seed);
  std::vector<float> v(n);
  for (auto& x : v) x = (r.uniform() * 2.0f - 1.0f) * scale;
  return v;
}

}  // namespace tlt

int main(int argc, char** argv) {
  tl::set_quiet(true);  // the library's notes, alerts and progress lines stay out of the test output
  tl::set_silent(true);
  std::string why;
  tlt::g_gpu = tl::cuda::available(&why);
  doctest::Context ctx;
  ctx.applyCommandLine(argc, argv);
  // Cases that need something this machine may not have are skipped, and say so, by tag.
  std::vector<std::string> skipped;
  auto skip = [&](const char* tag, const std::string& why) {
    ctx.addFilter("test-case-exclude", (std::string(tag) + "*").c_str());
    skipped.push_back(std::string(tag) + " " + why);
  };
  if (!tlt::g_gpu && getenv("TL_REQUIRE_GPU") && *getenv("TL_REQUIRE_GPU") && *getenv("TL_REQUIRE_GPU") != '0') {
    fprintf(stderr, "TL_REQUIRE_GPU is set but the [cuda] cases would be skipped: %s\n", why.c_str());
    return 1;
  }
  if (!tlt::g_gpu)
    skip("[cuda]", "no GPU (" + why + "); CUDA " +
                       (tl::cuda::compiled() ? "kernels compiled but not run" : "not compiled in"));
  else
    printf("[cuda] test cases: running on %s\n", tl::cuda::device_description().c_str());
  if (tlt::real_keras_h5().empty()) {
    if (getenv("TL_REQUIRE_REAL")) {
      fprintf(stderr, "TL_REQUIRE_REAL is set but no genuine Keras weights were found: run 'make weights'\n");
      return 1;
    }
    skip("[real-keras]", "no genuine Keras weights (run 'make weights', or set TL_REAL_KERAS to the .h5 or .onnx)");
  }
  if (tlt::real_torch_pth().empty()) skip("[real-torch]", "no genuine vgg16-397923af.pth (set TL_REAL_TORCH_PTH)");
  if (tlt::shared_data_dir().empty()) skip("[data]", "no ../shared/data (set TL_SHARED_DATA)");
  for (auto& s : skipped) printf("SKIPPED: %s\n", s.c_str());
  int rc = ctx.run();
  for (auto& s : skipped) printf("SKIPPED: %s\n", s.c_str());
  return rc;
}
