// Winograd F(2x2, 3x3) for the CPU conv3x3 (Lavin & Gray, 2015): each 2x2 output tile comes from
// a 4x4 input tile as Y = A^T [ sum_ci (G g G^T) . (B^T d B) ] A, so the 36 multiplies per output
// pixel and channel pair become 16 per 2x2 tile: 2.25x fewer. The 16 element-wise products summed
// over input channels are 16 GEMMs [tiles x cin] x [cin x cout], run with the same micro-kernel as
// the direct conv and the dense layers. Tiles are processed in chunks that stay in cache.
//
// Numerically benign (the transforms only add, subtract and halve): on VGG16 the result stays
// within a few 1e-6 of the float64 reference, like the direct conv. Deterministic: every output is
// computed by one task in a fixed order, whatever the thread count.
#include <algorithm>
#include <cstring>
#include <vector>

#include "host/core/common.h"
#include "host/core/cpu_features.h"
#include "host/ops/cpu_kernels.h"
#include "host/ops/cpu_ops.h"
#include "host/core/threads.h"

namespace tl {
namespace cpu {

namespace {

// Tile number -> (image, tile row, tile column), tiles numbered row by row, image by image.
struct TilePos {
  int64_t n;
  int ty, tx;
};
inline TilePos tile_pos(int64_t tile, int tiles_h, int tiles_w) {
  return {tile / ((int64_t)tiles_w * tiles_h), (int)((tile / tiles_w) % tiles_h), (int)(tile % tiles_w)};
}

// U[xi][cb][ci][NR] = (G g G^T)[xi] for every (ci, co), zero padded to NR columns.
//   G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]]
// Sixteen output channels at a time through small arrays (the compiler vectorises the lanes; one
// channel at a time it did not: 3% of a fine-tune step). g[ky][kx][l] = w at (ky, kx, ci, co0 + l),
// zero past cout; then row r of a transformed filter (u[c][l], c < S) into U's panel layout.
constexpr int kFtLanes = 16;
inline void load_filter_lanes(const float* w, int cin, int cout, int ci, int co0, float g[3][3][kFtLanes]) {
  for (int tap = 0; tap < 9; tap++)
    for (int l = 0; l < kFtLanes; l++)
      g[tap / 3][tap % 3][l] = co0 + l < cout ? w[((size_t)tap * cin + ci) * cout + co0 + l] : 0.0f;
}
template <int S>
inline void store_filter_lanes(const float u[S][kFtLanes], int r, int ncb, int cin, int ci, int NR, int co0,
                               float* U) {
  for (int c = 0; c < S; c++)
    for (int l = 0; l < kFtLanes && co0 + l < ncb * NR; l++) {
      const int co = co0 + l;
      U[(((size_t)(r * S + c) * ncb + co / NR) * cin + ci) * NR + co % NR] = u[c][l];
    }
}
__attribute__((target_clones("avx512f", "avx2", "default"))) void filter_transform_ci(const float* w, int cin,
                                                                                         int cout, int NR, int ci,
                                                                                         float* U) {
  constexpr int L = kFtLanes;
  const int ncb = (cout + NR - 1) / NR;
  for (int co0 = 0; co0 < ncb * NR; co0 += L) {
    float g[3][3][L];
    load_filter_lanes(w, cin, cout, ci, co0, g);
    float t[4][3][L];  // G g
    for (int c = 0; c < 3; c++)
      for (int l = 0; l < L; l++) {
        t[0][c][l] = g[0][c][l];
        t[1][c][l] = 0.5f * (g[0][c][l] + g[1][c][l] + g[2][c][l]);
        t[2][c][l] = 0.5f * (g[0][c][l] - g[1][c][l] + g[2][c][l]);
        t[3][c][l] = g[2][c][l];
      }
    for (int r = 0; r < 4; r++) {
      float u[4][L];
      for (int l = 0; l < L; l++) {
        u[0][l] = t[r][0][l];
        u[1][l] = 0.5f * (t[r][0][l] + t[r][1][l] + t[r][2][l]);
        u[2][l] = 0.5f * (t[r][0][l] - t[r][1][l] + t[r][2][l]);
        u[3][l] = t[r][2][l];
      }
      store_filter_lanes<4>(u, r, ncb, cin, ci, NR, co0, U);
    }
  }
}
void filter_transform(const float* w, int cin, int cout, int NR, float* U) {
  parallel_for(cin, [&](int64_t ci) { filter_transform_ci(w, cin, cout, NR, (int)ci, U); });
}

// o[4 i + j] = (B^T d B)[i][j] for 16 lanes (input channels):
//   B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]
inline void bt_d_b_lanes(const float d[4][4][16], float o[16][16]) {
  constexpr int L = 16;
  float r[4][4][L];
  for (int j = 0; j < 4; j++)
    for (int l = 0; l < L; l++) {  // B^T d
      r[0][j][l] = d[0][j][l] - d[2][j][l];
      r[1][j][l] = d[1][j][l] + d[2][j][l];
      r[2][j][l] = d[2][j][l] - d[1][j][l];
      r[3][j][l] = d[1][j][l] - d[3][j][l];
    }
  for (int i = 0; i < 4; i++)
    for (int l = 0; l < L; l++) {  // (B^T d) B
      o[i * 4 + 0][l] = r[i][0][l] - r[i][2][l];
      o[i * 4 + 1][l] = r[i][1][l] + r[i][2][l];
      o[i * 4 + 2][l] = r[i][2][l] - r[i][1][l];
      o[i * 4 + 3][l] = r[i][1][l] - r[i][3][l];
    }
}

// V[xi][t][ci] = (B^T d B)[xi] for the chunk's tiles; d is the 4x4 input patch, zero outside.
//   B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]
// Tiles [t0, t0 + count) go to rows [row0, row0 + count) of V, whose planes hold vs tiles.
__attribute__((target_clones("avx512f", "avx2", "default"))) void input_transform(
    const float* x, int h, int wd, int cin, int64_t t0, int count, int tiles_h, int tiles_w, float* V, int64_t vs,
    int64_t row0, const float* zeros) {
  for (int t = 0; t < count; t++) {
    const auto [n, ty, tx] = tile_pos(t0 + t, tiles_h, tiles_w);
    const float* p[4][4];
    for (int i = 0; i < 4; i++)
      for (int j = 0; j < 4; j++) {
        const int yy = 2 * ty - 1 + i, xx = 2 * tx - 1 + j;
        p[i][j] = (yy < 0 || yy >= h || xx < 0 || xx >= wd) ? zeros : x + ((n * h + yy) * wd + xx) * cin;
      }
    float* v[16];
    for (int k = 0; k < 16; k++) v[k] = V + ((size_t)k * vs + row0 + t) * cin;
    // Channels in blocks of L lanes (fixed-size loops the compiler vectorises), then the rest.
    constexpr int L = 16;
    int c0 = 0;
    for (; c0 + L <= cin; c0 += L) {
      float d[4][4][L], o[16][L];
      for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) memcpy(d[i][j], p[i][j] + c0, sizeof(float) * L);
      bt_d_b_lanes(d, o);
      for (int k = 0; k < 16; k++) memcpy(v[k] + c0, o[k], sizeof(float) * L);
    }
    for (int c = c0; c < cin; c++) {
      float d[4][4], r[4][4];
      for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) d[i][j] = p[i][j][c];
      for (int j = 0; j < 4; j++) {
        r[0][j] = d[0][j] - d[2][j];
        r[1][j] = d[1][j] + d[2][j];
        r[2][j] = d[2][j] - d[1][j];
        r[3][j] = d[1][j] - d[3][j];
      }
      for (int i = 0; i < 4; i++) {
        v[i * 4 + 0][c] = r[i][0] - r[i][2];
        v[i * 4 + 1][c] = r[i][1] + r[i][2];
        v[i * 4 + 2][c] = r[i][2] - r[i][1];
        v[i * 4 + 3][c] = r[i][1] - r[i][3];
      }
    }
  }
}

// y[2x2 tile] = A^T M A + bias (ReLU), A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]; outputs past the
// image edge (odd sizes) are not stored.
__attribute__((target_clones("avx512f", "avx2", "default"))) void output_transform(
    const float* M, int64_t ms, int64_t row0, const float* b, float* y, int h, int wd, int cout, int64_t t0, int count,
    int tiles_h, int tiles_w, bool relu) {
  for (int t = 0; t < count; t++) {
    const auto [n, ty, tx] = tile_pos(t0 + t, tiles_h, tiles_w);
    const float* m[16];
    for (int k = 0; k < 16; k++) m[k] = M + ((size_t)k * ms + row0 + t) * cout;
    float* out[2][2];
    bool inside[2][2];
    for (int i = 0; i < 2; i++)
      for (int j = 0; j < 2; j++) {
        const int yy = 2 * ty + i, xx = 2 * tx + j;
        inside[i][j] = yy < h && xx < wd;
        out[i][j] = inside[i][j] ? y + ((n * h + yy) * wd + xx) * cout : nullptr;
      }
    constexpr int L = 16;
    auto finish = [&](float o0, float o1, int i, int c) {
      if (relu) {
        o0 = o0 > 0.0f ? o0 : 0.0f;
        o1 = o1 > 0.0f ? o1 : 0.0f;
      }
      if (inside[i][0]) out[i][0][c] = o0;
      if (inside[i][1]) out[i][1][c] = o1;
    };
    int c0 = 0;
    for (; c0 + L <= cout; c0 += L) {
      float mm[16][L], sm[2][4][L], res[2][2][L];
      for (int k = 0; k < 16; k++) memcpy(mm[k], m[k] + c0, sizeof(float) * L);
      for (int j = 0; j < 4; j++)
        for (int l = 0; l < L; l++) {
          sm[0][j][l] = mm[0 * 4 + j][l] + mm[1 * 4 + j][l] + mm[2 * 4 + j][l];
          sm[1][j][l] = mm[1 * 4 + j][l] - mm[2 * 4 + j][l] - mm[3 * 4 + j][l];
        }
      for (int i = 0; i < 2; i++)
        for (int l = 0; l < L; l++) {
          const float bias = b ? b[c0 + l] : 0.0f;
          float o0 = sm[i][0][l] + sm[i][1][l] + sm[i][2][l] + bias;
          float o1 = sm[i][1][l] - sm[i][2][l] - sm[i][3][l] + bias;
          if (relu) {
            o0 = o0 > 0.0f ? o0 : 0.0f;
            o1 = o1 > 0.0f ? o1 : 0.0f;
          }
          res[i][0][l] = o0;
          res[i][1][l] = o1;
        }
      for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++)
          if (inside[i][j]) memcpy(out[i][j] + c0, res[i][j], sizeof(float) * L);
    }
    for (int c = c0; c < cout; c++) {
      float sr[2][4];
      for (int j = 0; j < 4; j++) {
        sr[0][j] = m[0 * 4 + j][c] + m[1 * 4 + j][c] + m[2 * 4 + j][c];
        sr[1][j] = m[1 * 4 + j][c] - m[2 * 4 + j][c] - m[3 * 4 + j][c];
      }
      const float bias = b ? b[c] : 0.0f;
      for (int i = 0; i < 2; i++) finish(sr[i][0] + sr[i][1] + sr[i][2] + bias, sr[i][1] - sr[i][2] - sr[i][3] + bias, i, c);
    }
  }
}

// ---------------------------------------------------------------- F(4x4, 3x3)
// Each 4x4 output tile from a 6x6 input tile with 36 products per (ci, co) instead of 144: 4x fewer
// multiplies than the direct conv (F(2x2): 2.25x), at the price of larger transform coefficients
// (interpolation points 0, +-1, +-2, infinity; Lavin & Gray's matrices):
//   B^T = [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
//          [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]]
//   G   = [[1/4, 0, 0], [-1/6, -1/6, -1/6], [-1/6, 1/6, -1/6], [1/24, 1/12, 1/6], [1/24, -1/12, 1/6], [0, 0, 1]]
//   A^T = [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]]

// The 1-D transforms, on L lanes at once (L output or input channels): fixed-size loops the
// compiler turns into one vector instruction per line.
constexpr int L4 = 16;
static_assert(L4 == kFtLanes, "the F(4x4) filter transform shares the lane helpers");
// t = G g for 3 rows of L lanes (the filter transform).
inline void g_rows(const float* g0, const float* g1, const float* g2, float t[6][L4]) {
  for (int l = 0; l < L4; l++) {
    const float a = g0[l], b = g1[l], c = g2[l];
    t[0][l] = a * 0.25f;
    t[1][l] = (a + b + c) * (-1.0f / 6.0f);
    t[2][l] = (a - b + c) * (-1.0f / 6.0f);
    t[3][l] = a * (1.0f / 24.0f) + b * (1.0f / 12.0f) + c * (1.0f / 6.0f);
    t[4][l] = a * (1.0f / 24.0f) - b * (1.0f / 12.0f) + c * (1.0f / 6.0f);
    t[5][l] = c;
  }
}
// o = B^T d for 6 rows of L lanes.
inline void bt_rows(const float* d0, const float* d1, const float* d2, const float* d3, const float* d4,
                    const float* d5, float o[6][L4]) {
  for (int l = 0; l < L4; l++) {
    const float a0 = d0[l], a1 = d1[l], a2 = d2[l], a3 = d3[l], a4 = d4[l], a5 = d5[l];
    o[0][l] = 4.0f * a0 - 5.0f * a2 + a4;
    o[1][l] = a3 + a4 - 4.0f * (a1 + a2);
    o[2][l] = 4.0f * (a1 - a2) + a4 - a3;
    o[3][l] = 2.0f * (a3 - a1) + a4 - a2;
    o[4][l] = 2.0f * (a1 - a3) + a4 - a2;
    o[5][l] = 4.0f * a1 - 5.0f * a3 + a5;
  }
}
// o = A^T m for 6 rows of L lanes.
inline void at_rows(const float* m0, const float* m1, const float* m2, const float* m3, const float* m4,
                    const float* m5, float o[4][L4]) {
  for (int l = 0; l < L4; l++) {
    const float a0 = m0[l], a1 = m1[l], a2 = m2[l], a3 = m3[l], a4 = m4[l], a5 = m5[l];
    const float s12 = a1 + a2, d12 = a1 - a2, s34 = a3 + a4, d34 = a3 - a4;
    o[0][l] = a0 + s12 + s34;
    o[1][l] = d12 + 2.0f * d34;
    o[2][l] = s12 + 4.0f * s34;
    o[3][l] = d12 + 8.0f * d34 + a5;
  }
}

// U[xi][cb][ci][NR] = (G g G^T)[xi], L output channels at a time.
__attribute__((target_clones("avx512f", "avx2", "default"))) void filter_transform4_ci(const float* w, int cin,
                                                                                          int cout, int NR, int ci,
                                                                                          float* U) {
  const int ncb = (cout + NR - 1) / NR;
  for (int co0 = 0; co0 < ncb * NR; co0 += L4) {
    float g[3][3][L4];
    load_filter_lanes(w, cin, cout, ci, co0, g);
    float t[3][6][L4];  // t[c] = G applied to column c of g
    for (int c = 0; c < 3; c++) g_rows(g[0][c], g[1][c], g[2][c], t[c]);
    for (int r = 0; r < 6; r++) {
      float u[6][L4];
      g_rows(t[0][r], t[1][r], t[2][r], u);
      store_filter_lanes<6>(u, r, ncb, cin, ci, NR, co0, U);
    }
  }
}
void filter_transform4(const float* w, int cin, int cout, int NR, float* U) {
  parallel_for(cin, [&](int64_t ci) { filter_transform4_ci(w, cin, cout, NR, (int)ci, U); });
}

// V[xi][t][ci] = (B^T d B)[xi] for 6x6 patches at (4 ty - 1, 4 tx - 1), zero outside.
__attribute__((target_clones("avx512f", "avx2", "default"))) void input_transform4(
    const float* x, int h, int wd, int cin, int64_t t0, int count, int tiles_h, int tiles_w, float* V, int64_t vs,
    int64_t row0, const float* zeros) {
  alignas(64) float tail[6][6][L4];
  for (int t = 0; t < count; t++) {
    const auto [n, ty, tx] = tile_pos(t0 + t, tiles_h, tiles_w);
    const float* p[6][6];
    for (int i = 0; i < 6; i++)
      for (int j = 0; j < 6; j++) {
        const int yy = 4 * ty - 1 + i, xx = 4 * tx - 1 + j;
        p[i][j] = (yy < 0 || yy >= h || xx < 0 || xx >= wd) ? zeros : x + ((n * h + yy) * wd + xx) * cin;
      }
    float* v[36];
    for (int k = 0; k < 36; k++) v[k] = V + ((size_t)k * vs + row0 + t) * cin;
    for (int c0 = 0; c0 < cin; c0 += L4) {
      const int cl = std::min(L4, cin - c0);
      const float* q[6][6];
      if (cl == L4) {
        for (int i = 0; i < 6; i++)
          for (int j = 0; j < 6; j++) q[i][j] = p[i][j] + c0;
      } else {  // the last channels: copied into zero-padded lanes
        for (int i = 0; i < 6; i++)
          for (int j = 0; j < 6; j++) {
            for (int l = 0; l < L4; l++) tail[i][j][l] = l < cl ? p[i][j][c0 + l] : 0.0f;
            q[i][j] = tail[i][j];
          }
      }
      float r[6][6][L4];  // r[j] = B^T (column j of d)
      for (int j = 0; j < 6; j++) bt_rows(q[0][j], q[1][j], q[2][j], q[3][j], q[4][j], q[5][j], r[j]);
      for (int i = 0; i < 6; i++) {
        float o[6][L4];  // row i of (B^T d) B
        bt_rows(r[0][i], r[1][i], r[2][i], r[3][i], r[4][i], r[5][i], o);
        if (cl == L4) {
          for (int j = 0; j < 6; j++) memcpy(v[i * 6 + j] + c0, o[j], sizeof(float) * L4);
        } else {
          for (int j = 0; j < 6; j++) memcpy(v[i * 6 + j] + c0, o[j], sizeof(float) * cl);
        }
      }
    }
  }
}

// y[4x4 tile] = A^T M A + bias (ReLU); outputs past the image edge are not stored.
__attribute__((target_clones("avx512f", "avx2", "default"))) void output_transform4(
    const float* M, int64_t ms, int64_t row0, const float* b, float* y, int h, int wd, int cout, int64_t t0, int count,
    int tiles_h, int tiles_w, bool relu) {
  alignas(64) float tail[36][L4];
  for (int t = 0; t < count; t++) {
    const auto [n, ty, tx] = tile_pos(t0 + t, tiles_h, tiles_w);
    const float* m[36];
    for (int k = 0; k < 36; k++) m[k] = M + ((size_t)k * ms + row0 + t) * cout;
    for (int c0 = 0; c0 < cout; c0 += L4) {
      const int cl = std::min(L4, cout - c0);
      const float* q[36];
      float bias[L4];
      for (int l = 0; l < L4; l++) bias[l] = b && l < cl ? b[c0 + l] : 0.0f;
      for (int k = 0; k < 36; k++) {
        if (cl == L4) {
          q[k] = m[k] + c0;
        } else {
          for (int l = 0; l < L4; l++) tail[k][l] = l < cl ? m[k][c0 + l] : 0.0f;
          q[k] = tail[k];
        }
      }
      float s[6][4][L4];  // s[j] = A^T (column j of m)
      for (int j = 0; j < 6; j++) at_rows(q[0 + j], q[6 + j], q[12 + j], q[18 + j], q[24 + j], q[30 + j], s[j]);
      for (int i = 0; i < 4; i++) {
        const int yy = 4 * ty + i;
        if (yy >= h) break;
        float o[4][L4];  // row i of (A^T m) A
        at_rows(s[0][i], s[1][i], s[2][i], s[3][i], s[4][i], s[5][i], o);
        for (int j = 0; j < 4; j++) {
          const int xx = 4 * tx + j;
          if (xx >= wd) break;
          float res[L4];
          for (int l = 0; l < L4; l++) {
            const float q2 = o[j][l] + bias[l];
            res[l] = relu && !(q2 > 0.0f) ? 0.0f : q2;
          }
          memcpy(y + ((n * h + yy) * wd + xx) * cout + c0, res, sizeof(float) * cl);
        }
      }
    }
  }
}

// The two Winograd variants seen by the schedules below.
struct Variant {
  int m;  // output tile side (2 or 4); the input tile is m + 2
  int P;  // planes: (m + 2)^2
  void (*in)(const float*, int, int, int, int64_t, int, int, int, float*, int64_t, int64_t, const float*);
  void (*out)(const float*, int64_t, int64_t, const float*, float*, int, int, int, int64_t, int, int, int, bool);
};

// M[rows][c0 : c0+cols] = V[rows][0:cin] x (one transformed-filter panel [cin][NR]), in micro-tiles.
void plane_gemm(const Kernels& K, const float* Vx, int64_t rows, int cin, const float* panel, float* Mx, int cout,
                int c0, int cols) {
  const int MR = K.mr;
  const float* ptrs[kMaxMR];
  TileArgs a;
  a.taps = 1;
  a.kc = cin;
  a.a = ptrs;
  a.a_step = 1;
  a.b = panel;
  a.b_step = K.nr;
  a.b_tap_step = 0;
  a.b_padded = true;
  a.ldc = cout;
  a.nr = cols;
  a.bias = nullptr;
  a.load_c = false;
  a.relu = false;
  for (int64_t m0 = 0; m0 < rows; m0 += MR) {
    const int mr = (int)std::min<int64_t>(MR, rows - m0);
    for (int i = 0; i < MR; i++) ptrs[i] = Vx + (size_t)(m0 + std::min(i, mr - 1)) * cin;
    a.c = Mx + (size_t)m0 * cout + c0;
    a.mr = mr;
    K.tile(a);
  }
}

// --precision bf16: a plane's GEMM with bf16 operands (the V rows converted, Ub: the filter panel
// in channel pairs, [kp][kBf16NR][2]), fp32 sums.
void plane_gemm_bf16(const uint16_t* Vb, int64_t rows, int kp, const uint16_t* panel, float* Mx, int cout, int c0,
                     int cols) {
  const uint32_t* ptrs[kBf16MR];
  Bf16TileArgs a;
  a.kp = kp;
  a.a = ptrs;
  a.b = panel;
  a.ldc = cout;
  a.nr = cols;
  for (int64_t m0 = 0; m0 < rows; m0 += kBf16MR) {
    const int mr = (int)std::min<int64_t>(kBf16MR, rows - m0);
    for (int i = 0; i < kBf16MR; i++) ptrs[i] = (const uint32_t*)(Vb + (size_t)(m0 + std::min(i, mr - 1)) * 2 * kp);
    a.c = Mx + (size_t)m0 * cout + c0;
    a.mr = mr;
    tile_bf16_avx512(a);
  }
}

// rows x cin floats -> rows x 2 kp bf16 (rounded to nearest even; a zero channel pads an odd cin).
void rows_to_bf16(const float* V, int64_t rows, int cin, uint16_t* Vb) {
  const int w = (cin + 1) / 2 * 2;
  if (w == cin) {
    to_bf16_avx512(V, Vb, (long)(rows * cin));
    return;
  }
  for (int64_t r = 0; r < rows; r++) {
    to_bf16_avx512(V + r * cin, Vb + r * w, cin);
    Vb[r * w + cin] = 0;
  }
}

// The transformed filters U [P][ncb][cin][kBf16NR] as bf16 panels Ub [P][ncb][kp][kBf16NR][2].
void filters_to_bf16(const float* U, int P, int ncb, int cin, uint16_t* Ub) {
  const int kp = (cin + 1) / 2, NR = kBf16NR;
  parallel_for((int64_t)P * ncb, [&](int64_t pc) {
    const float* u = U + (size_t)pc * cin * NR;
    uint16_t* ub = Ub + (size_t)pc * kp * NR * 2;
    std::vector<float> pair((size_t)2 * NR);
    for (int p = 0; p < kp; p++) {
      for (int j = 0; j < NR; j++) {
        pair[2 * j] = u[(size_t)(2 * p) * NR + j];
        pair[2 * j + 1] = 2 * p + 1 < cin ? u[(size_t)(2 * p + 1) * NR + j] : 0.0f;
      }
      to_bf16_avx512(pair.data(), ub + (size_t)p * NR * 2, 2 * NR);
    }
  });
}

// Small filter sets: each task transforms a chunk of tiles, runs the 16 GEMMs for it and writes
// its outputs, everything staying in L2.
void winograd_fused(const Variant& W, const float* x, const float* U, const uint16_t* Ub, const float* b, float* y,
                    int n, int h, int wd, int cin, int cout, bool relu) {
  const Kernels& K = kernels();
  const int MR = Ub ? kBf16MR : K.mr, NR = Ub ? kBf16NR : K.nr, kp = (cin + 1) / 2;
  const int ncb = (cout + NR - 1) / NR;
  const int P = W.P, tiles_h = (h + W.m - 1) / W.m, tiles_w = (wd + W.m - 1) / W.m;
  const int64_t T = (int64_t)n * tiles_h * tiles_w;
  const int nt = num_threads();
  int64_t tc = (T + 4 * nt - 1) / (4 * nt);  // enough chunks to feed every thread
  tc = (tc + MR - 1) / MR * MR;
  tc = std::max<int64_t>(MR, std::min<int64_t>(tc, 4 * MR));
  const int64_t nchunks = (T + tc - 1) / tc;
  struct Buffers {
    std::vector<float> V, M;
    std::vector<uint16_t> Vb;
  };
  std::vector<Buffers> bufs(nt);
  parallel_for_t(nchunks, [&](int64_t chunk, int thread) {
    const int64_t t0 = chunk * tc;
    const int cur = (int)std::min<int64_t>(tc, T - t0);
    Buffers& tb = bufs[thread];
    tb.V.resize((size_t)P * cur * cin);
    tb.M.resize((size_t)P * cur * cout);
    W.in(x, h, wd, cin, t0, cur, tiles_h, tiles_w, tb.V.data(), cur, 0, zeros());
    if (Ub) {
      tb.Vb.resize((size_t)P * cur * 2 * kp);
      rows_to_bf16(tb.V.data(), (int64_t)P * cur, cin, tb.Vb.data());
    }
    for (int xi = 0; xi < P; xi++)
      for (int cb = 0; cb < ncb; cb++) {
        float* Mx = tb.M.data() + (size_t)xi * cur * cout;
        const int cols = std::min(NR, cout - cb * NR);
        if (Ub)
          plane_gemm_bf16(tb.Vb.data() + (size_t)xi * cur * 2 * kp, cur, kp,
                          Ub + (((size_t)xi * ncb + cb) * kp) * NR * 2, Mx, cout, cb * NR, cols);
        else
          plane_gemm(K, tb.V.data() + (size_t)xi * cur * cin, cur, cin, U + (((size_t)xi * ncb + cb) * cin) * NR, Mx,
                     cout, cb * NR, cols);
      }
    W.out(tb.M.data(), cur, 0, b, y, h, wd, cout, t0, cur, tiles_h, tiles_w, relu);
  });
}

// Large filter sets (512 x 512 channels: 16 MB transformed): groups of tiles whose V and M fit in
// ~32 MB; within a group (1) input transform, (2) one task per (point, output-channel block) runs
// the GEMM over all the group's tiles, so each filter panel is read once and the V plane stays in
// L2 across the channel blocks, (3) output transform.
void winograd_grouped(const Variant& W, const float* x, const float* U, const uint16_t* Ub, const float* b, float* y,
                      int n, int h, int wd, int cin, int cout, bool relu) {
  const Kernels& K = kernels();
  const int MR = Ub ? kBf16MR : K.mr, NR = Ub ? kBf16NR : K.nr, kp = (cin + 1) / 2;
  const int ncb = (cout + NR - 1) / NR;
  static thread_local std::vector<float> v_buf, m_buf;
  static thread_local std::vector<uint16_t> vb_buf;

  const int P = W.P, tiles_h = (h + W.m - 1) / W.m, tiles_w = (wd + W.m - 1) / W.m;
  const int64_t T = (int64_t)n * tiles_h * tiles_w;
  const int64_t group = std::max<int64_t>(MR, std::min<int64_t>(T, ((int64_t)4 << 20) / (P * std::max(cin, cout))));
  v_buf.resize((size_t)P * group * cin);
  m_buf.resize((size_t)P * group * cout);
  if (Ub) vb_buf.resize((size_t)P * group * 2 * kp);
  float* V = v_buf.data();
  float* M = m_buf.data();
  uint16_t* Vb = vb_buf.data();
  const int kPiece = 16;  // tiles per transform task
  for (int64_t g0 = 0; g0 < T; g0 += group) {
    const int64_t cur = std::min(group, T - g0);
    const int64_t pieces = (cur + kPiece - 1) / kPiece;
    parallel_for(pieces, [&](int64_t p) {
      const int64_t r0 = p * kPiece;
      W.in(x, h, wd, cin, g0 + r0, (int)std::min<int64_t>(kPiece, cur - r0), tiles_h, tiles_w, V, cur, r0, zeros());
    });
    if (Ub)
      parallel_for(P, [&](int64_t xi) {
        rows_to_bf16(V + (size_t)xi * cur * cin, cur, cin, Vb + (size_t)xi * cur * 2 * kp);
      });
    parallel_for((int64_t)P * ncb, [&](int64_t task) {
      const int xi = (int)(task / ncb), cb = (int)(task % ncb);
      float* Mx = M + (size_t)xi * cur * cout;
      const int cols = std::min(NR, cout - cb * NR);
      if (Ub)
        plane_gemm_bf16(Vb + (size_t)xi * cur * 2 * kp, cur, kp, Ub + (((size_t)xi * ncb + cb) * kp) * NR * 2, Mx,
                        cout, cb * NR, cols);
      else
        plane_gemm(K, V + (size_t)xi * cur * cin, cur, cin, U + (((size_t)xi * ncb + cb) * cin) * NR, Mx, cout,
                   cb * NR, cols);
    });
    parallel_for(pieces, [&](int64_t p) {
      const int64_t r0 = p * kPiece;
      W.out(M, cur, r0, b, y, h, wd, cout, g0 + r0, (int)std::min<int64_t>(kPiece, cur - r0), tiles_h, tiles_w, relu);
    });
  }
}

// D[xi][t][co] = (A dy_t A^T)[xi]: the gradient at a tile's 16 products M from the gradient dy_t at
// its 2x2 outputs (zero past the image edge), the transpose of output_transform:
//   A = [[1, 0], [1, 1], [1, -1], [0, -1]]
// Tiles [t0, t0 + count) go to rows [row0, row0 + count) of D, rows ldd floats apart, whose planes
// hold ds tiles.
__attribute__((target_clones("avx512f", "avx2", "default"))) void grad_transform(
    const float* dy, int h, int wd, int cout, int64_t t0, int count, int tiles_h, int tiles_w, float* D, int64_t ldd,
    int64_t ds, int64_t row0, const float* zeros) {
  for (int t = 0; t < count; t++) {
    const auto [n, ty, tx] = tile_pos(t0 + t, tiles_h, tiles_w);
    const float* p[2][2];
    for (int i = 0; i < 2; i++)
      for (int j = 0; j < 2; j++) {
        const int yy = 2 * ty + i, xx = 2 * tx + j;
        p[i][j] = (yy >= h || xx >= wd) ? zeros : dy + ((n * h + yy) * wd + xx) * cout;
      }
    float* d[16];
    for (int k = 0; k < 16; k++) d[k] = D + ((size_t)k * ds + row0 + t) * ldd;
    // Sixteen channels at a time through small arrays, so that the compiler vectorises the lanes.
    constexpr int L = 16;
    for (int c0 = 0; c0 < cout; c0 += L) {
      const int cl = std::min(L, cout - c0);
      float e[4][2][L], o[16][L];
      for (int l = 0; l < cl; l++) {
        const float g00 = p[0][0][c0 + l], g01 = p[0][1][c0 + l], g10 = p[1][0][c0 + l], g11 = p[1][1][c0 + l];
        e[0][0][l] = g00;  // A dy
        e[0][1][l] = g01;
        e[1][0][l] = g00 + g10;
        e[1][1][l] = g01 + g11;
        e[2][0][l] = g00 - g10;
        e[2][1][l] = g01 - g11;
        e[3][0][l] = -g10;
        e[3][1][l] = -g11;
      }
      for (int i = 0; i < 4; i++)  // (A dy) A^T
        for (int l = 0; l < cl; l++) {
          o[i * 4 + 0][l] = e[i][0][l];
          o[i * 4 + 1][l] = e[i][0][l] + e[i][1][l];
          o[i * 4 + 2][l] = e[i][0][l] - e[i][1][l];
          o[i * 4 + 3][l] = -e[i][1][l];
        }
      for (int k = 0; k < 16; k++) std::memcpy(d[k] + c0, o[k], sizeof(float) * cl);
    }
  }
}

// The weight gradient's V, transposed: VT[xi][ci][row0 + t] = (B^T d B)[xi] of channel ci for tiles
// [t0, t0 + count), count <= kWgPiece, rows ld floats apart (planes cin rows apart), so that its GEMM
// reads both operands along rows. Channels go in blocks of L through a small buffer [16][L][count].
constexpr int kWgPiece = 16;
__attribute__((target_clones("avx512f", "avx2", "default"))) void input_transform_t(
    const float* x, int h, int wd, int cin, int64_t t0, int count, int tiles_h, int tiles_w, float* VT, int64_t ld,
    int64_t row0, const float* zeros) {
  constexpr int L = 16;
  const float* p[kWgPiece][4][4];
  for (int t = 0; t < count; t++) {
    const auto [n, ty, tx] = tile_pos(t0 + t, tiles_h, tiles_w);
    for (int i = 0; i < 4; i++)
      for (int j = 0; j < 4; j++) {
        const int yy = 2 * ty - 1 + i, xx = 2 * tx - 1 + j;
        p[t][i][j] = (yy < 0 || yy >= h || xx < 0 || xx >= wd) ? zeros : x + ((n * h + yy) * wd + xx) * cin;
      }
  }
  float buf[16][L][kWgPiece];
  for (int c0 = 0; c0 < cin; c0 += L) {
    const int lanes = std::min(L, cin - c0);
    for (int t = 0; t < count; t++) {
      float d[4][4][L], o[16][L];
      for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) {
          if (lanes == L)
            memcpy(d[i][j], p[t][i][j] + c0, sizeof(float) * L);
          else
            for (int l = 0; l < L; l++) d[i][j][l] = l < lanes ? p[t][i][j][c0 + l] : 0.0f;
        }
      bt_d_b_lanes(d, o);
      for (int k = 0; k < 16; k++)
        for (int l = 0; l < L; l++) buf[k][l][t] = o[k][l];
    }
    for (int k = 0; k < 16; k++)
      for (int l = 0; l < lanes; l++)
        memcpy(VT + ((size_t)k * cin + c0 + l) * ld + row0, buf[k][l], sizeof(float) * count);
  }
}

}  // namespace

void conv3x3_weight_grad_winograd(const float* x, const float* dy, float* dw, int n, int h, int wd, int cin,
                                  int cout) {
  const int tiles_h = (h + 1) / 2, tiles_w = (wd + 1) / 2;
  const int64_t T = (int64_t)n * tiles_h * tiles_w;
  // Tiles per block: V and D blocks of at most ~4 MB each (128 tiles at 512 channels; measured on block5
  // at batch 32: a little faster than 256 or 64).
  const int64_t block =
      std::max<int64_t>(1, std::min<int64_t>(T, ((int64_t)1 << 20) / (16 * std::max(cin, cout))));
  // VT and D rows padded off a multiple of 4 KB: the GEMM reads D's rows (its B operand, unpacked)
  // a k step apart, and rows 2^k floats apart alias in the L1 cache (D at 512 floats a row measured
  // 1.1-1.4x slower on block5, noisy).
  const int64_t ld = block + 16, ldd = cout + 16;
  std::vector<float> VT((size_t)16 * cin * ld), D((size_t)16 * block * ldd), dU((size_t)16 * cin * cout);
  TL_ASSERT(std::max(cin, cout) <= kZeros);
  for (int64_t t0 = 0; t0 < T; t0 += block) {
    const int64_t cur = std::min(block, T - t0);
    const int64_t pieces = (cur + kWgPiece - 1) / kWgPiece;
    parallel_for(pieces, [&](int64_t p) {
      const int64_t r0 = p * kWgPiece;
      const int cnt = (int)std::min<int64_t>(kWgPiece, cur - r0);
      input_transform_t(x, h, wd, cin, t0 + r0, cnt, tiles_h, tiles_w, VT.data(), ld, r0, zeros());
      grad_transform(dy, h, wd, cout, t0 + r0, cnt, tiles_h, tiles_w, D.data(), ldd, cur, r0, zeros());
    });
    // dU[xi] (+)= VT[xi] D[xi]: [cin x cur] [cur x cout], the tiles the reduction.
    for (int xi = 0; xi < 16; xi++)
      gemm(cin, cout, (int)cur, VT.data() + (size_t)xi * cin * ld, (int)ld, false, D.data() + (size_t)xi * cur * ldd,
           (int)ldd, false, dU.data() + (size_t)xi * cin * cout, cout, nullptr, t0 > 0, false);
  }
  // dw[ky][kx] = (G^T dU G)[ky][kx], G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]].
  const int64_t plane = (int64_t)cin * cout;
  parallel_for((plane + 4095) / 4096, [&](int64_t blk) {
    const int64_t e1 = std::min(plane, (blk + 1) * 4096);
    for (int64_t e = blk * 4096; e < e1; e++) {
      float u[4][4], r[3][4];
      for (int k = 0; k < 16; k++) u[k / 4][k % 4] = dU[(size_t)k * plane + e];
      for (int j = 0; j < 4; j++) {  // G^T dU
        r[0][j] = u[0][j] + 0.5f * (u[1][j] + u[2][j]);
        r[1][j] = 0.5f * (u[1][j] - u[2][j]);
        r[2][j] = 0.5f * (u[1][j] + u[2][j]) + u[3][j];
      }
      for (int a = 0; a < 3; a++) {  // (G^T dU) G
        dw[(size_t)(a * 3 + 0) * plane + e] = r[a][0] + 0.5f * (r[a][1] + r[a][2]);
        dw[(size_t)(a * 3 + 1) * plane + e] = 0.5f * (r[a][1] - r[a][2]);
        dw[(size_t)(a * 3 + 2) * plane + e] = 0.5f * (r[a][1] + r[a][2]) + r[a][3];
      }
    }
  });
}

void conv3x3_winograd(const float* x, const float* w, const float* b, float* y, int n, int h, int wd, int cin,
                      int cout, bool relu, int m, bool bf16) {
  TL_ASSERT(m == 2 || m == 4);
  TL_ASSERT(!bf16 || cpu_has_avx512_bf16());
  const Variant W = m == 2 ? Variant{2, 16, input_transform, output_transform}
                           : Variant{4, 36, input_transform4, output_transform4};
  const int NR = bf16 ? kBf16NR : kernels().nr;
  const int ncb = (cout + NR - 1) / NR;
  static thread_local std::vector<float> u_buf;
  static thread_local std::vector<uint16_t> ub_buf;
  u_buf.resize((size_t)W.P * ncb * NR * cin);
  if (m == 2)
    filter_transform(w, cin, cout, NR, u_buf.data());
  else
    filter_transform4(w, cin, cout, NR, u_buf.data());
  const uint16_t* Ub = nullptr;
  if (bf16) {
    ub_buf.resize((size_t)W.P * ncb * NR * 2 * ((cin + 1) / 2));
    filters_to_bf16(u_buf.data(), W.P, ncb, cin, ub_buf.data());
    Ub = ub_buf.data();
  }
  TL_ASSERT(cin <= kZeros);
  // Measured on the VGG16 layers: the fused schedule wins up to 256 x 512 channels, the grouped
  // one at 512 x 512 (block5: 1.2x), where re-reading 16 MB of filters per chunk dominates.
  if ((int64_t)cin * cout >= 512 * 512)
    winograd_grouped(W, x, u_buf.data(), Ub, b, y, n, h, wd, cin, cout, relu);
  else
    winograd_fused(W, x, u_buf.data(), Ub, b, y, n, h, wd, cin, cout, relu);
}

}  // namespace cpu
}  // namespace tl
