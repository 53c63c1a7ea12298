// A tiny lock for the arena's short critical sections (index buckets, the
// inode table), process-shared and robust against the death of its holder.
//
// The lock word holds the holder's pid (0: free). A waiter that spins long
// checks whether the holder is still alive and, if not, takes the lock over:
// every critical section under these locks leaves the structure consistent
// after each single store, so a holder killed midway (SIGKILL) leaves nothing
// half-done that matters. Never held across a system call or I/O.
// Async-signal-safety: do not take it in a signal handler that may have
// interrupted a holder on the same thread (the shim guarantees this).
#pragma once

#include <sched.h>

#include <atomic>
#include <cstdint>

#include "core/sys.h"

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
  void lock(std::atomic<uint32_t>& word) const {
    uint32_t me = self();
    for (unsigned spins = 0;; ++spins) {
      uint32_t cur = 0;
      if (word.compare_exchange_weak(cur, me, std::memory_order_acquire, std::memory_order_relaxed))
        return;
      if (spins < 64) {
        cpu_relax();
      } else if ((spins & 1023) == 1023 && cur != 0 && !sys::pid_alive(static_cast<int>(cur))) {
        // The holder died inside the critical section: take over.
        word.compare_exchange_strong(cur, 0, std::memory_order_relaxed);
      } else {
        sched_yield();
      }
    }
  }
  void unlock(std::atomic<uint32_t>& word) const { word.store(0, std::memory_order_release); }

  static uint32_t self() {
    // Cached per thread, refreshed after fork (a thread-local survives fork
    // in the forking thread, so compare with the real pid when it matters).
    static thread_local uint32_t pid __attribute__((tls_model("initial-exec"))) = 0;
    static thread_local uint32_t generation __attribute__((tls_model("initial-exec"))) = 0;
    uint32_t gen = fork_generation().load(std::memory_order_relaxed);
    if (pid == 0 || generation != gen) {
      pid = static_cast<uint32_t>(sys::getpid());
      generation = gen;
    }
    return pid;
  }
  // Bumped by Cache::after_fork_child so cached pids are refreshed.
  static std::atomic<uint32_t>& fork_generation() {
    static std::atomic<uint32_t> g{1};
    return g;
  }
};

struct SpinGuard {
  explicit SpinGuard(std::atomic<uint32_t>& w) : word(w) { SpinLock().lock(word); }
  ~SpinGuard() { SpinLock().unlock(word); }
  std::atomic<uint32_t>& word;
};

}  // namespace upcache
