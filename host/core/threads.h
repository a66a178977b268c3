// threads.h: a small persistent thread pool for the CPU ops.
//
// parallel_for(n, fn) calls fn(i) for every i in [0, n), spread over the pool's threads.
// The ops only ever give it independent tasks (each task owns its own outputs and computes
// them in a fixed order), so results are the same whatever the thread count.
#pragma once
#include <cstdint>
#include <functional>

namespace tl {

// Number of threads the CPU ops use (default: hardware concurrency, or TL_THREADS).
int num_threads();
void set_num_threads(int n);  // n <= 0: hardware default

// Subnormal floats are flushed to zero (FTZ and DAZ) on every thread that runs CPU ops, as
// TensorFlow does on the CPU and as kernels/ are built (-ftz=true): without it, RMSprop's second
// moments of idle weights decay through the subnormal range and slow training epochs up to 6x.
void flush_denormals_here();

// Runs fn(task) for task in [0, n_tasks). Nested calls from inside a task run serially.
void parallel_for(int64_t n_tasks, const std::function<void(int64_t)>& fn);

// Same, with the index of the worker thread (0 .. num_threads()-1) for per-thread scratch.
void parallel_for_t(int64_t n_tasks, const std::function<void(int64_t task, int thread)>& fn);

}  // namespace tl
