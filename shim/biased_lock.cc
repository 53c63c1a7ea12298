#include "shim/biased_lock.h"

#include <linux/futex.h>
#include <sched.h>
#include <sys/syscall.h>
#include <time.h>

#include "core/sys.h"

namespace upcache::shim {

void BiasedLock::lock_slow() {
  uintptr_t me = self();
  uintptr_t o = owner_.load(std::memory_order_relaxed);
  if (o == 0 && asym_available() && owner_.compare_exchange_strong(o, me, std::memory_order_relaxed)) {
    if (enter_biased()) return;
    o = me;
  }
  if (o != me && o != 0) revoke(true);
  mutex_.lock();
}

bool BiasedLock::try_lock() {
  uintptr_t me = self();
  uintptr_t o = owner_.load(std::memory_order_relaxed);
  if (o == me) {
    if (busy_.load(std::memory_order_relaxed) != 0) return false;  // held by code this call interrupted
    if (enter_biased()) return true;
    return mutex_.try_lock();
  }
  if (o == 0 && asym_available() && owner_.compare_exchange_strong(o, me, std::memory_order_relaxed)) {
    if (enter_biased()) return true;
    return mutex_.try_lock();
  }
  if (o != 0 && !revoke(false)) return false;
  return mutex_.try_lock();
}

bool BiasedLock::revoke(bool wait) {
  if (revoked_.load(std::memory_order_acquire) == kRevoked) return true;
  revoked_.store(kRevoking, std::memory_order_relaxed);
  // Every revoker makes its own barrier: a second one must not trust busy
  // before the owner is sure to see the revocation. membarrier does not fail
  // once registered; should it, yield and try again.
  for (int i = 0; !asym_heavy() && i < 1000; ++i) sched_yield();
  while (busy_.load(std::memory_order_acquire) != 0) {
    if (!wait) return false;
    // The owner wakes us when it leaves (unlock sees the revocation); the
    // timeout covers a wake that raced our sleep.
    struct timespec ts = {0, 1000 * 1000};
    sys::raw(SYS_futex, reinterpret_cast<long>(&busy_), FUTEX_WAIT_PRIVATE, 1, reinterpret_cast<long>(&ts));
  }
  revoked_.store(kRevoked, std::memory_order_release);
  return true;
}

void BiasedLock::wake_revoker() {
  sys::raw(SYS_futex, reinterpret_cast<long>(&busy_), FUTEX_WAKE_PRIVATE, 0x7fffffff);
}

}  // namespace upcache::shim
