// Asymmetric memory barriers: a fast side that costs only a compiler
// barrier and a slow side that makes every running thread of the process
// execute a full barrier (membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)).
//
// For protocols where one side runs on every read (hazard.h, biased_lock.h)
// and the other rarely (a close, a second thread on a description): a fast
// side's store followed by its load is ordered, as seen by a slow side that
// called asym_heavy() between its own store and load, as if both had used a
// full fence.
//
// Unavailable (old kernel, seccomp): asym_available() is false and callers
// use ordinary atomics. Thread-safe; asym_heavy is async-signal-safe.
#pragma once

#include <atomic>

namespace upcache::shim {

// At start-up, and in a fork child: registers the process.
void asym_init();
void asym_after_fork_child();

extern std::atomic<bool> g_asym_available;  // set by asym_init
inline bool asym_available() { return g_asym_available.load(std::memory_order_acquire); }

// The fast side: orders the compiler only; asym_heavy() orders the CPU.
inline void asym_light() { std::atomic_signal_fence(std::memory_order_seq_cst); }

// The slow side. False if it failed (then nothing is ordered).
bool asym_heavy();

}  // namespace upcache::shim
