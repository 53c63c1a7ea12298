// StatsSink: how core/ bumps the counters of a statistics segment.
//
// The sink always has a segment: when statistics are off it points at a
// private one in process memory, so the hit path never tests for null.
//
// Stripes: the first kStripes - 1 threads that count each own a stripe
// (stats::Segment::stripes[i], and file stripe i when i < kFileStripes - 1)
// until they exit, when a thread-exit hook gives it back for the next thread.
// An owned stripe has one writer, so add() is a relaxed load and store: no
// read-modify-write, no lock prefix, and readers summing the stripes still
// see every update whole (the counters are atomics). Threads beyond those
// share the last stripe (and the last file stripe) with fetch_add. The
// ownership is process-wide, the same for every sink: a thread owns stripe i
// of every segment.
//
// Reentrancy: an owned update is not atomic with respect to the same thread.
// A signal handler that interrupts add(c) and itself adds to the same
// counter c of the same stripe could lose one of the two updates. core/ never
// counts from a signal handler (the shim sends nested calls to the kernel);
// the shim counts with add_atomic(), which is exact whatever it interrupts as
// long as the interrupted code was not counting that same counter (the shim's
// counter, kPassthroughCalls, is never counted by core/).
//
// No lock, no allocation (the first count of a thread may register its exit
// hook with pthread_setspecific, which allocates only if the process already
// used more than 32 thread-specific keys).
#pragma once

#include <atomic>
#include <cstdint>

#include "core/stats.h"

namespace upcache {

class StatsSink {
 public:
  explicit StatsSink(stats::Segment* segment) : seg_(segment) {}

  stats::Segment* segment() const { return seg_; }

  __attribute__((always_inline)) void add(stats::Counter c, uint64_t n = 1) {
    const ThreadStripe& t = thread_stripe();
    bump(seg_->stripes[t.index].counters[c], n, t.owned);
  }
  // Always a fetch_add: for counters bumped where a signal handler may run.
  void add_atomic(stats::Counter c, uint64_t n = 1) {
    seg_->stripes[thread_stripe().index].counters[c].fetch_add(n, std::memory_order_relaxed);
  }
  void latency(stats::Histogram h, uint64_t ns) {
    int bucket = ns == 0 ? 0 : 63 - __builtin_clzll(ns);
    if (bucket >= stats::kBuckets) bucket = stats::kBuckets - 1;
    const ThreadStripe& t = thread_stripe();
    bump(seg_->stripes[t.index].latency[h][bucket], 1, t.owned);
  }
  void cached_bytes(int64_t delta) {
    seg_->cached_bytes.fetch_add(static_cast<uint64_t>(delta), std::memory_order_relaxed);
  }

  // One read served by the hit fast path: reads, bytes_read and hits, and
  // the file's bytes and hits, with the thread's stripe looked up once and
  // ownership tested once (the stores are atomics: the compiler would
  // otherwise load the thread's stripe again before each).
  __attribute__((always_inline)) void hit(int slot, uint64_t bytes) {
    const ThreadStripe& t = thread_stripe();
    const unsigned index = t.index;
    if (__builtin_expect(t.owned && slot >= 0 && index < stats::kFileStripes - 1, 1)) {
      auto& c = seg_->stripes[index].counters;
      auto& f = seg_->files[slot].stripes[index].counters;
      bump(c[stats::kReads], 1, true);
      bump(c[stats::kBytesRead], bytes, true);
      bump(c[stats::kHits], 1, true);
      bump(f[stats::kFileBytes], bytes, true);
      bump(f[stats::kFileHits], 1, true);
      return;
    }
    const bool owned = t.owned;
    auto& c = seg_->stripes[index].counters;
    bump(c[stats::kReads], 1, owned);
    bump(c[stats::kBytesRead], bytes, owned);
    bump(c[stats::kHits], 1, owned);
    if (slot < 0) return;
    const bool file_owned = owned && index < stats::kFileStripes - 1;
    auto& f = seg_->files[slot].stripes[file_owned ? index : stats::kFileStripes - 1].counters;
    bump(f[stats::kFileBytes], bytes, file_owned);
    bump(f[stats::kFileHits], 1, file_owned);
  }

  // Claims (or finds) the per-file slot of `file_id`; -1 when the table is full.
  int claim_file(uint64_t file_id, const char* path);
  __attribute__((always_inline)) void file_add(int slot, stats::FileCounter c, uint64_t n) {
    if (slot < 0) return;
    const ThreadStripe& t = thread_stripe();
    bool owned = t.owned && t.index < stats::kFileStripes - 1;
    unsigned stripe = owned ? t.index : stats::kFileStripes - 1;
    bump(seg_->files[slot].stripes[stripe].counters[c], n, owned);
  }

  void file_coherence(int slot, stats::FileCoherence state) {
    if (slot >= 0) seg_->files[slot].coherence.store(state, std::memory_order_relaxed);
  }

  // Pages the calling thread's last Cache::read had to read itself (for
  // call-site attribution, which samples reads after the fact).
  static uint64_t& last_read_misses() {
    static thread_local uint64_t misses __attribute__((tls_model("initial-exec"))) = 0;
    return misses;
  }

  // Sum of one counter over all stripes (for tests and tools).
  static uint64_t total(const stats::Segment& seg, stats::Counter c);

  // The calling thread's stripe, and whether it owns it (tests).
  static unsigned thread_stripe_index() { return thread_stripe().index; }
  static bool thread_owns_stripe() { return thread_stripe().owned; }

 private:
  struct ThreadStripe {
    unsigned index = ~0u;  // ~0u: not chosen yet
    bool owned = false;
  };
  // initial-exec TLS: no allocation, no lazy TLS setup on first use from a
  // signal handler.
  static ThreadStripe& tls() {
    static thread_local ThreadStripe t __attribute__((tls_model("initial-exec")));
    return t;
  }
  __attribute__((always_inline)) static const ThreadStripe& thread_stripe() {
    ThreadStripe& t = tls();
    if (__builtin_expect(t.index == ~0u, 0)) choose_stripe(t);
    return t;
  }
  static void choose_stripe(ThreadStripe& t);
  static void give_back(void* value);
  __attribute__((always_inline)) static void bump(std::atomic<uint64_t>& counter, uint64_t n, bool owned) {
    if (owned) {
#if defined(__x86_64__) && !defined(__SANITIZE_THREAD__)
      // One `add` to memory: a relaxed load and store as the compiler emits
      // them are three instructions (x86-64 stores of 8 aligned bytes are
      // atomic, so a reader never sees a torn value either way).
      asm volatile("addq %1, %0" : "+m"(counter) : "er"(n) : "cc");
#else
      counter.store(counter.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
#endif
    } else {
      counter.fetch_add(n, std::memory_order_relaxed);
    }
  }

  stats::Segment* seg_;
};

}  // namespace upcache
