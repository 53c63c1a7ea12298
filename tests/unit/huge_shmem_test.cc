#include "core/huge_shmem.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include "core/arena.h"
#include "core/inode_table.h"

namespace upcache {
namespace {

constexpr uint64_t kMiB = 1ull << 20;

std::string slurp(const char* path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string link_of(const char* path) {
  char buf[128];
  ssize_t n = readlink(path, buf, sizeof buf);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
}

int open_descriptors() {
  int n = 0;
  for (int fd = 0; fd < 4096; ++fd) n += fcntl(fd, F_GETFD) >= 0;
  return n;
}

// The system may refuse what the helper needs (user namespaces off, a
// seccomp filter, no new mount API): then the arena uses ordinary memory and
// there is nothing to test here.
bool refused(int r) { return r == -EPERM || r == -EACCES || r == -ENOSYS || r == -EINVAL || r == -ENOSPC; }

TEST(HugeShmem, FileIsAnUnnamedTmpfsFileOfTheSizeAsked) {
  int fd = huge_shmem_open(10 * kMiB + 4096);
  if (refused(fd)) GTEST_SKIP() << "no private tmpfs here: " << strerror(-fd);
  ASSERT_GE(fd, 0) << strerror(-fd);
  struct stat st;
  ASSERT_EQ(fstat(fd, &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), 10 * kMiB + 4096);
  EXPECT_EQ(st.st_nlink, 0u);  // O_TMPFILE: no name anywhere
  EXPECT_EQ(st.st_uid, geteuid());
  struct statfs sf;
  ASSERT_EQ(fstatfs(fd, &sf), 0);
  EXPECT_EQ(sf.f_type, TMPFS_MAGIC);
  EXPECT_EQ(fcntl(fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
  close(fd);
}

TEST(HugeShmem, LeavesNoDescriptorNoChildNoMountAndErrnoAlone) {
  const std::string mounts = slurp("/proc/self/mountinfo");
  const std::string mnt_ns = link_of("/proc/self/ns/mnt");
  const std::string user_ns = link_of("/proc/self/ns/user");
  ASSERT_FALSE(mnt_ns.empty());
  const int before = open_descriptors();
  errno = 1234;
  int fd = huge_shmem_open(4 * kMiB);
  EXPECT_EQ(errno, 1234);
  if (refused(fd)) GTEST_SKIP() << "no private tmpfs here: " << strerror(-fd);
  ASSERT_GE(fd, 0) << strerror(-fd);
  EXPECT_EQ(open_descriptors(), before + 1);  // only the one returned
  close(fd);
  EXPECT_EQ(slurp("/proc/self/mountinfo"), mounts);
  // The helper was reaped: no child of any kind is left to wait for.
  errno = 0;
  EXPECT_EQ(waitpid(-1, nullptr, WNOHANG | __WALL), -1);
  EXPECT_EQ(errno, ECHILD);
  // Our namespaces are those we had (the helper's died with it).
  EXPECT_EQ(link_of("/proc/self/ns/mnt"), mnt_ns);
  EXPECT_EQ(link_of("/proc/self/ns/user"), user_ns);
}

TEST(HugeShmem, MappingIsSharedWithAForkedChildAndOnHugePages) {
  const uint64_t bytes = 16 * kMiB;
  int fd = huge_shmem_open(bytes);
  if (refused(fd)) GTEST_SKIP() << "no private tmpfs here: " << strerror(-fd);
  ASSERT_GE(fd, 0) << strerror(-fd);
  auto* m = static_cast<char*>(mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
  ASSERT_NE(m, MAP_FAILED);
  close(fd);  // the mapping keeps the file
  for (uint64_t i = 0; i < bytes; i += 4096) m[i] = 1;
  // 16 MiB of a fresh machine's memory: the kernel has 2 MiB pages for it.
  EXPECT_GT(huge_shmem_pmd_bytes(m), 0);
  EXPECT_EQ(huge_shmem_pmd_bytes(m + bytes - 1), huge_shmem_pmd_bytes(m));
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    m[bytes - 1] = 42;
    _exit(m[0] == 1 ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_EQ(m[bytes - 1], 42);
  munmap(m, bytes);
}

TEST(HugeShmem, PmdBytesOfOrdinarySharedMemoryAreZero) {
  auto* m = static_cast<char*>(mmap(nullptr, 8 * kMiB, PROT_READ | PROT_WRITE,
                                    MAP_SHARED | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(m, MAP_FAILED);
  for (uint64_t i = 0; i < 8 * kMiB; i += 4096) m[i] = 1;
  // Unless the administrator enabled shmem THP, which is the case this
  // module is for.
  if (slurp("/sys/kernel/mm/transparent_hugepage/shmem_enabled").find("[never]") != std::string::npos) {
    EXPECT_EQ(huge_shmem_pmd_bytes(m), 0);
  }
  EXPECT_EQ(huge_shmem_pmd_bytes(reinterpret_cast<void*>(8)), -ENOENT);
  munmap(m, 8 * kMiB);
}

TEST(Arena, DescriptorsBucketsAndFramesMoveToHugePagesInPlace) {
  int probe = huge_shmem_open(4 * kMiB);
  if (refused(probe)) GTEST_SKIP() << "no private tmpfs here: " << strerror(-probe);
  close(probe);
  // 2048 frames of 16 KiB: 32 MiB of frames.
  Arena a;
  std::string err;
  ASSERT_TRUE(a.create(16384, 2048, &err, /*huge=*/false, /*transparent_huge=*/true)) << err;
  EXPECT_TRUE(a.transparent_huge_possible());
  EXPECT_FALSE(a.transparent_huge());
  char* frames = a.frame_data(0);
  FrameDesc* descs = &a.frame(0);
  Bucket* buckets = a.buckets();
  EXPECT_EQ(reinterpret_cast<uintptr_t>(frames) % (2 * kMiB), 0u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(descs) % (2 * kMiB), 0u);
  a.header().clock_hand.store(77);  // what stays may be written before the move
  a.inodes()[3].file_id = 33;
  ASSERT_TRUE(a.settle_backing(true));
  EXPECT_TRUE(a.transparent_huge());
  EXPECT_FALSE(a.transparent_huge_possible());
  EXPECT_EQ(a.header().frame_backing.load(), kBackingHuge);
  EXPECT_TRUE(a.settle_backing(true));  // settled
  EXPECT_EQ(a.frame_data(0), frames);
  EXPECT_EQ(&a.frame(0), descs);
  EXPECT_EQ(a.buckets(), buckets);
  EXPECT_EQ(a.header().magic, ArenaHeader::kMagic);
  EXPECT_EQ(a.header().clock_hand.load(), 77u);
  EXPECT_EQ(a.inodes()[3].file_id, 33u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(buckets) % (2 * kMiB), 0u);
  // The buckets lie on a 2 MiB page from the first touch; the descriptors
  // start on 4 KiB pages, so that the first misses clear no 2 MiB page for
  // them...
  EXPECT_EQ(a.frame(2047).state.load(), 0u);
  a.frame(2047).page.store(9);
  buckets[4095].head.store(2048);
  EXPECT_EQ(huge_shmem_pmd_bytes(buckets), static_cast<int64_t>(2 * kMiB));
  EXPECT_EQ(huge_shmem_pmd_bytes(descs), 0);
  // ...and move to a 2 MiB page in place when promoted, with what they hold.
  if (!a.promote_descriptors()) GTEST_SKIP() << "no MADV_COLLAPSE for shmem here (Linux 6.1)";
  EXPECT_EQ(a.header().descriptors_promoted.load(), 2u);
  EXPECT_EQ(huge_shmem_pmd_bytes(descs), static_cast<int64_t>(2 * kMiB));
  EXPECT_EQ(a.frame(2047).page.load(), 9u);
  EXPECT_EQ(buckets[4095].head.load(), 2048u);
  EXPECT_EQ(a.frame(0).page.load(), 0u);
  EXPECT_TRUE(a.promote_descriptors());  // once
  for (uint64_t i = 0; i < 2048; ++i) a.frame_data(i)[0] = static_cast<char>(i);
  for (uint64_t i = 0; i < 2048; ++i) ASSERT_EQ(a.frame_data(i)[0], static_cast<char>(i));
  a.frame_data(2047)[16383] = 7;
  EXPECT_EQ(a.frame_data(2047)[16383], 7);
  EXPECT_GT(huge_shmem_pmd_bytes(a.frame_data(1024)), static_cast<int64_t>(2 * kMiB));
  EXPECT_EQ(huge_shmem_pmd_bytes(&a.header()), 0);  // header, inodes, journals did not move
  EXPECT_EQ(huge_shmem_pmd_bytes(a.inodes()), 0);
}

TEST(Arena, NoMoveForASmallArenaOrWhenNotAsked) {
  Arena small;
  std::string err;
  ASSERT_TRUE(small.create(4096, 64, &err, false, /*transparent_huge=*/true)) << err;
  EXPECT_FALSE(small.transparent_huge_possible());
  EXPECT_FALSE(small.settle_backing(true));
  EXPECT_EQ(small.header().frame_backing.load(), kBackingOrdinary);
  Arena unasked;
  ASSERT_TRUE(unasked.create(16384, 2048, &err)) << err;
  EXPECT_FALSE(unasked.settle_backing(true));
  EXPECT_FALSE(unasked.transparent_huge());
  Arena declined;
  ASSERT_TRUE(declined.create(16384, 2048, &err, false, true)) << err;
  EXPECT_FALSE(declined.settle_backing(false));
  EXPECT_FALSE(declined.settle_backing(true));  // settled for good
  EXPECT_EQ(declined.header().frame_backing.load(), kBackingOrdinary);
}

TEST(Arena, AChildForkedAroundTheHandlersPinsTheFramesWhereBothSeeThem) {
  int probe = huge_shmem_open(4 * kMiB);
  if (refused(probe)) GTEST_SKIP() << "no private tmpfs here: " << strerror(-probe);
  close(probe);
  Arena a;
  std::string err;
  ASSERT_TRUE(a.create(16384, 2048, &err, false, true)) << err;
  // A fork nobody settled before: the child shares the header page, so it
  // must not move the frames (the parent would not see them), and the
  // parent must not either once the child has written a frame.
  int to_parent[2];
  ASSERT_EQ(pipe(to_parent), 0);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    bool moved = a.settle_backing(true);
    a.frame_data(5)[0] = 55;
    char done = moved ? 'm' : 'o';
    _exit(write(to_parent[1], &done, 1) == 1 ? 0 : 1);
  }
  char done = 0;
  ASSERT_EQ(read(to_parent[0], &done, 1), 1);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_EQ(done, 'o');
  EXPECT_FALSE(a.settle_backing(true));  // alone again, but settled by the child
  EXPECT_EQ(a.frame_data(5)[0], 55);
  EXPECT_EQ(a.header().frame_backing.load(), kBackingOrdinary);
  close(to_parent[0]);
  close(to_parent[1]);
}

}  // namespace
}  // namespace upcache
