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

// Runs fn(i) for i in [0, n) on the pool; the caller works too, so this never
// waits on a pool that has no free thread. Which thread runs which i does not
// affect any result (each i writes its own outputs).
template <typename Fn>
void parallel_for(xla::ffi::ThreadPool& pool, int64_t n, const Fn& fn) {
  struct State {
    std::atomic<int64_t> next{0};
    std::atomic<int64_t> done{0};
    std::mutex mu;
    std::condition_variable cv;
  };
  auto st = std::make_shared<State>();
  auto drain = [st, n, &fn]() {
    for (int64_t i; (i = st->next.fetch_add(1)) < n;) {
      fn(i);
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

}  // namespace jaxshift
