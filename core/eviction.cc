#include "core/eviction.h"

#include "core/frame.h"

namespace upcache {

using namespace frame_state;

int64_t ClockPolicy::take_victim(uint64_t owner) {
  const uint64_t n = arena_.frame_count();
  std::atomic<uint64_t>& hand = arena_.header().clock_hand;
  // Two full turns: the first may only clear REFERENCED bits.
  for (uint64_t step = 0; step < 2 * n + 1; ++step) {
    uint64_t i = hand.fetch_add(1, std::memory_order_relaxed) % n;
    FrameDesc& f = arena_.frame(i);
    uint64_t s = f.state.load(std::memory_order_relaxed);
    if (pins(s) != 0 || (s & (kLocked | kIo)) != 0) continue;
    if ((s & kHashed) && (s & kReferenced)) {
      f.state.compare_exchange_weak(s, s & ~kReferenced, std::memory_order_relaxed);
      continue;
    }
    // The owner word first, so that LOCKED never exists without a known
    // owner (frame.h).
    uint64_t none = 0;
    if (!f.lock_owner.compare_exchange_strong(none, owner, std::memory_order_acquire)) continue;
    if (f.state.compare_exchange_strong(s, s | kLocked, std::memory_order_acquire))
      return static_cast<int64_t>(i);
    f.lock_owner.store(0, std::memory_order_release);
  }
  return kNone;
}

}  // namespace upcache
