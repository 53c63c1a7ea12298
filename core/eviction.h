// Eviction: which frame to give to a new page.
//
// A policy hands out frames LOCKED for the caller (frame.h): pins == 0 and
// no I/O in flight at the moment it took them, so a pinned or in-flight frame
// is never chosen. The caller unhashes the old page (if any) and reuses the
// frame. Accesses are signalled through the REFERENCED bit of the state
// word, which the hit path sets in the same atomic operation as its pin, so
// the hit path never calls into the policy.
//
// Policy state lives in the arena (shared across fork). Thread-safe.
#pragma once

#include <cstdint>

#include "core/arena.h"

namespace upcache {

class EvictionPolicy {
 public:
  static constexpr int64_t kNone = -1;
  virtual ~EvictionPolicy() = default;
  // A frame LOCKED for the caller, whose lock_owner word (frame.h) is
  // `owner`, or kNone if every frame is pinned or in flight right now (after
  // a full sweep).
  virtual int64_t take_victim(uint64_t owner) = 0;
  virtual const char* name() const = 0;
};

// CLOCK (second chance): the hand sweeps the frames; a free frame is taken at
// once, a REFERENCED frame loses its bit and is passed over once, any other
// unpinned idle frame is taken. A frame whose lock_owner is set (another
// claim in progress, or left by a process killed in the middle of one) is
// passed over.
class ClockPolicy final : public EvictionPolicy {
 public:
  explicit ClockPolicy(Arena& arena) : arena_(arena) {}
  int64_t take_victim(uint64_t owner) override;
  const char* name() const override { return "clock"; }

 private:
  Arena& arena_;
};

}  // namespace upcache
