// emu.cpp (CUDA emulation, tests only): the runtime behind tests/cuda_emu/include/: fibers for the
// threads of a block, streams whose work runs only when waited for, events, memory with checked
// copies, and cuBLAS' SGEMM as a column-major reference. See cuda_runtime.h for the semantics.
#include <sys/mman.h>

#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "cublas_v2.h"
#include "cuda_runtime.h"

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

thread_local uint3 threadIdx;
thread_local uint3 blockIdx;
thread_local dim3 blockDim;
thread_local dim3 gridDim;

namespace cuda_emu {

namespace {

// ---------------------------------------------------------------- errors
// A launch's configuration error is sticky until cudaGetLastError; a kernel's run-time error
// (barrier divergence, an exception in a thread) surfaces, as on a GPU, at the next call that
// waits for it, with its message in cudaGetErrorString.
cudaError_t g_last_error = cudaSuccess;
std::string g_fault;       // the message of the last launch failure (sticky, as on a GPU)
std::string g_config_msg;  // the last launch-configuration error
std::string g_value_msg;   // the last invalid argument (bad copy)
uint64_t g_launches = 0;

struct KernelFault : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// ---------------------------------------------------------------- fibers
constexpr size_t kStackBytes = 256 * 1024;
constexpr int kMaxThreads = 1024;

#if defined(__x86_64__)
// cuda_emu_switch(save, to): saves the callee-saved registers, MXCSR and the x87 control word on
// this stack, stores the stack pointer in *save, and resumes the context whose stack is `to`.
extern "C" void cuda_emu_switch(void** save, void* to);
asm(R"(
.text
.globl cuda_emu_switch
.type cuda_emu_switch,@function
cuda_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
.size cuda_emu_switch,.-cuda_emu_switch
)");
#endif

enum class TState { Ready, AtBarrier, Done };

struct Fiber {
  char* stack = nullptr;  // kStackBytes, lowest page a guard
  void* sp = nullptr;
#if !defined(__x86_64__)
  ucontext_t ctx;
#endif
  TState state = TState::Ready;
  uint3 tid{0, 0, 0};
};

struct BlockRun {
  std::vector<Fiber> fibers;
  void* sched_sp = nullptr;
#if !defined(__x86_64__)
  ucontext_t sched_ctx;
#endif
  Fiber* current = nullptr;
  const std::function<void()>* body = nullptr;
  std::string error;  // an exception thrown by a thread
};
thread_local BlockRun* t_run = nullptr;

void to_scheduler() {
  BlockRun* r = t_run;
#if defined(__x86_64__)
  cuda_emu_switch(&r->current->sp, r->sched_sp);
#else
  swapcontext(&r->current->ctx, &r->sched_ctx);
#endif
}

void fiber_main() {
  BlockRun* r = t_run;
  try {
    (*r->body)();
  } catch (const std::exception& e) {
    if (r->error.empty()) r->error = e.what();
  } catch (...) {
    if (r->error.empty()) r->error = "unknown exception";
  }
  r->current->state = TState::Done;
  to_scheduler();
  abort();  // a finished fiber is never resumed
}

#if defined(__x86_64__)
extern "C" void cuda_emu_fiber_entry() { fiber_main(); }
#endif

char* new_stack() {
  void* p = mmap(nullptr, kStackBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) throw std::runtime_error("CUDA emulation: cannot map a thread stack");
  mprotect(p, 4096, PROT_NONE);  // a stack overflow faults instead of corrupting a neighbour
  return (char*)p;
}

void start_fiber(BlockRun& r, Fiber& f) {
  if (!f.stack) f.stack = new_stack();
#if defined(__x86_64__)
  // Frame that cuda_emu_switch pops: MXCSR/FPU word, r15..rbp, then the entry as return address.
  uintptr_t top = ((uintptr_t)(f.stack + kStackBytes)) & ~(uintptr_t)15;
  uint64_t* sp = (uint64_t*)(top - 8 * 10);  // (top - 80) % 16 == 0; after the 9 pops and ret: % 16 == 8
  sp += 1;  // sp % 16 == 8, as the ABI wants at a function's entry after 'ret' pops 8 more
  uint32_t mxcsr, fpucw = 0;
  asm volatile("stmxcsr %0" : "=m"(mxcsr));
  asm volatile("fnstcw %0" : "=m"(fpucw));
  sp[0] = (uint64_t)mxcsr | ((uint64_t)(fpucw & 0xffff) << 32);
  for (int i = 1; i <= 6; i++) sp[i] = 0;
  sp[7] = (uint64_t)(uintptr_t)&cuda_emu_fiber_entry;
  f.sp = sp;
#else
  getcontext(&f.ctx);
  f.ctx.uc_stack.ss_sp = f.stack + 4096;
  f.ctx.uc_stack.ss_size = kStackBytes - 4096;
  f.ctx.uc_link = nullptr;
  makecontext(&f.ctx, fiber_main, 0);
#endif
  f.state = TState::Ready;
  (void)r;
}

void resume(BlockRun& r, Fiber& f) {
  r.current = &f;
  threadIdx = f.tid;
#if defined(__x86_64__)
  cuda_emu_switch(&r.sched_sp, f.sp);
#else
  swapcontext(&r.sched_ctx, &f.ctx);
#endif
}

std::string dims(dim3 d) { return std::to_string(d.x) + "," + std::to_string(d.y) + "," + std::to_string(d.z); }

}  // namespace

struct Stream {
  std::deque<std::function<void()>> queue;
  bool draining = false;
  int device = -1;  // the device current when it was created (-1: the default stream, any device)
};
struct Event {
  Stream* stream = nullptr;
  uint64_t recorded = 0, completed = 0;  // generations
  double when_ms = 0;
};
struct Blas {
  cudaStream_t stream = nullptr;
};

namespace {
std::recursive_mutex g_mu;  // the runtime is called from the caching pipeline's threads too
Stream g_default;
std::set<Stream*> g_streams = {&g_default};
std::map<uintptr_t, size_t> g_device;  // device allocations: base -> bytes
std::map<uintptr_t, int> g_device_of;   // device allocations: base -> the device that owns it
// Several devices (TL_EMU_DEVICES=N, default 1); the current one is per host thread, as in CUDA.
thread_local int t_device = 0;
std::string g_handle_msg;
int emu_device_count() {
  const char* v = getenv("TL_EMU_DEVICES");
  const int n = v ? atoi(v) : 1;
  return n < 1 ? 1 : n > 8 ? 8 : n;
}
std::map<uintptr_t, size_t> g_pinned;  // cudaMallocHost allocations
double g_clock_ms = 0;                  // emulated time: advances with the work run

Stream* S(cudaStream_t s) { return s ? s : &g_default; }

// Runs one queued operation of s; false when s is empty.
bool step(Stream* s) {
  if (s->queue.empty()) return false;
  std::function<void()> fn = std::move(s->queue.front());
  s->queue.pop_front();
  fn();
  return true;
}

cudaError_t fault_status() {
  if (!g_fault.empty()) return cudaErrorLaunchFailure;
  return cudaSuccess;
}

cudaError_t drain(Stream* s) {
  try {
    while (step(s)) {
    }
  } catch (const KernelFault& e) {
    g_fault = e.what();
    s->queue.clear();
  }
  return fault_status();
}

cudaError_t drain_all() {
  for (;;) {
    bool any = false;
    for (Stream* s : g_streams)
      if (!s->queue.empty()) {
        any = true;
        cudaError_t e = drain(s);
        if (e != cudaSuccess) return e;
      }
    if (!any) return fault_status();
  }
}

// Where p lies: the device allocation that holds [p, p + n), or a failure message.
bool in_device(const void* p, size_t n) {
  auto it = g_device.upper_bound((uintptr_t)p);
  if (it == g_device.begin()) return false;
  --it;
  return (uintptr_t)p >= it->first && (uintptr_t)p + n <= it->first + it->second;
}
// The device owning the allocation that holds p (-1: none).
int device_of(const void* p) {
  auto it = g_device.upper_bound((uintptr_t)p);
  if (it == g_device.begin()) return -1;
  --it;
  return (uintptr_t)p < it->first + it->second ? g_device_of[it->first] : -1;
}
bool is_pinned(const void* p, size_t n) {
  auto it = g_pinned.upper_bound((uintptr_t)p);
  if (it == g_pinned.begin()) return false;
  --it;
  return (uintptr_t)p >= it->first && (uintptr_t)p + n <= it->first + it->second;
}

cudaError_t bad_copy(const char* what) {
  g_value_msg = std::string("cudaMemcpy: ") + what;
  return cudaErrorInvalidValue;
}

}  // namespace

// ---------------------------------------------------------------- launches

bool check_launch(const char* kernel, dim3 grid, dim3 block, size_t shared_bytes) {
  std::lock_guard<std::recursive_mutex> lk(g_mu);
  const uint64_t threads = (uint64_t)block.x * block.y * block.z;
  std::string why;
  if (threads == 0 || grid.x == 0 || grid.y == 0 || grid.z == 0) why = "an empty grid or block";
  else if (threads > (uint64_t)kMaxThreads) why = "more than 1024 threads per block";
  else if (block.x > 1024 || block.y > 1024 || block.z > 64) why = "a block dimension over its limit (1024, 1024, 64)";
  else if (grid.x > 2147483647u || grid.y > 65535 || grid.z > 65535) why = "a grid dimension over its limit";
  else if (shared_bytes > 48 * 1024) why = "over 48 KiB of dynamic shared memory without opting in";
  if (why.empty()) return true;
  g_last_error = cudaErrorInvalidConfiguration;
  g_config_msg = std::string("launch of ") + kernel + " <<<(" + dims(grid) + "), (" + dims(block) + ")>>>: " + why;
  return false;
}

bool enqueue(cudaStream_t s, std::function<void()> fn) {
  std::lock_guard<std::recursive_mutex> lk(g_mu);
  if (S(s)->device >= 0 && S(s)->device != t_device) {  // CUDA: a stream belongs to its device
    g_handle_msg = "work queued on a stream of device " + std::to_string(S(s)->device) + " while device " +
                   std::to_string(t_device) + " is current (a missing cudaSetDevice)";
    g_last_error = cudaErrorInvalidResourceHandle;
    return false;
  }
  S(s)->queue.push_back(std::move(fn));
  return true;
}

uint64_t launches() { return g_launches; }

void clear_fault() {
  std::lock_guard<std::recursive_mutex> lk(g_mu);
  g_fault.clear();
  g_last_error = cudaSuccess;
  for (Stream* s : g_streams) s->queue.clear();
}

namespace {

// Runs the blocks b = first, first + step, ... of a grid on the calling host thread.
void run_blocks(const char* kernel, dim3 grid, dim3 block, const std::function<void()>& body, uint64_t first,
                uint64_t step) {
  const int nthreads = (int)(block.x * block.y * block.z);
  thread_local BlockRun run;  // fibers and stacks reused across launches
  if ((int)run.fibers.size() < nthreads) run.fibers.resize(nthreads);
  struct Restore {
    BlockRun* saved = t_run;
    ~Restore() { t_run = saved; }
  } restore;
  t_run = &run;
  run.body = &body;
  gridDim = grid;
  blockDim = block;
  const uint64_t nblocks = (uint64_t)grid.x * grid.y * grid.z;
  for (uint64_t bi = first; bi < nblocks; bi += step) {
    const unsigned bx = (unsigned)(bi % grid.x), by = (unsigned)(bi / grid.x % grid.y), bz = (unsigned)(bi / grid.x / grid.y);
    blockIdx = uint3{bx, by, bz};
    const std::string where = std::string(kernel) + " block (" + dims(dim3(bx, by, bz)) + ")";
    run.error.clear();
    for (int t = 0; t < nthreads; t++) {
      Fiber& f = run.fibers[t];
      f.tid = uint3{(unsigned)(t % block.x), (unsigned)(t / block.x % block.y), (unsigned)(t / (block.x * block.y))};
      start_fiber(run, f);
    }
    uint64_t barriers = 0;
    for (;;) {
      int done = 0, waiting = 0;
      for (int t = 0; t < nthreads; t++) {
        Fiber& f = run.fibers[t];
        if (f.state == TState::Ready) resume(run, f);
        if (!run.error.empty()) throw KernelFault(where + ", thread " + std::to_string(t) + ": " + run.error);
        done += f.state == TState::Done;
        waiting += f.state == TState::AtBarrier;
      }
      if (done == nthreads) break;
      if (done > 0)
        throw KernelFault(where + ": __syncthreads() number " + std::to_string(barriers + 1) + " is waited at by " +
                          std::to_string(waiting) + " threads but " + std::to_string(done) +
                          " threads exited without reaching it (a barrier inside divergent code)");
      for (int t = 0; t < nthreads; t++) run.fibers[t].state = TState::Ready;  // all arrived: release
      barriers++;
    }
  }
}

}  // namespace

// A second host thread that runs half of a grid's blocks; persistent, so its fiber stacks are
// made once. It takes the launching thread's MXCSR (FTZ/DAZ, as kernels are built with -ftz=true).
struct Helper {
  std::mutex mu;
  std::condition_variable cv;
  std::function<void()> job;
  bool busy = false;
  unsigned csr = 0;
  std::thread thread{[this] { loop(); }};
  void loop() {
    for (;;) {
      std::unique_lock<std::mutex> lk(mu);
      cv.wait(lk, [&] { return busy && job; });
      std::function<void()> j = std::move(job);
      lk.unlock();
#if defined(__x86_64__)
      asm volatile("ldmxcsr %0" : : "m"(csr));
#endif
      j();
      lk.lock();
      busy = false;
      cv.notify_all();
    }
  }
  void post(std::function<void()> j) {
    std::lock_guard<std::mutex> lk(mu);
#if defined(__x86_64__)
    asm volatile("stmxcsr %0" : "=m"(csr));
#endif
    job = std::move(j);
    busy = true;
    cv.notify_all();
  }
  void wait() {
    std::unique_lock<std::mutex> lk(mu);
    cv.wait(lk, [&] { return !busy; });
  }
};
Helper& helper() {
  static Helper* h = [] {
    Helper* p = new Helper;  // never destroyed: the thread lives as long as the process
    p->thread.detach();
    return p;
  }();
  return *h;
}

// Blocks are independent: they run on up to two host threads (each block's threads as fibers of
// one host thread, so __shared__ = thread_local is still one copy per block).
void run_grid(const char* kernel, dim3 grid, dim3 block, const std::function<void()>& body) {
  g_launches++;
  const uint64_t nblocks = (uint64_t)grid.x * grid.y * grid.z;
  const unsigned hw = std::thread::hardware_concurrency();
  const int workers = nblocks >= 4 && hw >= 2 ? 2 : 1;
  if (workers == 1) {
    run_blocks(kernel, grid, block, body, 0, 1);
  } else {
    std::string error;
    std::mutex emu;
    auto work = [&](uint64_t first) {
      try {
        run_blocks(kernel, grid, block, body, first, 2);
      } catch (const std::exception& e) {
        std::lock_guard<std::mutex> lk(emu);
        if (error.empty()) error = e.what();
      }
    };
    Helper& h = helper();
    h.post([&] { work(1); });
    work(0);
    h.wait();
    if (!error.empty()) throw KernelFault(error);
  }
  g_clock_ms += 0.001 * (double)nblocks * block.x * block.y * block.z / 1024.0;
}

}  // namespace cuda_emu

using namespace cuda_emu;

void __syncthreads() {
  BlockRun* r = t_run;
  if (!r) throw std::runtime_error("__syncthreads() outside a kernel");
  r->current->state = TState::AtBarrier;
  to_scheduler();
}

// ---------------------------------------------------------------- runtime API

cudaError_t cudaGetDeviceCount(int* count) {
  *count = emu_device_count();
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) {
  if (device < 0 || device >= emu_device_count()) return cudaErrorInvalidValue;
  t_device = device;
  return cudaSuccess;
}
cudaError_t cudaGetDevice(int* device) {
  *device = t_device;
  return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int device) {
  if (device < 0 || device >= emu_device_count()) return cudaErrorInvalidValue;
  memset(p, 0, sizeof *p);
  snprintf(p->name, sizeof p->name, "CUDA emulator on the CPU (tests/cuda_emu)");
  p->totalGlobalMem = 16ull << 30;
  p->sharedMemPerBlock = 48 * 1024;
  p->maxThreadsPerBlock = 1024;
  p->maxThreadsDim[0] = p->maxThreadsDim[1] = 1024;
  p->maxThreadsDim[2] = 64;
  p->maxGridSize[0] = 2147483647;
  p->maxGridSize[1] = p->maxGridSize[2] = 65535;
  p->multiProcessorCount = 1;
  p->major = 9;
  p->minor = 0;
  return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr attr, int device) {
  if (device < 0 || device >= emu_device_count()) return cudaErrorInvalidValue;
  switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock: *v = 1024; break;
    case cudaDevAttrMultiProcessorCount: *v = 1; break;
    case cudaDevAttrComputeCapabilityMajor: *v = 9; break;
    case cudaDevAttrComputeCapabilityMinor: *v = 0; break;
    default: *v = 0; return cudaErrorInvalidValue;  // clocks and bus: unknown, as on some real devices
  }
  return cudaSuccess;
}

const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return g_value_msg.empty() ? "invalid argument" : g_value_msg.c_str();
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration:
      return g_config_msg.empty() ? "invalid configuration argument" : g_config_msg.c_str();
    case cudaErrorLaunchFailure: return g_fault.empty() ? "unspecified launch failure" : g_fault.c_str();
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorInsufficientDriver: return "CUDA driver version is insufficient for CUDA runtime version";
    case cudaErrorInvalidResourceHandle: return g_handle_msg.empty() ? "invalid resource handle" : g_handle_msg.c_str();
  }
  return "unknown error";
}

cudaError_t cudaGetLastError() {
  std::lock_guard<std::recursive_mutex> lk(g_mu);
  cudaError_t e = g_last_error;
  g_last_error = cudaSuccess;
  return e;
}
cudaError_t cudaPeekAtLastError() { return g_last_error; }

cudaError_t cudaMalloc(void** p, size_t bytes) {
  std::lock_guard<std::recursive_mutex> lk(g_mu);
  const size_t n = bytes ? (bytes + 255) / 256 * 256 : 256;
  void* q = aligned_alloc(256, n);
  if (!q) return cudaErrorMemoryAllocation;
  memset(q, 0xff, n);  // NaN in every float: reading memory nobody wrote shows in the results
  g_device[(uintptr_t)q] = bytes;
  g_device_of[(uintptr_t)q] = t_device;
  *p = q;
  return cudaSuccess;
}

cudaError_t cudaFree(void* p) {
  std::lock_guard<std::recursive_mutex> lk(g_mu);
  if (!p) return cudaSuccess;
  drain_all();  // cudaFree waits for the device, as on a GPU
  auto it = g_device.find((uintptr_t)p);
  if (it == g_device.end()) {
    g_value_msg = "cudaFree of a pointer that cudaMalloc did not return";
    return cudaErrorInvalidValue;
  }
  g_device.erase(it);
  g_device_of.erase((uintptr_t)p);
  free(p);
  return cudaSuccess;
}

cudaError_t cudaMallocHost(void** p, size_t bytes) {
  std::lock_guard<std::recursive_mutex> lk(g_mu);
  void* q = aligned_alloc(4096, (bytes + 4095) / 4096 * 4096 + 4096);
  if (!q) return cudaErrorMemoryAllocation;
  g_pinned[(uintptr_t)q] = bytes;
  *p = q;
  return cudaSuccess;
}

cudaError_t cudaFreeHost(void* p) {
  std::lock_guard<std::recursive_mutex> lk(g_mu);
  if (!p) return cudaSuccess;
  drain_all();
  if (!g_pinned.erase((uintptr_t)p)) return cudaErrorInvalidValue;
  free(p);
  return cudaSuccess;
}

cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
  std::lock_guard<std::recursive_mutex> lk(g_mu);
  size_t used = 0;
  for (auto& [b, n] : g_device) used += n;
  *total_bytes = 16ull << 30;
  *free_bytes = used < *total_bytes ? *total_bytes - used : 0;
  return cudaSuccess;
}

// Copies: device ranges must lie inside one allocation; pinned host buffers keep the copy
// asynchronous (read or written when the stream runs it); a pageable source is staged at the call
// (as CUDA stages it) and a copy into pageable memory completes before the call returns.
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t n, cudaMemcpyKind kind, cudaStream_t s) {
  std::lock_guard<std::recursive_mutex> lk(g_mu);
  if (n == 0) return cudaSuccess;
  const bool dd = in_device(dst, n), sd = in_device(src, n);
  // Device memory of one device, copied on another's stream: a cross-device bug in the engine.
  const int on = S(s)->device >= 0 ? S(s)->device : t_device;
  if ((dd && device_of(dst) != on) || (sd && device_of(src) != on))
    return bad_copy(("device memory of another device in a copy on device " + std::to_string(on)).c_str());
  switch (kind) {
    case cudaMemcpyHostToDevice:
      if (!dd) return bad_copy("host-to-device copy whose destination is not inside a device allocation");
      if (sd) return bad_copy("host-to-device copy from device memory");
      if (is_pinned(src, n)) {
        if (!enqueue(s, [=] { memcpy(dst, src, n); })) return cudaErrorInvalidResourceHandle;
      } else {
        auto staged = std::make_shared<std::vector<uint8_t>>((const uint8_t*)src, (const uint8_t*)src + n);
        if (!enqueue(s, [=] { memcpy(dst, staged->data(), n); })) return cudaErrorInvalidResourceHandle;
      }
      return cudaSuccess;
    case cudaMemcpyDeviceToHost:
      if (!sd) return bad_copy("device-to-host copy whose source is not inside a device allocation");
      if (dd) return bad_copy("device-to-host copy into device memory");
      if (!enqueue(s, [=] { memcpy(dst, src, n); })) return cudaErrorInvalidResourceHandle;
      if (!is_pinned(dst, n)) return drain(S(s));
      return cudaSuccess;
    case cudaMemcpyDeviceToDevice:
      if (!sd || !dd) return bad_copy("device-to-device copy outside the device allocations");
      if (!enqueue(s, [=] { memmove(dst, src, n); })) return cudaErrorInvalidResourceHandle;
      return cudaSuccess;
    default: return bad_copy("unsupported copy kind");
  }
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t n, cudaMemcpyKind kind) {
  std::lock_guard<std::recursive_mutex> lk(g_mu);
  cudaError_t e = drain_all();
  if (e != cudaSuccess) return e;
  e = cudaMemcpyAsync(dst, src, n, kind, nullptr);
  if (e != cudaSuccess) return e;
  return drain_all();
}

cudaError_t cudaMemsetAsync(void* dst, int value, size_t n, cudaStream_t s) {
  std::lock_guard<std::recursive_mutex> lk(g_mu);
  if (n && !in_device(dst, n)) return bad_copy("memset outside the device allocations");
  if (!enqueue(s, [=] { memset(dst, value, n); })) return cudaErrorInvalidResourceHandle;
  return cudaSuccess;
}
cudaError_t cudaMemset(void* dst, int value, size_t n) {
  cudaError_t e = cudaMemsetAsync(dst, value, n, nullptr);
  return e != cudaSuccess ? e : drain_all();
}

cudaError_t cudaDeviceSynchronize() {
  std::lock_guard<std::recursive_mutex> lk(g_mu);
  return drain_all();
}

cudaError_t cudaStreamCreate(cudaStream_t* s) { return cudaStreamCreateWithFlags(s, 0); }
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned) {
  std::lock_guard<std::recursive_mutex> lk(g_mu);
  *s = new Stream;
  (*s)->device = t_device;
  g_streams.insert(*s);
  return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t s) {
  std::lock_guard<std::recursive_mutex> lk(g_mu);
  if (!s || !g_streams.count(s)) return cudaErrorInvalidResourceHandle;
  drain(s);
  g_streams.erase(s);
  delete s;
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t s) {
  std::lock_guard<std::recursive_mutex> lk(g_mu);
  return drain(S(s));
}

cudaError_t cudaEventCreate(cudaEvent_t* e) { return cudaEventCreateWithFlags(e, 0); }
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned) {
  *e = new Event;
  return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t e) {
  delete e;
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) {
  std::lock_guard<std::recursive_mutex> lk(g_mu);
  Stream* st = S(s);
  const uint64_t gen = ++e->recorded;
  e->stream = st;
  if (!enqueue(s, [e, gen] {
        e->completed = gen;
        e->when_ms = g_clock_ms;
      }))
    return cudaErrorInvalidResourceHandle;
  return cudaSuccess;
}
// Runs the recording stream until the event's latest record has executed.
static cudaError_t wait_event(Event* e, uint64_t gen) {
  try {
    while (e->completed < gen && e->stream && step(e->stream)) {
    }
  } catch (const KernelFault& f) {
    g_fault = f.what();
    return cudaErrorLaunchFailure;
  }
  return fault_status();
}
cudaError_t cudaEventSynchronize(cudaEvent_t e) {
  std::lock_guard<std::recursive_mutex> lk(g_mu);
  return wait_event(e, e->recorded);
}
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned) {
  std::lock_guard<std::recursive_mutex> lk(g_mu);
  const uint64_t gen = e->recorded;  // the record that precedes this call, as CUDA defines it
  if (!enqueue(s, [e, gen] {
        if (wait_event(e, gen) != cudaSuccess) throw KernelFault(g_fault);
      }))
    return cudaErrorInvalidResourceHandle;
  return cudaSuccess;
}
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t a, cudaEvent_t b) {
  if (!a->completed || !b->completed) return cudaErrorInvalidResourceHandle;
  *ms = (float)(b->when_ms - a->when_ms);
  return cudaSuccess;
}

// ---------------------------------------------------------------- cuBLAS

cublasStatus_t cublasCreate(cublasHandle_t* h) {
  *h = new Blas;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy(cublasHandle_t h) {
  delete h;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s) {
  h->stream = s;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetMathMode(cublasHandle_t, cublasMath_t) { return CUBLAS_STATUS_SUCCESS; }

// C (m x n, column-major, leading dimension ldc) = alpha op(A) op(B) + beta C, where op(A) is m x k
// (A stored m x k with lda >= m when N, k x m with lda >= k when T) and op(B) is k x n likewise.
cublasStatus_t cublasSgemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                           const float* alpha, const float* A, int lda, const float* B, int ldb, const float* beta,
                           float* C, int ldc) {
  if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (m < 0 || n < 0 || k < 0 || ldc < (m > 1 ? m : 1) || lda < ((ta == CUBLAS_OP_N ? m : k) > 1 ? (ta == CUBLAS_OP_N ? m : k) : 1) ||
      ldb < ((tb == CUBLAS_OP_N ? k : n) > 1 ? (tb == CUBLAS_OP_N ? k : n) : 1))
    return CUBLAS_STATUS_INVALID_VALUE;
  const float al = *alpha, be = *beta;  // host pointer mode: read at the call
  const bool queued = enqueue(h->stream, [=] {
    for (int j = 0; j < n; j++)
      for (int i = 0; i < m; i++) {
        float acc = 0.0f;
        for (int p = 0; p < k; p++) {
          const float a = ta == CUBLAS_OP_N ? A[i + (size_t)p * lda] : A[p + (size_t)i * lda];
          const float b = tb == CUBLAS_OP_N ? B[p + (size_t)j * ldb] : B[j + (size_t)p * ldb];
          acc += a * b;
        }
        float& c = C[i + (size_t)j * ldc];
        c = be == 0.0f ? al * acc : al * acc + be * c;
      }
  });
  return queued ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_EXECUTION_FAILED;
}
