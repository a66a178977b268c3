// amx_emu.h: the AMX emulator (test-only, never linked into the programs): scalar stand-ins for
// the tile instructions host/ops/cpu_kernel_amx.cpp uses, with the state the CPU keeps per thread
// (the tile configuration and eight 1 KB tiles), so that the same kernel source runs and is tested
// on every machine, with AMX or without.
//
// Semantics, from the instruction set reference and ../shared/docs/AMX.md:
// - LDTILECFG: palette 1, reserved bytes 2-15 zero, tiles 0-7 with rows <= 16 and colsb <= 64 (both
//   zero or both non-zero), bytes for tiles 8-15 zero; anything else faults (the CPU's #GP). It
//   zeroes every tile. Palette 0 returns to the init state, as TILERELEASE does.
// - Any tile instruction without a loaded configuration, or on a tile configured with 0 rows,
//   faults (#UD): a thread that forgot LDTILECFG, or a stale one after TILERELEASE, is caught.
// - TILELOADD reads rows x colsb bytes (a stride apart) and zeroes the rest of the tile;
//   TILESTORED writes rows x colsb bytes.
// - TDPBF16PS checks the shapes as the CPU does (distinct tiles, A.rows = C.rows, B.colsb = C.colsb,
//   A.colsb = 4 B.rows, column counts multiples of 4) and computes per element, as measured on a
//   Sapphire Rapids CPU bit for bit on finite data in the normal range:
//     even = odd = +0; for each pair k in order: even = fl(even + a[2k] b[k][2n]),
//     odd = fl(odd + a[2k+1] b[k][2n+1]) (products exact); c = fl(c + fl(even + odd))
//   with bf16 subnormal inputs read as zero and subnormal results flushed to zero (the CPU's
//   treatment of subnormals and of overflow inside a chain is not reproduced: AMX.md).
// A fault throws tl::Error naming the instruction and the reason (the CPU would kill the process).
#pragma once
#include <cstdint>

namespace amx_emu {

void loadconfig(const void* cfg);
void storeconfig(void* cfg);
void loadd(int tile, const void* base, long stride);
void stored(int tile, void* base, long stride);
void zero(int tile);
void dpbf16ps(int c, int a, int b);
void release();
// Tile instructions executed on this thread (tests).
uint64_t executed();

}  // namespace amx_emu

#define _tile_loadconfig(cfg) ::amx_emu::loadconfig(cfg)
#define _tile_storeconfig(cfg) ::amx_emu::storeconfig(cfg)
#define _tile_loadd(t, base, stride) ::amx_emu::loadd(t, base, stride)
#define _tile_stream_loadd(t, base, stride) ::amx_emu::loadd(t, base, stride)
#define _tile_stored(t, base, stride) ::amx_emu::stored(t, base, stride)
#define _tile_zero(t) ::amx_emu::zero(t)
#define _tile_dpbf16ps(c, a, b) ::amx_emu::dpbf16ps(c, a, b)
#define _tile_release() ::amx_emu::release()
