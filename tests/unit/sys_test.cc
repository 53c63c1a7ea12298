// sys::pid_alive decides when a frame's read in flight is abandoned by a dead
// process (and a spin lock by a dead holder): a zombie and a reused pid must
// count as dead, a running process as alive.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/sys.h"

namespace upcache {
namespace {

TEST(SysPidAlive, RunningProcessIsAliveWithItsOwnStartTime) {
  int me = sys::getpid();
  sys::ProcStat st = sys::proc_stat(me);
  EXPECT_EQ(st.state, 'R');
  EXPECT_GT(st.start_time, 0u);
  EXPECT_TRUE(sys::pid_alive(me));
  EXPECT_TRUE(sys::pid_alive(me, st.start_time));
  // Another start time means the pid now names another process.
  EXPECT_FALSE(sys::pid_alive(me, st.start_time + 1));
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
  EXPECT_FALSE(sys::pid_alive(child));
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_EQ(sys::proc_stat(child).state, 0);
  EXPECT_FALSE(sys::pid_alive(child));
}

TEST(SysPidAlive, CommandNameWithParenthesesAndSpacesIsParsed) {
  // The start time follows the last ')' even when the name holds one.
  uint64_t before = sys::proc_stat(sys::getpid()).start_time;
  ASSERT_GT(before, 0u);
  ASSERT_EQ(prctl(PR_SET_NAME, "a) 1 2 (c"), 0);
  sys::ProcStat st = sys::proc_stat(sys::getpid());
  EXPECT_EQ(st.state, 'R');
  EXPECT_EQ(st.start_time, before);
}

}  // namespace
}  // namespace upcache
