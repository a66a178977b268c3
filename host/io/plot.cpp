#include "host/io/plot.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "host/core/common.h"
#include "host/io/image.h"

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#include <stb_easy_font.h>
#pragma GCC diagnostic pop

namespace tl {

namespace {

struct Canvas {
  Image img;
  Canvas(int w, int h) {
    img.w = w;
    img.h = h;
    img.rgb.assign((size_t)w * h * 3, 255);
  }
  void px(int x, int y, const unsigned char* c, float alpha = 1.0f) {
    if (x < 0 || y < 0 || x >= img.w || y >= img.h) return;
    uint8_t* p = &img.rgb[((size_t)y * img.w + x) * 3];
    for (int k = 0; k < 3; k++) p[k] = (uint8_t)std::lround(p[k] * (1 - alpha) + c[k] * alpha);
  }
  void rect(int x0, int y0, int x1, int y1, const unsigned char* c) {
    for (int y = std::max(0, y0); y < std::min(img.h, y1); y++)
      for (int x = std::max(0, x0); x < std::min(img.w, x1); x++) px(x, y, c);
  }
  // A line of the given width, anti-aliased by distance to the segment.
  void line(double x0, double y0, double x1, double y1, const unsigned char* c, double width, bool dashed = false) {
    const double r = width / 2 + 1;
    const int xa = (int)std::floor(std::min(x0, x1) - r), xb = (int)std::ceil(std::max(x0, x1) + r);
    const int ya = (int)std::floor(std::min(y0, y1) - r), yb = (int)std::ceil(std::max(y0, y1) + r);
    const double dx = x1 - x0, dy = y1 - y0, len2 = dx * dx + dy * dy;
    for (int y = ya; y <= yb; y++)
      for (int x = xa; x <= xb; x++) {
        double t = len2 > 0 ? ((x - x0) * dx + (y - y0) * dy) / len2 : 0;
        t = std::max(0.0, std::min(1.0, t));
        if (dashed && std::fmod(t * std::sqrt(len2), 12.0) > 7.0) continue;
        const double ex = x0 + t * dx - x, ey = y0 + t * dy - y;
        const double d = std::sqrt(ex * ex + ey * ey);
        const double a = std::max(0.0, std::min(1.0, width / 2 + 0.5 - d));
        if (a > 0) px(x, y, c, (float)a);
      }
  }
  void dot(double x, double y, double radius, const unsigned char* c) {
    for (int yy = (int)(y - radius - 1); yy <= (int)(y + radius + 1); yy++)
      for (int xx = (int)(x - radius - 1); xx <= (int)(x + radius + 1); xx++) {
        const double d = std::sqrt((xx - x) * (xx - x) + (yy - y) * (yy - y));
        const double a = std::max(0.0, std::min(1.0, radius + 0.5 - d));
        if (a > 0) px(xx, yy, c, (float)a);
      }
  }
  // stb_easy_font text, scaled; anchor: 0 left, 1 centre, 2 right; rotated 90 degrees when vertical.
  int text(double x, double y, const std::string& s, int scale, const unsigned char* c, int anchor = 0,
           bool vertical = false) {
    static char buf[60000];
    std::string t = s;
    const int w = stb_easy_font_width((char*)t.c_str()) * scale;
    const int h = 7 * scale;
    double ox = x - (anchor == 1 ? w / 2.0 : anchor == 2 ? w : 0);
    double oy = y - h / 2.0;
    if (vertical) {
      ox = x - h / 2.0;
      oy = y + w / 2.0;
    }
    const int quads = stb_easy_font_print(0, 0, (char*)t.c_str(), nullptr, buf, sizeof buf);
    for (int q = 0; q < quads; q++) {
      const float* v = (const float*)(buf + q * 4 * 16);
      const float qx0 = v[0], qy0 = v[1], qx1 = v[8], qy1 = v[9];  // corners 0 and 2
      if (!vertical) {
        rect((int)std::lround(ox + qx0 * scale), (int)std::lround(oy + qy0 * scale), (int)std::lround(ox + qx1 * scale),
             (int)std::lround(oy + qy1 * scale), c);
      } else {  // (x, y) -> (y, -x)
        rect((int)std::lround(ox + qy0 * scale), (int)std::lround(oy - qx1 * scale), (int)std::lround(ox + qy1 * scale),
             (int)std::lround(oy - qx0 * scale), c);
      }
    }
    return w;
  }
};

// Round tick steps: 1, 2 or 5 times a power of ten.
double nice_step(double range, int target) {
  const double raw = range / std::max(1, target);
  const double p = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 2.5, 5.0, 10.0})
    if (m * p >= raw) return m * p;
  return 10 * p;
}

std::string tick_label(double v, double step) {
  int decimals = step >= 1 ? 0 : (int)std::ceil(-std::log10(step) - 1e-9);
  if (std::fabs(step * std::pow(10.0, decimals) - std::round(step * std::pow(10.0, decimals))) > 1e-6) decimals++;
  return strfmt("%.*f", std::min(decimals, 6), v);
}

}  // namespace

void panel_range(const Panel& P, double* lo_out, double* hi_out, double* step_out) {
  double lo = INFINITY, hi = -INFINITY;
  std::vector<double> all;
  for (auto& s : P.series)
    for (double v : s.y)
      if (std::isfinite(v)) lo = std::min(lo, v), hi = std::max(hi, v), all.push_back(v);
  if (!std::isfinite(lo)) lo = 0, hi = 1;
  if (P.clip_outlier) {  // the largest value, when over 3x the next one, goes off the scale
    std::sort(all.begin(), all.end());
    if (all.size() >= 3 && all.back() > 3 * all[all.size() - 2] && all[all.size() - 2] > 0) hi = all[all.size() - 2];
  }
  if (hi - lo < 1e-9) lo -= 0.5, hi += 0.5;
  const double pad = (hi - lo) * 0.08;
  lo = std::max(lo - pad, P.floor);
  hi = std::min(hi + pad, P.ceiling);
  const double ystep = nice_step(hi - lo, 6);
  *lo_out = std::max(std::floor(lo / ystep) * ystep, P.floor);
  *hi_out = std::min(std::ceil(hi / ystep) * ystep, P.ceiling);
  *step_out = ystep;
}

void plot_panels(const std::string& path, const std::string& title, const std::vector<Panel>& panels) {
  const int pw = 620, ph = 470, top = 50;
  Canvas cv(pw * (int)panels.size(), ph + top);
  const unsigned char black[3] = {20, 20, 20}, grey[3] = {110, 110, 110}, grid[3] = {228, 228, 228},
                      best_c[3] = {60, 160, 60};
  cv.text(cv.img.w / 2.0, 22, title, 2, black, 1);
  for (size_t pi = 0; pi < panels.size(); pi++) {
    const Panel& P = panels[pi];
    const int ox = (int)pi * pw;
    const int L = ox + 92, R = ox + pw - 24, T = top + 40, B = top + ph - 70;
    size_t n = 0;
    for (auto& s : P.series) n = std::max(n, s.y.size());
    double lo, hi, ystep;
    panel_range(P, &lo, &hi, &ystep);
    const double xmax = std::max<double>(2, (double)n);
    auto X = [&](double e) { return L + (e - 1) / (xmax - 1) * (R - L); };
    auto Y = [&](double v) { return B - (std::min(v, hi) - lo) / (hi - lo) * (B - T); };  // off-scale: at the top
    // grid and ticks
    for (double v = lo; v <= hi + ystep * 1e-6; v += ystep) {
      cv.line(L, Y(v), R, Y(v), grid, 1);
      cv.line(L - 5, Y(v), L, Y(v), black, 1.5);
      cv.text(L - 9, Y(v), tick_label(std::fabs(v) < ystep * 1e-9 ? 0.0 : v, ystep), 2, black, 2);
    }
    const double xstep = std::max(1.0, nice_step(xmax - 1, 8));
    for (double e = 1; e <= xmax + 1e-9; e += xstep) {
      cv.line(X(e), T, X(e), B, grid, 1);
      cv.line(X(e), B, X(e), B + 5, black, 1.5);
      cv.text(X(e), B + 16, strfmt("%.0f", e), 2, black, 1);
    }
    if (P.best_epoch > 0) {
      cv.line(X(P.best_epoch), T, X(P.best_epoch), B, best_c, 1.5, true);
      const bool right = X(P.best_epoch) > R - 140;
      cv.text(X(P.best_epoch) + (right ? -5 : 5), B - 12, strfmt("best (epoch %d)", P.best_epoch), 2, best_c,
              right ? 2 : 0);
    }
    // axes
    cv.line(L, T, L, B, black, 1.5);
    cv.line(L, B, R, B, black, 1.5);
    cv.text((L + R) / 2.0, T - 20, P.title, 2, black, 1);
    cv.text((L + R) / 2.0, B + 40, "epoch", 2, grey, 1);
    cv.text(ox + 18, (T + B) / 2.0, P.ylabel, 2, grey, 1, true);
    // series
    for (auto& s : P.series) {
      for (size_t i = 0; i + 1 < s.y.size(); i++)
        if (std::isfinite(s.y[i]) && std::isfinite(s.y[i + 1]))
          cv.line(X((double)i + 1), Y(s.y[i]), X((double)i + 2), Y(s.y[i + 1]), s.rgb, 2.5, s.dashed);
      for (size_t i = 0; i < s.y.size(); i++) {
        if (!std::isfinite(s.y[i])) continue;
        cv.dot(X((double)i + 1), Y(s.y[i]), 3.5, s.rgb);
        if (s.y[i] > hi)  // off the scale: say its value
          cv.text(X((double)i + 1) + 8, T + 8, strfmt("%s %.3g (off scale)", s.name.c_str(), s.y[i]), 2, s.rgb, 0);
      }
    }
    // legend (top right inside the plot)
    int lw = 0;
    for (auto& s : P.series) lw = std::max(lw, stb_easy_font_width((char*)s.name.c_str()) * 2);
    // The legend goes in the corner where it covers the fewest points (ties: top right).
    const int bw = lw + 60, bh = 14 + 24 * (int)P.series.size();
    int bx0 = R - 10 - bw, by0 = T + 10;
    int fewest = 1 << 30;
    for (int corner = 0; corner < 4; corner++) {
      const int cx0 = corner % 2 == 0 ? R - 10 - bw : L + 10, cy0 = corner < 2 ? T + 10 : B - 10 - bh;
      int covered = 0;
      for (auto& s : P.series)
        for (size_t i = 0; i < s.y.size(); i++) {
          if (!std::isfinite(s.y[i])) continue;
          const double px = X((double)i + 1), py = Y(s.y[i]);
          covered += px >= cx0 - 6 && px <= cx0 + bw + 6 && py >= cy0 - 6 && py <= cy0 + bh + 6;
          if (s.y[i] > hi && cy0 < T + 30 && cx0 < px + 260 && cx0 + bw > px) covered += 100;  // its off-scale label
        }
      if (covered < fewest) fewest = covered, bx0 = cx0, by0 = cy0;
    }
    const int bx1 = bx0 + bw, by1 = by0 + bh;
    const unsigned char white[3] = {255, 255, 255};
    cv.rect(bx0, by0, bx1, by1, white);
    cv.line(bx0, by0, bx1, by0, grey, 1);
    cv.line(bx0, by1, bx1, by1, grey, 1);
    cv.line(bx0, by0, bx0, by1, grey, 1);
    cv.line(bx1, by0, bx1, by1, grey, 1);
    for (size_t k = 0; k < P.series.size(); k++) {
      const double yy = by0 + 19 + 24.0 * k;
      cv.line(bx0 + 10, yy, bx0 + 42, yy, P.series[k].rgb, 2.5, P.series[k].dashed);
      cv.dot(bx0 + 26, yy, 3.5, P.series[k].rgb);
      cv.text(bx0 + 50, yy, P.series[k].name, 2, black, 0);
    }
  }
  write_png(path, cv.img);
}

void draw_sheet(const std::string& path, const std::string& title, const std::vector<SheetItem>& items) {
  const int cols = 4, cw = 230, ch = 262, thumb = 210, top = 50;
  const int n = (int)std::min<size_t>(items.size(), 16), rows = std::max(1, (n + cols - 1) / cols);
  Canvas cv(cols * cw, top + rows * ch);
  const unsigned char black[3] = {20, 20, 20}, grey[3] = {110, 110, 110}, red[3] = {214, 39, 40},
                      green[3] = {44, 160, 44};
  cv.text(cv.img.w / 2.0, 24, title, 2, black, 1);
  if (n == 0) cv.text(cv.img.w / 2.0, top + ch / 2.0, "nothing to show", 2, grey, 1);
  for (int k = 0; k < n; k++) {
    const SheetItem& it = items[(size_t)k];
    const int x0 = (k % cols) * cw + (cw - thumb) / 2, y0 = top + (k / cols) * ch;
    if (it.img.w > 0 && it.img.h > 0) {  // fit into thumb x thumb, aspect kept
      const double s = std::min((double)thumb / it.img.w, (double)thumb / it.img.h);
      const int w = std::max(1, (int)std::lround(it.img.w * s)), h = std::max(1, (int)std::lround(it.img.h * s));
      Image small = resize_image(it.img, w, h, Resize::Bilinear);
      const int ox = x0 + (thumb - w) / 2, oy = y0 + (thumb - h) / 2;
      for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) cv.px(ox + x, oy + y, small.px(x, y));
    }
    const unsigned char* frame = it.wrong ? red : green;
    for (int t = 0; t < 3; t++) {
      cv.line(x0 - 3 - t, y0 - 3 - t, x0 + thumb + 3 + t, y0 - 3 - t, frame, 1);
      cv.line(x0 - 3 - t, y0 + thumb + 3 + t, x0 + thumb + 3 + t, y0 + thumb + 3 + t, frame, 1);
      cv.line(x0 - 3 - t, y0 - 3 - t, x0 - 3 - t, y0 + thumb + 3 + t, frame, 1);
      cv.line(x0 + thumb + 3 + t, y0 - 3 - t, x0 + thumb + 3 + t, y0 + thumb + 3 + t, frame, 1);
    }
    cv.text(x0 + thumb / 2.0, y0 + thumb + 18, it.line1, 2, black, 1);
    std::string name = it.line2;
    if (name.size() > 36) name = "..." + name.substr(name.size() - 33);
    cv.text(x0 + thumb / 2.0, y0 + thumb + 36, name, 1, grey, 1);
  }
  write_png(path, cv.img);
}

void cubehelix(double t, uint8_t rgb[3]) {
  const double start = 0.5, rot = -1.5, hue = 1.2;
  t = std::min(1.0, std::max(0.0, t));
  const double phi = 2 * M_PI * (start / 3 + rot * t);
  const double amp = hue * t * (1 - t) / 2;
  const double cs = std::cos(phi), sn = std::sin(phi);
  const double v[3] = {t + amp * (-0.14861 * cs + 1.78277 * sn), t + amp * (-0.29227 * cs - 0.90649 * sn),
                       t + amp * (1.97294 * cs)};
  for (int k = 0; k < 3; k++) rgb[k] = (uint8_t)std::lround(255 * std::min(1.0, std::max(0.0, v[k])));
}

void draw_explained(const std::string& path, const Image& overlay, const std::string& line1, const std::string& line2,
                    const std::string& line3, int right) {
  const int pad = 16, scale = 2;
  const int iw = overlay.w * scale, ih = overlay.h * scale;
  const int W = std::max(iw + 2 * pad, 420), bar_y = pad + ih + 20, H = bar_y + 112;
  Canvas cv(W, H);
  const unsigned char black[3] = {20, 20, 20}, grey[3] = {110, 110, 110}, red[3] = {214, 39, 40},
                      green[3] = {44, 160, 44};
  const int ox = (W - iw) / 2, oy = pad;
  if (overlay.w > 0 && overlay.h > 0) {
    Image big = resize_image(overlay, iw, ih, Resize::Bilinear);
    for (int y = 0; y < ih; y++)
      for (int x = 0; x < iw; x++) cv.px(ox + x, oy + y, big.px(x, y));
  }
  if (right >= 0)
    for (int t = 0; t < 4; t++) {
      const unsigned char* c = right ? green : red;
      cv.rect(ox - 4 - t, oy - 4 - t, ox + iw + 4 + t, oy - 3 - t, c);
      cv.rect(ox - 4 - t, oy + ih + 3 + t, ox + iw + 4 + t, oy + ih + 4 + t, c);
      cv.rect(ox - 4 - t, oy - 4 - t, ox - 3 - t, oy + ih + 4 + t, c);
      cv.rect(ox + iw + 3 + t, oy - 4 - t, ox + iw + 4 + t, oy + ih + 4 + t, c);
    }
  // The colour bar, labelled at both ends.
  const int bx0 = pad + 60, bx1 = W - pad - 60;
  for (int x = bx0; x < bx1; x++) {
    uint8_t c[3];
    cubehelix((double)(x - bx0) / std::max(1, bx1 - bx0 - 1), c);
    cv.rect(x, bar_y, x + 1, bar_y + 14, c);
  }
  cv.text(bx0 - 6, bar_y + 7, "ignored", 1, grey, 2);
  cv.text(bx1 + 6, bar_y + 7, "decisive", 1, grey, 0);
  cv.text(W / 2.0, bar_y + 40, line1, 2, black, 1);
  cv.text(W / 2.0, bar_y + 64, line2, 1, black, 1);
  std::string l3 = line3;
  if (l3.size() > 64) l3 = "..." + l3.substr(l3.size() - 61);
  cv.text(W / 2.0, bar_y + 84, l3, 1, grey, 1);
  write_png(path, cv.img);
}

}  // namespace tl
