// Microbenchmarks of the hit path: upcache::Cache::read on pages already in
// the cache (lookup, pin or version check, copy), 64 B to 1 MiB, against a
// plain memcpy of the same size (the limit). Run: build/bench/upcache_micro.
// The scratch file lives in $UPCACHE_MICRO_DIR (default /var/tmp).
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "bench/zipf.h"
#include "core/cache.h"
#include "core/stats.h"
#include "core/stats_sink.h"

namespace {

using namespace upcache;

constexpr uint64_t kFileBytes = 64ull << 20;

// One cache over one fully warmed 64 MiB file, shared by every benchmark.
struct Fixture {
  std::unique_ptr<stats::Segment> seg;
  std::unique_ptr<StatsSink> sink;
  std::unique_ptr<Cache> cache;
  FileRef* file = nullptr;
  int fd = -1;
  std::string path;

  Fixture() {
    const char* dir = getenv("UPCACHE_MICRO_DIR");
    path = std::string(dir && *dir ? dir : "/var/tmp") + "/upcache-micro-" + std::to_string(getpid());
    fd = open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) { perror(path.c_str()); abort(); }
    std::vector<char> chunk(1 << 20);
    bench::Rng rng(3);
    for (uint64_t off = 0; off < kFileBytes; off += chunk.size()) {
      for (auto& c : chunk) c = static_cast<char>(rng.next());
      if (pwrite(fd, chunk.data(), chunk.size(), off) != ssize_t(chunk.size())) abort();
    }
    fsync(fd);
    seg = std::make_unique<stats::Segment>();
    memset(static_cast<void*>(seg.get()), 0, sizeof(stats::Segment));
    sink = std::make_unique<StatsSink>(seg.get());
    Config c;  // defaults (16 KiB pages, 16 MiB readahead)
    c.cache_bytes = 256ull << 20;
    std::string err;
    cache = Cache::create(c, sink.get(), &err);
    if (!cache) { fprintf(stderr, "Cache::create: %s\n", err.c_str()); abort(); }
    file = cache->attach(fd, path.c_str(), O_RDONLY);
    if (!file) { fprintf(stderr, "attach refused %s\n", path.c_str()); abort(); }
    RaState ra = cache->new_ra_state();
    std::vector<char> buf(1 << 20);
    for (uint64_t pos = 0; pos < kFileBytes; pos += buf.size()) {
      iovec iov{buf.data(), buf.size()};
      if (cache->read(file, ra, pos, &iov, 1) != int64_t(buf.size())) abort();
    }
  }
  ~Fixture() {
    cache->release(file);
    cache.reset();
    close(fd);
    unlink(path.c_str());
  }
};

Fixture& fixture() {
  static Fixture f;
  return f;
}

// Sequential hits: each read continues where the previous ended (wrapping).
void BM_CacheHitSequential(benchmark::State& state) {
  Fixture& f = fixture();
  const uint64_t n = state.range(0);
  std::vector<char> buf(n);
  RaState ra = f.cache->new_ra_state();
  uint64_t pos = 0;
  for (auto _ : state) {
    if (pos + n > kFileBytes) pos = 0;
    iovec iov{buf.data(), n};
    int64_t r = f.cache->read(f.file, ra, pos, &iov, 1);
    if (r != int64_t(n)) state.SkipWithError("short read");
    pos += n;
    benchmark::DoNotOptimize(buf.data());
  }
  state.SetBytesProcessed(state.iterations() * n);
}
BENCHMARK(BM_CacheHitSequential)->RangeMultiplier(4)->Range(64, 1 << 20);

// Random aligned hits (the warm random pread of issue 5); Threads(2) shows
// the scaling of the lock-free lookup.
void BM_CacheHitRandom(benchmark::State& state) {
  Fixture& f = fixture();
  const uint64_t n = state.range(0);
  std::vector<char> buf(n);
  RaState ra = f.cache->new_ra_state();
  bench::Rng rng(state.thread_index() + 1);
  const uint64_t slots = kFileBytes / n;
  for (auto _ : state) {
    iovec iov{buf.data(), n};
    int64_t r = f.cache->read(f.file, ra, rng.below(slots) * n, &iov, 1);
    if (r != int64_t(n)) state.SkipWithError("short read");
    benchmark::DoNotOptimize(buf.data());
  }
  state.SetBytesProcessed(state.iterations() * n);
}
BENCHMARK(BM_CacheHitRandom)->Arg(4096)->Arg(64 << 10)->Arg(1 << 20)->Threads(1)->Threads(2)->UseRealTime();

// The same through the hit fast path, as the shim serves a read: read_hit
// first, read() when it declines (a read across pages, a READAHEAD mark).
void BM_FastHitSequential(benchmark::State& state) {
  Fixture& f = fixture();
  const uint64_t n = state.range(0);
  std::vector<char> buf(n);
  RaState ra = f.cache->new_ra_state();
  uint64_t pos = 0;
  for (auto _ : state) {
    if (pos + n > kFileBytes) pos = 0;
    int64_t r = f.cache->read_hit(f.file, ra, pos, buf.data(), n);
    if (r == 0) {
      iovec iov{buf.data(), n};
      r = f.cache->read(f.file, ra, pos, &iov, 1);
    }
    if (r != int64_t(n)) state.SkipWithError("short read");
    pos += n;
    benchmark::DoNotOptimize(buf.data());
  }
  state.SetBytesProcessed(state.iterations() * n);
}
BENCHMARK(BM_FastHitSequential)->Arg(64)->Arg(4096);

// As the shim serves read() on a private description: the description's hit
// cursor first (core/hit_cursor.h), read_hit (refilling it) when it declines,
// read() when that declines too.
void BM_CursorHitSequential(benchmark::State& state) {
  Fixture& f = fixture();
  const uint64_t n = state.range(0);
  std::vector<char> buf(n);
  RaState ra = f.cache->new_ra_state();
  HitCursor cursor;
  uint64_t pos = 0;
  for (auto _ : state) {
    if (pos + n > kFileBytes) pos = 0;
    int64_t r = f.cache->read_cursor(cursor, ra, pos, buf.data(), n);
    if (r == 0) r = f.cache->read_hit(f.file, ra, pos, buf.data(), n, &cursor);
    if (r == 0) {
      iovec iov{buf.data(), n};
      r = f.cache->read(f.file, ra, pos, &iov, 1);
    }
    if (r != int64_t(n)) state.SkipWithError("short read");
    pos += n;
    benchmark::DoNotOptimize(buf.data());
  }
  state.SetBytesProcessed(state.iterations() * n);
}
BENCHMARK(BM_CursorHitSequential)->Arg(64)->Arg(512)->Arg(4096);

void BM_FastHitRandom(benchmark::State& state) {
  Fixture& f = fixture();
  const uint64_t n = state.range(0);
  std::vector<char> buf(n);
  RaState ra = f.cache->new_ra_state();
  bench::Rng rng(state.thread_index() + 1);
  const uint64_t slots = kFileBytes / n;
  for (auto _ : state) {
    uint64_t pos = rng.below(slots) * n;
    int64_t r = f.cache->read_hit(f.file, ra, pos, buf.data(), n);
    if (r == 0) {
      iovec iov{buf.data(), n};
      r = f.cache->read(f.file, ra, pos, &iov, 1);
    }
    if (r != int64_t(n)) state.SkipWithError("short read");
    benchmark::DoNotOptimize(buf.data());
  }
  state.SetBytesProcessed(state.iterations() * n);
}
BENCHMARK(BM_FastHitRandom)->Arg(4096)->Threads(1)->Threads(2)->UseRealTime();

// The limit: memcpy of the same sizes from an anonymous buffer.
void BM_MemcpySequential(benchmark::State& state) {
  const uint64_t n = state.range(0);
  static std::vector<char> src(kFileBytes, 1);
  std::vector<char> buf(n);
  uint64_t pos = 0;
  for (auto _ : state) {
    if (pos + n > kFileBytes) pos = 0;
    memcpy(buf.data(), src.data() + pos, n);
    benchmark::DoNotOptimize(buf.data());
    pos += n;
  }
  state.SetBytesProcessed(state.iterations() * n);
}
BENCHMARK(BM_MemcpySequential)->RangeMultiplier(4)->Range(64, 1 << 20);

// A kernel pread of the same file, warm in the kernel's page cache: the
// system call the hit path replaces.
void BM_KernelPreadSequential(benchmark::State& state) {
  Fixture& f = fixture();
  const uint64_t n = state.range(0);
  std::vector<char> buf(n);
  uint64_t pos = 0;
  for (auto _ : state) {
    if (pos + n > kFileBytes) pos = 0;
    if (pread(f.fd, buf.data(), n, pos) != ssize_t(n)) state.SkipWithError("short pread");
    pos += n;
  }
  state.SetBytesProcessed(state.iterations() * n);
}
BENCHMARK(BM_KernelPreadSequential)->RangeMultiplier(4)->Range(64, 1 << 20);

}  // namespace
