// Scratch memory that a CPU pass keeps from call to call.
//
// Allocated and freed within each call, a pass's large buffers often went back to the OS
// (glibc unmaps large blocks and trims the top of its heap), and their pages faulted back in
// on the next call (docs/design.md, "Page faults"). A
// buffer is kept per calling thread (thread_local at its use), so concurrent callers never
// share one; it holds the most any call on that thread needed until the thread exits.
#pragma once

#include <algorithm>
#include <cstddef>
#include <memory>
#include <type_traits>

namespace gsl::cpu {

template <class T>
class ScratchBuffer {
  static_assert(std::is_trivially_default_constructible_v<T>, "scratch is handed out uninitialised");

 public:
  // At least n values, uninitialised; earlier contents are not kept.
  T* get(size_t n) {
    if (n > capacity_) {
      // Headroom, so that sizes creeping up from call to call do not reallocate each time.
      capacity_ = n + n / 8;
      data_.reset(new T[capacity_]);
    }
    return data_.get();
  }
  // Sets every value held (tests poison the scratch to show that a pass writes all it reads).
  void fill(T value) { std::fill_n(data_.get(), capacity_, value); }

 private:
  std::unique_ptr<T[]> data_;
  size_t capacity_ = 0;
};

}  // namespace gsl::cpu
