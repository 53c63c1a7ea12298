// Microbenchmarks of the readahead decision (core/readahead.h): the cost of
// ra_on_miss / ra_on_marked per call for a sequential stream and for random
// misses. Pure functions; no I/O.
#include <benchmark/benchmark.h>

#include "bench/zipf.h"
#include "core/readahead.h"

namespace {

using namespace upcache;

bool nothing_cached(const void*, uint64_t) { return false; }

RaContext context() {
  RaContext ctx;
  ctx.cached = nothing_cached;
  ctx.file_pages = 1ull << 20;  // 64 GiB of 64 KiB pages
  ctx.io_pages = 64;
  ctx.page_shift = 16;
  return ctx;
}

// A sequential reader one page per read: a miss opens the window, then each
// marked page moves it on. Measures one decision per iteration.
void BM_RaSequentialStream(benchmark::State& state) {
  RaContext ctx = context();
  RaState ra;
  ra.ra_pages = 64;  // 4 MiB of 64 KiB pages
  uint64_t page = 0;
  RaWindow w = ra_on_miss(ra, ctx, page, 1);
  for (auto _ : state) {
    if (w.mark == RaWindow::kNoMark || w.mark >= ctx.file_pages) {
      page = 0;
      ra = RaState{};
      ra.ra_pages = 64;
      w = ra_on_miss(ra, ctx, page, 1);
    } else {
      page = w.mark;
      ra.prev_pos = static_cast<int64_t>(page) << 16;
      w = ra_on_marked(ra, ctx, page, page, 1);
    }
    benchmark::DoNotOptimize(w);
  }
}
BENCHMARK(BM_RaSequentialStream);

// Random misses: the window is the request, the state is left alone.
void BM_RaRandomMiss(benchmark::State& state) {
  RaContext ctx = context();
  RaState ra;
  ra.ra_pages = 64;
  bench::Rng rng(5);
  for (auto _ : state) {
    uint64_t p = rng.below(ctx.file_pages);
    RaWindow w = ra_on_miss(ra, ctx, p, 1);
    ra.prev_pos = static_cast<int64_t>(p + 1) << 16;
    benchmark::DoNotOptimize(w);
  }
}
BENCHMARK(BM_RaRandomMiss);

// Window sizing alone (get_init_ra_size / get_next_ra_size).
void BM_RaSizes(benchmark::State& state) {
  uint32_t req = 1;
  for (auto _ : state) {
    uint32_t a = ra_init_size(req, 64);
    benchmark::DoNotOptimize(ra_next_size(a, 64));
    req = req % 64 + 1;
  }
}
BENCHMARK(BM_RaSizes);

}  // namespace
