// Fault injection for the backend (UPCACHE_FAULT, tests only).
//
// The syntax is documented in core/backend.h:
//   eio=N[-M]      reads touching file page(s) N..M (in cache pages) fail with EIO
//   eio_once=N     the first read touching page N fails with EIO, later ones succeed
//   short=N        every read returns at most N bytes (the backend must loop)
//   einval_at=OFF  O_DIRECT reads at or past byte OFF fail with EINVAL (tests fallback)
//   eio_at=OFF     reads whose byte range contains byte OFF fail with EIO (tests the
//                  completion of partial pages: the blocks held read fine, the rest fail)
//   nodirect       open_file refuses O_DIRECT as a filesystem would (EINVAL)
// N, M are page numbers; short, einval_at and eio_at take sizes ("4096", "64K").
// Several eio / eio_once entries may be given (up to kMaxEntries each);
// unknown or malformed entries are ignored.
//
// Faults are applied to the result of each real system call (preadv, or one
// io_uring completion), so the synchronous path and both engines see exactly
// the same faults: the read really happens, then its result is replaced.
// "Touching" means the byte range the call asked for, [offset, offset + len),
// whatever the file size. For einval_at a direct read whose range reaches
// byte OFF or beyond fails.
//
// Thread-safe: parse once, then filter() from any thread (eio_once entries
// fire exactly once, with an atomic exchange). No allocation.
#pragma once

#include <atomic>
#include <cstdint>

namespace upcache {

class FaultSpec {
 public:
  static constexpr int kMaxEntries = 8;

  FaultSpec() = default;
  FaultSpec(const FaultSpec&) = delete;
  FaultSpec& operator=(const FaultSpec&) = delete;

  // Parses `text` (may be null or empty: no faults). `page_size` converts
  // page numbers to bytes.
  void parse(const char* text, uint64_t page_size);

  bool active() const { return active_; }
  bool nodirect() const { return nodirect_; }
  uint64_t short_max() const { return short_max_; }

  // Returns the result the call should report. `res` is what the kernel
  // returned for a read of [offset, offset + len); `direct` tells whether the
  // read used O_DIRECT and `align` is its alignment: short=N on a direct
  // read is rounded down to the alignment (at least one unit), as the
  // kernel's own short direct reads are, so the continuation stays aligned.
  int64_t filter(uint64_t offset, uint64_t len, bool direct, uint64_t align, int64_t res);

 private:
  bool touches(uint64_t first_page, uint64_t last_page, uint64_t offset, uint64_t len) const;

  bool active_ = false;
  bool nodirect_ = false;
  uint64_t page_size_ = 1;
  uint64_t short_max_ = 0;  // 0: off
  bool einval_ = false;
  uint64_t einval_at_ = 0;
  int eio_count_ = 0;
  uint64_t eio_first_[kMaxEntries] = {};
  uint64_t eio_last_[kMaxEntries] = {};
  int at_count_ = 0;
  uint64_t eio_at_[kMaxEntries] = {};
  int once_count_ = 0;
  uint64_t once_page_[kMaxEntries] = {};
  std::atomic<bool> once_fired_[kMaxEntries] = {};
};

// Test hook, process-wide: the next frame this process takes for a new page
// is left LOCKED and the process kills itself with SIGKILL right there, as
// if killed from outside at the worst moment (frame.h: lock_owner). Only
// tests call it (in a forked child); the cache checks it with one relaxed
// load per frame claimed.
void fault_arm_kill_in_claim();
bool fault_kill_in_claim_armed();

// Test hook, process-wide: from now on this process's asynchronous reads
// (readahead, WILLNEED) are never sent to the device, their frames stay in
// flight, as those of a process killed before its reads completed. Only
// tests call it (in a forked child that then dies); one relaxed load per
// asynchronous run.
void fault_arm_lose_async();
bool fault_lose_async_armed();

// Test hook, process-wide: from now on a claim for a page a reader needs
// gives up at once, as one that waited its patience out with every frame
// busy (claim_frame); readahead claims are unaffected. Only tests call it;
// one relaxed load per starved claim. Disarm with `false`.
void fault_arm_starve_claims(bool on = true);
bool fault_starve_claims_armed();

// Test hook, process-wide: the next read that holds a frame pinned to copy
// from it kills the process with SIGKILL right there, as if killed from
// outside in the middle of the copy (pin_journal.h). Only tests call it (in
// a forked child); one relaxed load per page copied on the slow path.
void fault_arm_kill_after_pin();
bool fault_kill_after_pin_armed();

// Test hook, process-wide: the next completion of a partial page kills the
// process with SIGKILL between claiming the completion and taking IO
// (frame.h), as if killed from outside right there.
void fault_arm_kill_in_completion();
bool fault_kill_in_completion_armed();

// Test hook, process-wide: the next end of a read kills the process with
// SIGKILL between naming the ended read in io_owner and clearing IO
// (frame.h), as if killed from outside right there.
void fault_arm_kill_in_finish();
bool fault_kill_in_finish_armed();

}  // namespace upcache
