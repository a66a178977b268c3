#include "host/core/threads.h"

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>
#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#endif

namespace tl {

void flush_denormals_here() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_setcsr(_mm_getcsr() | 0x8040);  // FTZ (bit 15) and DAZ (bit 6)
#endif
}

namespace {

thread_local bool t_in_pool_task = false;

struct Pool {
  std::vector<std::thread> workers;
  std::mutex mu;
  std::condition_variable cv_start, cv_done;
  const std::function<void(int64_t, int)>* job = nullptr;
  int64_t n_tasks = 0;
  std::atomic<int64_t> next{0};
  int generation = 0;
  int active = 0;  // workers still running the current job
  bool stop = false;
  std::exception_ptr error;
  std::mutex run_mu;  // one parallel_for at a time from outside the pool

  // seen starts at the generation current when the worker was made: a worker started after some
  // jobs must not take the last one for a new one (it would decrement `active` for a job it never
  // joined, and parallel_for would wait for ever: a hang seen once in make test).
  void worker_loop(int id, int seen) {
    flush_denormals_here();
    for (;;) {
      {
        std::unique_lock<std::mutex> lk(mu);
        cv_start.wait(lk, [&] { return stop || generation != seen; });
        if (stop) return;
        seen = generation;
      }
      run_tasks(id);
      {
        std::lock_guard<std::mutex> lk(mu);
        if (--active == 0) cv_done.notify_all();
      }
    }
  }

  void run_tasks(int id) {
    t_in_pool_task = true;
    for (;;) {
      int64_t t = next.fetch_add(1);
      if (t >= n_tasks) break;
      try {
        (*job)(t, id);
      } catch (...) {
        std::lock_guard<std::mutex> lk(mu);
        if (!error) error = std::current_exception();
        next = n_tasks;  // stop handing out work
      }
    }
    t_in_pool_task = false;
  }

  void resize(int n) {
    shutdown();
    stop = false;
    int current;
    {
      std::lock_guard<std::mutex> lk(mu);
      current = generation;
    }
    for (int i = 1; i < n; i++) workers.emplace_back([this, i, current] { worker_loop(i, current); });
  }

  void shutdown() {
    {
      std::lock_guard<std::mutex> lk(mu);
      stop = true;
    }
    cv_start.notify_all();
    for (auto& w : workers) w.join();
    workers.clear();
  }

  ~Pool() { shutdown(); }
};

Pool& pool() {
  static Pool p;
  return p;
}

int g_threads = 0;

int default_threads() {
  if (const char* e = getenv("TL_THREADS")) {
    int n = atoi(e);
    if (n > 0) return n;
  }
  unsigned h = std::thread::hardware_concurrency();
  return h ? (int)h : 1;
}

}  // namespace

int num_threads() {
  if (g_threads <= 0) set_num_threads(0);
  return g_threads;
}

void set_num_threads(int n) {
  if (n <= 0) n = default_threads();
  if (n > 256) n = 256;
  if (n == g_threads) return;
  g_threads = n;
  pool().resize(n);
}

void parallel_for_t(int64_t n_tasks, const std::function<void(int64_t, int)>& fn) {
  if (n_tasks <= 0) return;
  flush_denormals_here();
  int nt = num_threads();
  if (nt == 1 || n_tasks == 1 || t_in_pool_task) {
    for (int64_t t = 0; t < n_tasks; t++) fn(t, 0);
    return;
  }
  Pool& p = pool();
  std::lock_guard<std::mutex> run_lock(p.run_mu);
  {
    std::lock_guard<std::mutex> lk(p.mu);
    p.job = &fn;
    p.n_tasks = n_tasks;
    p.next = 0;
    p.error = nullptr;
    p.active = (int)p.workers.size();
    p.generation++;
  }
  p.cv_start.notify_all();
  p.run_tasks(0);
  std::exception_ptr err;
  {
    std::unique_lock<std::mutex> lk(p.mu);
    p.cv_done.wait(lk, [&] { return p.active == 0; });
    err = p.error;
    p.job = nullptr;
  }
  if (err) std::rethrow_exception(err);
}

void parallel_for(int64_t n_tasks, const std::function<void(int64_t)>& fn) {
  parallel_for_t(n_tasks, [&](int64_t t, int) { fn(t); });
}

}  // namespace tl
