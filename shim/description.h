// Open file descriptions, mirrored in user space.
//
// A Description is the shim's copy of the kernel's struct file for a file the
// cache serves: the cached file (FileRef), the file offset, the status flags,
// the readahead state and a position lock. dup'd descriptors share one
// Description (FdTable holds one reference per descriptor).
//
// Memory: descriptions live in slabs mapped with mmap and never unmapped.
// A released description goes back to a free list and is reused; its memory
// stays a Description forever (type-stable memory). This is what makes the
// fd table's lock-free lookup safe: a reader that loaded a pointer just before
// a concurrent close may still touch `refs` (it only increments a non-zero
// count, then re-checks the table), never freed memory. Nothing here uses the
// host's malloc. (Not a mimalloc heap from mi_heap_new: such a heap belongs to
// the thread that created it, may not be allocated from by other threads,
// and is deleted when that thread exits, possibly before the last close.)
//
// The position lock is the kernel's f_pos_lock: read(), lseek() and the
// offset-using pass-through calls of one description are serialized, so
// concurrent read() calls return every byte once. It is a futex mutex,
// biased towards the one thread that uses the description (biased_lock.h: no
// atomic read-modify-write while one thread has it to itself), that never
// blocks the thread that holds it: a signal handler that interrupts the
// shim on the same thread never reaches it, because every wrapper first checks
// the thread's "in shim" depth (shim/thread_state.h) and a nested call takes the
// pass-through path.
#pragma once

#include <atomic>
#include <cstdint>

#include "core/hit_cursor.h"
#include "core/readahead.h"
#include "shim/biased_lock.h"
#include "shim/futex_lock.h"

namespace upcache {
struct FileRef;
}

namespace upcache::shim {

struct Description {
  // Descriptors in the table plus operations in flight. 0: free.
  std::atomic<uint32_t> refs{0};

  // The kernel's offset of this description is behind `offset` (a cached
  // read advanced only ours); it must be written with lseek before the kernel
  // or another process can see it. See shim/kernel_offset.h.
  std::atomic<bool> kernel_stale{false};
  // Another process may share this description (after fork, posix_spawn,
  // system, popen): the kernel's offset is the offset; see kernel_offset.h.
  std::atomic<bool> shared{false};

  FileRef* file = nullptr;          // one reference, released with the description
  std::atomic<uint64_t> offset{0};  // the file offset (private mode)
  std::atomic<int> status_flags{0}; // O_APPEND, O_NONBLOCK, O_DIRECT... (open / F_SETFL)
  // The largest offset the kernel is known to accept for lseek on this file
  // (s_maxbytes is at least 4 GiB - 1 on every filesystem; above, ask the kernel).
  std::atomic<uint64_t> seek_ok_max{0xffffffffull};

  BiasedLock pos_lock;  // f_pos_lock: read/lseek/offset-using pass-through
  FutexLock ra_lock;   // serializes `ra` (pread takes only this one, with try_lock)
  // On a cache line of its own: every hit stores ra.prev_pos, and threads
  // preading one description must not make each other miss on the fields
  // above, which every call reads.
  alignas(64) RaState ra;
  HitCursor cursor;    // read()'s hit cursor (core/hit_cursor.h), under pos_lock
  RaState ra_initial;  // Cache::new_ra_state() at open: the state of a fresh description

  Description* next_free = nullptr;  // free list / deferred release list
  // On the deferred list: hazard_sync() was done after its last reference
  // went (shim/hazard.h), so a scan of the hazard slots is conclusive.
  bool hazard_synced = false;

  // Takes a reference if the description is live (refs != 0).
  bool try_ref() {
    uint32_t n = refs.load(std::memory_order_relaxed);
    while (n != 0) {
      if (refs.compare_exchange_weak(n, n + 1, std::memory_order_acquire, std::memory_order_relaxed))
        return true;
    }
    return false;
  }
  void ref() { refs.fetch_add(1, std::memory_order_relaxed); }
  // Drops a reference; the last one releases the FileRef and frees the
  // description (deferred when called from a nested, signal-handler context,
  // or while a reader holds it under its hazard slot: shim/hazard.h).
  void unref();
};

// Allocates a description with one reference, or null when memory is out.
Description* description_new(FileRef* file, const RaState& ra, int status_flags);

// Frees released descriptions whose release had to be deferred (a nested
// call could not take the pool lock or call into core, or a reader held the
// description under its hazard slot). Called by wrappers at top level.
void description_drain_deferred();
// Releases deferred (a LIFO list): read by HazardRef's inline exit to skip
// the drain's call when there is nothing to drain.
extern std::atomic<Description*> g_deferred_releases;

// fork: the pool lock is held across fork so the child's free list is whole.
void description_pool_lock();
void description_pool_unlock();
void description_pool_reset_child();

}  // namespace upcache::shim
