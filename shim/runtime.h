// Process-wide state of the shim: the cache, the statistics sink, whether the
// shim is ready, and the thread's "in shim" depth.
//
// Life cycle: the library constructor (runtime.cc) reads the configuration,
// creates the cache and sets `ready`. Until then, after a failure, or with
// UPCACHE_DISABLE=1, every wrapper passes straight through.
//
// The depth: every wrapper that does shim work holds a Scope. A call that
// arrives while the thread is already inside the shim (a signal handler that
// interrupted a wrapper, or a library the shim called that calls back into a
// wrapper, e.g. dlsym or the allocator opening a file) sees depth > 0 and is
// served by the kernel: it never waits for a lock the same thread holds.
#pragma once

#include <atomic>
#include <cerrno>

#include "core/stats.h"

namespace upcache {
class Cache;
class StatsSink;
}  // namespace upcache

namespace upcache::shim {

extern std::atomic<bool> g_ready;
extern Cache* g_cache;
extern StatsSink* g_stats;

extern __thread int t_depth __attribute__((tls_model("initial-exec")));

struct Scope {
  Scope() { ++t_depth; }
  ~Scope() { --t_depth; }
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;
};

// The shim may do its work for this call (ready, and not nested).
inline bool active() { return g_ready.load(std::memory_order_acquire) && t_depth == 0; }
// The shim is ready but this call is nested inside the shim on this thread.
inline bool nested() { return t_depth != 0; }

// Statistics segment hooks (core/stats_segment.h): around exec, at _exit.
void runtime_before_exec();
void runtime_exec_failed();
void runtime_exit();

// Bumps kPassthroughCalls (a call on a descriptor the shim looked at went to the kernel).
void count_passthrough();

// Saves errno and puts it back at scope exit unless told otherwise: wrappers
// do extra system calls around the real one and must leave errno exactly as
// the real call did.
class ErrnoKeeper {
 public:
  ErrnoKeeper() : saved_(errno) {}
  ~ErrnoKeeper() { errno = saved_; }
  void set(int e) { saved_ = e; }
  void keep_current() { saved_ = errno; }
  ErrnoKeeper(const ErrnoKeeper&) = delete;
  ErrnoKeeper& operator=(const ErrnoKeeper&) = delete;

 private:
  int saved_;
};

}  // namespace upcache::shim
