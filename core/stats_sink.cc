#include "core/stats_sink.h"

#include <pthread.h>

#include <cstring>

#include "core/sys.h"

namespace upcache {

namespace {

static_assert(stats::kStripes - 1 <= 32, "owned stripes fit the claim mask");
constexpr unsigned kShared = stats::kStripes - 1;

// Bit i: stripe i is owned by a live thread.
std::atomic<uint32_t> g_owned{0};
pthread_key_t g_exit_key;
bool g_exit_key_ok = false;

}  // namespace

// Thread exit (pthread key destructor, on the exiting thread): give the
// stripe back. Its counts stay where they are; the next owner adds to them.
// Release order: the next owner's loads see this thread's last stores.
// Counting after this (a later thread-exit destructor that reads a file) goes
// to the shared stripe, since the old one may have a new owner.
void StatsSink::give_back(void* value) {
  unsigned i = static_cast<unsigned>(reinterpret_cast<uintptr_t>(value) - 1);
  ThreadStripe& t = tls();
  t.index = kShared;
  t.owned = false;
  g_owned.fetch_and(~(1u << i), std::memory_order_release);
}

void StatsSink::choose_stripe(ThreadStripe& t) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, [] { g_exit_key_ok = pthread_key_create(&g_exit_key, &give_back) == 0; });
  // Without an exit hook an owned stripe would be lost to the thread's
  // death: share instead.
  uint32_t cur = g_exit_key_ok ? g_owned.load(std::memory_order_relaxed) : ~0u;
  for (;;) {
    uint32_t free = ~cur & ((1u << kShared) - 1);
    if (free == 0) break;
    unsigned i = static_cast<unsigned>(__builtin_ctz(free));
    if (g_owned.compare_exchange_weak(cur, cur | (1u << i), std::memory_order_acquire,
                                      std::memory_order_relaxed)) {
      if (pthread_setspecific(g_exit_key, reinterpret_cast<void*>(uintptr_t{i} + 1)) != 0) {
        give_back(reinterpret_cast<void*>(uintptr_t{i} + 1));
        break;
      }
      t.index = i;
      t.owned = true;
      return;
    }
  }
  t.index = kShared;
  t.owned = false;
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
