// The AMX emulator's tile state and instructions (amx_emu.h says what they do).
#include "tests/amx_emu/amx_emu.h"

#include <cstring>

#include "host/core/common.h"

namespace amx_emu {

namespace {

struct State {
  bool configured = false;  // a palette-1 configuration is loaded
  uint8_t cfg[64] = {};
  int rows[8] = {}, colsb[8] = {};
  alignas(64) uint8_t tile[8][16][64] = {};
  uint64_t executed = 0;
};
thread_local State g;

[[noreturn]] void fault(const char* insn, const char* why, int tile = -1) {
  if (tile >= 0) tl::fail("AMX emulator: %s on tmm%d: %s", insn, tile, why);
  tl::fail("AMX emulator: %s: %s", insn, why);
}

void check_tile(const char* insn, int t) {
  if (t < 0 || t > 7) fault(insn, "no such tile register", t);
  if (!g.configured) fault(insn, "no tile configuration loaded on this thread (LDTILECFG missing or released)", t);
  if (g.rows[t] == 0) fault(insn, "tile not configured (0 rows)", t);
  g.executed++;
}

float f32(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}

// A bf16 operand as the tiles read it: subnormals as zero.
float bf16_in(uint16_t h) {
  if ((h & 0x7f80) == 0) h &= 0x8000;
  return f32((uint32_t)h << 16);
}

// fp32 results: subnormals flushed to signed zero.
float ftz(float x) {
  uint32_t u;
  memcpy(&u, &x, 4);
  if ((u & 0x7f800000) == 0) u &= 0x80000000u;
  return f32(u);
}

void zero_tiles() { memset(g.tile, 0, sizeof g.tile); }

}  // namespace

void loadconfig(const void* cfgp) {
  const uint8_t* c = (const uint8_t*)cfgp;
  if (c[0] == 0) {  // palette 0: the init state
    release();
    return;
  }
  if (c[0] != 1) fault("LDTILECFG", "palette other than 0 or 1");
  if (c[1] != 0) fault("LDTILECFG", "start_row not 0");
  for (int i = 2; i < 16; i++)
    if (c[i]) fault("LDTILECFG", "reserved bytes 2-15 not zero");
  int rows[8], colsb[8];
  for (int t = 0; t < 16; t++) {
    const int cb = c[16 + 2 * t] | c[17 + 2 * t] << 8, r = c[48 + t];
    if (t >= 8) {
      if (cb || r) fault("LDTILECFG", "tiles 8-15 configured (palette 1 has 8)");
      continue;
    }
    if (r > 16 || cb > 64) fault("LDTILECFG", "more than 16 rows or 64 bytes a row");
    if ((r == 0) != (cb == 0)) fault("LDTILECFG", "rows and colsb must both be zero or both non-zero");
    rows[t] = r;
    colsb[t] = cb;
  }
  memcpy(g.cfg, c, 64);
  memcpy(g.rows, rows, sizeof rows);
  memcpy(g.colsb, colsb, sizeof colsb);
  g.configured = true;
  zero_tiles();
  g.executed++;
}

void storeconfig(void* cfgp) {
  if (g.configured)
    memcpy(cfgp, g.cfg, 64);
  else
    memset(cfgp, 0, 64);
  g.executed++;
}

void loadd(int t, const void* base, long stride) {
  check_tile("TILELOADD", t);
  memset(g.tile[t], 0, sizeof g.tile[t]);
  for (int r = 0; r < g.rows[t]; r++) memcpy(g.tile[t][r], (const uint8_t*)base + (long)r * stride, (size_t)g.colsb[t]);
}

void stored(int t, void* base, long stride) {
  check_tile("TILESTORED", t);
  for (int r = 0; r < g.rows[t]; r++) memcpy((uint8_t*)base + (long)r * stride, g.tile[t][r], (size_t)g.colsb[t]);
}

void zero(int t) {
  check_tile("TILEZERO", t);
  memset(g.tile[t], 0, sizeof g.tile[t]);
}

void dpbf16ps(int c, int a, int b) {
  const char* insn = "TDPBF16PS";
  check_tile(insn, c);
  check_tile(insn, a);
  check_tile(insn, b);
  g.executed -= 2;
  if (c == a || c == b || a == b) fault(insn, "source and destination tiles must differ", c);
  if (g.colsb[c] % 4 || g.colsb[a] % 4 || g.colsb[b] % 4) fault(insn, "colsb not a multiple of 4", c);
  if (g.rows[a] != g.rows[c]) fault(insn, "A's rows differ from C's", a);
  if (g.colsb[b] != g.colsb[c]) fault(insn, "B's colsb differs from C's", b);
  if (g.colsb[a] != 4 * g.rows[b]) fault(insn, "A's colsb is not 4 x B's rows (K mismatch)", a);
  const int M = g.rows[c], N = g.colsb[c] / 4, KP = g.rows[b];
  for (int m = 0; m < M; m++) {
    const uint16_t* arow = (const uint16_t*)g.tile[a][m];
    float* crow = (float*)g.tile[c][m];
    for (int n = 0; n < N; n++) {
      float even = 0.0f, odd = 0.0f;
      for (int k = 0; k < KP; k++) {
        const uint16_t* bp = (const uint16_t*)g.tile[b][k] + 2 * n;
        even = ftz(even + bf16_in(arow[2 * k]) * bf16_in(bp[0]));
        odd = ftz(odd + bf16_in(arow[2 * k + 1]) * bf16_in(bp[1]));
      }
      crow[n] = ftz(ftz(crow[n]) + ftz(even + odd));
    }
  }
}

void release() {
  g.configured = false;
  memset(g.cfg, 0, sizeof g.cfg);
  memset(g.rows, 0, sizeof g.rows);
  memset(g.colsb, 0, sizeof g.colsb);
  zero_tiles();
  g.executed++;
}

uint64_t executed() { return g.executed; }

}  // namespace amx_emu
