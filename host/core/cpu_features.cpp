#include "host/core/cpu_features.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>

#if defined(__x86_64__)
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "host/core/common.h"

namespace tl {

namespace {

bool env_off(const char* name) {
  const char* e = getenv(name);
  return e && !strcmp(e, "0");
}

#if defined(__x86_64__)
// CPUID leaf 7 sub-leaf 0, EDX: bit 22 AMX-BF16, bit 24 AMX-TILE.
bool cpuid_amx() {
  unsigned a, b, c, d;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
  return (d >> 22 & 1) && (d >> 24 & 1);
}

// XCR0 bits 17 (XTILECFG) and 18 (XTILEDATA): the OS saves and restores the tile state. XGETBV is
// legal only when CPUID.1:ECX.OSXSAVE (bit 27) is set.
bool xcr0_tiles() {
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d) || !(c >> 27 & 1)) return false;
  unsigned lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (lo >> 17 & 1) && (lo >> 18 & 1);
}
#endif

struct AmxState {
  bool usable = false;
  std::string status;
};

AmxState probe_amx() {
  AmxState s;
  if (env_off("TL_CPU_AMX")) {
    s.status = "TL_CPU_AMX=0 (AMX ignored)";
    return s;
  }
#if defined(__x86_64__)
  if (!cpuid_amx()) {
    s.status = "this CPU has no AMX (CPUID: no AMX-TILE/AMX-BF16)";
    return s;
  }
  if (!xcr0_tiles()) {
    s.status = "the OS does not enable the AMX tile state (XCR0 bits 17-18)";
    return s;
  }
  // ARCH_REQ_XCOMP_PERM = 0x1023 with XFEATURE_XTILEDATA = 18; covers every thread of the process.
  if (syscall(SYS_arch_prctl, 0x1023, 18) != 0) {
    s.status = strfmt("Linux refused the AMX tile permission (arch_prctl ARCH_REQ_XCOMP_PERM: %s)", strerror(errno));
    return s;
  }
  s.usable = true;
  s.status = "AMX usable (AMX-TILE, AMX-BF16, tile state enabled and permitted)";
#else
  s.status = "not an x86-64 CPU";
#endif
  return s;
}

const AmxState& amx_state() {
  static const AmxState s = probe_amx();
  return s;
}

}  // namespace

bool cpu_has_avx512f() {
#if defined(__x86_64__)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f");
#else
  return false;
#endif
}

bool cpu_has_avx512_bf16() {
#if defined(__x86_64__)
  if (env_off("TL_CPU_BF16")) return false;  // behave as a CPU without it (tests of the refusal)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16");
#else
  return false;
#endif
}

bool cpu_amx_usable() { return amx_state().usable; }
std::string cpu_amx_status() { return amx_state().status; }

namespace {
bool g_bf16_emulated = false;
}
void cpu_set_bf16_emulated(bool on) { g_bf16_emulated = on; }
bool cpu_bf16_capable() { return g_bf16_emulated || cpu_amx_usable() || cpu_has_avx512_bf16(); }

}  // namespace tl
