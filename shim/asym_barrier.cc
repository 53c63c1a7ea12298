#include "shim/asym_barrier.h"

#include <linux/membarrier.h>
#include <sys/syscall.h>

#include "core/sys.h"

namespace upcache::shim {

namespace {

std::atomic<bool> g_available{false};

bool register_membarrier() {
  long cmds = sys::raw(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
  if (cmds < 0 || !(cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED)) return false;
  return sys::raw(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
}

}  // namespace

void asym_init() { g_available.store(register_membarrier(), std::memory_order_release); }

void asym_after_fork_child() {
  // Registration belongs to the address space; make sure the child's is.
  if (g_available.load(std::memory_order_relaxed))
    g_available.store(register_membarrier(), std::memory_order_release);
}

bool asym_available() { return g_available.load(std::memory_order_acquire); }

bool asym_heavy() { return sys::raw(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0; }

}  // namespace upcache::shim
