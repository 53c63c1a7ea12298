// LeaseWatch: the thread that hears when another process breaks a lease.
//
// Why leases (upcache(7), Coherence): a read lease (fcntl F_SETLEASE
// F_RDLCK) makes the kernel hold back every other open of the file for
// writing, and every truncate, until the holder has given the lease up. The
// cache serves a file only while it holds one (Backend::take_lease), and
// before giving it up drops the file's pages: by the time a writer's open
// returns, no stale page is left to serve.
//
// How the break is heard: the lease's descriptor names this watch's thread
// (F_SETOWN_EX, F_OWNER_TID) and a real-time signal (F_SETSIG). The thread
// keeps that signal blocked and takes it with sigtimedwait, so no handler is
// installed and none of the program's threads ever sees it. If the program
// itself sends that signal number (a foreign one arrives here), the watch
// moves to another free real-time signal (on_signal_moved re-arms every
// lease) and hands the foreign one back to the process.
//
// Callbacks run on the watch's thread: on_break(ctx, fd) with the lease
// descriptor the kernel named (si_fd), or -1 when every lease must be looked
// at (the signal moved, or SIGIO came instead: the kernel's fallback when a
// real-time signal queue overflows).
//
// Threads: tid() and signal() are thread-safe. Fork: the thread does not
// exist in a child; after_fork_child() forgets it and tid() starts another.
// Not async-signal-safe. Allocates nothing after the thread is started.
#pragma once

#include <pthread.h>

#include <atomic>
#include <cstdint>

namespace upcache {

class LeaseWatch {
 public:
  struct Callbacks {
    void (*on_break)(void* ctx, int fd);
    void (*on_signal_moved)(void* ctx, int signal);
    void* ctx;
  };

  // `signal`: UPCACHE_LEASE_SIGNAL, 0 for the default (SIGRTMAX - 3); a
  // number outside SIGRTMIN..SIGRTMAX is refused at the first tid() and the
  // default is used.
  LeaseWatch(unsigned signal, Callbacks callbacks);
  ~LeaseWatch();  // stops and joins the thread
  LeaseWatch(const LeaseWatch&) = delete;
  LeaseWatch& operator=(const LeaseWatch&) = delete;

  // The thread's id (what F_SETOWN_EX names), starting it on first use;
  // -errno if no thread can be had (then no file can be leased).
  int tid();
  // The signal leases must name (F_SETSIG) now.
  int signal() const { return signal_.load(std::memory_order_acquire); }

  void after_fork_child();

 private:
  static void* main(void* self);
  void run();
  bool program_uses(int sig) const;
  int pick_free_signal(int avoid) const;

  Callbacks callbacks_;
  std::atomic<int> signal_{0};
  std::atomic<int> tid_{0};
  std::atomic<bool> stop_{false};
  pthread_t thread_{};
  bool started_ = false;
  pthread_mutex_t lock_ = PTHREAD_MUTEX_INITIALIZER;
};

}  // namespace upcache
