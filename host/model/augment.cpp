#include "host/model/augment.h"

#include <cmath>

namespace tl {

AugmentParams draw_augment(const AugmentConfig& c, Rng& rng, int h, int w) {
  auto U = [&](double a, double b) { return a + (b - a) * rng.uniform64(); };
  AugmentParams p;
  if (c.rotation) p.theta = U(-c.rotation, c.rotation);
  if (c.height_shift) p.tx = U(-c.height_shift, c.height_shift) * (c.height_shift < 1 ? h : 1);
  if (c.width_shift) p.ty = U(-c.width_shift, c.width_shift) * (c.width_shift < 1 ? w : 1);
  if (c.shear) p.shear = U(-c.shear, c.shear);
  if (c.zoom) {
    p.zx = U(1 - c.zoom, 1 + c.zoom);
    p.zy = U(1 - c.zoom, 1 + c.zoom);
  }
  if (c.hflip) p.flip = rng.uniform64() < 0.5;
  return p;
}

Rng augment_rng(uint64_t seed, uint64_t epoch, uint64_t id) {
  uint64_t s = seed ^ 0xA5A5A5A5A5A5A5A5ull;
  s = splitmix64(s) ^ (epoch * 0x9E3779B97F4A7C15ull);
  s = splitmix64(s) ^ (id * 0xC2B2AE3D27D4EB4Full);
  return Rng(splitmix64(s));
}

namespace {
struct M3 {
  double a[3][3];
};
M3 mul(const M3& x, const M3& y) {
  M3 r{};
  for (int i = 0; i < 3; i++)
    for (int j = 0; j < 3; j++)
      for (int k = 0; k < 3; k++) r.a[i][j] += x.a[i][k] * y.a[k][j];
  return r;
}
}  // namespace

void apply_augment(const Image& in, const AugmentParams& p, float* out) {
  const int h = in.h, w = in.w;
  const double kPi = 3.14159265358979323846;
  M3 m = {{{1, 0, 0}, {0, 1, 0}, {0, 0, 1}}};
  bool any = false;
  if (p.theta != 0) {
    const double t = p.theta * kPi / 180.0;
    m = mul(m, M3{{{std::cos(t), -std::sin(t), 0}, {std::sin(t), std::cos(t), 0}, {0, 0, 1}}});
    any = true;
  }
  if (p.tx != 0 || p.ty != 0) {
    m = mul(m, M3{{{1, 0, p.tx}, {0, 1, p.ty}, {0, 0, 1}}});
    any = true;
  }
  if (p.shear != 0) {
    const double s = p.shear * kPi / 180.0;
    m = mul(m, M3{{{1, -std::sin(s), 0}, {0, std::cos(s), 0}, {0, 0, 1}}});
    any = true;
  }
  if (p.zx != 1 || p.zy != 1) {
    m = mul(m, M3{{{p.zx, 0, 0}, {0, p.zy, 0}, {0, 0, 1}}});
    any = true;
  }
  // About the centre: offset(o) * m * offset(-o), o = (h/2 + 0.5, w/2 + 0.5) as Keras computes it.
  const double ox = h / 2.0 + 0.5, oy = w / 2.0 + 0.5;
  m = mul(mul(M3{{{1, 0, ox}, {0, 1, oy}, {0, 0, 1}}}, m), M3{{{1, 0, -ox}, {0, 1, -oy}, {0, 0, 1}}});
  for (int r = 0; r < h; r++)
    for (int c = 0; c < w; c++) {
      float* o = out + ((size_t)r * w + (p.flip ? w - 1 - c : c)) * 3;
      if (!any) {
        const uint8_t* s = in.px(c, r);
        o[0] = s[0], o[1] = s[1], o[2] = s[2];
        continue;
      }
      // Input coordinate of output (r, c); bilinear with edge replication (scipy mode='nearest').
      const double y = m.a[0][0] * r + m.a[0][1] * c + m.a[0][2];
      const double x = m.a[1][0] * r + m.a[1][1] * c + m.a[1][2];
      const double fy = std::floor(y), fx = std::floor(x);
      const double wy = y - fy, wx = x - fx;
      auto clampi = [](double v, int n) { return v < 0 ? 0 : (v > n - 1 ? n - 1 : (int)v); };
      const int y0 = clampi(fy, h), y1 = clampi(fy + 1, h), x0 = clampi(fx, w), x1 = clampi(fx + 1, w);
      const uint8_t *p00 = in.px(x0, y0), *p01 = in.px(x1, y0), *p10 = in.px(x0, y1), *p11 = in.px(x1, y1);
      for (int k = 0; k < 3; k++)
        o[k] = (float)((1 - wy) * ((1 - wx) * p00[k] + wx * p01[k]) + wy * ((1 - wx) * p10[k] + wx * p11[k]));
    }
}

}  // namespace tl
