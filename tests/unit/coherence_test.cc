// Coherence with other processes (upcache(7), Coherence): a file is served
// only under a read lease, another process's open for writing breaks it and
// drops the pages before that open returns, and a file open for writing
// elsewhere goes to the kernel (read() answers -ENOBUFS, which the shim turns
// into a read by the kernel). The other process here is a forked child that
// uses plain system calls, as a program without upcache would.
#include <signal.h>
#include <sys/wait.h>

#include <atomic>
#include <cstring>

#include "cache_fixture.h"

namespace upcache {
namespace {

using upcache::testing::fill_pattern;
using upcache::testing::pattern_byte;

class CoherenceTest : public upcache::testing::CacheFixture {
 protected:
  CoherenceTest() : CacheFixture("coherence") {}

  // Reads [pos, pos + n) as the shim would: from the cache, or from the
  // kernel when the cache declines. `served` says which.
  std::vector<char> read_as_shim(FileRef* f, RaState& ra, uint64_t pos, uint64_t n, bool* served) {
    std::vector<char> buf(n);
    iovec iov{buf.data(), n};
    int64_t got = cache->read(f, ra, pos, &iov, 1);
    *served = got != -ENOBUFS;
    if (!*served) got = pread(fds.back(), buf.data(), n, static_cast<off_t>(pos));
    EXPECT_GE(got, 0);
    buf.resize(got < 0 ? 0 : static_cast<size_t>(got));
    return buf;
  }
  // Writes dir/f (pattern `salt`), opens it for writing with `access` (as
  // another process would hold it: a lease sees no difference), then
  // attaches it read-only. The caller closes *writer.
  FileRef* open_while_written(uint64_t salt, int access, int* writer) {
    const std::string path = dir + "/f";
    *writer = -1;
    if (!upcache::testing::write_pattern_file(path, 128 << 10, salt)) return nullptr;
    *writer = open(path.c_str(), access);
    return *writer < 0 ? nullptr : open_file(path);
  }
  static bool is_pattern(const std::vector<char>& b, uint64_t pos, uint64_t salt) {
    for (size_t i = 0; i < b.size(); ++i)
      if (static_cast<uint8_t>(b[i]) != pattern_byte(pos + i, salt)) return false;
    return true;
  }
  // A child that opens `path` for writing, writes pattern `salt` over
  // [pos, pos + n), closes it and exits: a plain writer. Returns when the
  // child has exited (its write returned long before).
  static void write_in_child(const std::string& path, uint64_t pos, uint64_t n, uint64_t salt) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      std::vector<char> b(n);
      fill_pattern(b, pos, salt);
      int fd = open(path.c_str(), O_WRONLY);
      bool ok = fd >= 0 && pwrite(fd, b.data(), n, static_cast<off_t>(pos)) == static_cast<ssize_t>(n);
      _exit(ok && close(fd) == 0 ? 0 : 1);
    }
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
};

TEST_F(CoherenceTest, AnotherProcessWriteDropsThePagesBeforeItsOpenReturns) {
  make_cache(8 << 20, 4096);
  FileRef* f = open_pattern_file(256 << 10, 1);
  ASSERT_NE(f, nullptr);
  RaState ra = cache->new_ra_state();
  bool served = false;
  EXPECT_TRUE(is_pattern(read_as_shim(f, ra, 0, 65536, &served), 0, 1));
  ASSERT_TRUE(served);
  EXPECT_TRUE(is_pattern(read_as_shim(f, ra, 0, 65536, &served), 0, 1));
  ASSERT_TRUE(served);
  EXPECT_GT(counter(stats::kHits), 0u);  // cached: a stale page would be served
  EXPECT_EQ(counter(stats::kLeases), 1u);

  write_in_child(dir + "/f", 4096, 8192, 2);
  EXPECT_EQ(counter(stats::kLeasesBroken), 1u);
  EXPECT_GT(counter(stats::kCoherenceDrops), 0u);
  std::vector<char> got = read_as_shim(f, ra, 0, 65536, &served);
  ASSERT_EQ(got.size(), 65536u);
  for (uint64_t i = 0; i < 65536; ++i) {
    const uint64_t salt = (i >= 4096 && i < 12288) ? 2 : 1;
    ASSERT_EQ(static_cast<uint8_t>(got[i]), pattern_byte(i, salt)) << i;
  }
  // The writer is gone: the next open leases the file again, and the
  // new bytes are served from the cache.
  FileRef* again = open_file(dir + "/f");  // a new file id: the file changed
  ASSERT_NE(again, nullptr);
  got = read_as_shim(again, ra, 8192, 4096, &served);
  EXPECT_TRUE(served);
  got = read_as_shim(again, ra, 8192, 4096, &served);
  EXPECT_TRUE(served);
  EXPECT_TRUE(is_pattern(got, 8192, 2));
  EXPECT_EQ(counter(stats::kLeases), 2u);
  EXPECT_GT(counter(stats::kHits), 1u);
}

TEST_F(CoherenceTest, FileOpenForWritingElsewhereGoesToTheKernel) {
  make_cache(8 << 20, 4096);
  const std::string path = dir + "/f";
  int writer = -1;
  FileRef* f = open_while_written(3, O_WRONLY, &writer);  // held open: another process's, as far as a lease sees
  ASSERT_NE(f, nullptr);
  RaState ra = cache->new_ra_state();
  bool served = true;
  EXPECT_TRUE(is_pattern(read_as_shim(f, ra, 0, 4096, &served), 0, 3));
  EXPECT_FALSE(served);
  std::vector<char> b(4096);
  fill_pattern(b, 0, 4);
  ASSERT_EQ(pwrite(writer, b.data(), b.size(), 0), 4096);
  EXPECT_TRUE(is_pattern(read_as_shim(f, ra, 0, 4096, &served), 0, 4));
  EXPECT_FALSE(served);
  EXPECT_EQ(counter(stats::kHits), 0u);
  EXPECT_EQ(counter(stats::kCoherencePassthrough), 2u);
  bool writer_state = false;
  for (const auto& slot : seg->files)
    writer_state |= slot.file_id.load() != 0 && slot.coherence.load() == stats::kCoherenceWriter;
  EXPECT_TRUE(writer_state);
  close(writer);
  FileRef* again = open_file(path);  // reopened: tried again at once
  ASSERT_NE(again, nullptr);
  EXPECT_TRUE(is_pattern(read_as_shim(again, ra, 0, 4096, &served), 0, 4));
  EXPECT_TRUE(served);
}

TEST_F(CoherenceTest, ForkedChildTakesItsOwnLeaseAndOutlivesItsParentsLease) {
#if defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "ThreadSanitizer cannot start the child's lease thread after a multithreaded fork";
#endif
  make_cache(8 << 20, 4096);
  FileRef* f = open_pattern_file(128 << 10, 5);
  ASSERT_NE(f, nullptr);
  RaState ra = cache->new_ra_state();
  bool served = false;
  EXPECT_TRUE(is_pattern(read_as_shim(f, ra, 0, 65536, &served), 0, 5));
  ASSERT_TRUE(served);
  int go[2], done[2];
  ASSERT_EQ(pipe(go), 0);
  ASSERT_EQ(pipe(done), 0);
  cache->before_fork();
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    cache->after_fork_child();
    // The child's own lease (the parent's stays the parent's).
    bool ok = is_pattern(read_as_shim(f, ra, 0, 65536, &served), 0, 5) && served;
    char c = ok ? 'y' : 'n';
    ok = write(done[1], &c, 1) == 1 && read(go[0], &c, 1) == 1;
    // The parent gave its file up and a writer came meanwhile: the child's
    // lease was broken and the new bytes are what it reads.
    ok = ok && is_pattern(read_as_shim(f, ra, 0, 4096, &served), 0, 6);
    _exit(ok ? 0 : 1);
  }
  char c = 0;
  ASSERT_EQ(read(done[0], &c, 1), 1);
  ASSERT_EQ(c, 'y');
  // The parent lets go of its lease (as a process that exits would).
  for (FileRef* r : refs) cache->release(r);
  refs.clear();
  write_in_child(dir + "/f", 0, 4096, 6);
  ASSERT_EQ(write(go[1], "g", 1), 1);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

std::atomic<int> g_program_signals{0};
void program_handler(int) { g_program_signals.fetch_add(1); }

TEST_F(CoherenceTest, ASignalNumberTheProgramUsesIsLeftToIt) {
  const int sig = SIGRTMAX - 3;  // the default lease signal
  struct sigaction sa {}, old {};
  sa.sa_handler = program_handler;
  ASSERT_EQ(sigaction(sig, &sa, &old), 0);
  make_cache(8 << 20, 4096);
  FileRef* f = open_pattern_file(128 << 10, 7);
  ASSERT_NE(f, nullptr);
  RaState ra = cache->new_ra_state();
  bool served = false;
  EXPECT_TRUE(is_pattern(read_as_shim(f, ra, 0, 4096, &served), 0, 7));
  ASSERT_TRUE(served);
  for (int i = 0; i < 5; ++i) ASSERT_EQ(raise(sig), 0);
  EXPECT_EQ(g_program_signals.load(), 5);
  write_in_child(dir + "/f", 0, 4096, 8);
  EXPECT_EQ(counter(stats::kLeasesBroken), 1u);
  EXPECT_TRUE(is_pattern(read_as_shim(f, ra, 0, 4096, &served), 0, 8));
  EXPECT_EQ(g_program_signals.load(), 5);
  sigaction(sig, &old, nullptr);
}

TEST_F(CoherenceTest, OpenModeServesAFileThatCannotBeLeased) {
  coherence = Coherence::kOpen;
  make_cache(8 << 20, 4096);
  int writer = -1;
  FileRef* f = open_while_written(9, O_WRONLY, &writer);
  ASSERT_NE(f, nullptr);
  RaState ra = cache->new_ra_state();
  bool served = false;
  EXPECT_TRUE(is_pattern(read_as_shim(f, ra, 0, 4096, &served), 0, 9));
  EXPECT_TRUE(served);  // weak: revalidated at open only
  EXPECT_EQ(counter(stats::kCoherencePassthrough), 0u);
  close(writer);
}

TEST_F(CoherenceTest, LocksModeServesAFileOpenForWritingAndChecksItAtEachLock) {
  coherence = Coherence::kLocks;
  make_cache(8 << 20, 4096);
  const std::string path = dir + "/f";
  int writer = -1;
  FileRef* f = open_while_written(10, O_RDWR, &writer);  // as a database every process opens read-write
  ASSERT_NE(f, nullptr);
  RaState ra = cache->new_ra_state();
  bool served = false;
  EXPECT_TRUE(is_pattern(read_as_shim(f, ra, 0, 4096, &served), 0, 10));
  if (!served) {
    close(writer);
    GTEST_SKIP() << "no multigrain timestamps here: files open for writing go to the kernel";
  }
  EXPECT_TRUE(is_pattern(read_as_shim(f, ra, 0, 4096, &served), 0, 10));
  EXPECT_TRUE(served);
  EXPECT_GT(counter(stats::kHits), 0u);
  // Another process writes (under the lock it holds), then the reader takes
  // the lock: the change is seen.
  write_in_child(path, 0, 4096, 11);
  cache->synchronized();
  EXPECT_TRUE(is_pattern(read_as_shim(f, ra, 0, 4096, &served), 0, 11));
  EXPECT_TRUE(served);
  EXPECT_GT(counter(stats::kCoherenceDrops), 0u);
  // Nothing changed: the pages stay.
  const uint64_t drops = counter(stats::kCoherenceDrops);
  cache->synchronized();
  EXPECT_TRUE(is_pattern(read_as_shim(f, ra, 0, 4096, &served), 0, 11));
  EXPECT_EQ(counter(stats::kCoherenceDrops), drops);
  close(writer);
}

}  // namespace
}  // namespace upcache
