#include "host/core/progress.h"

#include <unistd.h>

#include <cstdio>

#include "host/core/common.h"

namespace tl {

bool Progress::is_tty() { return isatty(2) != 0; }

Progress::Progress(std::string label, int64_t total, const char* unit, bool quiet)
    : label_(std::move(label)), unit_(unit), total_(total), t0_(now_s()), tty_(is_tty()), quiet_(quiet) {}

double Progress::elapsed() const { return now_s() - t0_; }

std::string Progress::line(int64_t done, const std::string& extra) {
  const double now = now_s();
  if (start_done_ < 0) {
    start_done_ = done;  // work already done before this run (a resumed cache) is not in the rate
    t_start_done_ = now;
  }
  const double dt = now - t_start_done_;
  const double rate = dt > 0 ? (double)(done - start_done_) / dt : 0.0;
  const double eta = rate > 0 ? (double)(total_ - done) / rate : -1.0;
  const double pct = total_ > 0 ? 100.0 * (double)done / (double)total_ : 100.0;
  return strfmt("%s %lld/%lld %s (%.1f%%)  %.1f %s/s  elapsed %s  ETA %s%s%s", label_.c_str(), (long long)done,
                (long long)total_, unit_.c_str(), pct, rate, unit_.c_str(), human_time(now - t0_).c_str(),
                human_time(eta).c_str(), extra.empty() ? "" : "  ", extra.c_str());
}

void Progress::update(int64_t done, const std::string& extra, bool force) {
  const double now = now_s();
  if (start_done_ < 0) line(done, extra);
  const double every = tty_ ? 0.25 : 10.0;
  if (quiet_ || (!force && now - last_print_ < every)) return;
  last_print_ = now;
  std::string l = line(done, extra);
  if (tty_)
    fprintf(stderr, "\r%s\033[K", l.c_str());
  else
    fprintf(stderr, "%s\n", l.c_str());
  fflush(stderr);
  printed_ = true;
}

void Progress::finish(const std::string& extra) {
  update(total_, extra, true);
  if (tty_ && !quiet_) fprintf(stderr, "\n");
}

}  // namespace tl
