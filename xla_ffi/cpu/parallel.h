// Parallel loops over XLA's intra-op thread pool.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>

#include "cpu/isa.h"
#include "xla/ffi/api/ffi.h"

namespace jaxshift {

// Whether this thread has run a helper of parallel_for, i.e. is one of the
// pool's threads.
inline thread_local bool in_pool = false;

// The bytes the handler running on this thread reads and writes (CallBytes;
// 0 outside a call).
inline thread_local int64_t call_bytes = 0;

// Records a call's bytes for parallel_for for the handler's duration.
struct CallBytes {
  explicit CallBytes(int64_t bytes) { call_bytes = bytes; }
  ~CallBytes() { call_bytes = 0; }
  CallBytes(const CallBytes&) = delete;
  CallBytes& operator=(const CallBytes&) = delete;
};

// Tasks of at least this many bytes (a call's bytes over its tasks) are
// "long": their caller leaves them to the pool's threads (set through
// long_task_bytes(), exported for the tests).
inline std::atomic<int64_t>& long_task_in_use() {
  static std::atomic<int64_t> bytes{int64_t{1} << 20};
  return bytes;
}

// Sets the long tasks' threshold (`request` >= 0) and returns the one in use.
inline int64_t long_task_bytes(int64_t request) { return set_or_ask(long_task_in_use(), request); }

// How long a caller of long tasks waits for the pool's threads to start
// before it takes tasks itself.
inline constexpr std::chrono::microseconds kJoinWait{200};

// How long a caller that has run out of tasks checks for its helpers' last
// ones before it sleeps on the condition variable.
inline constexpr std::chrono::microseconds kSpinWait{50};

inline void spin_pause() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// The loop of parallel_for, compiled once: `call(ctx, i)` for i in [0, n).
//
// Short tasks: the caller and all but one of the pool's threads take them.
// Long tasks (CallBytes / n >= long_task_bytes): every pool thread is asked
// and the caller, an XLA thread outside the pool, only waits. Working beside
// the pool it made three busy threads on the 2-core VM, and Linux moved them
// between the cores and left one idle: a 2x56x56x1024 bfloat16 move kept 1.42
// of the 2 cores busy, 1.77 with the caller waiting; channels-last forwards
// of 1024 channels took 0.72-0.93 of the time (benchmarks/NOTES.md, v34).
// Short tasks keep the caller at work: waking the pool costs ~20 us, half of
// a 2x16x16x64 call. A caller that is a pool thread (`in_pool`), or whose
// helpers do not all start within kJoinWait (a busy pool, or a pool thread
// not yet marked), takes tasks as for short ones, so nothing waits on a
// thread that cannot come. A caller that ran tasks and found none left
// checks for the helpers' last ones for up to kSpinWait before it sleeps
// (small calls 0.54-1.01x the time, benchmarks/NOTES.md, v35).
inline void parallel_for_erased(xla::ffi::ThreadPool& pool, int64_t n,
                                void (*call)(const void*, int64_t), const void* ctx) {
  struct State {
    std::atomic<int64_t> next{0};
    std::atomic<int64_t> done{0};
    int64_t started = 0;  // long tasks: helpers at work (under mu)
    std::mutex mu;
    std::condition_variable cv;
  };
  auto st = std::make_shared<State>();
  auto drain = [st, n, call, ctx]() {
    for (int64_t i; (i = st->next.fetch_add(1)) < n;) {
      call(ctx, i);
      if (st->done.fetch_add(1) + 1 == n) {
        std::lock_guard<std::mutex> lock(st->mu);
        st->cv.notify_all();
      }
    }
  };
  const int64_t threads = pool.num_threads();
  const bool leave = n > 1 && !in_pool && call_bytes / n >= long_task_bytes(-1);
  const int64_t helpers = leave ? std::min(threads, n) : std::min(threads - 1, n - 1);
  for (int64_t h = 0; h < helpers; ++h) {
    pool.Schedule([st, drain, leave] {
      in_pool = true;
      if (leave) {  // the caller waits for its helpers to start
        std::lock_guard<std::mutex> lock(st->mu);
        ++st->started;
        st->cv.notify_all();
      }
      drain();
    });
  }
  bool joined = false;
  if (leave) {
    std::unique_lock<std::mutex> lock(st->mu);
    joined = st->cv.wait_for(lock, kJoinWait, [&] { return st->started == helpers; });
  }
  if (!joined) {
    drain();
    // No task is left to take: at most one is still running on each helper.
    // A caller asleep on the condition variable ran again 10-20 us after
    // the last task's notify on the 2-core VM (a 191-us 32x8x8x192 call
    // ended 19 us after its busiest thread's tasks), so it checks first.
    const auto until = std::chrono::steady_clock::now() + kSpinWait;
    while (st->done.load(std::memory_order_acquire) != n &&
           std::chrono::steady_clock::now() < until) {
      spin_pause();
    }
  }
  std::unique_lock<std::mutex> lock(st->mu);
  st->cv.wait(lock, [&] { return st->done.load() == n; });
}

// Runs fn(i) for i in [0, n) on the pool; the caller works too unless the
// tasks are long and the pool's threads have all started, so this never
// waits on a pool that has no free thread. Which thread runs which i does not
// affect any result (each i writes its own outputs). Only a one-line thunk
// is instantiated per `Fn`: the scheduling, its shared state and the pool's
// task wrappers exist once (they were most of the library's compile time).
template <typename Fn>
void parallel_for(xla::ffi::ThreadPool& pool, int64_t n, const Fn& fn) {
  parallel_for_erased(
      pool, n, [](const void* f, int64_t i) { (*static_cast<const Fn*>(f))(i); }, &fn);
}

}  // namespace jaxshift
