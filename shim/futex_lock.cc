#include "shim/futex_lock.h"

#include <linux/futex.h>
#include <sys/syscall.h>

#include "core/sys.h"

namespace upcache::shim {

void FutexLock::lock_slow() {
  uint32_t c = state_.exchange(2, std::memory_order_acquire);
  while (c != 0) {
    sys::raw(SYS_futex, reinterpret_cast<long>(&state_), FUTEX_WAIT_PRIVATE, 2, 0);
    c = state_.exchange(2, std::memory_order_acquire);
  }
}

void FutexLock::wake() {
  sys::raw(SYS_futex, reinterpret_cast<long>(&state_), FUTEX_WAKE_PRIVATE, 1);
}

}  // namespace upcache::shim
