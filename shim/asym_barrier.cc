#include "shim/asym_barrier.h"

#include <linux/membarrier.h>
#include <sys/syscall.h>

#include "core/sys.h"

namespace upcache::shim {

// Hidden visibility (the shim's default): the hot path reads it without the GOT.
std::atomic<bool> g_asym_available{false};

namespace {

bool register_membarrier() {
  long cmds = sys::raw(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
  if (cmds < 0 || !(cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED)) return false;
  return sys::raw(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
}

}  // namespace

void asym_init() { g_asym_available.store(register_membarrier(), std::memory_order_release); }

void asym_after_fork_child() {
  // Registration belongs to the address space; make sure the child's is.
  if (g_asym_available.load(std::memory_order_relaxed))
    g_asym_available.store(register_membarrier(), std::memory_order_release);
}

bool asym_heavy() { return sys::raw(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0; }

}  // namespace upcache::shim
