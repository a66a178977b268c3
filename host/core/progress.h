// progress.h: one updating line (images done, rate, ETA, skipped) on a terminal; plain lines
// every few seconds when stderr is a file or a pipe.
#pragma once
#include <cstdint>
#include <string>

namespace tl {

class Progress {
 public:
  Progress(std::string label, int64_t total, const char* unit = "images", bool quiet = false);
  // done: items finished so far (of total); extra: appended text (e.g. "skipped 3").
  void update(int64_t done, const std::string& extra = "", bool force = false);
  void finish(const std::string& extra = "");
  double elapsed() const;
  static bool is_tty();

 private:
  std::string label_, unit_;
  int64_t total_, start_done_ = -1;
  double t0_, last_print_ = 0, t_start_done_ = 0;
  bool tty_, quiet_, printed_ = false;
  std::string line(int64_t done, const std::string& extra);
};

}  // namespace tl
