// Owner words and the arena's spin lock (core/owner.h, core/spinlock.h): a
// holder killed inside a critical section must not leave the lock held for
// good, even when its pid is given to another process before anyone looks;
// a live holder must never be robbed.
#include <gtest/gtest.h>
#include <sys/syscall.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "core/owner.h"
#include "core/spinlock.h"

namespace upcache {
namespace {

// A lock word in memory shared with forked children, as in the arena.
struct SharedWord {
  SharedWord() {
    void* p = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    EXPECT_NE(p, MAP_FAILED);
    word = new (p) std::atomic<uint64_t>(0);
    flag = new (static_cast<char*>(p) + 64) std::atomic<uint32_t>(0);
  }
  ~SharedWord() { munmap(word, 4096); }
  std::atomic<uint64_t>* word;
  std::atomic<uint32_t>* flag;
};

TEST(Owner, SelfIsPidAndStartTimeAndNotGone) {
  uint64_t me = owner_self();
  EXPECT_EQ(owner_pid(me), getpid());
  EXPECT_EQ(owner_start(me), static_cast<uint32_t>(sys::proc_stat(getpid()).start_time));
  EXPECT_FALSE(owner_gone(me));
}

TEST(Owner, SamePidOtherStartTimeIsGone) {
  // What a waiter sees when the holder was reaped and its pid reused: the pid
  // runs, but it is another process.
  uint64_t me = owner_self();
  EXPECT_TRUE(owner_gone(owner_word(owner_pid(me), owner_start(me) + 1ull)));
}

TEST(Owner, ForkedChildHasItsOwnWordAndAZombieIsGone) {
  SharedWord shared;
  uint64_t parent = owner_self();
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    owner_fork_generation().fetch_add(1);  // as Cache::after_fork_child does
    shared.word->store(owner_self());
    _exit(0);
  }
  siginfo_t info{};
  ASSERT_EQ(waitid(P_PID, child, &info, WEXITED | WNOWAIT), 0);
  uint64_t word = shared.word->load();
  EXPECT_EQ(owner_pid(word), child);
  EXPECT_NE(word, parent);
  EXPECT_TRUE(owner_gone(word)) << "a zombie can never release what it holds";
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_TRUE(owner_gone(word));
}

TEST(SpinLock, HolderWhosePidWasReusedIsTakenOver) {
  // Before owner words, the lock held only a pid: a live process with the
  // dead holder's pid made every waiter spin forever. Our own pid with
  // another start time is exactly that situation.
  std::atomic<uint64_t> word{owner_word(getpid(), owner_start(owner_self()) + 7ull)};
  SpinLock().lock(word);
  EXPECT_EQ(word.load(), owner_self());
  SpinLock().unlock(word);
  EXPECT_EQ(word.load(), 0u);
}

TEST(SpinLock, HolderKilledInsideTheCriticalSectionIsTakenOver) {
  SharedWord shared;
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    owner_fork_generation().fetch_add(1);
    SpinLock().lock(*shared.word);
    shared.flag->store(1);
    for (;;) pause();  // killed while holding it
  }
  while (shared.flag->load() == 0) sched_yield();
  uint64_t held = shared.word->load();
  EXPECT_EQ(owner_pid(held), child);
  ASSERT_EQ(kill(child, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);  // reaped: the pid is free for reuse
  SpinLock().lock(*shared.word);
  EXPECT_EQ(shared.word->load(), owner_self());
  SpinLock().unlock(*shared.word);
}

TEST(SpinLock, LiveHolderInAnotherProcessIsWaitedFor) {
  SharedWord shared;
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    owner_fork_generation().fetch_add(1);
    SpinLock().lock(*shared.word);
    shared.flag->store(1);
    while (shared.flag->load() != 2) sched_yield();  // held until the parent says
    SpinLock().unlock(*shared.word);
    _exit(0);
  }
  while (shared.flag->load() == 0) sched_yield();
  std::atomic<bool> acquired{false};
  std::thread waiter([&] {
    SpinLock().lock(*shared.word);
    acquired.store(true);
    SpinLock().unlock(*shared.word);
  });
  // Long enough for many liveness checks (one per 1024 spins); a waiter that
  // robbed a live holder would have the lock by now.
  for (int i = 0; i < 200 && !acquired.load(); ++i) usleep(1000);
  EXPECT_FALSE(acquired.load()) << "the lock was taken from a live holder";
  shared.flag->store(2);
  waiter.join();
  EXPECT_TRUE(acquired.load());
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

TEST(SpinLock, HolderWhoseMainThreadExitedIsWaitedFor) {
  // The leader of such a process shows as a zombie in /proc; the thread
  // holding the lock still runs, and taking the lock from it would let two
  // processes change an index chain at once.
  SharedWord shared;
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    owner_fork_generation().fetch_add(1);
    std::thread([&shared] {
      SpinLock().lock(*shared.word);
      shared.flag->store(1);
      while (shared.flag->load() != 2) sched_yield();
      SpinLock().unlock(*shared.word);
      _exit(0);
    }).detach();
    syscall(SYS_exit, 0);  // this thread only, without unwinding (gtest would catch it)
  }
  while (shared.flag->load() == 0) sched_yield();
  while (sys::proc_stat(child).state != 'Z') usleep(1000);
  std::atomic<bool> acquired{false};
  std::thread waiter([&] {
    SpinLock().lock(*shared.word);
    acquired.store(true);
    SpinLock().unlock(*shared.word);
  });
  for (int i = 0; i < 200 && !acquired.load(); ++i) usleep(1000);
  EXPECT_FALSE(acquired.load()) << "the lock was taken from a running thread";
  shared.flag->store(2);
  waiter.join();
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

}  // namespace
}  // namespace upcache
