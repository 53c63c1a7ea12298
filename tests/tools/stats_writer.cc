// Test helper for the `upcache` tool: a process that owns a statistics
// segment with known counters, written through core's API exactly as the
// shim does (OwnedSegment + StatsSink, several threads), without the shim.
//
//   upcache_stats_writer [--threads N] [--mode wait|exit|die] [--no-callers]
//
// Configuration comes from the environment like the shim's (UPCACHE_STATS_KEEP,
// UPCACHE_RUN_ID, UPCACHE_PAGE_SIZE, UPCACHE_SIZE, UPCACHE_CALLERS,
// UPCACHE_STATS_DIR). Prints "READY <pid> <segment path>" once the counters are
// written, then:
//   wait: waits for standard input to close, then exits cleanly (finish());
//   exit: exits cleanly at once;
//   die:  _exit(0) without finish(), like a process killed by SIGKILL.
//
// Counter values, with T threads (kCounterNames order, k = 0..11):
//   counter k = T * (1000 * (k + 1) + 7)
//   latency: hit bucket 10 = 5T, miss bucket 20 = 3T, io bucket 22 = 2T
//   files: /data/a.bin bytes 3 MiB, hits 40, misses 8, readahead 16
//          /data/b.bin bytes 1 MiB, hits 10, misses 2, readahead 4, passthrough 6
//          (coherence: a.bin under a lease, b.bin open for writing elsewhere)
//   cached_bytes = 2 MiB; capacity_bytes and page_size from the config
//   callers: one site, pcs = [in writer_site_alpha, in main], samples 3,
//            bytes 196608, misses 2
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "core/config.h"
#include "core/stats_segment.h"
#include "core/stats_sink.h"

using namespace upcache;

extern "C" __attribute__((noinline)) void writer_record_caller(stats::Segment* seg, void* outer) {
  stats::CallerSlot& slot = seg->callers[5];
  slot.pcs[0] = reinterpret_cast<uint64_t>(__builtin_return_address(0));
  slot.pcs[1] = reinterpret_cast<uint64_t>(outer);
  slot.samples.store(3);
  slot.bytes.store(196608);
  slot.misses.store(2);
  slot.hash.store(0x1234, std::memory_order_release);
}

extern "C" __attribute__((noinline)) void writer_site_alpha(stats::Segment* seg) {
  writer_record_caller(seg, __builtin_return_address(0));
  __asm__ volatile("" ::: "memory");  // not a tail call
}

int main(int argc, char** argv) {
  int threads = 4;
  std::string mode = "wait";
  bool callers = true;
  for (int i = 1; i < argc; ++i) {
    if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--mode") && i + 1 < argc) mode = argv[++i];
    else if (!strcmp(argv[i], "--no-callers")) callers = false;
    else {
      fprintf(stderr, "usage: %s [--threads N] [--mode wait|exit|die] [--no-callers]\n", argv[0]);
      return 2;
    }
  }
  Config config = Config::from_env();
  stats::CreateOptions o;
  o.page_size = config.page_size;
  o.capacity_bytes = config.cache_bytes;
  o.callers_every = config.callers;
  o.keep = config.stats_keep;
  static stats::OwnedSegment owned;  // as the shim keeps it: a plain global
  if (int r = owned.create(o); r < 0) {
    fprintf(stderr, "stats_writer: cannot create segment: %s\n", strerror(-r));
    return 1;
  }
  StatsSink sink(owned.seg());
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&sink] {
      for (unsigned k = 0; k < stats::kCounterCount; ++k)
        sink.add(static_cast<stats::Counter>(k), 1000 * (k + 1) + 7);
      for (int i = 0; i < 5; ++i) sink.latency(stats::kHitLatency, 1500);      // 2^10
      for (int i = 0; i < 3; ++i) sink.latency(stats::kMissLatency, 1u << 20);  // 2^20
      for (int i = 0; i < 2; ++i) sink.latency(stats::kIoLatency, 5u << 20);    // 2^22
    });
  }
  for (auto& t : pool) t.join();
  int a = sink.claim_file(11, "/data/a.bin");
  int b = sink.claim_file(22, "/data/b.bin");
  sink.file_add(a, stats::kFileBytes, 3 << 20);
  sink.file_add(a, stats::kFileHits, 40);
  sink.file_add(a, stats::kFileMisses, 8);
  sink.file_add(a, stats::kFileReadahead, 16);
  sink.file_add(b, stats::kFileBytes, 1 << 20);
  sink.file_add(b, stats::kFileHits, 10);
  sink.file_add(b, stats::kFileMisses, 2);
  sink.file_add(b, stats::kFileReadahead, 4);
  sink.file_add(b, stats::kFilePassthrough, 6);
  sink.file_coherence(a, stats::kCoherenceLease);
  sink.file_coherence(b, stats::kCoherenceWriter);
  sink.cached_bytes(2 << 20);
  if (callers) writer_site_alpha(owned.seg());

  printf("READY %d %s\n", static_cast<int>(getpid()), owned.path());
  fflush(stdout);
  if (mode == "die") _exit(0);
  if (mode == "wait") {
    char buf[64];
    while (read(0, buf, sizeof buf) > 0) {
    }
  }
  owned.finish();
  return 0;
}
