// Parallel loops over XLA's intra-op thread pool.
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>

#include "xla/ffi/api/ffi.h"

namespace jaxshift {

// The loop of parallel_for, compiled once: `call(ctx, i)` for i in [0, n).
inline void parallel_for_erased(xla::ffi::ThreadPool& pool, int64_t n,
                                void (*call)(const void*, int64_t), const void* ctx) {
  struct State {
    std::atomic<int64_t> next{0};
    std::atomic<int64_t> done{0};
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
  const int64_t helpers = std::min<int64_t>(pool.num_threads() - 1, n - 1);
  for (int64_t h = 0; h < helpers; ++h) pool.Schedule([drain] { drain(); });
  drain();
  std::unique_lock<std::mutex> lock(st->mu);
  st->cv.wait(lock, [&] { return st->done.load() == n; });
}

// Runs fn(i) for i in [0, n) on the pool; the caller works too, so this never
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
