// AMX (--precision bf16 on Intel Xeons with tile registers): the tile emulator's semantics, the
// hardware against the emulator bit for bit (on AMX CPUs only; SKIPPED elsewhere), the AMX conv
// and bf16x3 through the emulator against float64 on every VGG16 layer shape and odd shapes, and
// the whole base on real photos.
//
// Bounds. bf16: the same float64 convolution of the operands rounded to bf16 (nearest even, as the
// kernel rounds them) must match within the fp32 accumulation's error. Each output is summed as
// TDPBF16PS does: per instruction two chains of 16 exact products (even and odd channels), their
// sum, then one addition into C, over nb = 9 ceil(cin/32) instructions, then + bias: every product
// passes through at most nb + 19 roundings, so |y - y64| <= (nb + 19) 2^-24 S with
// S = |b| + sum |x w| (of the rounded operands). bf16x3: x = hi + lo + r with |r| <= 2^-17 |x| (two
// roundings to 8-bit significands), and the dropped lo*lo term is below 2^-16 |x w|, so each product
// is within 2^-15 |x w| before 3 nb + 19 roundings: |y - y64| <= (2^-15 + (3 nb + 19) 2^-24) S
// against the exact fp32 operands.
#include <cmath>
#include <cstring>

#include "helpers.h"
#include "host/core/cpu_features.h"
#include "host/core/threads.h"
#include "host/model/vgg.h"
#include "host/ops/cpu_amx.h"
#include "host/ops/cpu_kernels.h"
#include "host/ops/cpu_ops.h"
#include "host/ops/ops.h"
#include "tests/amx_emu/amx_emu.h"
#include "tools/convert/convert.h"

using namespace tl;

namespace {

// Forces the emulated kernels for the scope (the AMX path then runs on any CPU).
struct Emulated {
  Emulated() { cpu::set_amx_kernels(&cpu::amx_emu_kernels()); }
  ~Emulated() { cpu::set_amx_kernels(nullptr); }
};

float f32_bits(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}
uint32_t bits_of(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}
uint16_t bf(float f) { return cpu::bf16_round(f); }

std::vector<float> rounded_bf16(const std::vector<float>& v) {
  std::vector<float> r(v.size());
  for (size_t i = 0; i < v.size(); i++) r[i] = cpu::bf16_value(cpu::bf16_round(v[i]));
  return r;
}

struct Shape {
  int n, h, w, cin, cout;
};

struct Check {
  double worst_ratio = 0;  // max |y - y64| / bound
  double rel_l2 = 0;       // against the exact (unrounded) float64 conv
};

// One conv through the (emulated) AMX path against the references; x3: bf16x3.
Check run_case(const Shape& s, bool x3, uint64_t seed) {
  const size_t nx = (size_t)s.n * s.h * s.w * s.cin;
  std::vector<float> x = tlt::random_vec(nx, seed, 1.0f);
  for (float& v : x) v = std::fabs(v);  // post-ReLU activations
  const std::vector<float> w = tlt::random_vec((size_t)9 * s.cin * s.cout, seed + 1, 0.05f),
                           b = tlt::random_vec((size_t)s.cout, seed + 2, 0.1f);
  std::vector<float> y((size_t)s.n * s.h * s.w * s.cout, NAN);
  auto W = cpu::amx_pack_conv(w.data(), b.data(), s.cin, s.cout, x3);
  cpu::conv3x3_amx(x.data(), *W, y.data(), s.n, s.h, s.w, true);
  const int nb = 9 * ((s.cin + 31) / 32);
  const tlt::ConvRef exact = tlt::conv3x3_reference(x, w, b, s.n, s.h, s.w, s.cin, s.cout, true);
  const tlt::ConvRef ref = x3 ? exact : tlt::conv3x3_reference(rounded_bf16(x), rounded_bf16(w), b, s.n, s.h, s.w,
                                                                 s.cin, s.cout, true);
  const double k = x3 ? std::ldexp(1.0, -15) + (3 * nb + 19) * std::ldexp(1.0, -24) : (nb + 19) * std::ldexp(1.0, -24);
  Check c;
  double num = 0, den = 0;
  for (size_t i = 0; i < y.size(); i++) {
    const double bound = k * ref.s[i] + 1e-30;
    c.worst_ratio = std::max(c.worst_ratio, std::fabs(y[i] - ref.y[i]) / bound);
    if (!std::isfinite(y[i])) c.worst_ratio = INFINITY;
    num += (y[i] - exact.y[i]) * (y[i] - exact.y[i]);
    den += exact.y[i] * exact.y[i];
  }
  c.rel_l2 = std::sqrt(num / den);
  return c;
}

// A random tile pair in a regime, for the hardware comparison.
void random_tiles(int regime, uint64_t seed, std::vector<uint16_t>& a, std::vector<uint16_t>& b, std::vector<float>& c) {
  const std::vector<float> ra = tlt::random_vec(16 * 32, seed), rb = tlt::random_vec(16 * 32, seed + 1),
                           rc = tlt::random_vec(16 * 16, seed + 2);
  a.resize(16 * 32);
  b.resize(16 * 32);
  c.resize(16 * 16);
  for (int i = 0; i < 16 * 32; i++) {
    float va = ra[i], vb = rb[i];
    if (regime == 1) vb = (i % 2 ? -1.0f : 1.0f) * std::fabs(rb[i & ~1]);  // pairs that cancel
    if (regime == 2) va = std::ldexp(va, (int)(i % 61) - 30), vb = std::ldexp(vb, 30 - (int)(i % 53));  // 2^+-30
    a[i] = bf(va);
    b[i] = bf(vb);
  }
  for (int i = 0; i < 16 * 16; i++) c[i] = regime == 1 ? 0.0f : rc[i];
}

}  // namespace

TEST_CASE("AMX emulator: TDPBF16PS sums even and odd channels apart, then into C (the measured order)") {
  amx_emu::loadconfig([] {
    static uint8_t cfg[64];
    memset(cfg, 0, 64);
    cfg[0] = 1;
    for (int t = 0; t < 8; t++) cfg[16 + 2 * t] = 64, cfg[48 + t] = 16;
    return cfg;
  }());
  // Row 0 of A and column 0 of B: pair 0 = (2^-24, 1) -> even 2^-24, odd 1; pair 1 = (2^-24, 0).
  // even/odd model: even = 2^-23, odd = 1, C = 1 + 2^-23 exactly. One sequential chain in k order
  // would give ((2^-24 + 1) + 2^-24) = 1 (both additions round to even): the model is observable.
  std::vector<uint16_t> a(16 * 32, 0), b(16 * 32, 0);
  std::vector<float> c(16 * 16, 0.0f);
  a[0] = bf(std::ldexp(1.0f, -24));
  a[1] = bf(1.0f);
  a[2] = bf(std::ldexp(1.0f, -24));
  b[0] = bf(1.0f);  // B row 0: (B[0][0], B[1][0]) = (1, 1)
  b[1] = bf(1.0f);
  b[32] = bf(1.0f);  // B row 1 (pair 1), column 0: (B[2][0], B[3][0]) = (1, 0)
  // Column 1 reads the second pair of each B row: (B[0][1], B[1][1]) = (3, 5): C[0][1] = 2^-24 * 3 + 5.
  b[2] = bf(3.0f);
  b[3] = bf(5.0f);
  c[16] = 2.0f;  // C[1][0] starts at 2 and gains row 1 of A (all zero): stays 2
  amx_emu::loadd(0, c.data(), 64);
  amx_emu::loadd(4, a.data(), 64);
  amx_emu::loadd(6, b.data(), 64);
  amx_emu::dpbf16ps(0, 4, 6);
  amx_emu::stored(0, c.data(), 64);
  CHECK(c[0] == 1.0f + std::ldexp(1.0f, -23));
  CHECK(c[1] == 5.0f + 3.0f * std::ldexp(1.0f, -24));
  CHECK(c[16] == 2.0f);
  // bf16 subnormal inputs are read as zero: 2^-133 x 2^100 would be 2^-33.
  std::fill(a.begin(), a.end(), 0);
  std::fill(b.begin(), b.end(), 0);
  std::fill(c.begin(), c.end(), 0.0f);
  a[0] = (uint16_t)0x0001;  // the smallest bf16 subnormal
  b[0] = bf(std::ldexp(1.0f, 100));
  amx_emu::loadd(0, c.data(), 64);
  amx_emu::loadd(4, a.data(), 64);
  amx_emu::loadd(6, b.data(), 64);
  amx_emu::dpbf16ps(0, 4, 6);
  amx_emu::stored(0, c.data(), 64);
  CHECK(c[0] == 0.0f);
  amx_emu::release();
}

TEST_CASE("AMX emulator: a missing, stale or malformed tile configuration faults, as on the CPU") {
  uint8_t cfg[64] = {};
  cfg[0] = 1;
  for (int t = 0; t < 8; t++) cfg[16 + 2 * t] = 64, cfg[48 + t] = 16;
  std::vector<uint16_t> buf(16 * 32, 0);
  amx_emu::release();
  CHECK(tlt::error_of([&] { amx_emu::loadd(4, buf.data(), 64); }) ==
        "AMX emulator: TILELOADD on tmm4: no tile configuration loaded on this thread (LDTILECFG missing or released)");
  amx_emu::loadconfig(cfg);
  amx_emu::loadd(4, buf.data(), 64);
  amx_emu::release();  // a stale configuration: released, then used
  CHECK(tlt::error_of([] { amx_emu::zero(0); }).find("no tile configuration loaded") != std::string::npos);
  // A tile with 15 rows (one row short) cannot multiply into a 16-row C.
  uint8_t shortcfg[64];
  memcpy(shortcfg, cfg, 64);
  shortcfg[48 + 4] = 15;
  amx_emu::loadconfig(shortcfg);
  CHECK(tlt::error_of([] { amx_emu::dpbf16ps(0, 4, 6); }) == "AMX emulator: TDPBF16PS on tmm4: A's rows differ from C's");
  // A K mismatch: B configured with 8 pair rows against A's 32 bf16 columns.
  memcpy(shortcfg, cfg, 64);
  shortcfg[48 + 6] = 8;
  amx_emu::loadconfig(shortcfg);
  CHECK(tlt::error_of([] { amx_emu::dpbf16ps(0, 4, 6); }) ==
        "AMX emulator: TDPBF16PS on tmm4: A's colsb is not 4 x B's rows (K mismatch)");
  CHECK(tlt::error_of([] { amx_emu::dpbf16ps(0, 0, 6); }).find("must differ") != std::string::npos);
  memcpy(shortcfg, cfg, 64);
  shortcfg[5] = 1;
  CHECK(tlt::error_of([&] { amx_emu::loadconfig(shortcfg); }) == "AMX emulator: LDTILECFG: reserved bytes 2-15 not zero");
  memcpy(shortcfg, cfg, 64);
  shortcfg[48 + 2] = 17;
  CHECK(tlt::error_of([&] { amx_emu::loadconfig(shortcfg); }) ==
        "AMX emulator: LDTILECFG: more than 16 rows or 64 bytes a row");
  // Loads zero what the configuration leaves out; stores write only the configured bytes.
  memcpy(shortcfg, cfg, 64);
  shortcfg[16 + 2 * 1] = 8;  // tmm1: 16 rows of 8 bytes
  amx_emu::loadconfig(shortcfg);
  std::vector<uint8_t> src(16 * 64, 0xAB), dst(16 * 64, 0x11);
  amx_emu::loadd(1, src.data(), 64);
  amx_emu::stored(1, dst.data(), 64);
  CHECK(dst[7] == 0xAB);
  CHECK(dst[8] == 0x11);
  amx_emu::release();
}

TEST_CASE("bf16 rounding: bf16_round equals VCVTNEPS2BF16 bit for bit (ties, subnormals, inf, NaN)") {
  std::vector<float> v = tlt::random_vec(4096, 77, 100.0f);
  for (uint32_t u : {0x3f808000u, 0x3f818000u, 0x3f807fffu, 0x7f7fffffu, 0x7f800000u, 0xff800000u, 0x7fc00001u,
                     0x7f800001u, 0x00000001u, 0x807fffffu, 0x00800000u, 0x80000000u, 0x00000000u})
    v.push_back(f32_bits(u));
  std::vector<uint16_t> ours(v.size());
  for (size_t i = 0; i < v.size(); i++) ours[i] = cpu::bf16_round(v[i]);
  CHECK(ours[v.size() - 13] == 0x3f80);  // 1 + 2^-8 exactly halfway: to even (down)
  CHECK(ours[v.size() - 12] == 0x3f82);  // 1 + 3 2^-8: to even (up)
  CHECK(ours[v.size() - 9] == 0x7f80);   // inf stays inf
  CHECK((ours[v.size() - 6] & 0x7fc0) == 0x7fc0);  // a signalling NaN comes out quiet
  CHECK(ours[v.size() - 5] == 0x0000);  // subnormal -> +0
  CHECK(ours[v.size() - 4] == 0x8000);  // negative subnormal -> -0
  // The emulated kernels' conversion is this function; the AMX build's is the instruction.
  std::vector<uint16_t> emu(v.size());
  cpu::amx_emu_kernels().to_bf16(v.data(), emu.data(), (long)v.size());
  CHECK(emu == ours);
  if (!cpu_has_avx512_bf16()) {
    MESSAGE("SKIPPED (hardware half): this CPU has no AVX512_BF16 to compare VCVTNEPS2BF16 with");
    return;
  }
  std::vector<uint16_t> hw(v.size());
  cpu::to_bf16_avx512(v.data(), hw.data(), (long)v.size());
  CHECK(hw == ours);
}

TEST_CASE("bf16 rounding commutes with ReLU and max-pool (so activations may be stored rounded)") {
  // Rounding to nearest even is monotonic and keeps zero and signs: bf16(max(a, b)) = max(bf16(a),
  // bf16(b)) and bf16(relu(a)) = relu(bf16(a)). Storing a layer's output in bf16 before ReLU/pool is
  // therefore the same as rounding the pooled value when the next layer reads it.
  const std::vector<float> a = tlt::random_vec(100000, 5, 3.0f), b = tlt::random_vec(100000, 6, 3.0f);
  int bad = 0;
  for (size_t i = 0; i < a.size(); i++) {
    const float ra = cpu::bf16_value(bf(a[i])), rb = cpu::bf16_value(bf(b[i]));
    if (cpu::bf16_value(bf(std::max(a[i], b[i]))) != std::max(ra, rb)) bad++;
    if (cpu::bf16_value(bf(std::max(a[i], 0.0f))) != std::max(ra, 0.0f)) bad++;
  }
  CHECK(bad == 0);
}

TEST_CASE("AMX on this CPU: the hardware equals the emulator bit for bit on random tiles") {
  MESSAGE("AMX: " << cpu_amx_status());
  if (!cpu_amx_usable()) {
    MESSAGE("SKIPPED: no usable AMX here (" << cpu_amx_status() << "); the kernels ran in the emulator instead");
    return;
  }
  // Regimes covered: 0 ordinary values (N(0,1)-like), 1 cancellation (each pair's products of equal
  // size and opposite sign, C = 0), 2 a wide exponent range (2^-30 .. 2^30, no overflow). Not
  // covered (AMX.md: the CPU differs from any simple model there): inf/NaN and overflow inside a
  // chain, subnormal inputs or results.
  const char* names[] = {"ordinary", "cancellation", "wide exponents"};
  for (int regime = 0; regime < 3; regime++) {
    int64_t differ = 0, total = 0;
    for (int rep = 0; rep < 200; rep++) {
      std::vector<uint16_t> a, b;
      std::vector<float> c;
      random_tiles(regime, 1000 * regime + rep, a, b, c);
      std::vector<float> chw = c, cemu = c;
      cpu::amx_hw_kernels().tile_dot(a.data(), b.data(), chw.data());
      cpu::amx_emu_kernels().tile_dot(a.data(), b.data(), cemu.data());
      for (int i = 0; i < 256; i++) differ += bits_of(chw[i]) != bits_of(cemu[i]), total++;
    }
    MESSAGE("AMX hardware vs emulator, " << names[regime] << ": " << differ << " of " << total << " outputs differ");
    CHECK(differ == 0);
  }
  // And a whole convolution, hardware against emulator.
  const Shape s{2, 9, 13, 96, 80};
  std::vector<float> x = tlt::random_vec((size_t)s.n * s.h * s.w * s.cin, 3, 1.0f);
  const std::vector<float> w = tlt::random_vec((size_t)9 * s.cin * s.cout, 4, 0.05f), b = tlt::random_vec(s.cout, 5);
  std::vector<float> yh((size_t)s.n * s.h * s.w * s.cout), ye(yh.size());
  for (bool x3 : {false, true}) {
    cpu::conv3x3_amx(x.data(), *cpu::amx_pack_conv(w.data(), b.data(), s.cin, s.cout, x3), yh.data(), s.n, s.h, s.w, true);
    {
      Emulated emu;
      cpu::conv3x3_amx(x.data(), *cpu::amx_pack_conv(w.data(), b.data(), s.cin, s.cout, x3), ye.data(), s.n, s.h, s.w,
                       true);
    }
    CHECK(yh == ye);
  }
}

TEST_CASE("AMX conv (emulated): within the fp32 accumulation bound of a float64 conv of its bf16 operands") {
  Emulated emu;
  // Every VGG16 (cin, cout) pair at small sizes; then odd shapes: channels not a multiple of 16 or
  // 32, batch 1, widths whose padded rows leave partial 32-row blocks, a single pixel.
  const Shape shapes[] = {{1, 8, 8, 3, 64},     {2, 6, 7, 64, 64},     {1, 5, 6, 64, 128},  {1, 6, 5, 128, 128},
                          {1, 4, 5, 128, 256},  {1, 4, 4, 256, 256},   {1, 3, 4, 256, 512}, {1, 3, 3, 512, 512},
                          {2, 7, 9, 31, 40},    {1, 11, 3, 48, 17},    {3, 1, 1, 40, 33},   {1, 14, 14, 16, 16}};
  for (const Shape& s : shapes) {
    const Check c = run_case(s, false, 900 + s.cin + s.cout);
    MESSAGE("AMX bf16 conv (emulator) " << s.n << "x" << s.h << "x" << s.w << " " << s.cin << "->" << s.cout
                                        << ": worst error " << c.worst_ratio << " of the bound, relative L2 "
                                        << c.rel_l2 << " to the exact conv");
    CHECK(c.worst_ratio <= 1.0);
    CHECK(c.rel_l2 < 8e-3);  // bf16 operands: about 2-4e-3 (it did round)
    if (s.cin >= 16) CHECK(c.rel_l2 > 1e-4);
  }
}

TEST_CASE("bf16x3 on AMX (emulated): within the fp32 contract on every VGG16 layer shape") {
  Emulated emu;
  const Shape shapes[] = {{1, 8, 8, 3, 64},    {1, 6, 7, 64, 64},    {1, 5, 6, 64, 128}, {1, 5, 4, 128, 256},
                          {1, 3, 4, 256, 512}, {1, 3, 3, 512, 512},  {2, 7, 9, 31, 40}};
  for (const Shape& s : shapes) {
    const Check c = run_case(s, true, 700 + s.cin + s.cout);
    MESSAGE("bf16x3 conv (emulator) " << s.cin << "->" << s.cout << ": worst error " << c.worst_ratio
                                      << " of the bound, relative L2 " << c.rel_l2 << " to the exact conv");
    CHECK(c.worst_ratio <= 1.0);
    CHECK(c.rel_l2 < 2e-5);  // the fp32 contract is 1e-4; plain bf16 is about 3e-3
  }
}

TEST_CASE("AMX path (emulated): dispatch, prepacked weights, and the whole base on real photos against fp32") {
  Emulated emu;
  CHECK(cpu::bf16_path() == cpu::Bf16Path::Amx);
  CHECK(std::string(cpu::bf16_path_name(cpu::bf16_path())) == "AMX tiles (TDPBF16PS, direct conv)");
  const std::string real = tlt::real_keras_h5();
  VggWeights w = real.empty() ? synthetic_weights("vgg16", 7) : convert_weights(real, nullptr, nullptr);
  // 64x64 in CI (12x less work than 224x224 for the scalar emulator); TL_AMX_PHOTO_SIZE=224 for the
  // full size (bench/RESULTS.md section 12 has its table).
  const int size = getenv("TL_AMX_PHOTO_SIZE") ? atoi(getenv("TL_AMX_PHOTO_SIZE")) : 64, n = 2;
  Tensor x = tlt::real_photos(w, size, n);
  // Layer by layer: the AMX chain against the fp32 one (each carrying its own earlier error).
  Tensor a32 = Tensor::view(x.ptr, {n, size, size, 3}), a16 = Tensor::view(x.ptr, {n, size, size, 3});
  int h = size;
  std::string table;
  double last = 0;
  for (size_t i = 0; i < w.layers.size(); i++) {
    const ConvLayer& l = w.layers[i];
    Tensor wt({3, 3, l.spec.cin, l.spec.cout}), bt({l.spec.cout});
    wt.from_vector(l.w);
    bt.from_vector(l.b);
    Tensor y32({n, h, h, l.spec.cout}), y16({n, h, h, l.spec.cout});
    ops::conv3x3(a32, wt, bt, y32, true, Precision::FP32);
    ops::conv3x3(a16, wt, bt, y16, true, i == 0 ? Precision::FP32 : Precision::BF16);
    if (i == 1) {  // ops::conv3x3 at bf16 is the AMX conv, packed per call or once (the same bits)
      Tensor direct({n, h, h, l.spec.cout}), prepped({n, h, h, l.spec.cout});
      cpu::conv3x3_amx(a16.f32(), *cpu::amx_pack_conv(l.w.data(), l.b.data(), l.spec.cin, l.spec.cout, false),
                       direct.f32(), n, h, h, true);
      auto prep = ops::prepare_conv3x3(wt, bt, Precision::BF16);
      REQUIRE(prep.get() != nullptr);
      ops::conv3x3(a16, wt, bt, prepped, true, Precision::BF16, prep.get());
      CHECK(direct.to_vector() == y16.to_vector());
      CHECK(prepped.to_vector() == y16.to_vector());
      CHECK(ops::prepare_conv3x3(wt, bt, Precision::FP32).get() == nullptr);  // fp32 is not AMX unless TL_CONV=amx3
    }
    if (l.spec.pool_after) {
      Tensor p32({n, h / 2, h / 2, l.spec.cout}), p16({n, h / 2, h / 2, l.spec.cout});
      ops::maxpool2x2(y32, p32);
      ops::maxpool2x2(y16, p16);
      y32 = std::move(p32);
      y16 = std::move(p16);
      h /= 2;
    }
    const std::vector<float> v32 = y32.to_vector(), v16 = y16.to_vector();
    double num = 0, den = 0;
    for (size_t k = 0; k < v16.size(); k++) num += (v16[k] - v32[k]) * (double)(v16[k] - v32[k]), den += (double)v32[k] * v32[k];
    last = std::sqrt(num / den);
    table += strfmt(" %s %.2e", l.spec.name.c_str(), last);
    a32 = std::move(y32);
    a16 = std::move(y16);
  }
  MESSAGE("AMX bf16 (emulator): VGG16 base, " << std::string(real.empty() ? "synthetic" : "genuine ImageNet")
                                              << " weights, " << n << " real photos at " << size
                                              << "x" << size << ", relative L2 to fp32 after each layer:" << table);
  CHECK(last < 1.5e-2);  // the AVX512_BF16 Winograd path: 7.2e-3 at 224x224
  CHECK(last > 1e-4);    // it did run in bf16
  // VggBase (weights packed once at construction) computes exactly this chain.
  VggBase base(w, Device::CPU, Precision::BF16);
  CHECK(base.forward(x).to_vector() == a16.to_vector());
}
