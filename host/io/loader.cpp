#include "host/io/loader.h"

#include "host/core/common.h"

namespace tl {

int default_decode_threads() {
  unsigned h = std::thread::hardware_concurrency();
  int n = (int)(h ? h : 2) / 2;
  return n < 1 ? 1 : (n > 8 ? 8 : n);
}

OrderedLoader::OrderedLoader(int64_t n_items, size_t item_floats, int workers, int window,
                             std::function<void(int64_t, float*)> produce)
    : n_(n_items), produce_(std::move(produce)) {
  if (workers < 1) workers = 1;
  if (window < workers + 1) window = workers + 1;
  slots_.resize((size_t)window);
  for (auto& s : slots_) s.data.resize(item_floats);
  for (int i = 0; i < workers; i++) threads_.emplace_back([this] { worker(); });
}

OrderedLoader::~OrderedLoader() { stop(); }

void OrderedLoader::stop() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  cv_space_.notify_all();
  cv_ready_.notify_all();
  for (auto& t : threads_)
    if (t.joinable()) t.join();
  threads_.clear();
}

void OrderedLoader::worker() {
  for (;;) {
    const int64_t i = next_claim_.fetch_add(1);
    if (i >= n_) return;
    Slot* slot;
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_space_.wait(lk, [&] { return stop_ || i < consumed_ + (int64_t)slots_.size(); });
      if (stop_) return;
      slot = &slots_[(size_t)(i % (int64_t)slots_.size())];
    }
    std::string err;
    try {
      produce_(i, slot->data.data());
    } catch (...) {  // nothing escapes a loader thread: the item gets the error line
      err = current_exception_message();
    }
    {
      std::lock_guard<std::mutex> lk(mu_);
      slot->error = std::move(err);
      slot->item = i;
      slot->ready = true;
    }
    cv_ready_.notify_all();
  }
}

bool OrderedLoader::next(int64_t* index, const float** data, std::string* error) {
  TL_ASSERT(current_ < 0);
  if (consumed_ >= n_) return false;
  const int64_t i = consumed_;
  Slot& s = slots_[(size_t)(i % (int64_t)slots_.size())];
  std::unique_lock<std::mutex> lk(mu_);
  cv_ready_.wait(lk, [&] { return stop_ || (s.ready && s.item == i); });
  if (stop_) return false;
  *index = i;
  *data = s.data.data();
  *error = s.error;
  current_ = i;
  return true;
}

void OrderedLoader::release() {
  TL_ASSERT(current_ >= 0);
  {
    std::lock_guard<std::mutex> lk(mu_);
    slots_[(size_t)(current_ % (int64_t)slots_.size())].ready = false;
    consumed_ = current_ + 1;
    current_ = -1;
  }
  cv_space_.notify_all();
}

}  // namespace tl
