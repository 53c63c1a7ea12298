// Pin journals: which frames each thread holds pinned, kept in the arena, so
// that the pins of a process killed in the middle of a read (SIGKILL in a
// forked worker) are given back by the others instead of keeping those
// frames out of use for good.
//
// Hits take no pin; the slow path of a read pins one frame at a time (two or
// three for a moment: a window's page pinned for the reader, a reaper's own
// pin), so a journal has a few entries. A thread takes a journal at its first
// pin (owner 0 -> its process's owner word, core/owner.h) and gives it back
// when it exits; a dead process's journals are given back by reap().
//
// Invariant: a pin is noted after it is taken and forgotten before it is
// dropped. A process killed between the two leaks that one pin (as it would
// without journals) but a pin is never given back twice.
// No journal free (more threads pinning at once than kJournals), or a
// journal full: the pin goes unnoted, as before journals.
//
// Thread safety: note/forget touch only the calling thread's journal; reap()
// may run in any thread of any process at once (one CAS decides who reaps a
// journal). Not async-signal-safe (the first note of a thread registers a
// thread-exit hook).
#pragma once

#include <atomic>
#include <cstdint>

namespace upcache {

struct alignas(64) PinJournal {
  static constexpr int kEntries = 6;
  std::atomic<uint64_t> owner;            // owner word, 0: free
  std::atomic<uint32_t> frame[kEntries];  // pinned frame + 1, 0: empty
};
static_assert(sizeof(PinJournal) == 64, "one cache line per journal");

class PinJournals {
 public:
  static constexpr uint32_t kJournals = 512;

  // `journals`: kJournals zeroed journals in the arena. One PinJournals
  // per process at a time (the cache's).
  explicit PinJournals(PinJournal* journals);
  ~PinJournals();
  PinJournals(const PinJournals&) = delete;
  PinJournals& operator=(const PinJournals&) = delete;

  // The calling thread pinned / is about to unpin `frame`.
  void note(uint32_t frame);
  void forget(uint32_t frame);

  // Gives back every journal whose owner `gone(owner)` says is gone: calls
  // unpin(frame) for each pin it noted, then frees it. `self` is the calling
  // process's owner word (its journals are never reaped). Returns the pins
  // given back.
  template <class Gone, class Unpin>
  uint64_t reap(uint64_t self, Gone&& gone, Unpin&& unpin) {
    uint64_t given = 0;
    for (uint32_t k = 0; k < kJournals; ++k) {
      PinJournal& j = journals_[k];
      uint64_t owner = j.owner.load(std::memory_order_acquire);
      if (owner == 0 || owner == self || !gone(owner)) continue;
      // One reaper per journal: the owner word moves from the dead to us.
      if (!j.owner.compare_exchange_strong(owner, self, std::memory_order_acq_rel)) continue;
      for (auto& e : j.frame) {
        uint32_t f = e.exchange(0, std::memory_order_acq_rel);
        if (f != 0) {
          unpin(f - 1);
          ++given;
        }
      }
      j.owner.store(0, std::memory_order_release);
    }
    return given;
  }

 private:
  PinJournal* mine();

  PinJournal* journals_;
};

}  // namespace upcache
