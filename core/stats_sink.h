// StatsSink: how core/ bumps the counters of a statistics segment.
//
// The sink always has a segment: when statistics are off it points at a
// private one in process memory, so the hit path never tests for null.
// Each thread writes to its own stripe (chosen once per thread), with relaxed
// atomics: no lock, no allocation, async-signal-safe.
#pragma once

#include <atomic>
#include <cstdint>

#include "core/stats.h"

namespace upcache {

class StatsSink {
 public:
  explicit StatsSink(stats::Segment* segment) : seg_(segment) {}

  stats::Segment* segment() const { return seg_; }

  void add(stats::Counter c, uint64_t n = 1) {
    stripe().counters[c].fetch_add(n, std::memory_order_relaxed);
  }
  void latency(stats::Histogram h, uint64_t ns) {
    int bucket = ns == 0 ? 0 : 63 - __builtin_clzll(ns);
    if (bucket >= stats::kBuckets) bucket = stats::kBuckets - 1;
    stripe().latency[h][bucket].fetch_add(1, std::memory_order_relaxed);
  }
  void cached_bytes(int64_t delta) {
    seg_->cached_bytes.fetch_add(static_cast<uint64_t>(delta), std::memory_order_relaxed);
  }

  // Claims (or finds) the per-file slot of `file_id`; -1 when the table is full.
  int claim_file(uint64_t file_id, const char* path);
  void file_add(int slot, stats::FileCounter c, uint64_t n) {
    if (slot < 0) return;
    seg_->files[slot].stripes[stripe_index() % stats::kFileStripes].counters[c].fetch_add(
        n, std::memory_order_relaxed);
  }

  // Pages the calling thread's last Cache::read had to read itself (for
  // call-site attribution, which samples reads after the fact).
  static uint64_t& last_read_misses() {
    static thread_local uint64_t misses __attribute__((tls_model("initial-exec"))) = 0;
    return misses;
  }

  // Sum of one counter over all stripes (for tests and tools).
  static uint64_t total(const stats::Segment& seg, stats::Counter c);

 private:
  static unsigned stripe_index();
  stats::Stripe& stripe() { return seg_->stripes[stripe_index()]; }

  stats::Segment* seg_;
};

}  // namespace upcache
