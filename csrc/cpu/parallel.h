// CPU scheduling for every op: a parallel-for over [0, n) on plain std::threads.
// Own threads, not OpenMP, so we never fight torch's OpenMP runtime over the
// same pool; the thread count comes from Python (torch.get_num_threads()).
// Work items are handed out dynamically, but each item is computed by exactly one
// thread with no shared float accumulation, so results never depend on scheduling.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace gsl::cpu {

// Calls body(begin, end) on disjoint chunks covering [0, n) using up to num_threads threads.
template <class Body>
void parallel_for(int64_t n, int num_threads, int64_t grain, Body&& body) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  const int64_t num_chunks = (n + grain - 1) / grain;
  const int workers = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(num_threads, num_chunks)));
  if (workers == 1) {
    body(int64_t{0}, n);
    return;
  }
  std::atomic<int64_t> next_chunk{0};
  std::exception_ptr error;
  std::mutex error_mutex;
  auto run = [&]() {
    try {
      for (;;) {
        const int64_t chunk = next_chunk.fetch_add(1);
        if (chunk >= num_chunks) return;
        const int64_t begin = chunk * grain;
        body(begin, std::min(n, begin + grain));
      }
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex);
      if (!error) error = std::current_exception();
      next_chunk.store(num_chunks);
    }
  };
  std::vector<std::thread> threads;
  threads.reserve(workers - 1);
  for (int i = 0; i < workers - 1; ++i) threads.emplace_back(run);
  run();
  for (auto& t : threads) t.join();
  if (error) std::rethrow_exception(error);
}

}  // namespace gsl::cpu
