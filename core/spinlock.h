// A tiny lock for the arena's short critical sections (index buckets, the
// inode table), process-shared and robust against the death of its holder.
//
// The lock word holds the holder's owner word (core/owner.h: pid and start
// time; 0: free). A waiter that spins long checks whether the holder is
// gone and, if so, takes the lock over: every critical section under these
// locks leaves the structure consistent after each single store, so a holder
// killed midway (SIGKILL) leaves nothing half-done that matters. The start
// time in the word keeps a reaped holder whose pid was given to another
// process from looking alive forever. Never held across a system call or I/O.
// Async-signal-safety: do not take it in a signal handler that may have
// interrupted a holder on the same thread (the shim guarantees this).
#pragma once

#include <sched.h>

#include <atomic>
#include <cstdint>

#include "core/owner.h"

namespace upcache {

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#else
  __asm__ volatile("" ::: "memory");
#endif
}

class SpinLock {
 public:
  void lock(std::atomic<uint64_t>& word) const {
    uint64_t me = owner_self();
    for (unsigned spins = 0;; ++spins) {
      uint64_t cur = 0;
      if (word.compare_exchange_weak(cur, me, std::memory_order_acquire, std::memory_order_relaxed))
        return;
      if (spins < 64) {
        cpu_relax();
      } else if ((spins & 1023) == 1023 && cur != 0 && owner_gone(cur)) {
        // The holder died inside the critical section: take over.
        word.compare_exchange_strong(cur, 0, std::memory_order_relaxed);
      } else {
        sched_yield();
      }
    }
  }
  void unlock(std::atomic<uint64_t>& word) const { word.store(0, std::memory_order_release); }
};

struct SpinGuard {
  explicit SpinGuard(std::atomic<uint64_t>& w) : word(w) { SpinLock().lock(word); }
  ~SpinGuard() { SpinLock().unlock(word); }
  std::atomic<uint64_t>& word;
};

}  // namespace upcache
