// CPU scheduling for every op: a parallel-for over [0, n) on our own threads.
// Own threads, not OpenMP, so we never fight torch's OpenMP runtime over the
// same pool; the thread count comes from Python (torch.get_num_threads()).
// Work items are handed out dynamically, but each item is computed by exactly one
// thread with no shared float accumulation, so results never depend on scheduling.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include <unistd.h>

namespace gsl::cpu {

// Helper threads that sleep between jobs. Starting a std::thread costs more than a whole
// pass on small inputs, and a rasterizer call runs several passes. One job at a time; parallel_for falls back to fresh threads when the pool is busy
// (a concurrent or nested call).
class ThreadPool {
 public:
  // The pool of this process. A child made by fork() has none of its parent's threads, so
  // it gets a pool of its own (the parent's is left alone: its mutexes may be held).
  static ThreadPool& instance() {
    static std::atomic<ThreadPool*> pool{nullptr};
    static std::mutex create;
    ThreadPool* p = pool.load();
    if (p != nullptr && p->pid_ == getpid()) return *p;
    std::lock_guard<std::mutex> lock(create);
    p = pool.load();
    if (p == nullptr || p->pid_ != getpid()) {
      p = new ThreadPool();  // never deleted: its threads sleep until the process exits
      pool.store(p);
    }
    return *p;
  }

  // Held by the caller of start() and wait() for the whole job.
  std::mutex& busy() { return busy_; }

  // Starts task() on `helpers` pool threads; the caller does its own share, then wait()s.
  void start(int helpers, const std::function<void()>& task) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      for (; num_threads_ < helpers; ++num_threads_) std::thread([this, index = num_threads_] { serve(index); }).detach();
      task_ = &task;
      wanted_ = helpers;
      running_.store(helpers);
      generation_.fetch_add(1);
    }
    wake_.notify_all();
  }
  // Returns once every helper of the job has finished.
  void wait() {
    spin_until([&] { return running_.load() == 0; });
    std::unique_lock<std::mutex> lock(mutex_);
    finished_.wait(lock, [&] { return running_.load() == 0; });
  }

 private:
  ThreadPool() : pid_(getpid()) {}

  // A sleeping thread takes about as long to wake as a short pass: a thread waits busily
  // (200 us) before it sleeps. The passes of one call follow each other
  // closely, so the helpers stay awake through a call and sleep between calls.
  template <class Ready>
  static void spin_until(Ready ready) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(200);
    while (!ready()) {
      for (int i = 0; i < 64; ++i) {
        if (ready()) return;
        std::this_thread::yield();
      }
      if (std::chrono::steady_clock::now() > until) return;
    }
  }

  void serve(int index) {
    uint64_t seen = 0;
    for (;;) {
      spin_until([&] { return generation_.load() != seen; });
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return generation_.load() != seen; });
      seen = generation_.load();
      if (index >= wanted_) continue;
      const std::function<void()>* task = task_;
      lock.unlock();
      (*task)();  // never throws: parallel_for's task catches
      if (running_.fetch_sub(1) == 1) {
        std::lock_guard<std::mutex> finished_lock(mutex_);  // no wake-up lost between test and wait
        finished_.notify_one();
      }
    }
  }

  const pid_t pid_;
  std::mutex busy_;
  std::mutex mutex_;
  std::condition_variable wake_, finished_;
  int num_threads_ = 0;
  const std::function<void()>* task_ = nullptr;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> running_{0};
  int wanted_ = 0;
};

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
  const std::function<void()> run = [&]() {
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
  ThreadPool& pool = ThreadPool::instance();
  std::unique_lock<std::mutex> busy(pool.busy(), std::try_to_lock);
  if (busy.owns_lock()) {
    pool.start(workers - 1, run);
    run();
    pool.wait();
  } else {
    std::vector<std::thread> threads;
    threads.reserve(workers - 1);
    for (int i = 0; i < workers - 1; ++i) threads.emplace_back(run);
    run();
    for (auto& t : threads) t.join();
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace gsl::cpu
