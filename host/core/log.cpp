#include "host/core/log.h"

#include <cstdarg>
#include <cstdio>

namespace tl {

namespace {
std::string g_program = "tl";
bool g_quiet = false, g_silent = false;

void vline(const char* tag, const char* fmt, va_list ap) {
  char buf[4096];
  vsnprintf(buf, sizeof buf, fmt, ap);
  fprintf(stderr, "%s: %s%s\n", g_program.c_str(), tag, buf);
}
}  // namespace

void set_program_name(const std::string& name) { g_program = name; }
const std::string& program_name() { return g_program; }
void set_quiet(bool q) { g_quiet = q; }
bool quiet() { return g_quiet; }

void note(const char* fmt, ...) {
  if (g_quiet) return;
  va_list ap;
  va_start(ap, fmt);
  vline("", fmt, ap);
  va_end(ap);
}

void alert(const char* fmt, ...) {
  if (g_silent) return;
  va_list ap;
  va_start(ap, fmt);
  vline("", fmt, ap);
  va_end(ap);
}

void set_silent(bool s) { g_silent = s; }

void warn(const char* fmt, ...) {
  if (g_silent) return;
  va_list ap;
  va_start(ap, fmt);
  vline("warning: ", fmt, ap);
  va_end(ap);
}

void say(const char* fmt, ...) {
  if (g_quiet) return;
  va_list ap;
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
}

}  // namespace tl
