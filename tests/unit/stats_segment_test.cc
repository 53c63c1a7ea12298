// The statistics segment: creation, liveness, listing, cleaning, exact sums.
#include "core/stats_segment.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "core/stats_sink.h"

namespace upcache::stats {
namespace {

class StatsSegmentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/upcache-stats-test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::vector<SegmentEntry> entries;
    std::string error;
    list_segments(dir_.c_str(), &entries, &error);
    for (auto& e : entries) unlink(e.path.c_str());
    rmdir(dir_.c_str());
  }
  CreateOptions options(bool keep = false) {
    CreateOptions o;
    o.page_size = 65536;
    o.capacity_bytes = 1 << 30;
    o.callers_every = 7;
    o.keep = keep;
    o.dir = dir_.c_str();
    o.run_id = "run-123";
    return o;
  }
  std::vector<SegmentEntry> list() {
    std::vector<SegmentEntry> entries;
    std::string error;
    EXPECT_EQ(list_segments(dir_.c_str(), &entries, &error), 0) << error;
    return entries;
  }
  static bool exists(const char* path) { return access(path, F_OK) == 0; }

  std::string dir_;
};

TEST_F(StatsSegmentTest, CreateFillsHeaderAndIsListedAndOpened) {
  OwnedSegment own;
  ASSERT_EQ(own.create(options()), 0);
  ASSERT_NE(own.seg(), nullptr);
  const Segment& s = *own.seg();
  EXPECT_EQ(s.magic, kMagic);
  EXPECT_EQ(s.version, kVersion);
  EXPECT_EQ(s.segment_bytes, sizeof(Segment));
  EXPECT_EQ(s.pid, getpid());
  EXPECT_EQ(s.ppid, getppid());
  EXPECT_EQ(s.page_size, 65536u);
  EXPECT_EQ(s.capacity_bytes, 1u << 30);
  EXPECT_EQ(s.callers_every, 7u);
  EXPECT_STREQ(s.run_id, "run-123");
  EXPECT_NE(strstr(s.command, "stats_segment_test"), nullptr) << s.command;
  EXPECT_EQ(s.alive.load(), 1u);
  EXPECT_EQ(s.keep.load(), 0u);
  EXPECT_GT(s.start_time_ns, 0u);
  uint64_t ticks = 0;
  ASSERT_TRUE(process_start_ticks(getpid(), &ticks));
  EXPECT_EQ(s.proc_start_ticks, ticks);

  // Name: dir/upcache.<pid>.<16 hex>, matching the header's nonce.
  std::string prefix = dir_ + "/upcache." + std::to_string(getpid()) + ".";
  ASSERT_EQ(std::string(own.path()).rfind(prefix, 0), 0u) << own.path();
  int pid = 0;
  uint64_t nonce = 0;
  ASSERT_TRUE(parse_segment_name(strrchr(own.path(), '/') + 1, &pid, &nonce));
  EXPECT_EQ(pid, getpid());
  EXPECT_EQ(nonce, s.nonce);

  auto entries = list();
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].path, own.path());
  EXPECT_EQ(entries[0].pid, getpid());
  EXPECT_GE(entries[0].file_bytes, sizeof(Segment));

  std::string error;
  auto view = open_segment(own.path(), &error);
  ASSERT_TRUE(view) << error;
  EXPECT_EQ(view->seg().pid, getpid());
  EXPECT_EQ(view->state(), WriterState::kRunning);

  own.finish();  // not kept: the name goes, the mapping stays
  EXPECT_FALSE(exists(own.path()));
  EXPECT_EQ(own.seg()->alive.load(), 0u);
  EXPECT_GT(own.seg()->end_time_ns.load(), 0u);
  EXPECT_EQ(view->state(), WriterState::kExited);
  EXPECT_TRUE(list().empty());
  own.finish();  // idempotent
  own.destroy();
  EXPECT_EQ(own.seg(), nullptr);
}

TEST_F(StatsSegmentTest, ModeIs0600WhateverTheUmask) {
  for (mode_t mask : {mode_t{0}, mode_t{022}, mode_t{0277}}) {
    mode_t old = umask(mask);
    OwnedSegment own;
    ASSERT_EQ(own.create(options()), 0);
    umask(old);
    struct stat st{};
    ASSERT_EQ(stat(own.path(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0600u) << "umask " << std::oct << mask;
    EXPECT_EQ(st.st_uid, geteuid());
    own.destroy();
  }
}

TEST_F(StatsSegmentTest, KeptSegmentSurvivesFinishAndCleanRemovesIt) {
  OwnedSegment own;
  ASSERT_EQ(own.create(options(/*keep=*/true)), 0);
  StatsSink sink(own.seg());
  sink.add(kHits, 5);
  std::string path = own.path();
  own.finish();
  ASSERT_TRUE(exists(path.c_str()));
  std::string error;
  auto view = open_segment(path, &error);
  ASSERT_TRUE(view) << error;
  EXPECT_EQ(view->state(), WriterState::kExited);
  EXPECT_STREQ(writer_state_name(view->state()), "kept");
  EXPECT_EQ(totals(view->seg()).counters[kHits], 5u);

  CleanResult result;
  ASSERT_EQ(clean_segments(dir_.c_str(), &result), 0);
  EXPECT_EQ(result.removed, 1);
  EXPECT_EQ(result.running, 0);
  EXPECT_FALSE(exists(path.c_str()));
}

// A process with our pid died long ago and left upcache.<pid>.<nonce>: a new
// process whose first random draw gives the same nonce must still get its own
// segment (O_EXCL, new nonce), the stale one must look dead (reused pid: the
// start time differs), and clean must remove only the stale one.
TEST_F(StatsSegmentTest, StaleSegmentOfReusedPidDoesNotCollide) {
  const uint64_t nonce = 0x0123456789abcdefull;
  std::string stale = dir_ + "/upcache." + std::to_string(getpid()) + ".0123456789abcdef";
  {
    int fd = open(stale.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(ftruncate(fd, static_cast<off_t>(segment_map_bytes())), 0);
    void* p = mmap(nullptr, segment_map_bytes(), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ASSERT_NE(p, MAP_FAILED);
    close(fd);
    auto* s = static_cast<Segment*>(p);
    s->version = kVersion;
    s->segment_bytes = sizeof(Segment);
    s->pid = getpid();  // the pid that was reused...
    uint64_t ticks = 0;
    ASSERT_TRUE(process_start_ticks(getpid(), &ticks));
    s->proc_start_ticks = ticks > 1 ? ticks - 1 : ticks + 1;  // ...by a later process
    s->alive.store(1);  // it was killed: never marked not alive
    s->stripes[3].counters[kMisses].store(42);
    s->magic = kMagic;
    munmap(p, segment_map_bytes());
  }

  CreateOptions o = options();
  o.nonce = nonce;
  OwnedSegment own;
  ASSERT_EQ(own.create(o), 0);
  EXPECT_NE(std::string(own.path()), stale);
  EXPECT_NE(own.seg()->nonce, nonce);

  std::string error;
  auto old = open_segment(stale, &error);
  ASSERT_TRUE(old) << error;
  EXPECT_EQ(totals(old->seg()).counters[kMisses], 42u);  // untouched
  EXPECT_EQ(old->state(), WriterState::kDead);
  auto mine = open_segment(own.path(), &error);
  ASSERT_TRUE(mine) << error;
  EXPECT_EQ(mine->state(), WriterState::kRunning);
  EXPECT_EQ(list().size(), 2u);

  CleanResult result;
  ASSERT_EQ(clean_segments(dir_.c_str(), &result), 0);
  EXPECT_EQ(result.removed, 1);
  EXPECT_EQ(result.running, 1);
  EXPECT_FALSE(exists(stale.c_str()));
  EXPECT_TRUE(exists(own.path()));
  own.destroy();
}

TEST_F(StatsSegmentTest, WriterStateTellsReusedPidAndUnmappedSegment) {
  OwnedSegment own;
  ASSERT_EQ(own.create(options()), 0);
  Segment* s = own.seg();
  EXPECT_EQ(writer_state(*s, own.path()), WriterState::kRunning);
  // Same pid, another start time: a reused pid.
  uint64_t real = s->proc_start_ticks;
  s->proc_start_ticks = real + 12345;
  EXPECT_EQ(writer_state(*s, own.path()), WriterState::kDead);
  s->proc_start_ticks = real;
  // Same pid and start time, but the process does not map that segment (it
  // exec'd without the shim's hook).
  std::string other = dir_ + "/upcache." + std::to_string(getpid()) + ".fedcba9876543210";
  EXPECT_EQ(writer_state(*s, other.c_str()), WriterState::kDead);
  // A pid that does not exist.
  s->pid = 0x7ffffff0;
  EXPECT_EQ(writer_state(*s, own.path()), WriterState::kDead);
  s->pid = getpid();
  s->alive.store(0);
  EXPECT_EQ(writer_state(*s, own.path()), WriterState::kExited);
  own.destroy();
}

TEST_F(StatsSegmentTest, ProcessThatDiesWithoutFinishingLooksDeadAndIsCleaned) {
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    OwnedSegment own;
    if (own.create(options()) != 0) _exit(1);
    StatsSink(own.seg()).add(kReads, 3);
    _exit(0);  // no finish(): like SIGKILL or _exit
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  auto entries = list();
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].pid, child);
  std::string error;
  auto view = open_segment(entries[0].path, &error);
  ASSERT_TRUE(view) << error;
  EXPECT_EQ(view->state(), WriterState::kDead);
  EXPECT_EQ(totals(view->seg()).counters[kReads], 3u);  // numbers survive the death
  view.reset();
  CleanResult result;
  ASSERT_EQ(clean_segments(dir_.c_str(), &result), 0);
  EXPECT_EQ(result.removed, 1);
  EXPECT_TRUE(list().empty());
}

TEST_F(StatsSegmentTest, CountersSumExactlyAcrossStripesAndThreads) {
  OwnedSegment own;
  ASSERT_EQ(own.create(options()), 0);
  StatsSink sink(own.seg());
  int slot = sink.claim_file(77, "/data/file.bin");
  ASSERT_GE(slot, 0);
  constexpr int kThreads = 3 * kStripes + 5;  // wraps around the stripes
  constexpr int kIterations = 20000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&sink, slot, t] {
      for (int i = 0; i < kIterations; ++i) {
        for (unsigned c = 0; c < kCounterCount; ++c) sink.add(static_cast<Counter>(c), c + 1);
        sink.latency(kHitLatency, 1000);        // bucket 9
        sink.latency(kMissLatency, uint64_t(t)); // bucket 0 for t <= 1, else log2(t)
        sink.file_add(slot, kFileBytes, 4096);
        sink.file_add(slot, kFileHits, 1);
      }
    });
  }
  for (auto& th : threads) th.join();
  sink.cached_bytes(1 << 20);
  sink.cached_bytes(-(1 << 18));

  // Both through the writer's mapping and a reader's read-only one.
  std::string error;
  auto view = open_segment(own.path(), &error);
  ASSERT_TRUE(view) << error;
  for (const Segment* seg : {static_cast<const Segment*>(own.seg()), &view->seg()}) {
    Totals t = totals(*seg);
    const uint64_t n = uint64_t(kThreads) * kIterations;
    for (unsigned c = 0; c < kCounterCount; ++c) {
      EXPECT_EQ(t.counters[c], n * (c + 1)) << kCounterNames[c];
      EXPECT_EQ(StatsSink::total(*seg, static_cast<Counter>(c)), n * (c + 1));
    }
    EXPECT_EQ(t.latency[kHitLatency][9], n);
    uint64_t miss_sum = 0;
    for (int b = 0; b < kBuckets; ++b) miss_sum += t.latency[kMissLatency][b];
    EXPECT_EQ(miss_sum, n);
    EXPECT_EQ(t.cached_bytes, (1u << 20) - (1u << 18));
    EXPECT_EQ(t.capacity_bytes, 1u << 30);
    auto files = file_totals(*seg);
    ASSERT_EQ(files.size(), 1u);
    EXPECT_EQ(files[0].path, "/data/file.bin");
    EXPECT_EQ(files[0].counters[kFileBytes], n * 4096);
    EXPECT_EQ(files[0].counters[kFileHits], n);
    EXPECT_EQ(files[0].counters[kFileMisses], 0u);
  }
  // The writes really were spread over several stripes.
  int used = 0;
  for (const Stripe& s : own.seg()->stripes) used += s.counters[kReads].load() != 0;
  EXPECT_GT(used, 1);
  own.destroy();
}

TEST_F(StatsSegmentTest, TotalsAddAndMinus) {
  Totals a, b;
  a.counters[kHits] = 10;
  b.counters[kHits] = 4;
  a.latency[kIoLatency][3] = 2;
  Totals d = a.minus(b);
  EXPECT_EQ(d.counters[kHits], 6u);
  EXPECT_EQ(d.latency[kIoLatency][3], 2u);
  EXPECT_EQ(b.minus(a).counters[kHits], 0u);  // never wraps
  a.add(b);
  EXPECT_EQ(a.counters[kHits], 14u);
}

TEST_F(StatsSegmentTest, ForkedChildGetsItsOwnSegmentAtTheSameAddress) {
  OwnedSegment own;
  ASSERT_EQ(own.create(options(/*keep=*/true)), 0);
  StatsSink sink(own.seg());
  sink.add(kReads, 10);
  sink.cached_bytes(8192);
  Segment* before = own.seg();
  int pipefd[2];
  ASSERT_EQ(pipe(pipefd), 0);
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    close(pipefd[0]);
    int r = own.after_fork_child();
    bool ok = r == 0 && own.seg() == before && own.seg()->pid == getpid() &&
              own.seg()->ppid == getppid() && StatsSink::total(*own.seg(), kReads) == 0 &&
              own.seg()->cached_bytes.load() == 8192 && own.seg()->keep.load() == 1 &&
              strcmp(own.seg()->run_id, "run-123") == 0 && own.seg()->page_size == 65536;
    sink.add(kReads, 5);  // the parent's sink pointer now writes the child's segment
    size_t n = strlen(own.path());
    if (write(pipefd[1], own.path(), n) != ssize_t(n)) ok = false;
    own.finish();
    _exit(ok ? 0 : 2);
  }
  close(pipefd[1]);
  char path[kSegmentPathMax] = {};
  ASSERT_GT(read(pipefd[0], path, sizeof path - 1), 0);
  close(pipefd[0]);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_EQ(StatsSink::total(*own.seg(), kReads), 10u);  // the child did not write here
  EXPECT_NE(std::string(path), own.path());
  std::string error;
  auto view = open_segment(path, &error);
  ASSERT_TRUE(view) << error;
  EXPECT_EQ(view->seg().pid, child);
  EXPECT_EQ(view->seg().ppid, getpid());
  EXPECT_EQ(totals(view->seg()).counters[kReads], 5u);
  EXPECT_EQ(view->state(), WriterState::kExited);
  own.destroy();
}

// A vfork() child (or a fork child that never called after_fork_child())
// shares or inherits the parent's segment: exiting or exec'ing must not mark
// or remove it.
TEST_F(StatsSegmentTest, ChildThatIsNotTheOwnerLeavesTheParentsSegmentAlone) {
  OwnedSegment own;
  ASSERT_EQ(own.create(options()), 0);
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    own.before_exec();
    own.exec_failed();
    own.finish();
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_TRUE(exists(own.path()));
  EXPECT_EQ(own.seg()->alive.load(), 1u);
  EXPECT_EQ(own.seg()->end_time_ns.load(), 0u);
  own.destroy();
}

TEST_F(StatsSegmentTest, ExecFailureBringsTheSegmentBackWithItsCounters) {
  OwnedSegment own;
  ASSERT_EQ(own.create(options()), 0);
  Segment* addr = own.seg();
  StatsSink sink(own.seg());
  sink.add(kBytesRead, 4096);
  std::string first = own.path();
  own.before_exec();
  EXPECT_FALSE(exists(first.c_str()));  // not kept: gone while the exec is attempted
  EXPECT_EQ(own.seg()->alive.load(), 0u);
  ASSERT_EQ(own.exec_failed(), 0);
  EXPECT_EQ(own.seg(), addr);
  EXPECT_TRUE(exists(own.path()));
  EXPECT_EQ(own.seg()->alive.load(), 1u);
  EXPECT_EQ(own.seg()->end_time_ns.load(), 0u);
  sink.add(kBytesRead, 1);
  std::string error;
  auto view = open_segment(own.path(), &error);
  ASSERT_TRUE(view) << error;
  EXPECT_EQ(totals(view->seg()).counters[kBytesRead], 4097u);
  EXPECT_EQ(view->state(), WriterState::kRunning);
  own.destroy();
  EXPECT_TRUE(list().empty());
}

TEST_F(StatsSegmentTest, KeptSegmentStaysAcrossExec) {
  OwnedSegment own;
  ASSERT_EQ(own.create(options(/*keep=*/true)), 0);
  std::string path = own.path();
  own.before_exec();
  EXPECT_TRUE(exists(path.c_str()));
  ASSERT_EQ(own.exec_failed(), 0);
  EXPECT_EQ(std::string(own.path()), path);
  EXPECT_EQ(own.seg()->alive.load(), 1u);
  own.destroy();
}

TEST_F(StatsSegmentTest, PrivateSegmentIsNotInTheDirectory) {
  OwnedSegment own;
  ASSERT_EQ(own.create_private(options()), 0);
  EXPECT_FALSE(own.named());
  EXPECT_EQ(own.seg()->magic, kMagic);
  StatsSink(own.seg()).add(kHits);
  EXPECT_EQ(StatsSink::total(*own.seg(), kHits), 1u);
  EXPECT_TRUE(list().empty());
  own.finish();
  own.destroy();
}

TEST_F(StatsSegmentTest, SetKeepFromOutside) {
  OwnedSegment own;
  ASSERT_EQ(own.create(options(/*keep=*/true)), 0);
  std::string error;
  ASSERT_EQ(set_segment_keep(own.path(), false, &error), 0) << error;
  EXPECT_EQ(own.seg()->keep.load(), 0u);
  std::string path = own.path();
  own.finish();
  EXPECT_FALSE(exists(path.c_str()));
}

TEST_F(StatsSegmentTest, OpenRejectsForeignFiles) {
  std::string error;
  int err = 0;
  EXPECT_FALSE(open_segment(dir_ + "/upcache.1.0000000000000001", &error, &err));
  EXPECT_EQ(err, -ENOENT);

  // Empty (being created), bad magic, other version, other owner.
  std::string path = dir_ + "/upcache.1.0000000000000002";
  int fd = open(path.c_str(), O_RDWR | O_CREAT, 0600);
  ASSERT_GE(fd, 0);
  EXPECT_FALSE(open_segment(path, &error, &err));
  EXPECT_EQ(err, -EPROTO);
  EXPECT_NE(error.find("empty"), std::string::npos) << error;

  ASSERT_EQ(ftruncate(fd, static_cast<off_t>(segment_map_bytes())), 0);
  uint32_t head[4] = {0xdeadbeef, kVersion, 0, 0};
  ASSERT_EQ(pwrite(fd, head, sizeof head, 0), ssize_t(sizeof head));
  EXPECT_FALSE(open_segment(path, &error, &err));
  EXPECT_NE(error.find("bad magic"), std::string::npos) << error;

  head[0] = kMagic;
  head[1] = kVersion + 1;
  ASSERT_EQ(pwrite(fd, head, sizeof head, 0), ssize_t(sizeof head));
  EXPECT_FALSE(open_segment(path, &error, &err));
  EXPECT_NE(error.find("version " + std::to_string(kVersion + 1)), std::string::npos) << error;

  if (geteuid() == 0) {
    head[1] = kVersion;
    uint64_t size = sizeof(Segment);
    ASSERT_EQ(pwrite(fd, head, 8, 0), 8);
    ASSERT_EQ(pwrite(fd, &size, 8, 8), 8);
    ASSERT_TRUE(open_segment(path, &error)) << error;
    ASSERT_EQ(fchown(fd, 65534, 65534), 0);
    EXPECT_FALSE(open_segment(path, &error, &err));
    EXPECT_EQ(err, -EPERM);
    EXPECT_NE(error.find("owned by uid 65534"), std::string::npos) << error;
    // ...and neither listed nor cleaned.
    EXPECT_TRUE(list().empty());
  }
  close(fd);
  unlink(path.c_str());
}

TEST(StatsSegmentName, Parse) {
  int pid = 0;
  uint64_t nonce = 0;
  EXPECT_TRUE(parse_segment_name("upcache.1234.00000000000000ff", &pid, &nonce));
  EXPECT_EQ(pid, 1234);
  EXPECT_EQ(nonce, 0xffu);
  EXPECT_FALSE(parse_segment_name("upcache.1234.00000000000000FF", &pid, &nonce));
  EXPECT_FALSE(parse_segment_name("upcache.1234.ff", &pid, &nonce));
  EXPECT_FALSE(parse_segment_name("upcache..00000000000000ff", &pid, &nonce));
  EXPECT_FALSE(parse_segment_name("upcache.12a.00000000000000ff", &pid, &nonce));
  EXPECT_FALSE(parse_segment_name("upcache.0.00000000000000ff", &pid, &nonce));
  EXPECT_FALSE(parse_segment_name("other.1.00000000000000ff", &pid, &nonce));
  EXPECT_FALSE(parse_segment_name("upcache.1.00000000000000ff.tmp", &pid, &nonce));
}

TEST(StatsSegmentDir, EnvironmentOverride) {
  const char* old = getenv("UPCACHE_STATS_DIR");
  std::string saved = old ? old : "";
  unsetenv("UPCACHE_STATS_DIR");
  EXPECT_STREQ(segment_dir(), "/dev/shm");
  setenv("UPCACHE_STATS_DIR", "/tmp/x", 1);
  EXPECT_STREQ(segment_dir(), "/tmp/x");
  if (old) setenv("UPCACHE_STATS_DIR", saved.c_str(), 1);
  else unsetenv("UPCACHE_STATS_DIR");
}

}  // namespace
}  // namespace upcache::stats
