// sys::proc_stat and sys::pid_alive, under owner_gone (core/owner.h): a
// zombie must count as dead, a running process as alive, and the start time
// must be read right (it tells a reused pid apart).
#include <gtest/gtest.h>
#include <sys/syscall.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "core/sys.h"

namespace upcache {
namespace {

TEST(SysPidAlive, RunningProcessIsAliveWithAStartTime) {
  int me = sys::getpid();
  sys::ProcStat st = sys::proc_stat(me);
  EXPECT_EQ(st.state, 'R');
  EXPECT_GT(st.start_time, 0u);
  EXPECT_TRUE(st.can_run());
  EXPECT_TRUE(sys::pid_alive(me));
}

TEST(SysPidAlive, ThreadsAreCounted) {
  EXPECT_EQ(sys::proc_stat(sys::getpid()).num_threads, 1u);
  std::atomic<bool> stop{false};
  std::thread other([&] { while (!stop.load()) usleep(1000); });
  EXPECT_EQ(sys::proc_stat(sys::getpid()).num_threads, 2u);
  stop.store(true);
  other.join();
}

TEST(SysPidAlive, ZombieIsDeadAndReapedIsGone) {
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) _exit(0);
  // Not reaped yet: wait until the kernel shows it as a zombie.
  siginfo_t info{};
  ASSERT_EQ(waitid(P_PID, child, &info, WEXITED | WNOWAIT), 0);
  EXPECT_EQ(sys::proc_stat(child).state, 'Z');
  EXPECT_EQ(kill(child, 0), 0) << "a zombie still answers kill(0), which is why pid_alive reads /proc";
  EXPECT_EQ(sys::proc_stat(child).num_threads, 1u);
  EXPECT_FALSE(sys::pid_alive(child));
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_EQ(sys::proc_stat(child).state, 0);
  EXPECT_FALSE(sys::pid_alive(child));
}

TEST(SysPidAlive, ProcessWhoseMainThreadExitedStillRuns) {
  // The leader shows as a zombie once the main thread has exited, while the
  // process's other threads go on (and may hold locks or I/O in the arena).
  int pipefd[2];
  ASSERT_EQ(pipe(pipefd), 0);
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    std::thread([fd = pipefd[0]] {
      char c;
      while (read(fd, &c, 1) != 1) {
      }
      _exit(0);
    }).detach();
    syscall(SYS_exit, 0);  // this thread only, without unwinding (gtest would catch it)
  }
  sys::ProcStat st;
  for (int i = 0; i < 5000 && st.state != 'Z'; ++i) {
    st = sys::proc_stat(child);
    if (st.state != 'Z') usleep(1000);
  }
  EXPECT_EQ(st.state, 'Z');
  EXPECT_EQ(st.num_threads, 2u);
  EXPECT_TRUE(sys::pid_alive(child)) << "its other thread still runs";
  ASSERT_EQ(write(pipefd[1], "x", 1), 1);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_FALSE(sys::pid_alive(child));
  close(pipefd[0]);
  close(pipefd[1]);
}

TEST(SysPidAlive, CommandNameWithParenthesesAndSpacesIsParsed) {
  // The start time follows the last ')' even when the name holds one.
  uint64_t before = sys::proc_stat(sys::getpid()).start_time;
  ASSERT_GT(before, 0u);
  ASSERT_EQ(prctl(PR_SET_NAME, "a) 1 2 (c"), 0);
  sys::ProcStat st = sys::proc_stat(sys::getpid());
  EXPECT_EQ(st.state, 'R');
  EXPECT_EQ(st.start_time, before);
  EXPECT_EQ(st.num_threads, 1u);
}

}  // namespace
}  // namespace upcache
