// Hazard pointers for open file descriptions: the read path uses a
// description without touching its reference count.
//
// Why: a cached read() or pread() used to take and drop a reference for the
// length of the call: two atomic read-modify-writes on the description's
// cache line, which bounces between cores when threads share a description.
// Instead a thread publishes the description it uses in a slot of its own,
// then checks that the fd table still holds it; whoever drops the last
// reference first makes the publications visible and defers the release
// while any slot names the description.
//
// Protocol:
//   reader    slot = d (plain store); check the fd table still holds d
//             (else retry); use d; slot = null (release store).
//   releaser  (the last unref; the fd table no longer holds d, removed by an
//             atomic exchange) hazard_sync(): membarrier, which makes every
//             running thread of the process pass a full barrier, so the
//             reader needs none of its own; then if hazard_held(d) the
//             release is deferred (description.h) and retried by the next
//             reader to leave its slot, or the next drain.
//   A reader whose publication the releaser missed must have checked the
//   table after it was cleared, and retries; one whose publication it saw
//   keeps d alive. Descriptions are type-stable (description.h), so a stale
//   look at one never touches freed memory.
//
// Limits: one hazard per thread, taken at the top level only (t_depth == 1;
// a nested call, a signal handler's, or a second description in one call
// takes a reference as before). kHazardSlots threads at a time own a slot,
// given back at thread exit; the others take references. Without membarrier
// (old kernels, seccomp) readers publish with a full barrier (one xchg on
// their own slot: still no shared line written).
//
// Async-signal safety: a handler's calls are nested and never touch the
// slot. Fork: the child clears the slots of the threads it does not have.
#pragma once

#include <cstdint>

#include <atomic>

#include "shim/asym_barrier.h"
#include "shim/description.h"
#include "shim/fd_table.h"
#include "shim/runtime.h"

namespace upcache::shim {

constexpr int kHazardSlots = 128;

// At start-up (after asym_init), and in a fork child.
void hazard_init();
void hazard_after_fork_child();

// For the releaser, after the description left the fd table: makes every
// reader's publication visible. False when it could not (membarrier failed
// after working before): the caller must then not free.
bool hazard_sync();

// Does some thread's slot name `d`? (After hazard_sync.)
bool hazard_held(const Description* d);

// A description used for the length of one call, like DescRef (interpose.h):
// protected by the thread's hazard slot when it can be, else by a reference.
namespace hazard_detail {
struct alignas(64) Slot {
  std::atomic<Description*> ptr{nullptr};
  std::atomic<uint32_t> owned{0};
};
struct ThreadHazard {
  Slot* slot = nullptr;
  bool tried = false;  // looked for a slot already (none free, or given back at exit)
  bool busy = false;   // the slot holds this thread's description now
};
extern __thread ThreadHazard t_hazard __attribute__((tls_model("initial-exec")));
}  // namespace hazard_detail

// The common case of the protocol, inline: a thread with its slot, at top
// level (t_depth == 1), with membarrier, and `peeked` (g_fds.peek(fd) as the
// caller just saw it) a description still in the table. True with the slot
// naming it (leave with hazard_leave); false having published nothing.
__attribute__((always_inline)) inline bool hazard_try_enter(int fd, uintptr_t peeked) {
  hazard_detail::ThreadHazard& t = hazard_detail::t_hazard;
  hazard_detail::Slot* s = t.slot;
  if (__builtin_expect(s == nullptr || t.busy || t_depth != 1 || !asym_available(), 0)) return false;
  if (!FdTable::is_description(peeked)) return false;
  s->ptr.store(FdTable::as_description(peeked), std::memory_order_relaxed);
  asym_light();  // the releaser's asym_heavy() orders this store before the check below
  if (__builtin_expect(g_fds.peek(fd) != peeked, 0)) {
    s->ptr.store(nullptr, std::memory_order_release);
    return false;
  }
  t.busy = true;
  return true;
}

// Leaves the slot taken by hazard_try_enter (or HazardRef).
__attribute__((always_inline)) inline void hazard_leave() {
  hazard_detail::t_hazard.slot->ptr.store(nullptr, std::memory_order_release);
  hazard_detail::t_hazard.busy = false;
  // A release deferred because of this very slot can go now.
  if (__builtin_expect(g_deferred_releases.load(std::memory_order_relaxed) != nullptr, 0))
    description_drain_deferred();
}

class HazardRef {
 public:
  // The common case inline (hazard_try_enter); anything else in enter_slow().
  explicit HazardRef(int fd) : HazardRef(fd, g_fds.peek(fd)) {}
  // `peeked`: g_fds.peek(fd) as the caller just saw it.
  __attribute__((always_inline)) HazardRef(int fd, uintptr_t peeked) {
    if (__builtin_expect(hazard_try_enter(fd, peeked), 1)) {
      d_ = FdTable::as_description(peeked);
      seen_ = peeked;
      return;
    }
    enter_slow(fd);
  }
  ~HazardRef() {
    if (d_ == nullptr) return;
    if (counted_) {
      d_->unref();
      return;
    }
    hazard_leave();
  }
  HazardRef(const HazardRef&) = delete;
  HazardRef& operator=(const HazardRef&) = delete;
  Description* get() const { return d_; }
  explicit operator bool() const { return d_ != nullptr; }
  Description* operator->() const { return d_; }
  // The descriptor was opened through a wrapper (cached or not), as
  // DescRef::looked_at.
  bool looked_at() const { return seen_ == FdTable::kPassthrough || d_ != nullptr; }

 private:
  void enter_slow(int fd);

  Description* d_ = nullptr;
  uintptr_t seen_ = 0;
  bool counted_ = false;  // a reference, not the hazard slot
};

}  // namespace upcache::shim
