// log.h: what the engine tells the user on stderr. Lines start with the program's name, set once by
// guarded_main ("tl_cache: ..."); --quiet (set_quiet) silences everything but errors and warnings.
// Library code never names a program or threads a quiet flag.
#pragma once
#include <string>

namespace tl {

void set_program_name(const std::string& name);
const std::string& program_name();
void set_quiet(bool q);
bool quiet();

// "prog: message\n" unless quiet.
void note(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
// "prog: message\n", also when quiet (a run that stops short: NaN loss, Ctrl-C).
void alert(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
// "prog: warning: message\n", also when quiet.
void warn(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
// Tests: silences alerts and warnings too (errors still reach the caller as exceptions).
void set_silent(bool s);
// Raw text to stderr unless quiet (epoch lines, reports).
void say(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

}  // namespace tl
