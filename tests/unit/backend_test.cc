// Unit tests of the backend (core/backend.h): direct and buffered reads,
// tails and growth, both async engines, fault injection, descriptor hiding,
// and that neither mode leaves the data in the kernel's page cache.
//
// Files live in /var/tmp (ext4 here: O_DIRECT works) and /dev/shm (tmpfs:
// the buffered fallback). A test that needs a filesystem property it does not
// find (O_DIRECT on /var/tmp, tmpfs on /dev/shm) skips, saying why.
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "core/backend.h"
#include "core/config.h"
#include "core/fd_reserve.h"
#include "core/io_engine.h"
#include "core/stats.h"
#include "core/stats_sink.h"

namespace upcache {
namespace {

constexpr uint64_t kPage = 64 << 10;

uint8_t pattern(uint64_t i, uint32_t seed) {
  uint64_t x = ((i >> 3) + seed) * 0x9E3779B97F4A7C15ull;
  return static_cast<uint8_t>((x >> 56) ^ (i & 7) ^ seed);
}

void fill(std::vector<uint8_t>* v, uint64_t from, uint64_t n, uint32_t seed) {
  v->resize(from + n);
  for (uint64_t i = 0; i < n; ++i) (*v)[from + i] = pattern(from + i, seed);
}

// Drops the file's pages from the kernel cache (after writing them back).
void drop_kernel_cache(int fd) {
  fsync(fd);
  posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
}

// Pages of the file resident in the kernel's page cache.
size_t resident_pages(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return SIZE_MAX;
  struct stat st;
  fstat(fd, &st);
  size_t len = static_cast<size_t>(st.st_size);
  size_t resident = 0;
  if (len > 0) {
    void* p = mmap(nullptr, len, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
      close(fd);
      return SIZE_MAX;
    }
    long ps = sysconf(_SC_PAGESIZE);
    std::vector<unsigned char> vec((len + ps - 1) / ps);
    mincore(p, len, vec.data());
    for (unsigned char c : vec) resident += c & 1;
    munmap(p, len);
  }
  close(fd);
  return resident;
}

bool is_tmpfs(const char* dir) {
  struct statfs s;
  return statfs(dir, &s) == 0 && s.f_type == 0x01021994;
}

class TempDir {
 public:
  explicit TempDir(const char* parent) {
    std::string tmpl = std::string(parent) + "/upcache-backend-XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    if (mkdtemp(buf.data())) path_ = buf.data();
  }
  ~TempDir() {
    if (path_.empty()) return;
    for (const auto& f : files_) unlink(f.c_str());
    rmdir(path_.c_str());
  }
  bool ok() const { return !path_.empty(); }
  const std::string& path() const { return path_; }

  // Creates `name` with `size` pattern bytes, leaves it out of the kernel
  // cache, and returns its path; `content` receives the bytes.
  std::string make_file(const char* name, uint64_t size, std::vector<uint8_t>* content,
                        uint32_t seed = 1) {
    std::string p = path_ + "/" + name;
    content->clear();
    fill(content, 0, size, seed);
    int fd = open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    EXPECT_GE(fd, 0) << p;
    uint64_t off = 0;
    while (off < size) {
      ssize_t w = write(fd, content->data() + off, size - off);
      EXPECT_GT(w, 0);
      if (w <= 0) break;
      off += static_cast<uint64_t>(w);
    }
    drop_kernel_cache(fd);
    close(fd);
    files_.push_back(p);
    return p;
  }

 private:
  std::string path_;
  std::vector<std::string> files_;
};

// Page-aligned buffers of whole cache pages.
class Frames {
 public:
  explicit Frames(int n, uint64_t page = kPage) : n_(n), page_(page) {
    void* p = nullptr;
    EXPECT_EQ(posix_memalign(&p, page, page * n), 0);
    mem_ = static_cast<uint8_t*>(p);
    memset(mem_, 0xEE, page * n);
  }
  ~Frames() { free(mem_); }
  uint8_t* data() { return mem_; }
  // iovecs for frames [first, first + count)
  std::vector<iovec> iov(int first, int count) {
    std::vector<iovec> v(count);
    for (int i = 0; i < count; ++i) v[i] = {mem_ + (first + i) * page_, page_};
    return v;
  }
  void clear() { memset(mem_, 0xEE, page_ * n_); }

 private:
  int n_;
  uint64_t page_;
  uint8_t* mem_;
};

struct Collector {
  static constexpr int kMax = 4096;
  std::atomic<int> calls[kMax] = {};
  std::atomic<int64_t> results[kMax] = {};
  std::atomic<int> total{0};
  static void on_complete(void* ctx, uint64_t cookie, int64_t result) {
    auto* c = static_cast<Collector*>(ctx);
    if (cookie < kMax) {
      c->results[cookie].store(result);
      c->calls[cookie].fetch_add(1);
    }
    c->total.fetch_add(1);
  }
};

struct StatsHolder {
  std::unique_ptr<stats::Segment> seg{new stats::Segment()};
  StatsSink sink{seg.get()};
  uint64_t total(stats::Counter c) const { return StatsSink::total(*seg, c); }
  uint64_t io_latency_samples() const {
    uint64_t n = 0;
    for (const auto& s : seg->stripes)
      for (const auto& b : s.latency[stats::kIoLatency]) n += b.load();
    return n;
  }
};

Config make_config(const char* fault = "", AsyncEngine engine = AsyncEngine::kAuto) {
  Config c;
  c.page_size = kPage;
  c.fault = fault;
  c.async_engine = engine;
  return c;
}

// A backend plus the program-side descriptor of one file.
struct Opened {
  std::unique_ptr<Backend> backend;
  int program_fd = -1;
  BackendFile* file = nullptr;
  ~Opened() {
    if (backend && file) backend->close_file(file);
    if (program_fd >= 0) close(program_fd);
  }
};

std::unique_ptr<Opened> open_with(const Config& config, const std::string& path,
                                  Collector* collector = nullptr, StatsSink* stats = nullptr) {
  static Collector dummy;
  auto o = std::make_unique<Opened>();
  o->backend = Backend::create(config, stats, &Collector::on_complete, collector ? collector : &dummy);
  EXPECT_NE(o->backend, nullptr);
  o->program_fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  EXPECT_GE(o->program_fd, 0);
  o->file = o->backend->open_file(o->program_fd, path.c_str());
  EXPECT_NE(o->file, nullptr);
  return o;
}

void expect_bytes(const uint8_t* got, const std::vector<uint8_t>& want, uint64_t offset,
                  uint64_t n) {
  ASSERT_LE(offset + n, want.size());
  for (uint64_t i = 0; i < n; ++i) {
    if (got[i] != want[offset + i]) {
      FAIL() << "byte " << offset + i << " differs: got " << int(got[i]) << " want "
             << int(want[offset + i]);
    }
  }
}

class BackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(disk_.ok());
    ASSERT_TRUE(shm_.ok());
  }
  // Skips unless O_DIRECT works on the disk directory.
  bool disk_has_direct() {
    std::vector<uint8_t> c;
    std::string p = disk_.make_file("probe", 4096, &c);
    int fd = open(p.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC);
    if (fd < 0) return false;
    close(fd);
    return true;
  }
  TempDir disk_{"/var/tmp"};
  TempDir shm_{"/dev/shm"};
};

#define REQUIRE_DIRECT()                                                  \
  do {                                                                    \
    if (!disk_has_direct()) GTEST_SKIP() << "O_DIRECT refused on /var/tmp"; \
  } while (0)

// ---------------------------------------------------------------- sync reads

TEST_F(BackendTest, DirectReadReturnsExactBytes) {
  REQUIRE_DIRECT();
  std::vector<uint8_t> want;
  std::string path = disk_.make_file("direct", 16 * kPage + 777, &want);
  StatsHolder st;
  auto o = open_with(make_config(), path, nullptr, &st.sink);
  ASSERT_TRUE(o->backend->is_direct(o->file));
  Frames fr(8);
  auto iov = fr.iov(0, 8);
  ASSERT_EQ(o->backend->read_sync(o->file, 0, iov.data(), 8), int64_t(8 * kPage));
  expect_bytes(fr.data(), want, 0, 8 * kPage);
  fr.clear();
  iov = fr.iov(0, 3);
  ASSERT_EQ(o->backend->read_sync(o->file, 5 * kPage, iov.data(), 3), int64_t(3 * kPage));
  expect_bytes(fr.data(), want, 5 * kPage, 3 * kPage);
  EXPECT_EQ(st.total(stats::kDirectBytes), 11 * kPage);
  EXPECT_EQ(st.total(stats::kBufferedBytes), 0u);
  EXPECT_EQ(st.io_latency_samples(), 2u);
  EXPECT_EQ(o->backend->file_size(o->file), int64_t(16 * kPage + 777));
}

TEST_F(BackendTest, TmpfsUsesBufferedFallback) {
  if (!is_tmpfs("/dev/shm")) GTEST_SKIP() << "/dev/shm is not tmpfs";
  std::vector<uint8_t> want;
  std::string path = shm_.make_file("shm", 4 * kPage + 5, &want);
  StatsHolder st;
  auto o = open_with(make_config(), path, nullptr, &st.sink);
  EXPECT_FALSE(o->backend->is_direct(o->file));
  Frames fr(5);
  auto iov = fr.iov(0, 5);
  ASSERT_EQ(o->backend->read_sync(o->file, 0, iov.data(), 5), int64_t(4 * kPage + 5));
  expect_bytes(fr.data(), want, 0, 4 * kPage + 5);
  EXPECT_EQ(st.total(stats::kBufferedBytes), 4 * kPage + 5);
  EXPECT_EQ(st.total(stats::kDirectBytes), 0u);
}

TEST_F(BackendTest, DirectOffConfigIsBuffered) {
  std::vector<uint8_t> want;
  std::string path = disk_.make_file("off", 2 * kPage, &want);
  Config c = make_config();
  c.direct = DirectMode::kOff;
  auto o = open_with(c, path);
  EXPECT_FALSE(o->backend->is_direct(o->file));
  Frames fr(2);
  auto iov = fr.iov(0, 2);
  ASSERT_EQ(o->backend->read_sync(o->file, 0, iov.data(), 2), int64_t(2 * kPage));
  expect_bytes(fr.data(), want, 0, 2 * kPage);
}

void check_tail(Backend* b, BackendFile* f, const std::vector<uint8_t>& want) {
  uint64_t size = want.size();  // 3 pages + 1000
  Frames fr(3);
  auto iov = fr.iov(0, 3);
  ASSERT_EQ(b->read_sync(f, 2 * kPage, iov.data(), 3), int64_t(kPage + 1000));
  expect_bytes(fr.data(), want, 2 * kPage, kPage + 1000);
  iov = fr.iov(0, 1);
  ASSERT_EQ(b->read_sync(f, 3 * kPage, iov.data(), 1), 1000);
  ASSERT_EQ(b->read_sync(f, 4 * kPage, iov.data(), 1), 0);  // past the end
  (void)size;
}

TEST_F(BackendTest, TailPageReturnsShortLengthDirect) {
  REQUIRE_DIRECT();
  std::vector<uint8_t> want;
  std::string path = disk_.make_file("tail", 3 * kPage + 1000, &want);
  auto o = open_with(make_config(), path);
  ASSERT_TRUE(o->backend->is_direct(o->file));
  check_tail(o->backend.get(), o->file, want);
  EXPECT_TRUE(o->backend->is_direct(o->file));  // the tail did not make it buffered
}

TEST_F(BackendTest, TailPageReturnsShortLengthBuffered) {
  std::vector<uint8_t> want;
  std::string path = shm_.make_file("tail", 3 * kPage + 1000, &want);
  auto o = open_with(make_config(), path);
  check_tail(o->backend.get(), o->file, want);
}

void check_growth(TempDir* dir, bool expect_direct) {
  std::vector<uint8_t> want;
  std::string path = dir->make_file("grow", kPage + 100000 - kPage, &want);  // 100000 bytes
  auto o = open_with(make_config(), path);
  ASSERT_EQ(o->backend->is_direct(o->file), expect_direct);
  Frames fr(3);
  auto iov = fr.iov(0, 3);
  ASSERT_EQ(o->backend->read_sync(o->file, kPage, iov.data(), 3), int64_t(100000 - kPage));
  // The program appends through the kernel (buffered, not yet written back).
  fill(&want, 100000, 150000, 7);
  int wfd = open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  ASSERT_GE(wfd, 0);
  ASSERT_EQ(write(wfd, want.data() + 100000, 150000), 150000);
  close(wfd);
  fr.clear();
  ASSERT_EQ(o->backend->read_sync(o->file, kPage, iov.data(), 3), int64_t(250000 - kPage));
  expect_bytes(fr.data(), want, kPage, 250000 - kPage);
  EXPECT_EQ(o->backend->file_size(o->file), 250000);
}

TEST_F(BackendTest, GrowthAfterOpenIsSeenDirect) {
  REQUIRE_DIRECT();
  check_growth(&disk_, true);
}

TEST_F(BackendTest, GrowthAfterOpenIsSeenBuffered) { check_growth(&shm_, false); }

TEST_F(BackendTest, OpensByPathWhenProgramFdIsUnknown) {
  std::vector<uint8_t> want;
  std::string path = disk_.make_file("bypath", kPage, &want);
  Collector c;
  auto b = Backend::create(make_config(), nullptr, &Collector::on_complete, &c);
  BackendFile* f = b->open_file(-1, path.c_str());
  ASSERT_NE(f, nullptr);
  Frames fr(1);
  auto iov = fr.iov(0, 1);
  ASSERT_EQ(b->read_sync(f, 0, iov.data(), 1), int64_t(kPage));
  expect_bytes(fr.data(), want, 0, kPage);
  b->close_file(f);
  EXPECT_EQ(b->open_file(-1, (disk_.path() + "/missing").c_str()), nullptr);
  EXPECT_EQ(b->open_file(-1, disk_.path().c_str()), nullptr);  // a directory
}

TEST_F(BackendTest, MisalignedRequestOnDirectFileIsRefused) {
  REQUIRE_DIRECT();
  std::vector<uint8_t> want;
  std::string path = disk_.make_file("mis", 4 * kPage, &want);
  auto o = open_with(make_config(), path);
  ASSERT_TRUE(o->backend->is_direct(o->file));
  Frames fr(2);
  iovec bad = {fr.data() + 1, kPage};
  EXPECT_EQ(o->backend->read_sync(o->file, 0, &bad, 1), -EINVAL);
  EXPECT_TRUE(o->backend->is_direct(o->file));  // a caller's bug does not turn it buffered
  EXPECT_EQ(o->backend->read_sync(o->file, 0, nullptr, 1), -EINVAL);
  auto iov = fr.iov(0, 1);
  EXPECT_EQ(o->backend->read_sync(o->file, 0, iov.data(), 0), -EINVAL);
  EXPECT_EQ(o->backend->read_sync(o->file, 0, iov.data(), Backend::kMaxIov + 1), -EINVAL);
}

// ---------------------------------------------------------------- async

class EngineTest : public BackendTest, public ::testing::WithParamInterface<AsyncEngine> {};

TEST_P(EngineTest, EveryCookieCompletesOnceWithCorrectData) {
  std::vector<uint8_t> want;
  const int kPages = 64;
  std::string path = (disk_has_direct() ? disk_ : shm_).make_file("async", kPages * kPage - 3000, &want);
  auto collector = std::make_unique<Collector>();
  Config c = make_config("", GetParam());
  auto o = open_with(c, path, collector.get());
  const char* expect = GetParam() == AsyncEngine::kUring ? "uring" : "threads";
  ASSERT_STREQ(o->backend->engine_name(), expect);
  // 200 requests of 1..4 pages at every position; each into its own frames.
  const int kRequests = 200;
  Frames fr(kRequests * 4);
  std::vector<uint64_t> offsets(kRequests);
  std::vector<int> counts(kRequests);
  for (int i = 0; i < kRequests; ++i) {
    counts[i] = 1 + i % 4;
    offsets[i] = static_cast<uint64_t>((i * 7) % kPages) * kPage;
    auto iov = fr.iov(i * 4, counts[i]);
    while (!o->backend->read_async(o->file, offsets[i], iov.data(), counts[i], i)) {
      usleep(100);  // queue full: the request was not issued; let some finish
    }
  }
  o->backend->drain();
  EXPECT_EQ(collector->total.load(), kRequests);
  for (int i = 0; i < kRequests; ++i) {
    ASSERT_EQ(collector->calls[i].load(), 1) << "cookie " << i;
    uint64_t end = offsets[i] + counts[i] * kPage;
    uint64_t expect_len = (end > want.size() ? want.size() : end) - offsets[i];
    ASSERT_EQ(collector->results[i].load(), int64_t(expect_len)) << "cookie " << i;
    expect_bytes(fr.data() + i * 4 * kPage, want, offsets[i], expect_len);
  }
}

TEST_P(EngineTest, DestructorCompletesQueuedRequests) {
  std::vector<uint8_t> want;
  std::string path = shm_.make_file("dtor", 8 * kPage, &want);
  auto collector = std::make_unique<Collector>();
  Frames fr(8 * 32);
  {
    Config c = make_config("", GetParam());
    auto b = Backend::create(c, nullptr, &Collector::on_complete, collector.get());
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    BackendFile* f = b->open_file(fd, path.c_str());
    ASSERT_NE(f, nullptr);
    int queued = 0;
    for (int i = 0; i < 32; ++i) {
      auto iov = fr.iov(i * 8, 8);
      queued += b->read_async(f, 0, iov.data(), 8, i);
    }
    EXPECT_GT(queued, 0);
    b.reset();  // no drain: the destructor must wait (and the file is closed by it)
    close(fd);
    EXPECT_EQ(collector->total.load(), queued);
  }
}

TEST_P(EngineTest, FaultsApplyToAsyncReads) {
  std::vector<uint8_t> want;
  std::string path = disk_.make_file("afault", 8 * kPage, &want);
  auto collector = std::make_unique<Collector>();
  auto o = open_with(make_config("eio=3,short=5000", GetParam()), path, collector.get());
  Frames fr(8);
  auto a = fr.iov(0, 3);
  auto b = fr.iov(3, 3);
  ASSERT_TRUE(o->backend->read_async(o->file, 0, a.data(), 3, 1));      // pages 0-2
  ASSERT_TRUE(o->backend->read_async(o->file, 2 * kPage, b.data(), 3, 2));  // pages 2-4
  o->backend->drain();
  EXPECT_EQ(collector->results[1].load(), int64_t(3 * kPage));
  expect_bytes(fr.data(), want, 0, 3 * kPage);
  EXPECT_EQ(collector->results[2].load(), -EIO);
}

TEST_P(EngineTest, ConcurrentReadersSurviveTheSwitchToBuffered) {
  if (!disk_has_direct()) GTEST_SKIP() << "O_DIRECT refused on /var/tmp";
  std::vector<uint8_t> want;
  const int kPages = 32;
  std::string path = disk_.make_file("switch", kPages * kPage, &want);
  auto collector = std::make_unique<Collector>();
  // Direct reads reaching page 20 fail with EINVAL: some thread switches the
  // file while the others are reading, synchronously and through the engine.
  auto o = open_with(make_config("einval_at=1280K,short=40000", GetParam()), path, collector.get());
  ASSERT_TRUE(o->backend->is_direct(o->file));
  const int kThreads = 4, kPerThread = 40;
  std::vector<std::thread> threads;
  std::atomic<int> bad{0};
  auto frames = std::make_unique<Frames>(kThreads * kPerThread * 2);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      Frames sync_fr(2);
      for (int i = 0; i < kPerThread; ++i) {
        int cookie = t * kPerThread + i;
        uint64_t page = static_cast<uint64_t>((cookie * 5) % (kPages - 1));
        auto iov = frames->iov(cookie * 2, 2);
        while (!o->backend->read_async(o->file, page * kPage, iov.data(), 2, cookie)) usleep(50);
        auto siov = sync_fr.iov(0, 2);
        uint64_t sp = static_cast<uint64_t>((cookie * 3) % (kPages - 1));
        if (o->backend->read_sync(o->file, sp * kPage, siov.data(), 2) != int64_t(2 * kPage) ||
            memcmp(sync_fr.data(), want.data() + sp * kPage, 2 * kPage) != 0)
          bad.fetch_add(1);
      }
    });
  }
  for (auto& th : threads) th.join();
  o->backend->drain();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_FALSE(o->backend->is_direct(o->file));
  for (int cookie = 0; cookie < kThreads * kPerThread; ++cookie) {
    uint64_t page = static_cast<uint64_t>((cookie * 5) % (kPages - 1));
    ASSERT_EQ(collector->calls[cookie].load(), 1);
    ASSERT_EQ(collector->results[cookie].load(), int64_t(2 * kPage)) << cookie;
    expect_bytes(frames->data() + cookie * 2 * kPage, want, page * kPage, 2 * kPage);
  }
}

INSTANTIATE_TEST_SUITE_P(Engines, EngineTest,
                         ::testing::Values(AsyncEngine::kUring, AsyncEngine::kThreads),
                         [](const auto& info) {
                           return info.param == AsyncEngine::kUring ? "uring" : "threads";
                         });

TEST_F(BackendTest, AsyncQueueFullReturnsFalse) {
  std::vector<uint8_t> want;
  std::string path = shm_.make_file("full", kPage, &want);
  // A completion that blocks until released: the queue must fill up.
  struct Blocker {
    std::atomic<bool> release{false};
    std::atomic<int> done{0};
    static void fn(void* ctx, uint64_t, int64_t) {
      auto* b = static_cast<Blocker*>(ctx);
      while (!b->release.load()) usleep(100);
      b->done.fetch_add(1);
    }
  } blocker;
  Config c = make_config("", AsyncEngine::kThreads);
  c.io_threads = 1;
  auto b = Backend::create(c, nullptr, &Blocker::fn, &blocker);
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  BackendFile* f = b->open_file(fd, path.c_str());
  Frames fr(1);
  auto iov = fr.iov(0, 1);
  int queued = 0;
  while (queued < 1000 && b->read_async(f, 0, iov.data(), 1, queued)) ++queued;
  EXPECT_LT(queued, 1000);
  EXPECT_GT(queued, 0);
  blocker.release.store(true);
  b->drain();
  EXPECT_EQ(blocker.done.load(), queued);
  b->close_file(f);
  close(fd);
}

// ---------------------------------------------------------------- faults

TEST_F(BackendTest, ShortFaultStillYieldsFullPages) {
  std::vector<uint8_t> want;
  for (TempDir* dir : {&disk_, &shm_}) {
    std::string path = dir->make_file("short", 4 * kPage + 3333, &want);
    auto o = open_with(make_config("short=1000"), path);
    Frames fr(5);
    auto iov = fr.iov(0, 5);
    ASSERT_EQ(o->backend->read_sync(o->file, 0, iov.data(), 5), int64_t(4 * kPage + 3333))
        << dir->path();
    expect_bytes(fr.data(), want, 0, 4 * kPage + 3333);
    // Direct stays direct: the forced short reads are block aligned.
    if (dir == &disk_ && disk_has_direct()) {
      EXPECT_TRUE(o->backend->is_direct(o->file));
    }
  }
}

TEST_F(BackendTest, EioFailsOnlyTheFaultyPages) {
  std::vector<uint8_t> want;
  std::string path = disk_.make_file("eio", 8 * kPage, &want);
  StatsHolder st;
  auto o = open_with(make_config("eio=2,eio=5-6"), path, nullptr, &st.sink);
  Frames fr(4);
  for (int page = 0; page < 8; ++page) {
    auto iov = fr.iov(0, 1);
    int64_t r = o->backend->read_sync(o->file, page * kPage, iov.data(), 1);
    if (page == 2 || page == 5 || page == 6) {
      EXPECT_EQ(r, -EIO) << page;
    } else {
      ASSERT_EQ(r, int64_t(kPage)) << page;
      expect_bytes(fr.data(), want, page * kPage, kPage);
    }
  }
  auto iov = fr.iov(0, 4);
  EXPECT_EQ(o->backend->read_sync(o->file, 0, iov.data(), 4), -EIO);  // touches page 2
  EXPECT_EQ(st.total(stats::kIoErrors), 4u);
}

TEST_F(BackendTest, EioOnceFailsOnceThenSucceeds) {
  std::vector<uint8_t> want;
  std::string path = disk_.make_file("once", 4 * kPage, &want);
  auto o = open_with(make_config("eio_once=1"), path);
  Frames fr(2);
  auto iov = fr.iov(0, 2);
  EXPECT_EQ(o->backend->read_sync(o->file, 0, iov.data(), 2), -EIO);
  ASSERT_EQ(o->backend->read_sync(o->file, 0, iov.data(), 2), int64_t(2 * kPage));
  expect_bytes(fr.data(), want, 0, 2 * kPage);
  ASSERT_EQ(o->backend->read_sync(o->file, kPage, iov.data(), 1), int64_t(kPage));
}

// eio_at=OFF fails exactly the reads whose range holds byte OFF, so a test
// can let some blocks of a page read fine and the rest fail. Reads of one
// block at an offset inside a page are aligned as partial pages need.
TEST_F(BackendTest, EioAtFailsReadsHoldingTheByte) {
  std::vector<uint8_t> want;
  std::string path = disk_.make_file("eioat", 4 * kPage, &want);
  std::string fault = "eio_at=" + std::to_string(kPage + 5000);
  auto o = open_with(make_config(fault.c_str()), path);
  Frames fr(1);
  uint8_t* base = fr.data();
  iovec block{base + 4096, 4096};
  ASSERT_EQ(o->backend->read_sync(o->file, kPage + 0, &block, 1), 4096);
  expect_bytes(base + 4096, want, kPage, 4096);
  EXPECT_EQ(o->backend->read_sync(o->file, kPage + 4096, &block, 1), -EIO);
  auto iov = fr.iov(0, 1);
  EXPECT_EQ(o->backend->read_sync(o->file, kPage, iov.data(), 1), -EIO);
  ASSERT_EQ(o->backend->read_sync(o->file, 2 * kPage, iov.data(), 1), int64_t(kPage));
  EXPECT_GE(o->backend->alignment(o->file), 1u);
  EXPECT_LE(o->backend->alignment(o->file), kPage);
}

TEST_F(BackendTest, EinvalMidFileSwitchesToBuffered) {
  REQUIRE_DIRECT();
  std::vector<uint8_t> want;
  std::string path = disk_.make_file("einval", 6 * kPage + 10, &want);
  StatsHolder st;
  auto o = open_with(make_config("einval_at=128K"), path, nullptr, &st.sink);
  ASSERT_TRUE(o->backend->is_direct(o->file));
  Frames fr(4);
  auto iov = fr.iov(0, 2);
  ASSERT_EQ(o->backend->read_sync(o->file, 0, iov.data(), 2), int64_t(2 * kPage));
  expect_bytes(fr.data(), want, 0, 2 * kPage);
  EXPECT_TRUE(o->backend->is_direct(o->file));
  EXPECT_EQ(st.total(stats::kDirectBytes), 2 * kPage);
  fr.clear();
  iov = fr.iov(0, 4);
  ASSERT_EQ(o->backend->read_sync(o->file, kPage, iov.data(), 4), int64_t(4 * kPage));
  expect_bytes(fr.data(), want, kPage, 4 * kPage);
  EXPECT_FALSE(o->backend->is_direct(o->file));
  EXPECT_EQ(st.total(stats::kBufferedBytes), 4 * kPage);
  EXPECT_EQ(st.total(stats::kIoErrors), 0u);
  // The descriptor really lost O_DIRECT.
  int flags = fcntl(static_cast<BackendFile*>(o->file)->fd, F_GETFL);
  EXPECT_EQ(flags & O_DIRECT, 0);
  iov = fr.iov(0, 2);
  ASSERT_EQ(o->backend->read_sync(o->file, 5 * kPage, iov.data(), 2), int64_t(kPage + 10));
  expect_bytes(fr.data(), want, 5 * kPage, kPage + 10);
}

TEST_F(BackendTest, NodirectFaultForcesBuffered) {
  std::vector<uint8_t> want;
  std::string path = disk_.make_file("nodirect", kPage, &want);
  auto o = open_with(make_config("nodirect"), path);
  EXPECT_FALSE(o->backend->is_direct(o->file));
  EXPECT_EQ(fcntl(o->file->fd, F_GETFL) & O_DIRECT, 0);
}

// ---------------------------------------------------------------- descriptors

std::vector<int> open_fds() {
  std::vector<int> fds;
  DIR* d = opendir("/proc/self/fd");
  if (!d) return fds;
  int self = dirfd(d);
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    int fd = atoi(e->d_name);
    if (fd != self) fds.push_back(fd);
  }
  closedir(d);
  return fds;
}

uint64_t soft_nofile() {
  struct rlimit r;
  getrlimit(RLIMIT_NOFILE, &r);
  return r.rlim_cur;
}

TEST_F(BackendTest, BackendDescriptorsAreHighOwnedAndInvisible) {
  std::vector<uint8_t> want;
  std::string path = disk_.make_file("fds", kPage, &want);
  int base = FdReserve::base_for_limit(soft_nofile());
  std::vector<int> before = open_fds();
  for (AsyncEngine e : {AsyncEngine::kUring, AsyncEngine::kThreads}) {
    Collector c;
    auto b = Backend::create(make_config("", e), nullptr, &Collector::on_complete, &c);
    // Nothing is opened (nor any thread started) before the first file.
    EXPECT_EQ(open_fds(), before);
    int pfd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    // The number the program's next open() gets without the backend:
    int probe = dup(0);
    close(probe);
    BackendFile* f = b->open_file(pfd, path.c_str());
    ASSERT_NE(f, nullptr);
    int next = dup(0);
    EXPECT_EQ(next, probe) << "open_file shifted the program's descriptor numbers";
    close(next);
    EXPECT_GE(f->fd, base);
    EXPECT_TRUE(b->owns_fd(f->fd));
    EXPECT_TRUE(fcntl(f->fd, F_GETFD) & FD_CLOEXEC);
    EXPECT_FALSE(b->owns_fd(pfd));
    EXPECT_FALSE(b->owns_fd(0));
    EXPECT_FALSE(b->owns_fd(-1));
    EXPECT_FALSE(b->owns_fd(1 << 30));
    // Every descriptor that appeared is the backend's, high and close-on-exec
    // (the ring and its eventfd for uring; the engine starts lazily, so ask
    // for it first).
    const std::string engine = b->engine_name();
    int appeared = 0;
    for (int fd : open_fds()) {
      if (fd == pfd || std::find(before.begin(), before.end(), fd) != before.end()) continue;
      ++appeared;
      EXPECT_GE(fd, base) << "fd " << fd;
      EXPECT_TRUE(b->owns_fd(fd)) << "fd " << fd;
      EXPECT_TRUE(fcntl(fd, F_GETFD) & FD_CLOEXEC) << "fd " << fd;
    }
    EXPECT_EQ(appeared, engine == "uring" ? 3 : 1);
    int kept = f->fd;
    b->close_file(f);
    EXPECT_FALSE(b->owns_fd(kept));
    EXPECT_EQ(fcntl(kept, F_GETFD), -1);  // closed
    close(pfd);
    b.reset();
    EXPECT_EQ(open_fds(), before) << "descriptors left behind";
  }
}

TEST(FdReserve, BaseFollowsTheLimit) {
  EXPECT_EQ(FdReserve::base_for_limit(1024), 960);
  // A program that raises its limit gets our later descriptors out of its way.
  struct rlimit saved;
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &saved), 0);
  if (saved.rlim_max >= 4096) {
    FdReserve fds;
    struct rlimit lim = saved;
    lim.rlim_cur = 1024;
    ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &lim), 0);
    int low = fds.adopt(open("/dev/null", O_RDONLY | O_CLOEXEC));
    lim.rlim_cur = 4096;
    ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &lim), 0);
    int high = fds.adopt(open("/dev/null", O_RDONLY | O_CLOEXEC));
    ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &saved), 0);
    EXPECT_GE(low, 960);
    EXPECT_LT(low, 1024);
    EXPECT_GE(high, 4096 - 256);
    EXPECT_LT(high, 4096);
    EXPECT_TRUE(fds.owns(low));
    EXPECT_TRUE(fds.owns(high));
    fds.release(low);
    fds.release(high);
    EXPECT_FALSE(fds.owns(low));
    EXPECT_EQ(fcntl(high, F_GETFD), -1);
  }
  EXPECT_EQ(FdReserve::base_for_limit(20000), 20000 - 1250);
  EXPECT_EQ(FdReserve::base_for_limit(1 << 20), (1 << 20) - 4096);
  EXPECT_EQ(FdReserve::base_for_limit(64), 100);  // nothing fits: adopt fails
  FdReserve tiny(64);
  int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  EXPECT_EQ(tiny.adopt(fd), -EMFILE);
  EXPECT_EQ(fcntl(fd, F_GETFD), -1);  // closed either way
}

TEST(DeviceBlockSize, MatchesSysfs) {
  struct stat st;
  ASSERT_EQ(stat("/var/tmp", &st), 0);
  uint32_t size = device_logical_block_size(st.st_dev);
  char path[128];
  snprintf(path, sizeof path, "/sys/dev/block/%u:%u/queue/logical_block_size", major(st.st_dev),
           minor(st.st_dev));
  FILE* f = fopen(path, "r");
  if (!f) {
    snprintf(path, sizeof path, "/sys/dev/block/%u:%u/../queue/logical_block_size",
             major(st.st_dev), minor(st.st_dev));
    f = fopen(path, "r");
  }
  if (!f) GTEST_SKIP() << "/var/tmp is not on a block device";
  unsigned want = 0;
  ASSERT_EQ(fscanf(f, "%u", &want), 1);
  fclose(f);
  EXPECT_EQ(size, want);
  ASSERT_EQ(stat("/dev/shm", &st), 0);
  EXPECT_EQ(device_logical_block_size(st.st_dev), 0u);  // tmpfs: no device
}

// ---------------------------------------------------------------- kernel cache

TEST_F(BackendTest, BufferedFallbackLeavesNothingInKernelCache) {
  std::vector<uint8_t> want;
  std::string path = disk_.make_file("nocache-b", 32 * kPage + 100, &want);
  ASSERT_EQ(resident_pages(path), 0u);
  auto o = open_with(make_config("nodirect"), path);
  ASSERT_FALSE(o->backend->is_direct(o->file));
  Frames fr(4);
  // Part of the file, so kernel readahead past the range would show.
  for (int page = 0; page < 12; page += 4) {
    auto iov = fr.iov(0, 4);
    ASSERT_EQ(o->backend->read_sync(o->file, page * kPage, iov.data(), 4), int64_t(4 * kPage));
    expect_bytes(fr.data(), want, page * kPage, 4 * kPage);
  }
  // The tail, short.
  auto iov = fr.iov(0, 2);
  ASSERT_EQ(o->backend->read_sync(o->file, 31 * kPage, iov.data(), 2), int64_t(kPage + 100));
  EXPECT_EQ(resident_pages(path), 0u);
}

TEST_F(BackendTest, DirectReadsLeaveNothingInKernelCache) {
  REQUIRE_DIRECT();
  std::vector<uint8_t> want;
  std::string path = disk_.make_file("nocache-d", 32 * kPage + 100, &want);
  ASSERT_EQ(resident_pages(path), 0u);
  auto o = open_with(make_config(), path);
  ASSERT_TRUE(o->backend->is_direct(o->file));
  Frames fr(8);
  for (int page = 0; page < 33; page += 8) {
    auto iov = fr.iov(0, 8);
    int64_t r = o->backend->read_sync(o->file, page * kPage, iov.data(), 8);
    ASSERT_GT(r, 0);
    expect_bytes(fr.data(), want, page * kPage, static_cast<uint64_t>(r));
  }
  EXPECT_EQ(resident_pages(path), 0u);
}

// ---------------------------------------------------------------- threads, fork

TEST_F(BackendTest, EngineThreadsBlockAllSignals) {
  for (AsyncEngine e : {AsyncEngine::kUring, AsyncEngine::kThreads}) {
    Collector c;
    Config cfg = make_config("", e);
    cfg.io_threads = 3;
    auto b = Backend::create(cfg, nullptr, &Collector::on_complete, &c);
    ASSERT_STREQ(b->engine_name(), e == AsyncEngine::kUring ? "uring" : "threads");
    const int want = e == AsyncEngine::kUring ? 1 : 3;
    int seen = 0;
    // Worker threads name themselves when they first run: wait for them.
    for (int tries = 0; tries < 2000 && seen != want; ++tries) {
      if (tries) usleep(1000);
      seen = 0;
      DIR* d = opendir("/proc/self/task");
      ASSERT_NE(d, nullptr);
      while (dirent* t = readdir(d)) {
        if (t->d_name[0] == '.') continue;
        std::string base = std::string("/proc/self/task/") + t->d_name;
        char comm[64] = {};
        FILE* f = fopen((base + "/comm").c_str(), "r");
        if (!f) continue;
        if (!fgets(comm, sizeof comm, f)) comm[0] = 0;
        fclose(f);
        if (strncmp(comm, "upcache-", 8) != 0) continue;
        ++seen;
        f = fopen((base + "/status").c_str(), "r");
        ASSERT_NE(f, nullptr);
        char line[256];
        std::string blk;
        while (fgets(line, sizeof line, f))
          if (strncmp(line, "SigBlk:", 7) == 0) blk = line;
        fclose(f);
        // Every signal but SIGKILL/SIGSTOP (cannot be blocked) and glibc's
        // internal 32 and 33 (pthread_sigmask keeps them open).
        ASSERT_GT(blk.size(), 8u);
        unsigned long long mask = strtoull(blk.c_str() + 7, nullptr, 16);
        for (int sig = 1; sig <= 64; ++sig) {
          if (sig == SIGKILL || sig == SIGSTOP || sig == 32 || sig == 33) continue;
          EXPECT_TRUE(mask >> (sig - 1) & 1) << comm << " does not block signal " << sig;
        }
      }
      closedir(d);
    }
    EXPECT_EQ(seen, want) << b->engine_name();
  }
}

// Makes io_uring_setup fail with ENOSYS, as a seccomp sandbox would.
bool forbid_io_uring() {
  struct sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  struct sock_fprog prog = {sizeof filter / sizeof filter[0], filter};
  return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 &&
         prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) == 0;
}

int async_read_works(Backend* b, const std::string& path, const std::vector<uint8_t>& want) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  BackendFile* f = b->open_file(fd, path.c_str());
  if (!f) return 2;
  Frames fr(2);
  auto iov = fr.iov(0, 2);
  if (!b->read_async(f, 0, iov.data(), 2, 5)) return 3;
  b->drain();
  if (memcmp(fr.data(), want.data(), 2 * kPage) != 0) return 4;
  b->close_file(f);
  close(fd);
  return 0;
}

TEST_F(BackendTest, AutoFallsBackToThreadsWithoutIoUring) {
  std::vector<uint8_t> want;
  std::string path = shm_.make_file("seccomp", 2 * kPage, &want);
  EXPECT_EXIT(
      {
        if (!forbid_io_uring()) _exit(10);
        Collector c;
        auto b = Backend::create(make_config(), nullptr, &Collector::on_complete, &c);
        if (!b || strcmp(b->engine_name(), "threads") != 0) _exit(11);
        int rc = async_read_works(b.get(), path, want);
        if (rc != 0) _exit(20 + rc);
        if (c.calls[5].load() != 1 || c.results[5].load() != int64_t(2 * kPage)) _exit(12);
        _exit(0);
      },
      ::testing::ExitedWithCode(0), "");
}

// Once the process forks, the arena is shared, and a process killed with
// io_uring reads in flight is gone before the kernel lands them (in a worker
// of its own, after the exit): another process would fail those reads and
// give their frames to other pages, which the late reads then overwrite
// (rel_fork_kill_disk: a wrong block in CI). before_fork() moves this
// process, and so its children, to threads.
TEST_F(BackendTest, ForkedFamilyReadsThroughThreadsNotIoUring) {
#if defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "ThreadSanitizer cannot start threads in the child of a threaded fork";
#endif
  std::vector<uint8_t> want;
  std::string path = disk_.make_file("forkengine", 4 * kPage, &want);
  Collector c;
  auto b = Backend::create(make_config("", AsyncEngine::kUring), nullptr, &Collector::on_complete, &c);
  ASSERT_STREQ(b->engine_name(), "uring");
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  BackendFile* f = b->open_file(fd, path.c_str());
  ASSERT_NE(f, nullptr);
  Frames before(2), after(2);
  auto iov = before.iov(0, 2);
  ASSERT_TRUE(b->read_async(f, 0, iov.data(), 2, 1));
  b->before_fork();
  // The read on the ring finishes there; the engine is threads from now on.
  b->drain();
  EXPECT_EQ(c.calls[1].load(), 1);
  EXPECT_EQ(c.results[1].load(), int64_t(2 * kPage));
  EXPECT_EQ(memcmp(before.data(), want.data(), 2 * kPage), 0);
  EXPECT_STREQ(b->engine_name(), "threads");
  auto iov2 = after.iov(0, 2);
  ASSERT_TRUE(b->read_async(f, 2 * kPage, iov2.data(), 2, 2));
  b->drain();
  EXPECT_EQ(c.results[2].load(), int64_t(2 * kPage));
  EXPECT_EQ(memcmp(after.data(), want.data() + 2 * kPage, 2 * kPage), 0);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    b->after_fork_child();
    _exit(strcmp(b->engine_name(), "threads") == 0 ? 0 : 3);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  b->close_file(f);
  close(fd);
}

TEST_F(BackendTest, ChildAfterForkGetsAWorkingEngine) {
#if defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "ThreadSanitizer cannot start threads in the child of a threaded fork";
#endif
  std::vector<uint8_t> want;
  std::string path = disk_.make_file("fork", 2 * kPage, &want);
  for (AsyncEngine e : {AsyncEngine::kUring, AsyncEngine::kThreads}) {
    Collector c;
    auto b = Backend::create(make_config("", e), nullptr, &Collector::on_complete, &c);
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    BackendFile* f = b->open_file(fd, path.c_str());
    ASSERT_NE(f, nullptr);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      b->after_fork_child();
      Frames fr(2);
      auto iov = fr.iov(0, 2);
      if (!b->read_async(f, 0, iov.data(), 2, 9)) _exit(3);
      b->drain();
      if (c.calls[9].load() != 1 || c.results[9].load() != int64_t(2 * kPage)) _exit(4);
      if (memcmp(fr.data(), want.data(), 2 * kPage) != 0) _exit(5);
      b->close_file(f);
      b.reset();
      _exit(0);
    }
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0) << b->engine_name();
    // The parent's engine still works.
    Frames fr(2);
    auto iov = fr.iov(0, 2);
    ASSERT_TRUE(b->read_async(f, 0, iov.data(), 2, 1));
    b->drain();
    EXPECT_EQ(c.results[1].load(), int64_t(2 * kPage));
    b->close_file(f);
    close(fd);
  }
}

}  // namespace
}  // namespace upcache
