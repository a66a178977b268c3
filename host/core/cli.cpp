#include "host/core/cli.h"

#include <algorithm>

#include "host/core/log.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>

#include "host/core/common.h"

namespace tl {

Cli::Cli(std::string prog, std::string usage, std::string description)
    : prog_(std::move(prog)), usage_(std::move(usage)), description_(std::move(description)) {}

Cli::Opt* Cli::find(const std::string& name) {
  for (auto& o : opts_)
    if (o.name == name) return &o;
  return nullptr;
}

bool Cli::given(const char* name) const {
  for (auto& o : opts_)
    if (o.name == name) return o.seen;
  return false;
}

void Cli::flag(const char* name, bool* v, const char* help) {
  Opt o;
  o.name = name;
  o.help = help;
  o.is_flag = true;
  o.set = [v](const std::string&) { *v = true; };
  opts_.push_back(o);
}

void Cli::opt(const char* name, std::string* v, const char* meta, const char* help) {
  Opt o{name, meta, help, *v, [v](const std::string& s) { *v = s; }};
  opts_.push_back(o);
}

namespace {
int64_t parse_int(const std::string& flag, const std::string& s) {
  errno = 0;
  char* end = nullptr;
  long long v = strtoll(s.c_str(), &end, 10);
  if (s.empty() || *end || errno) fail("%s: expected an integer, got '%s'", flag.c_str(), s.c_str());
  return v;
}
}  // namespace

void Cli::opt(const char* name, int* v, const char* meta, const char* help) {
  std::string n = name;
  Opt o{name, meta, help, std::to_string(*v), [v, n](const std::string& s) {
          int64_t x = parse_int(n, s);
          if (x < -2147483647LL || x > 2147483647LL) fail("%s: %s is out of range", n.c_str(), s.c_str());
          *v = (int)x;
        }};
  opts_.push_back(o);
}

void Cli::opt(const char* name, int64_t* v, const char* meta, const char* help) {
  std::string n = name;
  Opt o{name, meta, help, std::to_string(*v), [v, n](const std::string& s) { *v = parse_int(n, s); }};
  opts_.push_back(o);
}

void Cli::opt(const char* name, uint64_t* v, const char* meta, const char* help) {
  std::string n = name;
  Opt o{name, meta, help, std::to_string(*v), [v, n](const std::string& s) {
          errno = 0;
          char* end = nullptr;
          unsigned long long x = strtoull(s.c_str(), &end, 10);
          if (s.empty() || *end || errno || s[0] == '-')
            fail("%s: expected a non-negative integer, got '%s'", n.c_str(), s.c_str());
          *v = x;
        }};
  opts_.push_back(o);
}

void Cli::opt(const char* name, double* v, const char* meta, const char* help) {
  std::string n = name;
  Opt o{name, meta, help, strfmt("%g", *v), [v, n](const std::string& s) {
          errno = 0;
          char* end = nullptr;
          double x = strtod(s.c_str(), &end);
          if (s.empty() || *end || errno || !std::isfinite(x)) fail("%s: expected a number, got '%s'", n.c_str(), s.c_str());
          *v = x;
        }};
  opts_.push_back(o);
}

void Cli::positional(std::vector<std::string>* v, const char* meta, const char* help) {
  positional_ = v;
  pos_meta_ = meta;
  pos_help_ = help;
}

std::string Cli::help() const {
  std::string s = "usage: " + usage_ + "\n\n" + description_ + "\n";
  if (positional_) s += strfmt("\n  %-24s %s\n", pos_meta_.c_str(), pos_help_.c_str());
  s += "\noptions:\n";
  for (auto& o : opts_) {
    std::string left = o.name + (o.is_flag ? "" : " " + o.meta);
    std::string help = o.help;
    if (!o.is_flag && !o.def.empty() && help.find("default") == std::string::npos) help += " (default: " + o.def + ")";
    s += strfmt("  %-24s %s\n", left.c_str(), help.c_str());
  }
  s += strfmt("  %-24s %s\n", "--help", "show this help and exit");
  if (!epilog_.empty()) s += "\n" + epilog_ + "\n";
  return s;
}

bool Cli::parse(int argc, char** argv) {
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      fputs(help().c_str(), stdout);
      return false;
    }
    if (a == "--") {
      for (i++; i < argc; i++) {
        if (!positional_) fail("unexpected argument '%s'; see %s --help", argv[i], prog_.c_str());
        positional_->push_back(argv[i]);
      }
      break;
    }
    if (starts_with(a, "--")) {
      std::string name = a, value;
      bool has_value = false;
      size_t eq = a.find('=');
      if (eq != std::string::npos) {
        name = a.substr(0, eq);
        value = a.substr(eq + 1);
        has_value = true;
      }
      Opt* o = find(name);
      if (!o) fail("unknown option %s%s; see %s --help", name.c_str(), suggest(name).c_str(), prog_.c_str());
      if (o->is_flag) {
        if (has_value) fail("%s takes no value", name.c_str());
      } else if (!has_value) {
        if (i + 1 >= argc) fail("%s needs a value (%s); see %s --help", name.c_str(), o->meta.c_str(), prog_.c_str());
        value = argv[++i];
      }
      o->set(value);
      o->seen = true;
      continue;
    }
    if (a.size() > 1 && a[0] == '-' && !positional_) fail("unknown option %s; see %s --help", a.c_str(), prog_.c_str());
    if (!positional_) fail("unexpected argument '%s'; see %s --help", a.c_str(), prog_.c_str());
    positional_->push_back(a);
  }
  return true;
}

namespace {
size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); j++) prev[j] = j;
  for (size_t i = 1; i <= a.size(); i++) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); j++)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1])});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}
}  // namespace

// ", did you mean --epochs?" for a name within two edits of a known option (or a prefix of one).
std::string Cli::suggest(const std::string& name) const {
  std::string best;
  size_t best_d = 3;
  for (const Opt& o : opts_) {
    const size_t d = starts_with(o.name, name) && name.size() >= 4 ? 1 : edit_distance(name, o.name);
    if (d < best_d) best_d = d, best = o.name;
  }
  return best.empty() ? "" : ", did you mean " + best + "?";
}

namespace {
// Every program: a signal that ends it removes the .tmp files being written first, then ends it as
// the signal would (tl_cache and tl_train replace SIGINT's and SIGTERM's with the graceful stop).
void on_ending_signal(int sig) {
  remove_temp_files_now();
  raise(sig);  // SA_RESETHAND: the default action, once this handler returns
}
}  // namespace

int guarded_main(const char* prog, const std::function<int()>& body) {
  set_program_name(prog);
  struct sigaction end = {};
  end.sa_handler = on_ending_signal;
  end.sa_flags = SA_RESETHAND;
  sigemptyset(&end.sa_mask);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaction(sig, &end, nullptr);
  // A write past `ulimit -f` then fails with EFBIG, which the writers handle (their temporary file
  // removed, a one-line error), instead of SIGXFSZ killing the process with a partial .tmp left.
  signal(SIGXFSZ, SIG_IGN);
  try {
    return body();
  } catch (const Error& e) {
    fflush(stdout);
    fprintf(stderr, "%s: error: %s\n", prog, e.what());
  } catch (const std::bad_alloc&) {
    fflush(stdout);
    // The sizes a file's fields decide are checked before they are allocated, so this is real
    // memory pressure; only the programs with --batch can do something about it.
    const bool batched = strcmp(prog, "tl_convert") != 0 && strcmp(prog, "tl_inspect") != 0;
    fprintf(stderr, "%s: error: out of memory%s\n", prog, batched ? "; try a smaller --batch or fewer --threads" : "");
  } catch (const std::exception& e) {
    fflush(stdout);
    fprintf(stderr, "%s: error: %s\n", prog, e.what());
  }
  return 1;
}

namespace {
std::atomic<int> g_interrupts{0};
void on_signal(int) {
  if (g_interrupts.fetch_add(1) >= 1) {
    const char msg[] = "\ninterrupted again: exiting now\n";
    ssize_t r = write(2, msg, sizeof msg - 1);
    (void)r;
    remove_temp_files_now();  // no half-written NAME.tmp left behind; finished files stay
    _exit(130);
  }
}
}  // namespace

void install_interrupt_handler() {
  struct sigaction sa = {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

bool interrupted() { return g_interrupts.load() > 0; }

}  // namespace tl
