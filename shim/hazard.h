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

#include "shim/description.h"
#include "shim/fd_table.h"

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
class HazardRef {
 public:
  explicit HazardRef(int fd);
  ~HazardRef();
  HazardRef(const HazardRef&) = delete;
  HazardRef& operator=(const HazardRef&) = delete;
  Description* get() const { return d_; }
  explicit operator bool() const { return d_ != nullptr; }
  Description* operator->() const { return d_; }
  // The descriptor was opened through a wrapper (cached or not), as
  // DescRef::looked_at.
  bool looked_at() const { return seen_ == FdTable::kPassthrough || d_ != nullptr; }

 private:
  Description* d_ = nullptr;
  uintptr_t seen_ = 0;
  bool counted_ = false;  // a reference, not the hazard slot
};

}  // namespace upcache::shim
