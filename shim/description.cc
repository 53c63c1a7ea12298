#include "shim/description.h"

#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#include <new>

#include "core/cache.h"
#include "core/sys.h"
#include "shim/hazard.h"
#include "shim/runtime.h"

namespace upcache::shim {

std::atomic<Description*> g_deferred_releases{nullptr};

namespace {

// The pool: slabs from mmap, never unmapped; a free list under a spin lock.
// The lock is never taken by a nested call (t_depth > 1), so a signal handler
// cannot deadlock on it; other threads hold it for a few instructions.
constexpr size_t kSlabBytes = 64 << 10;

std::atomic<bool> g_pool_lock{false};
Description* g_free = nullptr;

void pool_lock() {
  while (g_pool_lock.exchange(true, std::memory_order_acquire)) {
    while (g_pool_lock.load(std::memory_order_relaxed)) sys::raw(SYS_sched_yield);
  }
}
void pool_unlock() { g_pool_lock.store(false, std::memory_order_release); }

// Called with the pool lock held.
bool grow() {
  long p = sys::raw(SYS_mmap, 0, kSlabBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                    -1, 0);
  if (p < 0 && p > -4096) return false;
  auto* base = reinterpret_cast<Description*>(p);
  size_t n = kSlabBytes / sizeof(Description);
  for (size_t i = 0; i < n; ++i) {
    auto* d = new (base + i) Description();
    d->next_free = g_free;
    g_free = d;
  }
  return true;
}

void free_now(Description* d) {
  if (d->file != nullptr && g_cache != nullptr) g_cache->release(d->file);
  d->file = nullptr;
  pool_lock();
  d->next_free = g_free;
  g_free = d;
  pool_unlock();
}

}  // namespace

namespace {

void push_deferred(Description* d) {
  Description* head = g_deferred_releases.load(std::memory_order_relaxed);
  do {
    d->next_free = head;
  } while (!g_deferred_releases.compare_exchange_weak(head, d, std::memory_order_release,
                                             std::memory_order_relaxed));
}

}  // namespace

void Description::unref() {
  if (refs.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  if (t_depth > 1) {
    // Nested (a signal handler inside the shim): the pool lock or core may be
    // busy on this very thread. Push on the deferred list (lock-free push;
    // only description_drain_deferred pops, and it takes the whole list).
    hazard_synced = false;
    push_deferred(this);
    return;
  }
  // A reader may still use it under its hazard slot (shim/hazard.h).
  if (!hazard_sync()) return;  // cannot tell: leave it, never free it under a reader
  if (hazard_held(this)) {
    hazard_synced = true;
    push_deferred(this);
    return;
  }
  free_now(this);
}

void description_drain_deferred() {
  if (g_deferred_releases.load(std::memory_order_relaxed) == nullptr || t_depth > 1) return;
  Description* d = g_deferred_releases.exchange(nullptr, std::memory_order_acquire);
  bool synced = false;  // hazard_sync() done in this drain
  while (d != nullptr) {
    Description* next = d->next_free;
    if (!d->hazard_synced && !synced) synced = hazard_sync();
    if (d->hazard_synced || synced) {
      d->hazard_synced = true;
      if (hazard_held(d)) {
        push_deferred(d);  // still read under a hazard: its reader drains it
      } else {
        free_now(d);
      }
    } else {
      push_deferred(d);
    }
    d = next;
  }
}

Description* description_new(FileRef* file, const RaState& ra, int status_flags) {
  description_drain_deferred();
  pool_lock();
  if (g_free == nullptr && !grow()) {
    pool_unlock();
    return nullptr;
  }
  Description* d = g_free;
  g_free = d->next_free;
  pool_unlock();
  d->next_free = nullptr;
  d->file = file;
  d->offset.store(0, std::memory_order_relaxed);
  d->status_flags.store(status_flags, std::memory_order_relaxed);
  d->kernel_stale.store(false, std::memory_order_relaxed);
  d->shared.store(false, std::memory_order_relaxed);
  d->seek_ok_max.store(0xffffffffull, std::memory_order_relaxed);
  d->pos_lock.reset();
  d->ra_lock.reset();
  d->ra = ra;
  // A recycled description's cursor names a frame of the file it had: a
  // frame whose state never changed would serve that file's bytes.
  d->cursor = HitCursor{};
  d->ra_initial = ra;
  // Publish last: a racing try_ref() on recycled memory sees 0 until now.
  d->refs.store(1, std::memory_order_release);
  return d;
}

void description_pool_lock() { pool_lock(); }
void description_pool_unlock() { pool_unlock(); }
void description_pool_reset_child() { g_pool_lock.store(false, std::memory_order_relaxed); }

}  // namespace upcache::shim
