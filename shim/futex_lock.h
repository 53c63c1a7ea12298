// A futex mutex (Drepper's three-state mutex), process-private. Never
// blocks a thread that holds it when nested calls follow the shim's rule
// (description.h).
#pragma once

#include <atomic>
#include <cstdint>

namespace upcache::shim {

class FutexLock {
 public:
  bool try_lock() {
    uint32_t expected = 0;
    return state_.compare_exchange_strong(expected, 1, std::memory_order_acquire,
                                          std::memory_order_relaxed);
  }
  void lock() {
    if (__builtin_expect(try_lock(), 1)) return;
    lock_slow();
  }
  void unlock() {
    if (__builtin_expect(state_.exchange(0, std::memory_order_release) != 1, 0)) wake();
  }
  // In a child after fork: the threads that held the lock do not exist there.
  void reset() { state_.store(0, std::memory_order_relaxed); }

 private:
  void lock_slow();
  void wake();
  std::atomic<uint32_t> state_{0};  // 0 free, 1 locked, 2 locked with waiters
};

}  // namespace upcache::shim
