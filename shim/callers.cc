#include "shim/callers.h"

#include <dlfcn.h>
#include <libunwind.h>
#include <xxhash.h>

#include <atomic>

#include "core/stats.h"
#include "core/stats_sink.h"
#include "shim/runtime.h"

namespace upcache::shim {

namespace {

// The base address of libupcache.so: frames inside it are not call sites.
const void* self_base() {
  static const void* base = [] {
    Dl_info info{};
    return dladdr(reinterpret_cast<const void*>(&self_base), &info) ? info.dli_fbase : nullptr;
  }();
  return base;
}

bool in_self(void* pc) {
  Dl_info info{};
  return dladdr(pc, &info) && info.dli_fbase == self_base();
}

constexpr uint64_t kClaiming = 1;  // a slot being filled; readers skip it

}  // namespace

void callers_sample(int64_t result, unsigned every) {
  stats::Segment* seg = g_stats->segment();
  static thread_local unsigned count __attribute__((tls_model("initial-exec"))) = 0;
  if (++count % every != 0) return;
  uint64_t misses = StatsSink::last_read_misses();

  void* frames[stats::kCallerDepth + 8];
  int n = unw_backtrace(frames, static_cast<int>(sizeof frames / sizeof frames[0]));
  uint64_t pcs[stats::kCallerDepth] = {};
  int depth = 0;
  for (int i = 0; i < n && depth < stats::kCallerDepth; ++i) {
    if (in_self(frames[i])) continue;
    pcs[depth++] = reinterpret_cast<uint64_t>(frames[i]);
  }
  if (depth == 0) return;
  uint64_t hash = XXH3_64bits(pcs, sizeof pcs);
  if (hash <= kClaiming) hash += 2;

  for (int probe = 0; probe < stats::kCallers; ++probe) {
    stats::CallerSlot& slot = seg->callers[(hash + probe) % stats::kCallers];
    uint64_t cur = slot.hash.load(std::memory_order_acquire);
    if (cur == 0) {
      if (!slot.hash.compare_exchange_strong(cur, kClaiming, std::memory_order_acq_rel)) {
        if (cur != hash) continue;
      } else {
        for (int i = 0; i < stats::kCallerDepth; ++i) __atomic_store_n(&slot.pcs[i], pcs[i], __ATOMIC_RELAXED);
        slot.hash.store(hash, std::memory_order_release);
        cur = hash;
      }
    }
    if (cur != hash) continue;
    slot.samples.fetch_add(1, std::memory_order_relaxed);
    if (result > 0) slot.bytes.fetch_add(static_cast<uint64_t>(result), std::memory_order_relaxed);
    slot.misses.fetch_add(misses, std::memory_order_relaxed);
    return;
  }
  // Table full: this stack is not recorded (the tool shows the others).
}

}  // namespace upcache::shim
