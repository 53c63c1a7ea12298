#include "core/stats_sink.h"

#include <cstring>

#include "core/sys.h"

namespace upcache {

unsigned StatsSink::stripe_index() {
  // initial-exec TLS: no allocation, no lazy TLS setup on first use from a
  // signal handler.
  static thread_local unsigned index __attribute__((tls_model("initial-exec"))) = ~0u;
  if (__builtin_expect(index == ~0u, 0)) {
    static std::atomic<unsigned> next{0};
    index = next.fetch_add(1, std::memory_order_relaxed) % stats::kStripes;
  }
  return index;
}

int StatsSink::claim_file(uint64_t file_id, const char* path) {
  // Open addressing on file_id; slots are claimed once and never freed, so a
  // reader sees each file at most once.
  for (int probe = 0; probe < stats::kFiles; ++probe) {
    int slot = static_cast<int>((file_id * 0x9E3779B97F4A7C15ull >> 56) + probe) % stats::kFiles;
    stats::FileSlot& f = seg_->files[slot];
    uint64_t cur = f.file_id.load(std::memory_order_acquire);
    if (cur == file_id) return slot;
    if (cur == 0) {
      uint64_t expected = 0;
      // Claim with a sentinel, fill the path, then publish the id.
      if (f.file_id.compare_exchange_strong(expected, ~0ull, std::memory_order_acq_rel)) {
        size_t n = path ? strnlen(path, stats::kPathMax - 1) : 0;
        if (n) memcpy(f.path, path, n);
        f.path[n] = '\0';
        f.file_id.store(file_id, std::memory_order_release);
        return slot;
      }
      if (expected == file_id) return slot;
    }
  }
  return -1;
}

uint64_t StatsSink::total(const stats::Segment& seg, stats::Counter c) {
  uint64_t sum = 0;
  for (const auto& s : seg.stripes) sum += s.counters[c].load(std::memory_order_relaxed);
  return sum;
}

}  // namespace upcache
