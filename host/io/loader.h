// loader.h: decoding threads with a bounded window, delivering items in order.
//
// produce(i, out) fills out (item_floats floats) for item i, or throws tl::Error for an item
// that cannot be used (its message becomes the item's error). At most `window` items are
// decoded ahead of the consumer, so memory stays bounded whatever the number of items.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace tl {

class OrderedLoader {
 public:
  OrderedLoader(int64_t n_items, size_t item_floats, int workers, int window,
                std::function<void(int64_t, float*)> produce);
  ~OrderedLoader();
  // The next item in order; false after the last. *data is valid until release().
  bool next(int64_t* index, const float** data, std::string* error);
  void release();
  void stop();

 private:
  struct Slot {
    std::vector<float> data;
    std::string error;
    int64_t item = -1;
    bool ready = false;
  };
  int64_t n_;
  std::function<void(int64_t, float*)> produce_;
  std::vector<Slot> slots_;
  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::condition_variable cv_ready_, cv_space_;
  std::atomic<int64_t> next_claim_{0};
  int64_t consumed_ = 0;  // items released so far
  int64_t current_ = -1;  // item handed out by next() and not yet released
  bool stop_ = false;
  void worker();
};

// Default number of decoding threads: half the cores (at least 1, at most 8).
int default_decode_threads();

}  // namespace tl
