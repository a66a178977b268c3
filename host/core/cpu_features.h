// cpu_features.h: what this x86-64 CPU (and its OS) lets the CPU ops use, read once per process.
//
// AVX512_BF16 (VDPBF16PS) runs the Winograd bf16 path; AMX (tile registers, TDPBF16PS) runs the
// direct bf16 convolution on tiles. AMX needs three yeses, checked in this order: CPUID (leaf 7:
// AMX-TILE and AMX-BF16), XCR0 (the OS saves the tile state: bits 17 and 18) and Linux's
// per-process permission (arch_prctl ARCH_REQ_XCOMP_PERM for XTILEDATA). Without the permission the
// first tile instruction raises SIGILL, so no tile instruction runs unless amx_usable() said yes.
// TL_CPU_BF16=0 / TL_CPU_AMX=0 make the process behave as a CPU without them (tests, comparisons).
#pragma once
#include <string>

namespace tl {

bool cpu_has_avx512f();
bool cpu_has_avx512_bf16();
// True when tile instructions may run in this process (asks the kernel for permission once).
bool cpu_amx_usable();
// One line: "AMX usable" or why not ("CPUID has no AMX-TILE/AMX-BF16", "the OS does not enable the
// tile state (XCR0)", "Linux refused the tile permission (arch_prctl: ...)", "TL_CPU_AMX=0").
std::string cpu_amx_status();
// Whether --precision bf16 can run on this CPU: AMX, AVX512_BF16, or the test build's AMX tile
// emulator forced in (cpu_set_bf16_emulated, by ops' set_amx_kernels).
bool cpu_bf16_capable();
void cpu_set_bf16_emulated(bool on);

}  // namespace tl
