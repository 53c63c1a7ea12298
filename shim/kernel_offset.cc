#include "shim/kernel_offset.h"

#include <pthread.h>
#include <sys/syscall.h>

#include "core/cache.h"
#include "core/sys.h"
#include "shim/description.h"
#include "shim/asym_barrier.h"
#include "shim/fd_table.h"
#include "shim/mappings.h"
#include "shim/splice_from_cache.h"
#include "shim/hazard.h"
#include "shim/runtime.h"

namespace upcache::shim {

int sync_kernel_offset(int fd, Description* d) {
  if (!d->kernel_stale.load(std::memory_order_relaxed)) return 0;
  int64_t r = sys::lseek(fd, static_cast<int64_t>(d->offset.load(std::memory_order_relaxed)), SEEK_SET);
  if (r < 0) return static_cast<int>(r);
  d->kernel_stale.store(false, std::memory_order_relaxed);
  return 0;
}

void sync_all_offsets(bool mark_shared) {
  Scope scope;
  // t_depth > 1: called from inside the shim on this thread (a signal
  // handler forked): this thread may hold a position lock, so never wait.
  bool may_wait = t_depth == 1;
  g_fds.for_each([&](int fd, Description* d) {
    if (!d->kernel_stale.load(std::memory_order_acquire) &&
        (!mark_shared || d->shared.load(std::memory_order_relaxed))) {
      return;
    }
    bool locked = may_wait ? (d->pos_lock.lock(), true) : d->pos_lock.try_lock();
    if (!d->shared.load(std::memory_order_relaxed)) sync_kernel_offset(fd, d);
    if (mark_shared) d->shared.store(true, std::memory_order_release);
    if (locked) d->pos_lock.unlock();
  });
}

void runtime_after_fork_child();  // runtime.cc

namespace {

void prepare() {
  if (!g_ready.load(std::memory_order_acquire)) return;
  int saved = errno;
  if (g_cache != nullptr) g_cache->before_fork();  // flags only
  sync_all_offsets(true);
  description_pool_lock();
  mappings_fork_prepare();
  errno = saved;
}

void parent() {
  if (!g_ready.load(std::memory_order_acquire)) return;
  mappings_fork_parent();
  description_pool_unlock();
}

void child() {
  if (!g_ready.load(std::memory_order_acquire)) return;
  int saved = errno;
  description_pool_reset_child();
  // Only this thread exists in the child: locks held by other threads of the
  // parent are free here.
  g_fds.for_each([](int, Description* d) {
    d->pos_lock.reset();
    d->ra_lock.reset();
    d->shared.store(true, std::memory_order_relaxed);
  });
  asym_after_fork_child();
  hazard_after_fork_child();
  runtime_after_fork_child();
  mappings_fork_child();  // the child inherited the parent's shared mappings
  splice_after_fork_child();
  errno = saved;
}

}  // namespace

void install_fork_handlers() { pthread_atfork(prepare, parent, child); }

}  // namespace upcache::shim
