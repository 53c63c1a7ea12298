// Owner words: which process holds something in the shared arena (a spin
// lock, a LOCKED frame), told apart from a later process given the same pid.
//
// A word is the pid in the low half and the low 32 bits of the process's
// start time (clock ticks after boot, /proc/PID/stat field 22) in the high
// half; never 0 for a real process, so 0 means "nobody". A pid alone is not
// enough: pids wrap (pid_max is 32768 on many systems) and a holder killed
// by SIGKILL, once reaped, may have its pid given to an unrelated process
// before anyone looks, which would then look like a live holder forever.
//
// Thread safety: everything here may be called from any thread, and
// owner_self() from any process of a forked family (it is refreshed after
// fork through owner_fork_generation()). Not async-signal-safe the first
// time in a process (it reads /proc); afterwards a load.
#pragma once

#include <atomic>
#include <cstdint>

#include "core/sys.h"

namespace upcache {

inline uint64_t owner_word(int pid, uint64_t start_time) {
  return (start_time << 32) | static_cast<uint32_t>(pid);
}
inline int owner_pid(uint64_t word) { return static_cast<int>(word & 0xffffffffu); }
inline uint32_t owner_start(uint64_t word) { return static_cast<uint32_t>(word >> 32); }

// Is the owner gone: exited, a zombie (it can never run again), or its pid
// now another process's? Where /proc cannot tell the start time, only
// existence is checked.
inline bool owner_gone(uint64_t word) {
  sys::ProcStat st = sys::proc_stat(owner_pid(word));
  if (!st.can_run()) return true;
  return st.start_time != 0 && static_cast<uint32_t>(st.start_time) != owner_start(word);
}

// Bumped in the child after fork (Cache::after_fork_child), so that words
// cached per process and per thread are computed again.
inline std::atomic<uint32_t>& owner_fork_generation() {
  static std::atomic<uint32_t> generation{1};
  return generation;
}

// This process's owner word. Computed once per process (and again after
// fork), then cached per thread; a thread-local survives fork in the forking
// thread, hence the generation checks. Two threads computing it at once
// store the same value.
inline uint64_t owner_self() {
  static thread_local uint64_t word __attribute__((tls_model("initial-exec"))) = 0;
  static thread_local uint32_t seen __attribute__((tls_model("initial-exec"))) = 0;
  static std::atomic<uint64_t> process_word{0};
  static std::atomic<uint32_t> process_seen{0};
  uint32_t generation = owner_fork_generation().load(std::memory_order_acquire);
  if (word != 0 && seen == generation) return word;
  if (process_seen.load(std::memory_order_acquire) == generation) {
    word = process_word.load(std::memory_order_relaxed);
  } else {
    int pid = sys::getpid();
    word = owner_word(pid, sys::proc_stat(pid).start_time);
    process_word.store(word, std::memory_order_relaxed);
    process_seen.store(generation, std::memory_order_release);
  }
  seen = generation;
  return word;
}

}  // namespace upcache
